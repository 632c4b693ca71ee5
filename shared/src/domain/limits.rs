//! Rate limits per user: what one request or turn is held to and how a client is told
//! (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` and `RateLimit` structured fields).
//!
//! # Layout
//! - [`RateState`] (declared with the error that refuses a request, `error`): one policy's quota, what is
//!   left of it and when it resets, as headers.
//! - [`minute_window`]: the fixed window a request is counted in.

use time::OffsetDateTime;

pub use crate::error::{REQUESTS_POLICY, RateState, TURNS_POLICY, WINDOW_SECS};

/// The minute `now` falls in (UTC, `YYYY-MM-DDTHH:MM`, as stored) and the seconds left of it (1 to 60).
pub fn minute_window(now: OffsetDateTime) -> (String, u64) {
    let stamp = crate::clock::format_timestamp(now);
    let minute = stamp.get(..16).unwrap_or_default().to_owned();
    let left = WINDOW_SECS - u64::from(now.second());
    (minute, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_headers_read_as_the_drafts_structured_fields() {
        let state = RateState { policy: REQUESTS_POLICY, quota: 100, remaining: 50, reset: 30 };
        assert_eq!(state.policy_field(), "\"default\";q=100;w=60");
        assert_eq!(state.limit_field(), "\"default\";r=50;t=30");
        let turns = RateState { policy: TURNS_POLICY, quota: 2, remaining: 0, reset: 1 };
        assert_eq!(turns.policy_field(), "\"turns\";q=2;qu=\"concurrent-requests\"");
        assert_eq!(minute_window(datetime!(2026-12-07 23:05:42.5 UTC)), ("2026-12-07T23:05".to_owned(), 18));
        assert_eq!(minute_window(datetime!(2026-12-07 23:05:00 UTC)).1, 60);
    }
}
