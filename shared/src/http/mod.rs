//! The HTTP face: one router per endpoint group, each mountable alone (one Lambda function) or all together
//! (the local server). Handlers parse, call the store or a core function, and map errors — nothing else.

pub mod agent;
pub mod agent_tools;
pub mod agents;
pub mod extract;
pub mod openapi;
pub mod sessions;
pub mod templates;
pub mod tools;

use axum::Router;
use axum::http::Method;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::error::Error;
use crate::state::AppState;

/// Every documented endpoint group.
pub fn api() -> OpenApiRouter<AppState> {
    openapi::base()
        .merge(agents::api())
        .merge(tools::api())
        .merge(agent_tools::api())
        .merge(templates::api())
        .merge(sessions::api())
        .merge(agent::stream_api())
        .merge(agent::tool_output_api())
        .merge(agent::chat_api())
}

/// The whole API on one router, as the local server serves it.
pub fn router(state: AppState) -> Router {
    finish(api().merge(openapi::api()), state)
}

/// Gives a group (or all of them) the behaviour every router shares: DRF-shaped 404 and 405 answers,
/// request tracing, and its state.
pub fn finish(api: OpenApiRouter<AppState>, state: AppState) -> Router {
    let (router, _) = api.split_for_parts();
    router
        .fallback(|| async { Error::NotFound })
        .method_not_allowed_fallback(|method: Method| async move { Error::MethodNotAllowed(method) })
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
