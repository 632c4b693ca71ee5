//! Recorded frames: every SSE frame of a turn, written in batches while it runs, read back for replay and
//! live follow.
//!
//! # Rows
//! A batch of frames is one row of `agent_turn_events`: `seq` is its last frame's number, `event` is
//! [`PACKED`] and `data` the frames one after another, each as `<seq> <event> <length>\n<data>` (the length in
//! bytes, so no frame's data is escaped or scanned). `done` keeps a row of its own (`event` `done`, `data` its
//! JSON), so a turn's end is found by its event; so does a batch of one frame, and so are rows written before
//! frames were packed: a replay reads both kinds. Measured (issue 24 part 5, BENCHMARKS.md): a row per frame
//! cost ~20k instructions each (record, table and index B-trees), ~25 % of a streamed turn; a turn's ~49 frames
//! are now 2-4 rows.
//!
//! A row's `seq` being its last frame's keeps `UNIQUE (turn_id, seq)` what makes a repeated batch write nothing
//! (`ON CONFLICT DO NOTHING`: the same batch has the same last frame), and `MAX(seq)` a turn's last frame.

use libsql::params;

use super::conn::Batch;
use super::{Row, Store, first, int, opt_int, text};
use crate::domain::{FrameId, SessionId, TurnId};
use crate::error::{Error, Result};

/// The `event` of a row holding several frames; no frame is named so.
const PACKED: &str = "frames";

/// One recorded SSE frame. `row` orders frames across the turns of a session (the frames of one row share it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub row: i64,
    pub turn_id: TurnId,
    pub seq: i64,
    pub event: String,
    pub data: String,
}

/// A page of recorded frames: those of up to `limit` rows, and the last row read (where the next page starts).
#[derive(Debug, Default)]
pub struct FramePage {
    pub frames: Vec<StoredFrame>,
    pub last_row: Option<i64>,
    /// The page read `limit` rows: more may follow at once.
    pub full: bool,
}

/// A row's frames, added to `out`.
fn stored_frames(row: &Row, out: &mut Vec<StoredFrame>) -> Result<()> {
    let (id, seq): (i64, i64) = (int(row, 0)?, int(row, 2)?);
    let (turn_id, event, data) = (TurnId::from(text(row, 1)?), text(row, 3)?, text(row, 4)?);
    if event != PACKED {
        out.push(StoredFrame { row: id, turn_id, seq, event, data });
        return Ok(());
    }
    let corrupt = || Error::bug(format!("agent_turn_events row {id}: a packed frame does not read"));
    let mut rest = data.as_str();
    while !rest.is_empty() {
        let (head, after) = rest.split_once('\n').ok_or_else(corrupt)?;
        let mut parts = head.splitn(3, ' ');
        let (Some(seq), Some(event), Some(len)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(corrupt());
        };
        let (seq, len) = (seq.parse::<i64>().map_err(|_| corrupt())?, len.parse::<usize>().map_err(|_| corrupt())?);
        let frame_data = after.get(..len).ok_or_else(corrupt)?;
        out.push(StoredFrame {
            row: id,
            turn_id: turn_id.clone(),
            seq,
            event: event.to_owned(),
            data: frame_data.to_owned(),
        });
        rest = &after[len..];
    }
    Ok(())
}

/// A frame as a running turn hands it to the store.
#[derive(Debug, Clone, Copy)]
pub struct NewFrame<'a> {
    pub seq: u64,
    pub event: &'a str,
    pub data: &'a str,
}

