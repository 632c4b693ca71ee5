//! When to try an upstream request again: before its stream opens, on 429, 5xx or a failed connection;
//! at most `retries` times and within a total time budget, waiting what `Retry-After` (or OpenAI's
//! `retry-after-ms`) asks, else an exponential backoff with full jitter. A request whose stream has opened is
//! never retried: its events may already have reached the client.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::Response;

use crate::backoff::{full_jitter, jitter, retry_after};

/// The first backoff step; each retry doubles the ceiling the random wait is drawn under.
const BASE_DELAY: Duration = Duration::from_millis(500);
/// No single backoff wait is longer than this (a `Retry-After` may be, within the budget).
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// A [`tower::retry::Policy`] for async-openai's HTTP service. Cloned per request, so `attempts` and
/// `started` are that request's own.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    retries: u32,
    budget: Duration,
    attempts: u32,
    started: Option<Instant>,
}

impl RetryPolicy {
    pub fn new(retries: u32, budget: Duration) -> Self {
        Self { retries, budget, attempts: 0, started: None }
    }

    /// The wait before the next attempt, or `None` to give up. `jitter` is uniform in [0, 1).
    fn next_delay(&mut self, elapsed: Duration, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
        if self.attempts >= self.retries {
            return None;
        }
        let delay = retry_after.unwrap_or_else(|| full_jitter(BASE_DELAY, self.attempts, MAX_BACKOFF, jitter));
        // A wait that would end past the budget is not started: failing now beats failing later.
        if elapsed + delay > self.budget {
            return None;
        }
        self.attempts += 1;
        Some(delay)
    }
}

/// Whether a failed attempt is worth another: the server said "later" (429, 5xx) or could not be reached.
fn retryable(result: &Result<Response, OpenAIError>) -> bool {
    match result {
        Ok(response) => response.status().as_u16() == 429 || response.status().is_server_error(),
        Err(OpenAIError::Reqwest(error)) => error.is_connect(),
        Err(_) => false,
    }
}

impl tower::retry::Policy<HttpRequestFactory, Response, OpenAIError> for RetryPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _request: &mut HttpRequestFactory,
        result: &mut Result<Response, OpenAIError>,
    ) -> Option<Self::Future> {
        if !retryable(result) {
            return None;
        }
        let elapsed = self.started.map_or(Duration::ZERO, |started| started.elapsed());
        let asked = result.as_ref().ok().and_then(|response| retry_after(response.headers()));
        let delay = self.next_delay(elapsed, asked, jitter())?;
        crate::telemetry::count_upstream_retry();
        tracing::warn!(attempt = self.attempts, delay_ms = delay.as_millis() as u64, "retrying the upstream request");
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, request: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        // Called before the first attempt: the budget counts from here.
        self.started.get_or_insert_with(Instant::now);
        Some(request.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_full_jitter_and_stops_after_the_retries() {
        let mut policy = RetryPolicy::new(3, Duration::from_secs(60));
        assert_eq!(policy.next_delay(Duration::ZERO, None, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(policy.next_delay(Duration::ZERO, None, 0.5), Some(Duration::from_millis(500)));
        assert_eq!(policy.next_delay(Duration::ZERO, None, 0.0), Some(Duration::ZERO));
        assert_eq!(policy.next_delay(Duration::ZERO, None, 1.0), None, "three retries, then no more");
    }

    #[test]
    fn backoff_is_capped_per_wait() {
        let mut policy = RetryPolicy::new(10, Duration::from_secs(600));
        policy.attempts = 9;
        assert_eq!(policy.next_delay(Duration::ZERO, None, 1.0), Some(MAX_BACKOFF));
    }

    #[test]
    fn retry_after_is_honoured_unless_it_would_overrun_the_budget() {
        let mut policy = RetryPolicy::new(3, Duration::from_secs(10));
        assert_eq!(policy.next_delay(Duration::ZERO, Some(Duration::from_secs(7)), 0.9), Some(Duration::from_secs(7)));
        assert_eq!(policy.next_delay(Duration::from_secs(7), Some(Duration::from_secs(4)), 0.0), None);
        assert_eq!(policy.attempts, 1, "a refused wait is not an attempt");
    }
}
