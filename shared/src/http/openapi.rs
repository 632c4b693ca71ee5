//! The OpenAPI 3.1 document, assembled from every handler's `#[utoipa::path]` by the same routers that serve
//! them, so the document cannot drift from the routes. Served at `/api/openapi.json`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Json;
use axum::routing::get;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use super::extract::PageParams;
pub use crate::error::{BadRequest, ErrorDetail, FieldErrors as ValidationErrors, TurnRunning};
use crate::state::AppState;
use crate::turn::{CallFrame, Done, Notice, TextDelta, ToolResult, TurnError};

pub const PATH: &str = "/api/openapi.json";

// Response descriptions that many operations share, so that the same answer reads the same everywhere.
pub const DELETED: &str = "Deleted.";
pub const INVALID_FIELDS: &str =
    "A field is invalid: the body names each field and its errors. Or the body does not parse as JSON.";
pub const INVALID_QUERY: &str = "A query parameter is invalid: the body names each parameter and its errors.";
pub const INVALID_PAGE: &str = "Invalid page: the page is past the last one.";
pub const UNAUTHENTICATED: &str = "No, unknown, expired or revoked token.";
pub const STAFF_ONLY: &str = "The caller is not staff.";
pub const NO_PROVIDER: &str = "No model provider configured (OPENAI_API_KEY).";
pub const IDEMPOTENCY_REUSED: &str = "The Idempotency-Key was used for another request.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lambent API",
        description = "Chat agents on the OpenAI Responses API: agent profiles, tools, prompt templates and \
            streamed conversations. Conventions follow Django REST framework: trailing slashes, \
            `{\"field\": [\"message\"]}` validation errors, `{\"detail\": \"...\"}` for other errors, and \
            paginated lists `{count, next, previous, results}`.",
        license(name = "MIT")
    ),
    tags(
        (name = "agents", description = "Agent profiles: model and system prompt"),
        (name = "providers", description = "The configured model providers agents name"),
        (name = "tools", description = "Function and custom tools"),
        (name = "agent-tools", description = "Which tools each agent may call"),
        (name = "mcp-servers", description = "MCP servers (Streamable HTTP) whose tools agents may call; header values are write-only"),
        (name = "agent-mcp-servers", description = "Which MCP servers each agent uses, and whether their calls need approval"),
        (name = "templates", description = "Reusable prompt templates, per agent or global"),
        (name = "sessions", description = "Conversations, their messages and tool calls"),
        (name = "auth", description = "Log in, API tokens, users (staff). Send `Authorization: Bearer <token>` on every other call."),
        (name = "agent", description = "Conversations with an agent: streamed (SSE), tool-output continuation, chat"),
        (name = "usage", description = "Tokens spent, per day or hour and per agent, model or provider; budgets are on users"),
        (name = "health", description = "Readiness: the database, its schema and the model provider's configuration"),
    ),
    components(schemas(ErrorDetail, ValidationErrors, BadRequest, TextDelta, CallFrame, ToolResult, Notice, TurnError, Done,
        crate::error::RateLimited)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

/// Every operation needs `Authorization: Bearer <token>` unless it says otherwise (login, health).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from POST /api/auth/login/ (12 hours), POST /api/tokens/ or `lambent token create`. \
                         DRF's `Authorization: Token <token>` is accepted too.",
                    ))
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    }
}

/// The 429 of a turn over budget.
pub const OVER_BUDGET: &str = "The caller's daily or monthly token budget is spent (input plus output tokens at or over \
    it): nothing was stored or sent to the model. A turn already running when the budget runs out finishes.";

/// The answers every operation of a kind can give besides its own, added once the routes are merged so that
/// no handler repeats them (and new ones get them too):
/// - 401 on every operation that needs a token, and 429 (a per-user rate limit, with its headers) unless the
///   operation documents a 429 of its own;
/// - 400 (field errors or a JSON parse error), 413 and 415 on every operation that reads a JSON body;
/// - 404 `Invalid page.` on every paginated list.
struct CommonResponses;

impl CommonResponses {
    fn apply(operation: &mut Operation) {
        let public = [SecurityRequirement::default()];
        let needs_token = operation.security.as_deref() != Some(&public[..]);
        let paginated = operation.parameters.iter().flatten().any(
            |parameter| matches!(parameter, RefOr::T(p) if p.name == "page" && p.parameter_in == ParameterIn::Query),
        );
        let responses = &mut operation.responses.responses;
        let mut add = |status: &str, response: Response| {
            responses.entry(status.to_owned()).or_insert(RefOr::T(response));
        };
        if needs_token {
            add("401", detail(UNAUTHENTICATED));
            add("429", rate_limited());
        }
        if paginated {
            add("404", detail(INVALID_PAGE));
        }
        if operation.request_body.is_some() {
            add("413", detail("The body is over 2 MB."));
            add("415", detail("The body is not JSON."));
            let description = match operation.responses.responses.get("400") {
                Some(RefOr::T(response)) if !response.description.is_empty() => response.description.clone(),
                _ => "Invalid input: field errors, or a body that is not JSON.".to_owned(),
            };
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", utoipa::openapi::Content::new(Some(Ref::from_schema_name("BadRequest"))))
                .build();
            operation.responses.responses.insert("400".to_owned(), RefOr::T(response));
        }
    }
}

