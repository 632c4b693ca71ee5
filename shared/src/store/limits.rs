//! Rate limits per user, held in the database so they hold across instances: the count of a user's
//! requests in the current minute (`request_windows`, one row per limited user, no background job), and the
//! turns a user has running (the sessions' leases, see `turns`).
//!
//! # Layout
//! - [`ADMIT`]: the upsert that counts a request, refused by the table's CHECK past the quota.
//! - [`admission`]: the request's lead (see `conn::lead`): the upsert and how its outcome reads.
//! - [`push_token_admission`]: the same keyed by the token, pushed into the token lookup's batch.
//! - [`Store::within_request`] / [`Store::admit_unsent`]: what the HTTP layer wraps a request in.

use libsql::{Value, params};

use super::conn::lead::{self, Lead};
use super::conn::{Batch, Set};
use super::{Store, int, opt_int_value};
use crate::domain::{REQUESTS_POLICY, RateState, UserId};
use crate::error::{Error, Result};

/// Counts a request of `?1` the user (or, when null, the user of `?4` the live token hash at `?5` now) in `?2`
/// the minute, under the user's `requests_per_minute` or `?3` the default (null or 0: not counted at all). A
/// new minute starts again at 1 (a lagging instance's older minute counts in the newer one); the CHECK
/// `requests <= quota` refuses the request that would pass the quota, so the row never does.
pub(super) const ADMIT: &str = "INSERT INTO request_windows (user_id, minute, requests, quota)
     SELECT u.id, ?2, 1, coalesce(u.requests_per_minute, ?3) FROM users u
     WHERE u.id = coalesce(?1, (SELECT t.user_id FROM api_tokens t WHERE t.token_hash = ?4 AND t.revoked_at IS NULL
                                AND (t.expires_at IS NULL OR t.expires_at > ?5)))
       AND u.is_active = 1 AND coalesce(u.requests_per_minute, ?3) > 0
     ON CONFLICT (user_id) DO UPDATE SET
        requests = CASE WHEN excluded.minute > minute THEN 1 ELSE requests + 1 END,
        minute = max(minute, excluded.minute),
        quota = excluded.quota
     RETURNING requests, quota";

/// How [`ADMIT`]'s outcome reads, `quota` being the limit the caller was last seen with (the refusal's
/// headers name it) and `reset` the seconds left of the minute.
fn read_admission(outcome: Result<Set>, quota: i64, reset: u64) -> Result<Option<RateState>> {
    match outcome {
        Ok(set) => {
            let Some(row) = set.rows().next() else { return Ok(None) };
            let (requests, quota): (i64, i64) = (int(&row, 0)?, int(&row, 1)?);
            Ok(Some(RateState { policy: REQUESTS_POLICY, quota, remaining: quota - requests, reset }))
        }
        Err(Error::Database(err)) if err.to_string().contains("CHECK constraint failed") => {
            Err(Error::RateLimited(RateState { policy: REQUESTS_POLICY, quota, remaining: 0, reset }))
        }
        Err(err) => Err(err),
    }
}

impl Store {
    /// The parameters of [`ADMIT`] for `user` (or the user of `token_hash`).
    fn admit_params(&self, user: Option<UserId>, token_hash: Option<&str>) -> (Vec<Value>, u64) {
        let now = self.clock().now();
        let (minute, reset) = crate::domain::minute_window(now);
        let default = self.rate_limits.requests_per_minute.map(i64::from);
        let params = vec![
            opt_int_value(user),
            Value::Text(minute),
            opt_int_value(default),
            token_hash.map_or(Value::Null, |h| Value::Text(h.to_owned())),
            Value::Text(crate::clock::format_timestamp(now)),
        ];
        (params, reset)
    }

    /// Arms the request's count for a caller this instance trusts without a lookup, whose limit was `quota`.
    pub(super) fn arm_admission(&self, user: UserId, quota: i64) {
        let (params, reset) = self.admit_params(Some(user), None);
        lead::arm(Lead { sql: ADMIT, params, settle: Box::new(move |out| read_admission(out, quota, reset)) });
    }

    /// Pushes the count of the request into the token lookup's batch (the user is the token's).
    pub(super) fn push_token_admission(&self, batch: &mut Batch, token_hash: &str) -> Result<(usize, u64)> {
        let (params, reset) = self.admit_params(None, Some(token_hash));
        Ok((batch.push(ADMIT, params)?, reset))
    }

    /// Reads the count pushed by [`Self::push_token_admission`]: the refusal is the error.
    pub(super) fn settle_token_admission(outcome: Result<Set>, quota: i64, reset: u64) -> Result<()> {
        lead::note(read_admission(outcome, quota, reset)?);
        Ok(())
    }

    /// Runs the handling of one request with its rate-limit slot; answers its output, the state of the
    /// caller's limit for the response's headers, and the count if nothing the request sent carried it.
    pub async fn within_request<F: std::future::Future>(f: F) -> (F::Output, Option<RateState>, Option<Unsent>) {
        let (out, state, unsent) = lead::within(f).await;
        (out, state, unsent.map(Unsent))
    }

    /// Counts a request that sent nothing to the database after authenticating (one round trip of its own).
    pub async fn admit_unsent(&self, unsent: Unsent) -> Result<Option<RateState>> {
        let (out, state, _) = lead::within(async { super::conn::run_lead(&self.conn().await, unsent.0).await }).await;
        out.map(|()| state)
    }

    /// The turn limit of the user `owner` names (an SQL expression of `?1`, `owner_param`), read when a turn
    /// was refused for it (None: none).
    pub(super) async fn turn_quota(&self, owner: &str, owner_param: Value) -> Result<Option<i64>> {
        let default = self.rate_limits.max_concurrent_turns.map(i64::from);
        let conn = self.conn().await;
        let rows = conn
            .query(
                &format!("SELECT nullif(coalesce(max_concurrent_turns, ?2), 0) FROM users WHERE id = {owner}"),
                params![owner_param, opt_int_value(default)],
            )
            .await?;
        Ok(super::first(rows, |r| super::opt_int(r, 0)).await?.flatten())
    }
}

/// A request's count that nothing carried (see [`Store::admit_unsent`]).
pub struct Unsent(Lead);
