//! # Lambent core
//!
//! Everything Lambent's entry points share: the local server (`local/`), each AWS Lambda function
//! (`functions/`) and the integration tests (`tests/`) mount exactly these routers over this store.
//!
//! # Layout
//! - [`auth`]: passwords, tokens, and the `Caller` every protected handler takes.
//! - [`config`]: every setting, read from the environment in one place; secrets wrapped.
//! - [`error`]: the one error enum and its DRF-shaped HTTP answers.
//! - [`clock`]: the time seam the store stamps rows from.
//! - [`store`]: libsql — opening (an embedded file, or a remote server over Hrana pipelines), the migration
//!   runner, and all SQL, one file per aggregate, sent in as few round trips as it can.
//! - [`domain`]: the objects as the API shows them, and validation of writes with DRF's messages.
//! - [`http`]: one router per endpoint group, extractors, and the OpenAPI document.
//! - [`llm`]: the model seam (trait + OpenAI Responses through async-openai) and event reading.
//! - [`turn`]: one conversation turn: resolve, store the user message, relay, store the outcome, run tools.
//! - [`executors`]: server-side tool executors (`echo`, `now`, `http`).
//! - [`state`]: what handlers share, built once per process.
//! - [`tls`]: the process's TLS crypto provider (ring), installed before any HTTPS client is built.
//!
//! # Layers
//! From the bottom up: a module uses only modules of the layers below its own.
//! 1. [`error`], [`clock`], [`tls`], [`config`]: what everything may use.
//! 2. [`domain`], [`auth`]: plain data and rules, and credential crypto.
//! 3. [`llm`], [`executors`], [`store`]: the three outside worlds (model, tool endpoints, database), side by side.
//! 4. [`state`]: what handlers share.
//! 5. [`accounts`], [`turn`]: the use cases.
//! 6. [`http`]: routers, extractors, SSE, the OpenAPI document.
//!
//! `tests/architecture.rs` holds the crate to these layers and to no cycle between sibling modules.

pub mod accounts;
pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod error;
pub mod executors;
pub mod http;
pub mod llm;
pub mod state;
pub mod store;
pub mod tls;
pub mod turn;

pub use config::Config;
pub use error::{Error, Result};
pub use state::AppState;
pub use store::Store;
