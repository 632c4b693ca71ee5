//! When a request to the database is sent again: only when its answer says nothing ran (sqld's 429 "Timed
//! out while opening database connection", a 503, a refused connection, `SQLITE_BUSY` on the `BEGIN` of a
//! batch), or — for a write made safe to repeat ([`super::Batch::repeatable`]) — when it got no answer at all.
//! Each wait is exponential with full jitter (25 ms doubling to at most 1 s), or what `Retry-After` asks,
//! and no wait is started that would end past the deadline.
//!
//! The deadline is the instance's short budget (`LAMBENT_DATABASE_RETRY_BUDGET`, 5 s by default: a request
//! refused then answers 503 with `Retry-After`; well inside API Gateway's 29 s, and long enough that a loaded
//! 2-core machine — where each try itself took hundreds of ms — completed 60 of 60 turns against a fifth of
//! requests refused, where 2 s refused 2 of them), unless the work runs [`until`] a later one: a turn whose model
//! has answered writes its frames and its end until its lease runs out, so an answer is not dropped while its
//! session is held.
//!
//! # Layout
//! - [`until`]: run store work under a deadline of its own (task-local, so no store method takes it).
//! - [`Attempts`]: one request's retries: how long to wait next, or give up; counted and logged.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::backoff::{full_jitter, jitter};
use crate::error::{Error, Result};
use crate::telemetry;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The first wait's ceiling: sqld's refusals clear in milliseconds (it timed out opening a connection).
const BASE_WAIT: Duration = Duration::from_millis(25);
/// No single backoff wait is longer (a `Retry-After` may be, within the deadline).
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Runs `work`, whose database requests retry until `deadline` rather than for the instance's budget.
pub async fn until<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// One request's retries.
pub(super) struct Attempts {
    deadline: Instant,
    made: u32,
}

impl Attempts {
    /// Retries until the deadline of [`until`], else for `budget` from now.
    pub(super) fn new(budget: Duration) -> Self {
        let deadline = DEADLINE.try_with(|d| *d).unwrap_or_else(|_| Instant::now() + budget);
        Self { deadline, made: 0 }
    }

    /// The wait before the next try, or `None` when it would end past the deadline. `jitter` is in [0, 1).
    fn next_wait(&mut self, now: Instant, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        let wait = retry_after.unwrap_or_else(|| full_jitter(BASE_WAIT, self.made, MAX_WAIT, jitter));
        if now + wait > self.deadline {
            return None;
        }
        self.made += 1;
        Some(wait)
    }

    /// Waits before the next try of a request that did not run (`why`), or gives up with
    /// [`Error::DatabaseUnavailable`] (503 with `Retry-After`). Both are counted in the request's metrics and
    /// logged (the log line carries the request id).
    pub(super) async fn wait(&mut self, why: &str, retry_after: Option<Duration>) -> Result<()> {
        match self.next_wait(Instant::now(), retry_after, jitter()) {
            Some(wait) => {
                telemetry::count_database_retry();
                tracing::info!(
                    attempt = self.made,
                    wait_ms = wait.as_millis() as u64,
                    why,
                    "retrying a database request"
                );
                tokio::time::sleep(wait).await;
                Ok(())
            }
            None => {
                telemetry::count_database_give_up();
                tracing::warn!(attempts = self.made + 1, why, "a database request gave up retrying");
                Err(Error::DatabaseUnavailable(why.to_owned()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_until_the_next_would_end_past_the_deadline() {
        let now = Instant::now();
        let mut attempts = Attempts { deadline: now + Duration::from_millis(90), made: 0 };
        assert_eq!(attempts.next_wait(now, None, 1.0), Some(Duration::from_millis(25)));
        assert_eq!(attempts.next_wait(now, None, 1.0), Some(Duration::from_millis(50)));
        assert_eq!(attempts.next_wait(now, None, 1.0), None, "100 ms would end past the deadline");
        assert_eq!(attempts.next_wait(now, Some(Duration::from_millis(90)), 0.0), Some(Duration::from_millis(90)));
        assert_eq!(attempts.next_wait(now + Duration::from_millis(20), Some(Duration::from_millis(90)), 0.0), None);
    }

    #[tokio::test]
    async fn work_run_until_a_deadline_retries_until_it() {
        let later = Instant::now() + Duration::from_secs(600);
        let deadline = until(later, async { Attempts::new(Duration::from_secs(2)).deadline }).await;
        assert_eq!(deadline, later);
        assert!(Attempts::new(Duration::from_secs(2)).deadline < later);
    }
}
