//! The scheduled Prune function: EventBridge invokes it daily (see `template.yaml`); each invocation runs
//! `Store::prune` (what `lambent prune` runs), logs what it deleted, and answers the counts as JSON.
//!
//! It stops starting batches [`DEADLINE_MARGIN`] before the invocation's deadline: a batch takes milliseconds
//! (BENCHMARKS.md, "Housekeeping"), so what a timeout would cut off is never a batch but at most the log
//! line; whatever is left is deleted by the next day's run.

use std::time::Duration;

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use lambda_http::tracing;
use lambent::store::PrunePlan;
use serde_json::{Value, json};

/// How long before its deadline an invocation starts no more batches. A remote batch that stalls is cut off
/// by the database client's own timeouts well within it.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);

/// Cold start (configuration, secrets, the database), then one prune per scheduled event.
pub async fn prune() -> Result<(), lambda_http::Error> {
    // Before the exporter: its OTLP/HTTP client (reqwest) takes TLS from the process-wide provider.
    lambent::tls::install_crypto_provider();
    lambent::telemetry::init(lambent::telemetry::LogFormat::Json);
    // Housekeeping never calls the model: only the database's secret is read.
    let mut config = lambent::Config::from_env()?;
    for provider in &mut config.providers {
        provider.api_key_parameter = None;
    }
    let state = lambent::AppState::open(crate::resolve_secrets(config, None).await?).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| run(&state, event))).await
}

/// One scheduled invocation: prunes until done or [`DEADLINE_MARGIN`] before the deadline.
async fn run(state: &lambent::AppState, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
    let stop_at = event.context.deadline().checked_sub(DEADLINE_MARGIN).unwrap_or(std::time::UNIX_EPOCH);
    let plan = PrunePlan::new(&state.config).stopping_at(stop_at);
    let pruned = match state.store.prune(&plan).await {
        Ok(pruned) => pruned,
        Err(err) => {
            tracing::error!(error = %err.chain(), "prune failed");
            return Err("prune failed (the function's log has the cause)".into());
        }
    };
    let longest_batch_ms = pruned.longest_batch.as_secs_f64() * 1000.0;
    tracing::info!(
        frames = pruned.frames,
        idempotency_keys = pruned.idempotency_keys,
        login_tokens = pruned.login_tokens,
        batches = pruned.batches,
        longest_batch_ms,
        complete = pruned.complete,
        "pruned"
    );
    Ok(json!({
        "frames": pruned.frames,
        "idempotency_keys": pruned.idempotency_keys,
        "login_tokens": pruned.login_tokens,
        "batches": pruned.batches,
        "longest_batch_ms": longest_batch_ms,
        "complete": pruned.complete,
    }))
}
