//! The OpenAPI 3.1 document, assembled from every handler's `#[utoipa::path]` by the same routers that serve
//! them, so the document cannot drift from the routes. Served at `/api/openapi.json`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Json;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub const PATH: &str = "/api/openapi.json";

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
        (name = "tools", description = "Function and custom tools"),
        (name = "agent-tools", description = "Which tools each agent may call"),
        (name = "templates", description = "Reusable prompt templates, per agent or global"),
        (name = "sessions", description = "Conversations, their messages and tool calls"),
        (name = "auth", description = "Log in, API tokens, users (staff). Send `Authorization: Bearer <token>` on every other call."),
        (name = "agent", description = "Conversations with an agent: streamed (SSE), tool-output continuation, chat"),
    ),
    components(schemas(ErrorDetail, ValidationErrors)),
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

/// `{"detail": "..."}`: not found, wrong method, wrong content type, bad JSON.
#[derive(ToSchema)]
#[schema(example = json!({"detail": "Not found."}))]
#[allow(dead_code)]
pub struct ErrorDetail {
    detail: String,
}

/// Field name → messages; `non_field_errors` for problems of the whole object.
#[derive(ToSchema)]
#[schema(example = json!({"name": ["This field is required."]}))]
#[allow(dead_code)]
pub struct ValidationErrors(BTreeMap<String, Vec<String>>);

/// DRF page-number pagination.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// 1-based page number; a page past the end answers 404 `Invalid page.`.
    page: Option<u64>,
    /// Items per page: default 50, at most 100.
    page_size: Option<u64>,
}

/// The base document every group's paths are merged into.
pub fn base() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

/// The whole API's document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| super::api().into_openapi())
}

/// Serves the document.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().route(PATH, get(|| async { Json(document()) }))
}

pub fn router(state: AppState) -> axum::Router {
    super::finish(api(), state)
}
