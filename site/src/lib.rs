//! # Lambent's static site
//!
//! Every page is rendered here with maud, once, into `site/dist/` (`cargo run -p lambent-site`); the local
//! server and CloudFront serve that folder as it is. Pages carry no data: our own JavaScript
//! (`site/static/`) fetches it from the API and puts it into the page as text, never as HTML. No inline
//! script anywhere, so a Content-Security-Policy can forbid it.
//!
//! # Layout
//! - `lib.rs`: the layout and the pages (`/`, `/dashboard/`, `/playground/`, `/swagger/`, `/redoc/`).
//! - `main.rs`: the build: pages, `static/` and the npm assets (Pico, Swagger UI, Redoc) into `dist/`.

use maud::{DOCTYPE, Markup, html};

/// Served with every page by the local server and CloudFront.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; \
    base-uri 'self'; form-action 'self'";

/// The one CDN address inside Redoc's bundle; the build points it at `static/redocly-logo.svg`.
pub const REDOC_CDN_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";

/// Third-party files copied from `site/node_modules` into `dist/vendor/`: (from, to).
pub const VENDOR: &[(&str, &str)] = &[
    ("@picocss/pico/css/pico.min.css", "pico.min.css"),
    ("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-bundle.js"),
    ("swagger-ui-dist/swagger-ui.css", "swagger-ui.css"),
    ("redoc/bundles/redoc.standalone.js", "redoc.standalone.js"),
];

fn layout(title: &str, page: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Lambent" }
                link rel="stylesheet" href="/vendor/pico.min.css";
                link rel="stylesheet" href="/static/site.css";
                script src="/static/app.js" defer {}
            }
            body data-page=(page) {
                header class="container" {
                    nav aria-label="Main" {
                        ul { li { a href="/" { strong { "Lambent" } } } }
                        ul {
                            li { a href="/dashboard/" { "Dashboard" } }
                            li { a href="/playground/" { "Playground" } }
                            li { a href="/swagger/" { "Swagger" } }
                            li { a href="/redoc/" { "Redoc" } }
                            li { span id="whoami" aria-live="polite" { "Not logged in" } }
                            li { button id="logout" class="secondary outline" hidden { "Log out" } }
                        }
                    }
                }
                main class="container" { (body) }
            }
        }
    }
}

fn login_form() -> Markup {
    html! {
        section id="login" hidden {
            h2 { "Log in" }
            p { "Use your Lambent username and password. On a new local server, " code { "cargo run" }
                " printed the password of the first user, " code { "admin" } "." }
            form id="login-form" {
                label { "Username" input name="username" autocomplete="username" required; }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                p class="error" data-error-for="non_field_errors" role="alert" {}
                button type="submit" { "Log in" }
            }
        }
    }
}

pub fn index() -> Markup {
    layout(
        "Home",
        "index",
        html! {
            h1 { "Lambent" }
            p { "Chat agents on the OpenAI Responses API: define agent profiles, tools and prompt templates, then hold \
                streamed conversations with tool calls." }
            ul {
                li { a href="/dashboard/" { "Dashboard" } " — agents, tools, links, templates, sessions, tokens and users." }
                li { a href="/playground/" { "Playground" } " — chat with an agent and watch the answer stream in." }
                li { a href="/swagger/" { "Swagger UI" } " and " a href="/redoc/" { "Redoc" } " — the API reference ("
                    a href="/api/openapi.json" { "OpenAPI document" } ")." }
            }
            p id="login-state" { "Checking whether you are logged in…" }
            (login_form())
        },
    )
}

