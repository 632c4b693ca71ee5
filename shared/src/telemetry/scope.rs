//! What one request carries through every task it starts: its id (for log lines and 5xx bodies) and the
//! counters its metrics are made of. Task-local, so the store and the retry policy count without being handed
//! anything; a turn's spawned tasks run [`in_scope`] of the request that started them.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::metrics::{Metrics, RequestMetrics};

tokio::task_local! {
    static SCOPE: Arc<RequestScope>;
}

/// One request's id and counters. Its round trips are reported when the last task holding it ends (a streamed
/// turn goes on after the response's head), once.
#[derive(Debug)]
pub struct RequestScope {
    pub id: String,
    metrics: Metrics,
    round_trips: AtomicU64,
    upstream_retries: AtomicU64,
    database: DatabaseRetries,
}

/// A request's database requests tried again after "nothing ran", and those that gave up.
#[derive(Debug, Default)]
struct DatabaseRetries {
    retries: AtomicU64,
    give_ups: AtomicU64,
}

impl RequestScope {
    pub fn new(id: String, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            id,
            metrics,
            round_trips: AtomicU64::new(0),
            upstream_retries: AtomicU64::new(0),
            database: DatabaseRetries::default(),
        })
    }

    /// Runs `future` in this scope.
    pub fn run<F: Future>(self: Arc<Self>, future: F) -> impl Future<Output = F::Output> {
        SCOPE.scope(self, future)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let database = &self.database;
        self.metrics.request(RequestMetrics {
            db_round_trips: self.round_trips(),
            db_retries: database.retries.load(Ordering::Relaxed),
            db_give_ups: database.give_ups.load(Ordering::Relaxed),
        });
    }
}

/// The scope of the request the current task works for, if any.
pub fn current() -> Option<Arc<RequestScope>> {
    SCOPE.try_with(Arc::clone).ok()
}

/// `future` in the current task's request scope (for a task it spawns); as it is outside one.
///
/// The future is boxed: a turn's is tens of kilobytes, and `tokio::spawn` moves what it is given into the task
/// and the task's stage several times, each a copy of the whole future (measured, issue 24 part 5: ~0.15 M
/// instructions a streamed turn). Boxed, each move is a pointer's.
pub fn in_scope<F: Future>(future: F) -> impl Future<Output = F::Output> {
    let scope = current();
    let future = Box::pin(future);
    async move {
        match scope {
            Some(scope) => scope.run(future).await,
            None => future.await,
        }
    }
}

/// One request to the database server (the store calls this per pipeline request it sends).
pub fn count_round_trip() {
    let _ = SCOPE.try_with(|s| s.round_trips.fetch_add(1, Ordering::Relaxed));
}

/// One more attempt at a database request that answered "nothing ran" (the store calls this per retry).
pub fn count_database_retry() {
    let _ = SCOPE.try_with(|s| s.database.retries.fetch_add(1, Ordering::Relaxed));
}

/// A database request that gave up retrying (its budget, or its turn's lease, ran out).
pub fn count_database_give_up() {
    let _ = SCOPE.try_with(|s| s.database.give_ups.fetch_add(1, Ordering::Relaxed));
}

/// One more attempt at an upstream request (the retry policy calls this per retry).
pub fn count_upstream_retry() {
    let _ = SCOPE.try_with(|s| s.upstream_retries.fetch_add(1, Ordering::Relaxed));
}

/// The upstream retries of the current request so far.
pub fn upstream_retries() -> u64 {
    SCOPE.try_with(|s| s.upstream_retries.load(Ordering::Relaxed)).unwrap_or(0)
}
