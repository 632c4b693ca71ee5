//! # Lambent core
//!
//! Everything Lambent's entry points share: the local server (`local/`), each AWS Lambda function
//! (`functions/`) and the integration tests (`tests/`) mount exactly these routers over this store.
//!
//! # Layout
//! From the bottom up, in layers: a module uses only modules of the layers below its own, and no two sibling
//! modules use each other (`tests/architecture.rs` reads this list and holds the crate to it).
//!
//! # Layers
//! 1. [`error`]: the one error enum and its DRF-shaped HTTP answers.
//! 2. [`clock`], [`tls`], [`config`], [`telemetry`], [`backoff`]: the time seam; the process's TLS crypto
//!    provider (ring); every setting, read from the environment in one place, secrets wrapped; logs, trace
//!    export and EMF metric lines set up in one place, and the per-request scope (request id, counters) every
//!    layer reports to; the waits before a refused request is tried again (the model's API and the database).
//! 3. [`domain`]: plain data and rules — the objects as the API shows them, validation of writes with DRF's
//!    messages, who is calling and what they may touch, the states a turn and a tool call go through.
//! 4. [`auth`], [`llm`], [`executors`], [`store`], side by side, none using another: credential crypto and
//!    secrets sealed at rest; the model seam (trait + OpenAI Responses through async-openai, one client per
//!    configured provider, reading events, building requests, rebuilding a conversation's history for a
//!    provider that keeps none); server-side tool executors (`echo`, `now`, `http`) and MCP servers' tools (rmcp
//!    over the same guarded HTTP clients); libsql — opening an embedded file or a remote server over Hrana
//!    pipelines, the migration runner, and all SQL, sent in as few round trips as it can.
//! 5. [`state`]: what handlers share, built once per process; where tests put a scripted provider and clock.
//! 6. [`accounts`], [`turn`]: the use cases — users, tokens and login; conversation turns.
//! 7. [`http`]: one router per endpoint group, which groups form which Lambda function, extractors (the
//!    caller's token among them), SSE, and the OpenAPI document.
//!

pub mod accounts;
pub mod auth;
pub mod backoff;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod executors;
pub mod http;
pub mod llm;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod turn;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;
pub use store::Store;