pub fn dashboard() -> Markup {
    layout(
        "Dashboard",
        "dashboard",
        html! {
            h1 { "Dashboard" }
            (login_form())
            div id="dashboard" hidden {
                nav aria-label="Sections" {
                    ul id="sections" role="tablist" {}
                }
                section id="resource" aria-live="polite" {
                    h2 id="resource-title" {}
                    div class="toolbar" {
                        input id="filter" type="search" placeholder="Filter this page" aria-label="Filter this page";
                        button type="button" id="new-item" { "New" }
                    }
                    div class="table-scroll" {
                        table id="items" { thead {} tbody {} }
                    }
                    nav class="pager" aria-label="Pages" {
                        button id="prev-page" class="secondary" disabled { "Previous" }
                        span id="page-info" {}
                        button id="next-page" class="secondary" disabled { "Next" }
                    }
                }
                dialog id="editor" {
                    article {
                        header { h3 id="editor-title" {} }
                        form id="editor-form" novalidate {
                            div id="editor-fields" {}
                            p class="error" data-error-for="non_field_errors" role="alert" {}
                            footer {
                                p id="editor-summary" class="error" role="alert" {}
                                button type="button" id="editor-cancel" class="secondary" { "Cancel" }
                                button type="submit" { "Save" }
                            }
                        }
                    }
                }
                section id="detail" hidden {
                    h3 id="detail-title" {}
                    div id="detail-body" {}
                }
            }
        },
    )
}

pub fn playground() -> Markup {
    layout(
        "Playground",
        "playground",
        html! {
            h1 { "Playground" }
            (login_form())
            div id="playground" hidden {
                p id="no-agents" class="notice" hidden {
                    "You have no agents yet: create one in the " a href="/dashboard/#agents" { "Dashboard" }
                    " (tick \"Default agent\" to have it preselected here)."
                }
                div class="grid" {
                    label { "Agent" select id="agent" {} }
                    label { "Session" select id="session" { option value="" { "New session" } } }
                }
                label { input id="auto-execute" type="checkbox" role="switch"; " Run tools that have a server-side executor" }
                section id="history" aria-live="polite" aria-label="Conversation" {}
                p id="chat-error" class="error" role="alert" {}
                form id="chat-form" {
                    label for="message" { "Message" }
                    textarea id="message" rows="3" required aria-describedby="message-hint" {}
                    small id="message-hint" { "Enter sends; Shift+Enter starts a new line." }
                    details id="variables" {
                        summary { "Template variables" }
                        p class="note" { "Values for the " code { "{{name}}" } " placeholders of the agent's templates." }
                        div id="variable-rows" {}
                        button type="button" id="add-variable" class="secondary outline" { "Add variable" }
                    }
                    div class="grid" {
                        button type="submit" id="send" { "Send" }
                        button type="button" id="stop" class="secondary" disabled { "Stop" }
                    }
                }
                details {
                    summary { "Raw OpenAI events" }
                    pre id="raw-events" {}
                }
            }
        },
    )
}

pub fn swagger() -> Markup {
    layout(
        "Swagger UI",
        "swagger",
        html! {
            h1 { "API reference (Swagger UI)" }
            (authorize_note())
            link rel="stylesheet" href="/vendor/swagger-ui.css";
            div id="swagger-ui" {}
            script src="/vendor/swagger-ui-bundle.js" {}
            script src="/static/swagger-init.js" {}
        },
    )
}

pub fn redoc() -> Markup {
    layout(
        "Redoc",
        "redoc",
        html! {
            h1 { "API reference (Redoc)" }
            (authorize_note())
            div id="redoc" data-spec-url="/api/openapi.json" {}
            script src="/vendor/redoc.standalone.js" {}
            script src="/static/redoc-init.js" {}
        },
    )
}

fn authorize_note() -> Markup {
    html! {
        p class="note" {
            "Every call except login and health needs " code { "Authorization: Bearer <token>" } ". Get a token from "
            code { "POST /api/auth/login/" } " with your username and password (it lasts 12 hours), or a long-lived one from "
            code { "POST /api/tokens/" } ". In Swagger UI, press " strong { "Authorize" } " and paste the token."
        }
    }
}

/// Every page: (path under dist/, HTML).
pub fn pages() -> Vec<(&'static str, String)> {
    vec![
        ("index.html", index().into_string()),
        ("dashboard/index.html", dashboard().into_string()),
        ("playground/index.html", playground().into_string()),
        ("swagger/index.html", swagger().into_string()),
        ("redoc/index.html", redoc().into_string()),
    ]
}
