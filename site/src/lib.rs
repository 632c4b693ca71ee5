//! # Lambent's static site
//!
//! Every page is rendered here with maud; with our own files (`site/static/`) and the third-party ones
//! (`site/vendor/`), all embedded in the library, they make the whole site: [`files`]. The `lambent` binary
//! serves it from memory (so `cargo run` serves every page on a fresh clone, from any directory) and
//! `cargo run -p lambent-site` writes the same files into `site/dist/` for S3 and CloudFront ([`build`]).
//! Pages carry no data: our own JavaScript fetches it from the API and puts it into the page as text, never as
//! HTML. No inline script anywhere, so a Content-Security-Policy can forbid it.
//!
//! # Layout
//! - `lib.rs`: the layout and the pages (`/`, `/dashboard/`, `/playground/`, `/swagger/`, `/redoc/`), the site's
//!   files and the build.
//! - `main.rs`: `cargo run -p lambent-site`, the build into `site/dist/`.
//! - `../build.rs`: embeds every file under `static/`.

use std::borrow::Cow;
use std::path::Path;

use maud::{DOCTYPE, Markup, html};

/// Served with every page by the local server and CloudFront.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; frame-ancestors 'none'; \
    base-uri 'self'; form-action 'self'";

/// The one CDN address inside Redoc's bundle; the site points it at `static/redocly-logo.svg`.
pub const REDOC_CDN_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";

/// The third-party files, committed under `site/vendor/` (see its README: which package, version and licence)
/// and served under `/vendor/`: (name under `vendor/`, bytes).
pub const VENDOR: &[(&str, &[u8])] = &[
    ("pico.min.css", include_bytes!("../vendor/pico/pico.min.css")),
    ("pico.conditional.min.css", include_bytes!("../vendor/pico/pico.conditional.min.css")),
    ("swagger-ui-bundle.js", include_bytes!("../vendor/swagger-ui-dist/swagger-ui-bundle.js")),
    ("swagger-ui.css", include_bytes!("../vendor/swagger-ui-dist/swagger-ui.css")),
    ("redoc.standalone.js", include_bytes!("../vendor/redoc/redoc.standalone.js")),
    ("chart.umd.min.js", include_bytes!("../vendor/chart.js/chart.umd.min.js")),
];

include!(concat!(env!("OUT_DIR"), "/static_files.rs"));

/// One file of the site: its path under the site's root (`index.html`, `dashboard/index.html`,
/// `static/app.js`, `vendor/pico.min.css`, `favicon.ico`), its content type and its bytes.
#[derive(Debug, Clone)]
pub struct File {
    pub path: String,
    pub content_type: &'static str,
    pub bytes: Cow<'static, [u8]>,
}

impl File {
    /// The URL path it answers at: a page's folder (`/dashboard/`, as CloudFront's index function maps it), else
    /// the file's own path.
    pub fn route(&self) -> String {
        format!("/{}", self.path.strip_suffix("index.html").unwrap_or(&self.path))
    }
}

/// The content type a file is served with, by its extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        Some("png") => "image/png",
        Some("woff2") => "font/woff2",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The whole site: every page, every file under `static/`, the third-party files under `vendor/` and
/// `/favicon.ico` (which browsers and other tools ask for without reading a page).
pub fn files() -> Vec<File> {
    let file = |path: String, bytes: Cow<'static, [u8]>| File { content_type: content_type(&path), path, bytes };
    let mut files: Vec<File> =
        pages().into_iter().map(|(path, html)| file(path.to_owned(), Cow::Owned(html.into_bytes()))).collect();
    files.extend(STATIC.iter().map(|(name, bytes)| file(format!("static/{name}"), Cow::Borrowed(*bytes))));
    files.extend(VENDOR.iter().map(|(name, bytes)| {
        // Redoc hard-codes one image from its CDN; the site serves its own copy instead, so nothing leaves the
        // origin (and the CSP has nothing to block).
        let bytes = if *name == "redoc.standalone.js" {
            Cow::Owned(String::from_utf8_lossy(bytes).replace(REDOC_CDN_LOGO, "/static/redocly-logo.svg").into_bytes())
        } else {
            Cow::Borrowed(*bytes)
        };
        file(format!("vendor/{name}"), bytes)
    }));
    files.push(file("favicon.ico".to_owned(), Cow::Borrowed(include_bytes!("../static/favicon.ico"))));
    files
}

