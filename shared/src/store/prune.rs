//! Housekeeping: deleting what is kept only for a while — recorded frames of old turns, idempotency keys past
//! their lifetime, expired login tokens — in bounded batches.
//!
//! Every batch is one `DELETE` of at most [`PrunePlan::batch`] rows, its own short write transaction (one
//! round trip remotely), so however large the backlog, a writer (a running turn's recorder) waits at most one
//! batch. A batch that deletes fewer rows than that is the last of its kind.
//!
//! Frames: a turn's are deleted once the turn started more than `LAMBENT_EVENTS_RETENTION_DAYS` ago and is
//! not running (it finished, or no longer holds a live lease on its session: it crashed). Its messages, tool
//! calls and usage stay, and so does the turn's row, so a replay of it is empty rather than an error. The
//! deletes walk the frames table by id from its oldest row, up to the first frame of the oldest recent turn
//! (read once, through `agent_turns_created`): each batch reads only rows it deletes (bar the frames of an old
//! turn still running, which are skipped), and the last one does not scan the recent frames. A frame of an
//! old turn recorded after a recent turn's first one (a turn that was running at the cut-off) waits for the
//! next day's run.
//!
//! The cut-off, the lease check and the deadline read the store's clock, so tests can age data.

use std::time::{Duration, Instant};

use libsql::{Value, params};
use time::OffsetDateTime;

use super::{Store, first, opt_int};
use crate::clock::format_timestamp;
use crate::config::Config;
use crate::error::Result;

/// What a prune deletes, and how.
#[derive(Debug, Clone, Copy)]
pub struct PrunePlan {
    /// Frames of turns that started longer ago than this go (`LAMBENT_EVENTS_RETENTION_DAYS`).
    pub events_retention: Duration,
    /// Rows per `DELETE`, each its own write transaction.
    pub batch: u32,
    /// No batch starts at or after this instant of the store's clock (a Lambda function's deadline, less a
    /// margin); `None`: until everything due is deleted.
    pub stop_at: Option<OffsetDateTime>,
}

impl PrunePlan {
    /// Rows per batch, measured (BENCHMARKS.md, "Housekeeping"; release build, two shared cores under load):
    /// 1000 frames take 5-8 ms on an embedded file and 9-12 ms a round trip on sqld on loopback, so a
    /// running turn's recorder waits about that long for the write lock. 250 take 4x the round trips (sqld:
    /// twice the total time); 5000 hold the lock 30-40 ms a batch and 20000 ~100 ms, for no shorter total.
    pub const BATCH: u32 = 1000;

    /// The configured retention, [`Self::BATCH`] rows a batch, no deadline.
    pub fn new(config: &Config) -> Self {
        Self { events_retention: config.events_retention, batch: Self::BATCH, stop_at: None }
    }

    /// The same plan, starting no batch at or after `at` (a Lambda invocation's deadline less a margin).
    pub fn stopping_at(self, at: std::time::SystemTime) -> Self {
        Self { stop_at: Some(OffsetDateTime::from(at)), ..self }
    }
}

/// What a prune deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows of recorded SSE frames of old turns (a row holds a batch of a turn's frames: `store::frames`).
    pub frames: u64,
    /// Idempotency keys older than [`super::KEY_LIFETIME`].
    pub idempotency_keys: u64,
    /// Login tokens past their expiry (API tokens stay: their owners see them listed, expired).
    pub login_tokens: u64,
    /// `DELETE` statements run, each its own transaction (remotely, each one round trip).
    pub batches: u64,
    /// The longest batch, from sending it to its answer: the longest a write lock was held for a prune.
    pub longest_batch: Duration,
    /// False when it stopped at the plan's `stop_at` with rows left to delete (the next run goes on).
    pub complete: bool,
}

/// Deletes a batch of expired idempotency keys: `?1` expired before (a key's `created_at` at or before it), `?2`
/// the batch.
const DELETE_EXPIRED_KEYS: &str = "DELETE FROM idempotency_keys WHERE rowid IN (
     SELECT rowid FROM idempotency_keys WHERE created_at <= ?1 LIMIT ?2)";

/// Deletes a batch of expired login tokens: `?1` now, `?2` the batch. (Authentication takes a token whose
/// `expires_at` is after now.)
const DELETE_EXPIRED_LOGIN_TOKENS: &str = "DELETE FROM api_tokens WHERE id IN (
     SELECT id FROM api_tokens WHERE kind = 'login' AND expires_at <= ?1 LIMIT ?2)";