/// The 429 of a per-user rate limit: `rate_limited` (requests per minute) or `too_many_turns`.
fn rate_limited() -> Response {
    use utoipa::openapi::header::HeaderBuilder;
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let header = |description: &str, kind: Type| {
        HeaderBuilder::new().schema(Some(ObjectBuilder::new().schema_type(kind))).description(Some(description)).build()
    };
    ResponseBuilder::new()
        .description(
            "A rate limit of the caller refused the request: `rate_limited` (requests per minute, counted in the \
             database across instances) or `too_many_turns` (turns running at once); nothing was done.",
        )
        .content("application/json", utoipa::openapi::Content::new(Some(Ref::from_schema_name("RateLimited"))))
        .header("Retry-After", header("Seconds until the limit admits a request again.", Type::Integer))
        .header("RateLimit-Policy", header("The draft's policy field: `\"default\";q=100;w=60`.", Type::String))
        .header("RateLimit", header("The draft's state field: `\"default\";r=0;t=30`.", Type::String))
        .build()
}

fn detail(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content("application/json", utoipa::openapi::Content::new(Some(Ref::from_schema_name("ErrorDetail"))))
        .build()
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.patch, &mut item.delete];
            operations.into_iter().flatten().for_each(Self::apply);
        }
    }
}

/// The base document every group's paths are merged into.
pub fn base() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// The whole API's document as served, built once. It stays JSON after the renaming below: reading it back
/// into utoipa's types linked their deserializers into every function (`cargo lambda build --release`: the
/// agents function was 12.48 MB with them, 11.85 MB without).
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = super::api().into_openapi();
        CommonResponses.modify(&mut doc);
        let mut json = paginated_names(serde_json::to_value(&doc).expect("the document serializes"));
        event_streams(&mut json);
        json
    })
}

/// Adds the SSE frame schemas (`super::sse::frame_schemas`) and makes `SseEvent` the schema of every
/// `text/event-stream` answer (the handlers say `String` there, as utoipa needs a type).
fn event_streams(json: &mut serde_json::Value) {
    let schemas = json["components"]["schemas"].as_object_mut().expect("the document has schemas");
    schemas.extend(super::sse::frame_schemas());
    let paths = json["paths"].as_object_mut().expect("the document has paths");
    let operations = paths.values_mut().filter_map(serde_json::Value::as_object_mut).flat_map(|item| item.values_mut());
    for operation in operations {
        let Some(responses) = operation.get_mut("responses").and_then(serde_json::Value::as_object_mut) else {
            continue;
        };
        for response in responses.values_mut() {
            if let Some(stream) = response.pointer_mut("/content/text~1event-stream") {
                stream["schema"] = serde_json::json!({"$ref": "#/components/schemas/SseEvent"});
            }
        }
    }
}

/// Names each page schema as drf-spectacular does (`Page_Agent` → `PaginatedAgentList`), and makes its `results`
/// reference the item's schema: utoipa names a generic's instances `Page_<Item>` and copies `<Item>` into each,
/// which would give generated clients two types for one object.
fn paginated_names(mut json: serde_json::Value) -> serde_json::Value {
    let schemas = json["components"]["schemas"].as_object_mut().expect("the document has schemas");
    let pages: Vec<String> = schemas.keys().filter_map(|name| name.strip_prefix("Page_").map(str::to_owned)).collect();
    let mut renamed = BTreeMap::new();
    for item in &pages {
        let mut page = schemas.remove(&format!("Page_{item}")).expect("listed above");
        page["properties"]["results"]["items"] = serde_json::json!({"$ref": format!("#/components/schemas/{item}")});
        renamed
            .insert(format!("#/components/schemas/Page_{item}"), format!("#/components/schemas/Paginated{item}List"));
        schemas.insert(format!("Paginated{item}List"), page);
    }
    rename_refs(&mut json, &renamed);
    json
}

fn rename_refs(value: &mut serde_json::Value, renamed: &BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(object) => {
            for (key, value) in object.iter_mut() {
                match value {
                    serde_json::Value::String(target) if key == "$ref" => {
                        if let Some(new) = renamed.get(target.as_str()) {
                            *target = new.clone();
                        }
                    }
                    _ => rename_refs(value, renamed),
                }
            }
        }
        serde_json::Value::Array(values) => values.iter_mut().for_each(|value| rename_refs(value, renamed)),
        _ => {}
    }
}

/// Serves the document.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().route(PATH, get(|| async { Json(document()) }))
}
