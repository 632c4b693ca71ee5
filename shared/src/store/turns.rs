//! Turns as rows: their recorded frames (for replay and live follow), cancellation requests, and the
//! idempotency keys that point at them.

use libsql::params;

use super::Row;
use super::conn::Batch;

use super::{Store, collect, first, int, opt_int, opt_text, sessions, text};
use crate::domain::Caller;
use crate::error::{Error, Result};

/// One recorded SSE frame. `row` orders frames across the turns of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub row: i64,
    pub turn_id: String,
    pub seq: i64,
    pub event: String,
    pub data: String,
}

fn stored_frame(row: &Row) -> Result<StoredFrame> {
    Ok(StoredFrame {
        row: int(row, 0)?,
        turn_id: text(row, 1)?,
        seq: int(row, 2)?,
        event: text(row, 3)?,
        data: text(row, 4)?,
    })
}

/// A frame as a running turn hands it to the store.
#[derive(Debug, Clone, Copy)]
pub struct NewFrame<'a> {
    pub seq: u64,
    pub event: &'a str,
    pub data: &'a str,
}

/// What kind of request started a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    Message,
    ToolOutput,
}

impl TurnKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::ToolOutput => "tool_output",
        }
    }
}

/// A request's `Idempotency-Key`, claimed in the same transaction as what the request writes.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub owner: i64,
    pub key: String,
    /// The endpoint's name; a key belongs to one endpoint.
    pub endpoint: &'static str,
    pub fingerprint: String,
    /// Keys recorded before this time are forgotten (see [`KEY_LIFETIME`]).
    pub expired_before: String,
}

/// How long a key is remembered, as Stripe and the IETF draft suggest.
pub const KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What a key recorded of the request that claimed it: what an idempotent replay answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRecord {
    /// It started this turn; `running` while the turn holds its session. A keyed chat's reply is kept too.
    Turn { session: i64, turn_id: String, running: bool, answer: Option<KeptAnswer> },
    /// It was answered without a turn (a 202 of tool-output).
    Answered(KeptAnswer),
}

/// An answer kept for a key's retries: its HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    pub status: axum::http::StatusCode,
    pub body: String,
}

/// Adds the claim of a key to an atomic batch: an expired key is freed, then the key inserted; a twin that
/// holds it makes the INSERT fail on the primary key (and the batch roll back). Answers the INSERT's index.
pub(super) fn push_claim(
    batch: &mut Batch,
    claim: &IdempotencyClaim,
    turn_id: Option<&str>,
    answer: Option<&KeptAnswer>,
    now: &str,
) -> Result<usize> {
    batch.push(
        "DELETE FROM idempotency_keys WHERE owner_id = ?1 AND key = ?2 AND created_at <= ?3",
        params![claim.owner, claim.key.as_str(), claim.expired_before.as_str()],
    )?;
    batch.push(
        "INSERT INTO idempotency_keys (owner_id, key, endpoint, fingerprint, turn_id, status_code, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            claim.owner,
            claim.key.as_str(),
            claim.endpoint,
            claim.fingerprint.as_str(),
            super::opt_text_value(turn_id.map(str::to_owned)),
            super::opt_int_value(answer.map(|a| i64::from(a.status.as_u16()))),
            super::opt_text_value(answer.map(|a| a.body.clone())),
            now
        ],
    )
}

/// Adds the read of what the key recorded to a batch (see [`read_key_record`]).
pub(super) fn push_key_read(batch: &mut Batch, claim: &IdempotencyClaim, now: &str) -> Result<usize> {
    batch.push(
        "SELECT k.endpoint, k.fingerprint, k.turn_id, k.status_code, k.response, t.session_id,
                (s.turn_id = t.id AND s.turn_expires_at > ?3)
         FROM idempotency_keys k
         LEFT JOIN agent_turns t ON t.id = k.turn_id
         LEFT JOIN agent_sessions s ON s.id = t.session_id
         WHERE k.owner_id = ?1 AND k.key = ?2 AND k.created_at > ?4",
        params![claim.owner, claim.key.as_str(), now, claim.expired_before.as_str()],
    )
}

/// What the key recorded, if an earlier request claimed it; 422 when that was a different request.
pub(super) fn read_key_record(set: super::conn::Set, claim: &IdempotencyClaim) -> Result<Option<KeyRecord>> {
    let Some(r) = set.rows().next() else { return Ok(None) };
    let (endpoint, fingerprint, turn_id, status, body, session, running) = (
        text(&r, 0)?,
        text(&r, 1)?,
        opt_text(&r, 2)?,
        opt_int(&r, 3)?,
        opt_text(&r, 4)?,
        opt_int(&r, 5)?,
        opt_int(&r, 6)?.unwrap_or(0) != 0,
    );
    if endpoint != claim.endpoint || fingerprint != claim.fingerprint {
        return Err(Error::KeyReused);
    }
    let answer = match status.zip(body) {
        Some((status, body)) => Some(KeptAnswer { status: kept_status(status)?, body }),
        None => None,
    };
    Ok(Some(match (turn_id, session) {
        (Some(turn_id), Some(session)) => KeyRecord::Turn { session, turn_id, running, answer },
        _ => KeyRecord::Answered(answer.ok_or_else(|| Error::KeyInProgress(String::new()))?),
    }))
}

