//! # Lambent's AWS Lambda functions
//!
//! One binary per endpoint group under `src/bin/`; each only names its router. This library holds the
//! wiring they share, so cold start is the same everywhere: read the config, open the store once (no
//! migrations: `lambent migrate` runs before a deploy), then hand the router to the runtime.
//!
//! # Layout
//! - `src/lib.rs`: [`serve`] / [`serve_streaming`] (the shared `main`), [`service`] (the router as Lambda sees it).
//! - `src/bin/<group>.rs`: `agents`, `tools`, `agent-tools`, `templates`, `sessions`, `docs`, `auth`, `agent-chat`, and
//!   the two streaming functions `agent-stream` and `tool-output`.

use axum::Router;
use axum::http::Uri;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use lambent::{AppState, Config};
use tower::ServiceBuilder;
use tower::util::MapRequest;

/// Cold start, then serve requests with a buffered response (the CRUD groups).
pub async fn serve(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = AppState::open(Config::from_env()?).await?;
    lambda_http::run(service(router(state))).await
}

/// Cold start, then serve requests with Lambda response streaming: SSE frames leave as they are produced
/// (plain `run` would buffer the whole body).
pub async fn serve_streaming(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = AppState::open(Config::from_env()?).await?;
    lambda_http::run_with_streaming_response(service(router(state))).await
}

/// The router behind the path fix every API Gateway REST request needs.
pub fn service(router: Router) -> MapRequest<Router, fn(Request) -> Request> {
    ServiceBuilder::new().map_request(strip_stage as fn(Request) -> Request).service(router)
}

/// lambda_http puts the REST API's stage in front of the path (`/prod/api/agents/`); our routes are the
/// seed's paths (`/api/agents/`), so the stage comes off again before routing.
fn strip_stage(mut req: Request) -> Request {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage else { return req };
    let prefix = format!("/{stage}");
    let path_and_query = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let Some(rest) = path_and_query.strip_prefix(&prefix).filter(|rest| rest.starts_with("/api/")) else {
        return req;
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = rest.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}