/// Writes the whole site ([`files`]) into `dist`, emptied first: what the deploy uploads to S3.
pub fn build(dist: &Path) -> std::io::Result<()> {
    if dist.exists() {
        std::fs::remove_dir_all(dist)?;
    }
    for file in files() {
        let target = dist.join(&file.path);
        std::fs::create_dir_all(target.parent().unwrap_or(dist))?;
        std::fs::write(&target, &file.bytes)?;
    }
    Ok(())
}

/// How much of a page Pico styles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pico {
    /// All of it: the site's own pages.
    Page,
    /// Only what is inside `.pico` (the header, the page's title and note): the API reference pages. Swagger UI
    /// and Redoc bring their own styles, which Pico's element selectors (lists, `pre`, tables, inputs) would
    /// override; they are light-only, so these pages are too.
    Scoped,
}

fn layout(title: &str, page: &str, body: Markup) -> Markup {
    frame(title, page, Pico::Page, body)
}

fn frame(title: &str, page: &str, pico: Pico, body: Markup) -> Markup {
    let scoped = pico == Pico::Scoped;
    html! {
        (DOCTYPE)
        html lang="en" data-theme=[scoped.then_some("light")] {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Lambent" }
                link rel="icon" href="/favicon.ico" sizes="32x32";
                link rel="icon" href="/static/favicon.svg" type="image/svg+xml";
                @if scoped {
                    link rel="stylesheet" href="/vendor/pico.conditional.min.css";
                } @else {
                    link rel="stylesheet" href="/vendor/pico.min.css";
                }
                link rel="stylesheet" href="/static/site.css";
                @if scoped {
                    link rel="stylesheet" href="/static/docs.css";
                }
                // A module (deferred by nature) that imports its parts from /static/js/.
                script type="module" src="/static/app.js" {}
            }
            body data-page=(page) {
                header class=(if scoped { "container pico" } else { "container" }) {
                    nav aria-label="Main" {
                        ul { li { a href="/" { strong { "Lambent" } } } }
                        ul {
                            li { a href="/dashboard/" { "Dashboard" } }
                            li { a href="/playground/" { "Playground" } }
                            li { a href="/usage/" { "Usage" } }
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
                    p id="resource-status" class="saved" role="status" {}
                    p id="resource-error" class="error" role="alert" {}
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
                dialog id="secret" aria-labelledby="secret-title" {
                    article {
                        header { h3 id="secret-title" { "Your new API token" } }
                        p { "Copy it now: it is shown only this once. Send it as "
                            code { "Authorization: Bearer <token>" } "." }
                        label for="secret-value" { "Token" }
                        input id="secret-value" readonly spellcheck="false" autocomplete="off";
                        p id="secret-copied" role="status" {}
                        footer {
                            button type="button" id="secret-copy" class="secondary" { "Copy" }
                            button type="button" id="secret-done" { "Done" }
                        }
                    }
                }
                section id="detail" hidden {
                    div class="detail-head" {
                        h3 id="detail-title" {}
                        button type="button" id="detail-close" class="secondary outline" { "Close" }
                    }
                    div id="detail-body" {}
                }
            }
        },
    )
}

pub fn usage() -> Markup {
    layout(
        "Usage",
        "usage",
        html! {
            h1 { "Usage" }
            (login_form())
            // Chart.js's UMD bundle (canvas drawing: no eval, no style element; see site/vendor/README.md), a
            // classic script run before the page's module.
            script src="/vendor/chart.umd.min.js" {}
            div id="usage" hidden {
                form id="usage-query" class="grid" {
                    label id="owner-field" hidden { "Whose usage" select id="owner" name="owner" {} }
                    label { "From" input id="from" name="from" type="date" required; }
                    label { "To" input id="to" name="to" type="date" required; }
                    button type="submit" { "Show" }
                }
                p id="usage-error" class="error" role="alert" {}
                section id="budget" aria-labelledby="budget-title" {
                    h2 id="budget-title" { "Budget" }
                    div id="budget-state" aria-live="polite" {}
                }
                section aria-labelledby="tokens-title" {
                    h2 id="tokens-title" { "Tokens" }
                    p id="usage-summary" role="status" {}
                    figure {
                        figcaption { "Tokens per day (input and output)" }
                        div class="chart" { canvas id="chart-days" role="img" aria-label="Tokens per day" {} }
                    }
                    figure {
                        figcaption { "Tokens per agent" }
                        div class="chart" { canvas id="chart-agents" role="img" aria-label="Tokens per agent" {} }
                    }
                    details {
                        summary { "The numbers" }
                        div class="table-scroll" { table id="usage-table" { thead {} tbody {} } }
                    }
                }
                section id="limits" aria-labelledby="limits-title" hidden {
                    h2 id="limits-title" { "Budgets and limits" }
                    form id="limits-form" novalidate {
                        div id="limits-fields" class="grid-2" {}
                        p class="error" data-error-for="non_field_errors" role="alert" {}
                        button type="submit" { "Save budgets and limits" }
                        p id="limits-status" class="saved" role="status" {}
                    }
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
                p id="no-provider" class="notice warning" role="status" hidden {}
                p id="no-agents" class="notice" hidden {
                    "You have no agents yet: create one in the " a href="/dashboard/#agents" { "Dashboard" }
                    " (tick \"Default agent\" to have it preselected here)."
                }
                div class="grid" {
                    label { "Agent" select id="agent" {} }
                    label { "Session" select id="session" { option value="" { "New session" } } }
                }
                label { input id="auto-execute" type="checkbox" role="switch"; " Run tools that have a server-side executor" }
                p id="chat-status" class="notice" role="status" {}
                section id="history" aria-live="polite" aria-label="Conversation" {}
                p id="chat-error" class="error" role="alert" {}
                form id="chat-form" {
                    label for="message" { "Message" }
                    textarea id="message" rows="3" required aria-describedby="message-hint no-provider" {}
                    small id="message-hint" { "Enter sends; Shift+Enter starts a new line." }
                    details id="variables" {
                        summary { "Template variables" }
                        p class="note" { "Values for the " code { "{{name}}" } " placeholders of the agent's system prompt and templates." }
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
    frame(
        "Swagger UI",
        "swagger",
        Pico::Scoped,
        html! {
            div class="pico" {
                h1 { "API reference (Swagger UI)" }
                (authorize_note())
            }
            link rel="stylesheet" href="/vendor/swagger-ui.css";
            div id="swagger-ui" {}
            script src="/vendor/swagger-ui-bundle.js" {}
            script src="/static/swagger-init.js" {}
        },
    )
}

pub fn redoc() -> Markup {
    frame(
        "Redoc",
        "redoc",
        Pico::Scoped,
        html! {
            div class="pico" {
                h1 { "API reference (Redoc)" }
                (authorize_note())
            }
            div id="redoc" data-spec-url="/api/openapi.json" {}
            script src="/vendor/redoc.standalone.js" {}
            script src="/static/redoc-init.js" {}
        },
    )
}

fn authorize_note() -> Markup {
    html! {
        p id="authorize-note" class="note" {
            "Every call except login and health needs " code { "Authorization: Bearer <token>" } ". Get a token from "
            code { "POST /api/auth/login/" } " with your username and password (it lasts 12 hours), or a long-lived one from "
            code { "POST /api/tokens/" } ". In Swagger UI, press " strong { "Authorize" } " and paste the token."
        }
    }
}

/// Every page: (path under the site's root, HTML).
pub fn pages() -> Vec<(&'static str, String)> {
    vec![
        ("index.html", index().into_string()),
        ("dashboard/index.html", dashboard().into_string()),
        ("playground/index.html", playground().into_string()),
        ("usage/index.html", usage().into_string()),
        ("swagger/index.html", swagger().into_string()),
        ("redoc/index.html", redoc().into_string()),
    ]
}
