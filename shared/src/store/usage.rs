//! Token usage as an aggregate (`usage_hourly`, one row per owner, hour, agent, model and
//! provider) and the budget
//! read a turn's start carries.
//!
//! # Layout
//! - [`push_turn_usage`]: the upsert that adds a turn's tokens to its hour, pushed into the batch that ends
//!   the turn (so it costs no round trip of its own: tests/round_trips.rs).
//! - [`Store::usage_buckets`]: a report's rows, read grouped by the period asked for.
//! - [`push_budget_read`] / [`take_budget`]: the caller's budgets and the day's and month's spend, pushed into
//!   the read batch a turn already runs.

use libsql::params;

use super::conn::{Batch, Outcomes};
use super::{Store, collect, int, opt_int, opt_int_value, text};
use crate::domain::{Budget, SessionId, TurnUsage, UsageBucket, UsageQuery, UserId};
use crate::error::Result;

/// Adds the turn's tokens to its hour's row: the session's owner (0 for none) and agent, the agent's model
/// and provider (as they were when the turn ended), the hour of `now`. `?1` session, `?2` now, `?3`..`?6` tokens, `?7` 1 when the turn failed.
const ADD_TURN: &str = "INSERT INTO usage_hourly
     (owner_id, hour, agent_id, model, provider, input_tokens, output_tokens, cached_tokens, reasoning_tokens, turns, failed_turns)
     SELECT coalesce(s.owner_id, 0), substr(?2, 1, 13), s.agent_id, coalesce(p.model, ''), coalesce(p.provider, ''), ?3, ?4, ?5, ?6, 1, ?7
     FROM agent_sessions s LEFT JOIN agent_profiles p ON p.id = s.agent_id WHERE s.id = ?1 AND changes() = 1
     ON CONFLICT (owner_id, hour, agent_id, model, provider) DO UPDATE SET
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cached_tokens = cached_tokens + excluded.cached_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        turns = turns + 1,
        failed_turns = failed_turns + excluded.failed_turns";

/// Pushes the upsert of a turn's usage into the batch that ends it, right after the statement that sets the
/// turn's finish time only if unset: `changes() = 1` adds the tokens only in the run that ended the turn, so a
/// retried end (the store retries it when an answer was lost) does not count them twice.
pub(super) fn push_turn_usage(
    batch: &mut Batch,
    session: SessionId,
    usage: &TurnUsage,
    failed: bool,
    now: &str,
) -> Result<usize> {
    batch.push(
        ADD_TURN,
        params![
            session,
            now,
            usage.input_tokens,
            usage.output_tokens,
            usage.cached_tokens,
            usage.reasoning_tokens,
            i64::from(failed)
        ],
    )
}

/// The caller's budgets and spend: `?1` the user, `?2` the day (`YYYY-MM-DD`), `?3` the month's first day.
/// Hour buckets compare as text: every bucket of the day is `>= ?2`. At most 24 x 31 rows per agent and
/// model (the primary key's owner prefix, then hour).
const BUDGET: &str = "SELECT u.daily_token_budget, u.monthly_token_budget,
        (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM usage_hourly WHERE owner_id = ?1 AND hour >= ?2),
        (SELECT coalesce(sum(input_tokens + output_tokens), 0) FROM usage_hourly WHERE owner_id = ?1 AND hour >= ?3)
     FROM users u WHERE u.id = ?1
       AND (u.daily_token_budget IS NOT NULL OR u.monthly_token_budget IS NOT NULL)";

/// Pushes the budget read of `user` (none for a caller with no user row, like the system) into a turn's read.
pub(super) fn push_budget_read(batch: &mut Batch, user: Option<UserId>, now: time::OffsetDateTime) -> Result<usize> {
    let crate::domain::BudgetPeriods { day, month } = crate::domain::budget_periods(now);
    batch.push(BUDGET, params![opt_int_value(user), day, month])
}

/// What [`push_budget_read`] found: no row is no budget.
pub(super) fn take_budget(out: &mut Outcomes, at: usize) -> Result<Budget> {
    let Some(row) = out.take(at)?.rows().next() else { return Ok(Budget::default()) };
    Ok(Budget {
        daily: opt_int(&row, 0)?,
        monthly: opt_int(&row, 1)?,
        day_used: int(&row, 2)?,
        month_used: int(&row, 3)?,
    })
}

impl Store {
    /// The stored buckets of a report's range and owner, summed per period (day or hour), agent, model
    /// and provider,
    /// oldest first. One indexed range read of the aggregate, whatever the number of messages.
    pub async fn usage_buckets(&self, query: &UsageQuery) -> Result<Vec<UsageBucket>> {
        let crate::domain::HourRange { from, until } = query.hours();
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT substr(hour, 1, ?1) AS period, agent_id, model, provider, sum(input_tokens), sum(output_tokens),
                        sum(cached_tokens), sum(reasoning_tokens), sum(turns), sum(failed_turns)
                 FROM usage_hourly WHERE hour >= ?2 AND hour < ?3 AND (?4 OR owner_id = coalesce(?5, 0))
                 GROUP BY period, agent_id, model, provider ORDER BY period, agent_id, model, provider",
                params![query.group_by.key_chars(), from, until, query.everyone, opt_int_value(query.owner)],
            )
            .await?;
        collect(rows, |r| {
            Ok(UsageBucket {
                period: text(r, 0)?,
                agent_id: int(r, 1)?,
                model: text(r, 2)?,
                provider: text(r, 3)?,
                counts: [int(r, 4)?, int(r, 5)?, int(r, 6)?, int(r, 7)?, int(r, 8)?, int(r, 9)?],
            })
        })
        .await
    }
}
