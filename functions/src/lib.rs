//! # Lambent's AWS Lambda functions
//!
//! One binary per endpoint group under `src/bin/`; each only names its router. This library holds the one
//! piece of wiring they share, so cold start is the same everywhere: read the config, open the store once
//! (no migrations: `lambent migrate` does that before a deploy), then hand the router to the runtime.
//!
//! # Layout
//! - `src/lib.rs`: [`serve`], the shared wiring.
//! - `src/bin/<group>.rs`: `agents`, `tools`, `agent-tools`, `templates`, `sessions`, `docs`.

use axum::Router;
use lambent::{AppState, Config};

/// Cold start, then serve requests with a buffered response (the CRUD groups).
pub async fn serve(router: fn(AppState) -> Router) -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let state = AppState::open(Config::from_env()?).await?;
    lambda_http::run(router(state)).await
}