/// Adds a batch's frames to a write: one INSERT of one row (the frames packed, or a frame alone) or two (the
/// frames before `done`, then `done`).
pub(super) fn push_frames(batch: &mut Batch, turn_id: &TurnId, frames: &[NewFrame<'_>]) -> Result<()> {
    // A frame already recorded (the same batch run twice: a retried write whose answer was lost) is left as
    // it is.
    const ONE: &str = "INSERT INTO agent_turn_events (turn_id, seq, event, data) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (turn_id, seq) DO NOTHING";
    const TWO: &str =
        "INSERT INTO agent_turn_events (turn_id, seq, event, data) VALUES (?1, ?2, ?3, ?4), (?1, ?5, ?6, ?7)
         ON CONFLICT (turn_id, seq) DO NOTHING";
    let (body, done) = match frames.split_last() {
        Some((last, before)) if last.event == "done" => (before, Some(last)),
        _ => (frames, None),
    };
    let seq = |frame: &NewFrame<'_>| libsql::Value::Integer(i64::try_from(frame.seq).unwrap_or(i64::MAX));
    let mut values: Vec<libsql::Value> = vec![turn_id.into()];
    match body {
        [] => {}
        [frame] => values.extend([seq(frame), frame.event.into(), frame.data.into()]),
        [.., last] => values.extend([seq(last), PACKED.into(), pack(body).into()]),
    }
    if let Some(done) = done {
        values.extend([seq(done), done.event.into(), done.data.into()]);
    }
    match values.len() {
        4 => batch.push(ONE, libsql::params::Params::Positional(values))?,
        7 => batch.push(TWO, libsql::params::Params::Positional(values))?,
        _ => return Ok(()),
    };
    Ok(())
}

/// Frames as one row's `data` (see the module's doc).
fn pack(frames: &[NewFrame<'_>]) -> String {
    let size = frames.iter().map(|f| f.event.len() + f.data.len() + 24).sum();
    let mut out = String::with_capacity(size);
    for frame in frames {
        use std::fmt::Write as _;
        let _ = writeln!(out, "{} {} {}", frame.seq, frame.event, frame.data.len());
        out.push_str(frame.data);
    }
    out
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

    /// Where a replay after `frame` of this session starts: just before the row that holds the frame after
    /// it, or `None` when the session has no such turn. That row may hold frames up to `seq` too (a packed
    /// row): the replay skips them ([`FramePage`] is read from here, and the follower drops what it has seen).
    pub async fn frame_cursor(&self, session: SessionId, frame: &FrameId) -> Result<Option<i64>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT (SELECT MIN(e.id) - 1 FROM agent_turn_events e WHERE e.turn_id = t.id AND e.seq > ?3),
                        (SELECT MAX(e.id) FROM agent_turn_events e WHERE e.turn_id = t.id),
                        (SELECT MAX(id) FROM agent_turn_events)
                 FROM agent_turns t WHERE t.id = ?1 AND t.session_id = ?2",
                params![&frame.turn_id, session, frame.seq],
            )
            .await?;
        let found = first(rows, |r| Ok((opt_int::<i64>(r, 0)?, opt_int::<i64>(r, 1)?, opt_int::<i64>(r, 2)?))).await?;
        // Every frame of the turn is at or before `seq`: after its last row. A turn with no frame recorded yet
        // starts after every frame that exists now.
        Ok(found.map(|(before_next, turn_last, last)| before_next.or(turn_last).or(last).unwrap_or(0)))
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

    /// Recorded frames of the session in the `limit` rows after row `after`, oldest first; only one turn's if
    /// given.
    pub async fn frames_after(
        &self,
        session: SessionId,
        after: i64,
        only_turn: Option<&TurnId>,
        limit: u64,
    ) -> Result<FramePage> {
        let conn = self.conn().await;
        let mut rows = conn
            .query(
                "SELECT e.id, e.turn_id, e.seq, e.event, e.data FROM agent_turn_events e
                 JOIN agent_turns t ON t.id = e.turn_id
                 WHERE t.session_id = ?1 AND e.id > ?2 AND (?3 IS NULL OR e.turn_id = ?3)
                 ORDER BY e.id LIMIT ?4",
                params![session, after, super::opt_text_value(only_turn.map(|id| id.as_str().to_owned())), limit],
            )
            .await?;
        let mut page = FramePage::default();
        let mut read = 0;
        while let Some(row) = rows.next().await? {
            stored_frames(&row, &mut page.frames)?;
            page.last_row = Some(int::<i64>(&row, 0)?);
            read += 1;
        }
        page.full = read == limit;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_frames_read_back_as_they_were_written_whatever_their_data_holds() {
        let frames = [
            NewFrame { seq: 7, event: "openai_event", data: "{\"delta\":\"line\\nbreak\"}" },
            NewFrame { seq: 8, event: "text_delta", data: "{\"delta\":\"é 7 x\\n\"}" },
            NewFrame { seq: 9, event: "tool_result", data: "" },
            NewFrame { seq: 10, event: "error", data: "a\nb 3 c\n" },
        ];
        let row = Row::Values(vec![
            libsql::Value::Integer(42),
            libsql::Value::Text("turn_1".into()),
            libsql::Value::Integer(10),
            libsql::Value::Text(PACKED.into()),
            libsql::Value::Text(pack(&frames)),
        ]);
        let mut read = Vec::new();
        stored_frames(&row, &mut read).unwrap();
        let expected: Vec<StoredFrame> = frames
            .iter()
            .map(|f| StoredFrame {
                row: 42,
                turn_id: "turn_1".into(),
                seq: i64::try_from(f.seq).unwrap(),
                event: f.event.into(),
                data: f.data.into(),
            })
            .collect();
        assert_eq!(read, expected);
    }

    #[test]
    fn a_packed_row_cut_short_is_an_error_not_a_frame() {
        let whole = pack(&[NewFrame { seq: 1, event: "text_delta", data: "{\"delta\":\"Hi\"}" }]);
        let row = Row::Values(vec![
            libsql::Value::Integer(1),
            libsql::Value::Text("t".into()),
            libsql::Value::Integer(1),
            libsql::Value::Text(PACKED.into()),
            libsql::Value::Text(whole[..whole.len() - 1].to_owned()),
        ]);
        assert!(stored_frames(&row, &mut Vec::new()).is_err());
    }
}
