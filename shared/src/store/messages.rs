//! Messages of a session, oldest first.

use libsql::params;

use libsql::Value;

use super::conn::Batch;
use super::{Row, listed_under, opt_int, vals};

use super::{Listed, Slice, Store, int, opt_json_col, opt_state, opt_text, opt_text_value, state, text};
use crate::domain::{Message, ResponseStatus, Role, SessionId};
use crate::error::{Error, Result};

/// `content` (and the upstream's `response_id`) as blobs: read whole, U+0000 and all (see `text` in `mod.rs`).
pub(super) const COLUMNS: &str = "id, session_id, role, CAST(content AS BLOB) AS content, status, \
    CAST(response_id AS BLOB) AS response_id, usage, created_at";

pub(super) fn message(row: &Row) -> Result<Message> {
    Ok(Message {
        id: int(row, 0)?,
        session: int(row, 1)?,
        role: state(row, 2, "agent_messages.role", Role::parse)?,
        content: text(row, 3)?,
        status: opt_state(row, 4, "agent_messages.status", ResponseStatus::parse)?,
        response_id: opt_text(row, 5)?,
        usage: opt_json_col(row, 6)?,
        created_at: text(row, 7)?,
    })
}

/// How an assistant message's response ended (its end, in the store's words); user messages have none.
#[derive(Debug, Clone, Copy)]
pub(super) struct AssistantEnd<'a> {
    pub status: ResponseStatus,
    pub response_id: Option<&'a str>,
    pub usage: Option<&'a serde_json::Value>,
    /// A completed response's `output` items, kept for a rebuild of the conversation (`store::history`).
    pub output: Option<&'a serde_json::Value>,
}

/// Adds the INSERT of one message (returning it as stored) to a batch. `session` is a value, or with
/// `session_sql` an expression over the batch's first parameter (the session a turn holds).
pub(super) fn push_insert(
    batch: &mut Batch,
    session: Value,
    session_sql: &str,
    role: Role,
    content: &str,
    end: Option<AssistantEnd<'_>>,
    now: &str,
) -> Result<usize> {
    batch.push(
        format!(
            "INSERT INTO agent_messages (session_id, role, content, status, response_id, usage, created_at, output)
             VALUES ({session_sql}, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING {COLUMNS}"
        ),
        insert_params(session, role, content, end, now),
    )
}

/// Adds to a batch the INSERT of the assistant message of the response `end` names, unless the session has
/// it already, and the read of it as stored (the index answered): run twice (a retried write whose first
/// answer was lost), the batch stores the message once.
pub(super) fn push_answer_once(
    batch: &mut Batch,
    session: SessionId,
    content: &str,
    end: AssistantEnd<'_>,
    now: &str,
) -> Result<usize> {
    let same = "SELECT id FROM agent_messages WHERE session_id = ?1 AND role = ?2 AND response_id = ?5";
    batch.push(
        format!(
            "INSERT INTO agent_messages (session_id, role, content, status, response_id, usage, created_at, output)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE NOT EXISTS ({same})"
        ),
        insert_params(session.into(), Role::Assistant, content, Some(end), now),
    )?;
    batch.push(
        format!(
            "SELECT {COLUMNS} FROM agent_messages
             WHERE session_id = ?1 AND role = ?2 AND response_id = ?3 ORDER BY id LIMIT 1"
        ),
        params![session, Role::Assistant.as_str(), opt_text_value(end.response_id.map(str::to_owned))],
    )
}

fn insert_params(
    session: Value,
    role: Role,
    content: &str,
    end: Option<AssistantEnd<'_>>,
    now: &str,
) -> impl libsql::params::IntoParams {
    params![
        session,
        role.as_str(),
        content,
        opt_text_value(end.map(|e| e.status.as_str().to_owned())),
        opt_text_value(end.and_then(|e| e.response_id).map(str::to_owned)),
        opt_text_value(end.and_then(|e| e.usage).map(serde_json::Value::to_string)),
        now,
        opt_text_value(end.and_then(|e| e.output).map(serde_json::Value::to_string))
    ]
}

/// The row a batch's INSERT ... RETURNING gave.
pub(super) fn returned<T>(set: super::conn::Set, map: impl Fn(&Row) -> Result<T>) -> Result<T> {
    let row = set.rows().next().ok_or_else(|| Error::bug("INSERT returned no row"))?;
    map(&row)
}

impl Store {
    /// The session's messages in the order they were written; 404 when the session does not exist.
    pub async fn list_messages(
        &self,
        viewer: &crate::domain::Caller,
        session: SessionId,
        slice: Slice,
    ) -> Result<Listed<Message>> {
        let conn = self.conn().await;
        let sees = |r: &Row| Ok(viewer.sees_private(opt_int(r, 0)?));
        let guard = (("SELECT owner_id FROM agent_sessions WHERE id = ?1", vals([session])?), &sees as _);
        listed_under(
            &conn,
            guard,
            ("SELECT COUNT(*) FROM agent_messages WHERE session_id = ?1", vals([session])?),
            (
                &format!("SELECT {COLUMNS} FROM agent_messages WHERE session_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"),
                vals(params![session, slice.limit, slice.offset])?,
            ),
            message,
        )
        .await
    }

    /// Stores a message as sent (user messages; a turn stores assistant messages with their response).
    pub async fn add_message(&self, session: SessionId, role: Role, content: &str) -> Result<Message> {
        let mut batch = Batch::write();
        let inserted = push_insert(&mut batch, session.into(), "?1", role, content, None, &self.now())?;
        returned(self.conn().await.batch(batch).await?.take(inserted)?, message)
    }
}