/// A kept answer's status, as the store wrote it.
fn kept_status(status: i64) -> Result<axum::http::StatusCode> {
    u16::try_from(status)
        .ok()
        .and_then(|status| axum::http::StatusCode::from_u16(status).ok())
        .ok_or_else(|| Error::bug(format!("a kept answer's status {status} is not an HTTP status")))
}

/// Keeps the answer a keyed request gave (the chat reply), for its retries: `?1` status, `?2` body, `?3` owner,
/// `?4` key.
const STORE_ANSWER: &str =
    "UPDATE idempotency_keys SET status_code = ?1, response = ?2 WHERE owner_id = ?3 AND key = ?4";

/// Rows per multi-row INSERT of frames: 4 parameters a row, well under SQLite's oldest limit of 999.
const FRAME_ROWS: usize = 32;

/// Adds frames to a batch: one multi-row INSERT per full chunk and a one-row INSERT for each left over, two
/// statement texts in all, so both stay prepared (a text per batch length would crowd the statement cache).
fn push_frames(batch: &mut Batch, turn_id: &str, frames: &[NewFrame<'_>]) -> Result<()> {
    static SQL: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
    let [many, one] = SQL.get_or_init(|| {
        let text = |rows: usize| {
            let values: Vec<String> = (0..rows)
                .map(|i| format!("(?{}, ?{}, ?{}, ?{})", i * 4 + 1, i * 4 + 2, i * 4 + 3, i * 4 + 4))
                .collect();
            format!("INSERT INTO agent_turn_events (turn_id, seq, event, data) VALUES {}", values.join(","))
        };
        [text(FRAME_ROWS), text(1)]
    });
    let (bulk, rest) = frames.split_at(frames.len() / FRAME_ROWS * FRAME_ROWS);
    for rows in bulk.chunks(FRAME_ROWS) {
        batch.push(many.as_str(), frame_values(turn_id, rows))?;
    }
    for row in rest.chunks(1) {
        batch.push(one.as_str(), frame_values(turn_id, row))?;
    }
    Ok(())
}

fn frame_values(turn_id: &str, rows: &[NewFrame<'_>]) -> libsql::params::Params {
    let mut values: Vec<libsql::Value> = Vec::with_capacity(rows.len() * 4);
    for frame in rows {
        values.push(libsql::Value::Text(turn_id.to_owned()));
        values.push(libsql::Value::Integer(i64::try_from(frame.seq).unwrap_or(i64::MAX)));
        values.push(libsql::Value::Text(frame.event.to_owned()));
        values.push(libsql::Value::Text(frame.data.to_owned()));
    }
    libsql::params::Params::Positional(values)
}

/// Runs an atomic batch for its effect; the first failure is the error.
async fn write(conn: &super::Conn<'_>, batch: Batch) -> Result<()> {
    match conn.batch(batch).await?.first_error() {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

impl Store {
    /// Appends frames of a running turn and answers whether someone asked it to stop (one round trip
    /// remotely: the recorder's cancel poll rides on its writes).
    pub async fn record_frames(&self, turn_id: &str, frames: &[NewFrame<'_>]) -> Result<bool> {
        let mut batch = Batch::write();
        push_frames(&mut batch, turn_id, frames)?;
        let cancel = batch.push("SELECT cancel_requested FROM agent_turns WHERE id = ?1", [turn_id])?;
        let mut out = self.conn().await.batch(batch).await?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        Ok(out.take(cancel)?.rows().next().map(|r| int(&r, 0)).transpose()?.unwrap_or(0) != 0)
    }

    /// Whether someone asked the turn to stop (possibly from another process).
    pub async fn cancel_requested(&self, turn_id: &str) -> Result<bool> {
        let conn = self.conn().await;
        let rows = conn.query("SELECT cancel_requested FROM agent_turns WHERE id = ?1", [turn_id]).await?;
        Ok(first(rows, |r| int(r, 0)).await?.unwrap_or(0) != 0)
    }

    /// Ends a turn in one atomic batch (one round trip remotely): its last frames (ending with `done`), its
    /// finish time, the release of its session and, for a keyed chat, the reply its key's retries get.
    /// Whoever sees the session free therefore finds every frame recorded.
    pub async fn end_turn(
        &self,
        session: i64,
        turn_id: &str,
        frames: &[NewFrame<'_>],
        answer: Option<(&IdempotencyClaim, &KeptAnswer)>,
    ) -> Result<()> {
        let mut batch = Batch::write();
        push_frames(&mut batch, turn_id, frames)?;
        batch.push("UPDATE agent_turns SET finished_at = ?1 WHERE id = ?2", params![self.now(), turn_id])?;
        batch.push(super::tool_calls::RELEASE, params![session, turn_id])?;
        if let Some((claim, answer)) = answer {
            let status = i64::from(answer.status.as_u16());
            batch.push(STORE_ANSWER, params![status, answer.body.as_str(), claim.owner, claim.key.as_str()])?;
        }
        write(&self.conn().await, batch).await
    }

    /// Turns that hold their session's lease, with the last frame each recorded (`None`: no turn row, a lease
    /// from before turns were rows). For a process that knows it is the only one serving the database.
    pub async fn leased_turns(&self) -> Result<Vec<(i64, String, Option<i64>)>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT s.id, s.turn_id, CASE WHEN t.id IS NULL THEN NULL
                        ELSE (SELECT COALESCE(MAX(e.seq), 0) FROM agent_turn_events e WHERE e.turn_id = t.id) END
                 FROM agent_sessions s LEFT JOIN agent_turns t ON t.id = s.turn_id
                 WHERE s.turn_id IS NOT NULL ORDER BY s.id",
                (),
            )
            .await?;
        collect(rows, |r| Ok((int(r, 0)?, text(r, 1)?, opt_int(r, 2)?))).await
    }

    /// Asks the session's running turn to stop; answers its id. 404 for a session the caller cannot see,
    /// 409 when no turn is running.
    pub async fn request_cancel(&self, caller: &Caller, session: i64) -> Result<String> {
        let conn = self.conn().await;
        sessions::find_visible(conn.sql(), caller, session).await?;
        let now = self.now();
        let rows = conn
            .query(
                "UPDATE agent_turns SET cancel_requested = 1
                 WHERE id = (SELECT turn_id FROM agent_sessions WHERE id = ?1 AND turn_expires_at > ?2)
                 RETURNING id",
                params![session, now],
            )
            .await?;
        first(rows, |r| text(r, 0)).await?.ok_or_else(|| Error::Conflict("No turn is running on this session.".into()))
    }

    /// The id of the session's running turn, if any (an expired lease is a crashed turn: not running).
    pub async fn running_turn(&self, session: i64) -> Result<Option<String>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT turn_id FROM agent_sessions WHERE id = ?1 AND turn_expires_at > ?2",
                params![session, self.now()],
            )
            .await?;
        Ok(first(rows, |r| opt_text(r, 0)).await?.flatten())
    }

    /// Where a replay starts: just before the frame after `<turn_id>:<seq>` of this session, or `None` when
    /// the session has no such turn.
    pub async fn frame_cursor(&self, session: i64, turn_id: &str, seq: i64) -> Result<Option<i64>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT (SELECT MAX(e.id) FROM agent_turn_events e WHERE e.turn_id = t.id AND e.seq <= ?3),
                        (SELECT MIN(e.id) - 1 FROM agent_turn_events e WHERE e.turn_id = t.id),
                        (SELECT MAX(id) FROM agent_turn_events)
                 FROM agent_turns t WHERE t.id = ?1 AND t.session_id = ?2",
                params![turn_id, session, seq],
            )
            .await?;
        let found = first(rows, |r| Ok((opt_int(r, 0)?, opt_int(r, 1)?, opt_int(r, 2)?))).await?;
        // A turn with no frame recorded yet starts after every frame that exists now.
        Ok(found.map(|(upto, before_first, last)| upto.or(before_first).or(last).unwrap_or(0)))
    }

    /// Where a replay of the session's latest turn starts (just before its first frame).
    pub async fn latest_turn_cursor(&self, session: i64) -> Result<Option<(String, i64)>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT t.id, (SELECT MIN(e.id) - 1 FROM agent_turn_events e WHERE e.turn_id = t.id),
                        (SELECT MAX(id) FROM agent_turn_events)
                 FROM agent_turns t WHERE t.session_id = ?1 ORDER BY t.created_at DESC, t.rowid DESC LIMIT 1",
                [session],
            )
            .await?;
        first(rows, |r| Ok((text(r, 0)?, opt_int(r, 1)?.or(opt_int(r, 2)?).unwrap_or(0)))).await
    }

    /// Recorded frames of the session after `after` (a frame's row), oldest first; only one turn's if given.
    pub async fn frames_after(
        &self,
        session: i64,
        after: i64,
        only_turn: Option<&str>,
        limit: u64,
    ) -> Result<Vec<StoredFrame>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT e.id, e.turn_id, e.seq, e.event, e.data FROM agent_turn_events e
                 JOIN agent_turns t ON t.id = e.turn_id
                 WHERE t.session_id = ?1 AND e.id > ?2 AND (?3 IS NULL OR e.turn_id = ?3)
                 ORDER BY e.id LIMIT ?4",
                params![session, after, super::opt_text_value(only_turn.map(str::to_owned)), limit],
            )
            .await?;
        collect(rows, stored_frame).await
    }
}
