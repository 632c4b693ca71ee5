//! The HTTP face: one router per endpoint group; [`Function`] says which groups form which Lambda function,
//! and the local server mounts them all. Handlers parse, call the store or a use case, and map errors —
//! nothing else.
//!
//! # Layout
//! - one file per endpoint group: `agents` (with `providers`, the configured model providers), `tools` (with
//!   `mcp_servers`, MCP servers and agents' links to them), `agent_tools`, `templates`, `sessions`, `auth`, and
//!   `agent` (the conversation endpoints: stream, tool-output, chat).
//! - `usage`: `/api/usage/`, served with the accounts group (`auth`).
//! - `functions`: the Lambda functions and their groups.
//! - `extract`: extractors that fail as DRF does, and the caller from the bearer token.
//! - `observe`: what every request gets — its id, its span, its log line, its metrics scope.
//! - `sse`: SSE framing and what the stream endpoints document about their frames.
//! - `openapi`: the document and its shared schemas.

pub mod agent;
pub mod agent_tools;
pub mod agents;
pub mod auth;
pub mod extract;
pub mod functions;
pub mod mcp_servers;
pub mod observe;
pub mod openapi;
pub mod providers;
pub mod sessions;
pub mod sse;
pub mod templates;
pub mod tools;
pub mod usage;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa_axum::router::OpenApiRouter;

use crate::error::Error;
use crate::state::AppState;

pub use functions::Function;
pub use observe::observed;

/// Every function's routes, on the OpenAPI document's base.
pub fn api() -> OpenApiRouter<AppState> {
    Function::ALL.into_iter().fold(openapi::base(), |api, function| api.merge(function.api()))
}

/// The whole API on one router, as the local server serves it.
pub fn router(state: AppState) -> Router {
    finish(api(), state)
}

/// Answers 503 naming `lambent migrate` while the database is behind the code (except the health check,
/// which reports the schema itself).
async fn require_schema(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if request.uri().path() == auth::HEALTH_PATH {
        return next.run(request).await;
    }
    match state.ensure_schema().await {
        Ok(()) => next.run(request).await,
        Err(err) => err.into_response(),
    }
}

/// Holds every request to its caller's requests-per-minute limit: the store counts it in the request's
/// first database round trip (or, for a request that sends nothing after authenticating, in one of its
/// own) and refuses it there with 429; an admitted request's answer carries `RateLimit-Policy` and
/// `RateLimit` (a list with a refused turn's `turns` policy when there is one).
async fn rate_limits(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (mut response, settled, unsent) = crate::store::Store::within_request(next.run(request)).await;
    let settled = match unsent {
        None => settled,
        Some(unsent) => match state.store.admit_unsent(unsent).await {
            Ok(settled) => settled,
            Err(err) => return err.into_response(),
        },
    };
    if let Some(settled) = settled {
        let headers = response.headers_mut();
        let mut fields = axum::http::HeaderMap::new();
        settled.put_headers(&mut fields);
        for (name, value) in &fields {
            let joined = match headers.get(name).and_then(|v| v.to_str().ok()) {
                Some(existing) => HeaderValue::from_str(&format!("{}, {existing}", value.to_str().unwrap_or_default())),
                None => Ok(value.clone()),
            };
            if let Ok(joined) = joined {
                headers.insert(name, joined);
            }
        }
    }
    response
}

/// Gives a group (or all of them) the behaviour every router shares: DRF-shaped 404 and 405 answers,
/// per-user rate limits, CORS for the configured origins only, and its state.
pub fn finish(api: OpenApiRouter<AppState>, state: AppState) -> Router {
    let (router, _) = api.split_for_parts();
    let origins: Vec<HeaderValue> = state.config.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    let router = router
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|method: Method| async move { Error::MethodNotAllowed(method) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limits))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_schema));
    let router = if origins.is_empty() {
        router
    } else {
        router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("idempotency-key"),
                    HeaderName::from_static("last-event-id"),
                ])
                .expose_headers([
                    observe::REQUEST_ID,
                    HeaderName::from_static("lambent-session-id"),
                    HeaderName::from_static("lambent-turn-id"),
                    HeaderName::from_static("ratelimit"),
                    HeaderName::from_static("ratelimit-policy"),
                    header::RETRY_AFTER,
                ]),
        )
    };
    router.with_state(state)
}
