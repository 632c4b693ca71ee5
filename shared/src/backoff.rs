//! Waiting before trying a refused request again, the same way for the model's API and the database:
//! exponential backoff with full jitter (each wait uniform under a ceiling that doubles per attempt, so clients
//! refused together do not come back together), and the server's `Retry-After` when it names one.
//!
//! # Layout
//! - [`full_jitter`]: the wait before the next attempt; [`jitter`]: the random fraction it draws.
//! - [`retry_after`]: what a response's `retry-after-ms` or `Retry-After` asks.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The wait before attempt `attempt + 1`: `jitter` (in [0, 1)) of a ceiling that starts at `base` and doubles
/// per attempt, never above `max`.
pub fn full_jitter(base: Duration, attempt: u32, max: Duration, jitter: f64) -> Duration {
    let ceiling = base.saturating_mul(1 << attempt.min(16)).min(max);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// `retry-after-ms` (OpenAI's, precise) or `Retry-After` in seconds. An HTTP-date is not honoured: the
/// backoff applies instead.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
    };
    read("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| read(RETRY_AFTER.as_str()).map(Duration::from_secs_f64))
}

/// A uniform fraction in [0, 1). Not security sensitive: a failure to read randomness only removes the jitter.
pub fn jitter() -> f64 {
    getrandom::u64().map_or(0.5, |bits| (bits >> 11) as f64 / (1_u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
        let (base, max) = (Duration::from_millis(20), Duration::from_secs(1));
        assert_eq!(full_jitter(base, 0, max, 1.0), base);
        assert_eq!(full_jitter(base, 3, max, 0.5), Duration::from_millis(80));
        assert_eq!(full_jitter(base, 30, max, 1.0), max);
        assert_eq!(full_jitter(base, 2, max, 0.0), Duration::ZERO);
    }

    #[test]
    fn retry_after_reads_milliseconds_first_then_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", "150".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(150)));
        let mut dated = HeaderMap::new();
        dated.insert("retry-after", "Wed, 21 Oct 2026 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&dated), None);
    }

    #[test]
    fn jitter_is_a_fraction() {
        assert!((0..100).map(|_| jitter()).all(|j| (0.0..1.0).contains(&j)));
    }
}