/// Where the frames of recent turns (started at or after `?1`) begin: the first frame of each, by its
/// `(turn_id, seq)` index. NULL when no recent turn has frames.
const RECENT_FRAMES_START: &str = "SELECT MIN((SELECT e.id FROM agent_turn_events e WHERE e.turn_id = t.id
                 ORDER BY e.seq LIMIT 1))
     FROM agent_turns t WHERE t.created_at >= ?1";

/// Deletes a batch of frames of old turns that are not running, oldest first: `?1` the cut-off (turns that
/// started before it), `?2` now (a lease that expires after it is live), `?3` the scan's end (the first frame
/// of a recent turn), `?4` the batch. The turn is looked up per frame (EXISTS), so SQLite walks the frames by
/// id rather than every old turn's frames (turn rows are kept for ever).
const DELETE_OLD_FRAMES: &str = "DELETE FROM agent_turn_events WHERE id IN (
     SELECT e.id FROM agent_turn_events e
     WHERE e.id < ?3 AND EXISTS (
         SELECT 1 FROM agent_turns t WHERE t.id = e.turn_id AND t.created_at < ?1
            AND (t.finished_at IS NOT NULL OR NOT EXISTS (
                SELECT 1 FROM agent_sessions s
                WHERE s.id = t.session_id AND s.turn_id = t.id AND s.turn_expires_at > ?2)))
     ORDER BY e.id LIMIT ?4)";

impl Store {
    /// Deletes, in batches of `plan.batch` rows, expired idempotency keys, expired login tokens and the
    /// recorded frames of old turns (see the module's doc); stops starting batches at `plan.stop_at`.
    pub async fn prune(&self, plan: &PrunePlan) -> Result<Pruned> {
        let now = self.clock.now();
        let at = format_timestamp(now);
        let cutoff = format_timestamp(now - plan.events_retention);
        let keys_expired = format_timestamp(now - super::KEY_LIFETIME);
        let batch = i64::from(plan.batch.max(1));
        let mut pruned = Pruned { complete: true, ..Pruned::default() };
        pruned.idempotency_keys =
            self.drain(plan, DELETE_EXPIRED_KEYS, vec![keys_expired.into(), batch.into()], &mut pruned).await?;
        pruned.login_tokens =
            self.drain(plan, DELETE_EXPIRED_LOGIN_TOKENS, vec![at.clone().into(), batch.into()], &mut pruned).await?;
        if pruned.complete && !self.past(plan.stop_at) {
            let end = self.recent_frames_start(&cutoff).await?.unwrap_or(i64::MAX);
            let params = vec![cutoff.into(), at.into(), end.into(), batch.into()];
            pruned.frames = self.drain(plan, DELETE_OLD_FRAMES, params, &mut pruned).await?;
        } else {
            pruned.complete = false;
        }
        Ok(pruned)
    }

    /// Runs one kind's deletes until one deletes less than a batch, or until the deadline (then the prune is
    /// not complete, and no later kind starts); answers how many rows they deleted.
    async fn drain(&self, plan: &PrunePlan, sql: &str, params: Vec<Value>, pruned: &mut Pruned) -> Result<u64> {
        let mut deleted = 0;
        while pruned.complete {
            if self.past(plan.stop_at) {
                pruned.complete = false;
                break;
            }
            let conn = self.conn().await;
            let started = Instant::now();
            let n = conn.execute(sql, params.clone()).await?;
            pruned.longest_batch = pruned.longest_batch.max(started.elapsed());
            drop(conn);
            pruned.batches += 1;
            deleted += n;
            if n < u64::from(plan.batch.max(1)) {
                break;
            }
        }
        Ok(deleted)
    }

    fn past(&self, stop_at: Option<OffsetDateTime>) -> bool {
        stop_at.is_some_and(|stop_at| self.clock.now() >= stop_at)
    }

    async fn recent_frames_start(&self, cutoff: &str) -> Result<Option<i64>> {
        let conn = self.conn().await;
        let rows = conn.query(RECENT_FRAMES_START, params![cutoff]).await?;
        Ok(first(rows, |r| opt_int(r, 0)).await?.flatten())
    }
}
