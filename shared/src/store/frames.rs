//! Recorded frames: every SSE frame of a turn, written in batches while it runs, read back for replay and
//! live follow.

use libsql::params;

use super::conn::Batch;
use super::{Row, Store, collect, first, int, opt_int, text};
use crate::domain::{FrameId, SessionId, TurnId};
use crate::error::Result;

/// One recorded SSE frame. `row` orders frames across the turns of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub row: i64,
    pub turn_id: TurnId,
    pub seq: i64,
    pub event: String,
    pub data: String,
}
fn stored_frame(row: &Row) -> Result<StoredFrame> {
    Ok(StoredFrame {
        row: int(row, 0)?,
        turn_id: text(row, 1)?.into(),
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

/// Rows per multi-row INSERT of frames, largest first (4 parameters a row: at most 128, well under SQLite's oldest
/// limit of 999). A batch of n frames is one INSERT per set bit of n and per full 32 rows, six statement texts in
/// all, so they stay prepared (a text per batch length would crowd the statement cache). Measured (issue 24,
/// BENCHMARKS.md): with only 32-row and one-row texts a turn's ~45 frames, recorded in batches of fewer than 32,
/// went one statement per frame, and a statement's fixed cost (bind, step, halt, reset) came to about half of
/// the ~30k instructions each insert took.
const FRAME_CHUNKS: [usize; 6] = [32, 16, 8, 4, 2, 1];

/// Adds frames to a batch, in order: as many of the largest chunk as fit, then of the next, down to one row.
pub(super) fn push_frames(batch: &mut Batch, turn_id: &TurnId, frames: &[NewFrame<'_>]) -> Result<()> {
    static SQL: std::sync::OnceLock<[String; 6]> = std::sync::OnceLock::new();
    let texts = SQL.get_or_init(|| {
        FRAME_CHUNKS.map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|i| format!("(?{}, ?{}, ?{}, ?{})", i * 4 + 1, i * 4 + 2, i * 4 + 3, i * 4 + 4))
                .collect();
            // A frame already recorded (the same batch run twice: a retried write whose answer was lost)
            // is left as it is.
            format!(
                "INSERT INTO agent_turn_events (turn_id, seq, event, data) VALUES {} ON CONFLICT (turn_id, seq) DO NOTHING",
                values.join(",")
            )
        })
    });
    let mut rest = frames;
    for (rows, sql) in FRAME_CHUNKS.into_iter().zip(texts) {
        while rest.len() >= rows {
            let (chunk, after) = rest.split_at(rows);
            batch.push(sql.as_str(), frame_values(turn_id, chunk))?;
            rest = after;
        }
    }
    Ok(())
}
fn frame_values(turn_id: &TurnId, rows: &[NewFrame<'_>]) -> libsql::params::Params {
    let mut values: Vec<libsql::Value> = Vec::with_capacity(rows.len() * 4);
    for frame in rows {
        values.push(turn_id.into());
        values.push(libsql::Value::Integer(i64::try_from(frame.seq).unwrap_or(i64::MAX)));
        values.push(libsql::Value::Text(frame.event.to_owned()));
        values.push(libsql::Value::Text(frame.data.to_owned()));
    }
    libsql::params::Params::Positional(values)
}

impl Store {
    /// Appends frames of a running turn and answers whether someone asked it to stop (one round trip
    /// remotely: the recorder's cancel poll rides on its writes).
    pub async fn record_frames(&self, turn_id: &TurnId, frames: &[NewFrame<'_>]) -> Result<bool> {
        let mut batch = Batch::write().repeatable();
        push_frames(&mut batch, turn_id, frames)?;
        let cancel = batch.push("SELECT cancel_requested FROM agent_turns WHERE id = ?1", [turn_id])?;
        let mut out = self.conn().await.batch(batch).await?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        Ok(out.take(cancel)?.rows().next().map(|r| int::<i64>(&r, 0)).transpose()?.unwrap_or(0) != 0)
    }

    /// Where a replay starts: just before the frame after `frame` of this session, or `None` when the session
    /// has no such turn.
    pub async fn frame_cursor(&self, session: SessionId, frame: &FrameId) -> Result<Option<i64>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT (SELECT MAX(e.id) FROM agent_turn_events e WHERE e.turn_id = t.id AND e.seq <= ?3),
                        (SELECT MIN(e.id) - 1 FROM agent_turn_events e WHERE e.turn_id = t.id),
                        (SELECT MAX(id) FROM agent_turn_events)
                 FROM agent_turns t WHERE t.id = ?1 AND t.session_id = ?2",
                params![&frame.turn_id, session, frame.seq],
            )
            .await?;
        let found = first(rows, |r| Ok((opt_int::<i64>(r, 0)?, opt_int::<i64>(r, 1)?, opt_int::<i64>(r, 2)?))).await?;
        // A turn with no frame recorded yet starts after every frame that exists now.
        Ok(found.map(|(upto, before_first, last)| upto.or(before_first).or(last).unwrap_or(0)))
    }

    /// Where a replay of the session's latest turn starts (just before its first frame).
    pub async fn latest_turn_cursor(&self, session: SessionId) -> Result<Option<i64>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT (SELECT MIN(e.id) - 1 FROM agent_turn_events e WHERE e.turn_id = t.id),
                        (SELECT MAX(id) FROM agent_turn_events)
                 FROM agent_turns t WHERE t.session_id = ?1 ORDER BY t.created_at DESC, t.rowid DESC LIMIT 1",
                [session],
            )
            .await?;
        first(rows, |r| Ok(opt_int::<i64>(r, 0)?.or(opt_int(r, 1)?).unwrap_or(0))).await
    }

    /// Recorded frames of the session after `after` (a frame's row), oldest first; only one turn's if given.
    pub async fn frames_after(
        &self,
        session: SessionId,
        after: i64,
        only_turn: Option<&TurnId>,
        limit: u64,
    ) -> Result<Vec<StoredFrame>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT e.id, e.turn_id, e.seq, e.event, e.data FROM agent_turn_events e
                 JOIN agent_turns t ON t.id = e.turn_id
                 WHERE t.session_id = ?1 AND e.id > ?2 AND (?3 IS NULL OR e.turn_id = ?3)
                 ORDER BY e.id LIMIT ?4",
                params![session, after, super::opt_text_value(only_turn.map(|id| id.as_str().to_owned())), limit],
            )
            .await?;
        collect(rows, stored_frame).await
    }
}
