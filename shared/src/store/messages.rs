//! Messages of a session, oldest first.

use libsql::{Row, params};

use super::{Listed, Slice, Store, collect, count, first, int, opt_json_col, opt_text, sessions, text};
use crate::domain::Message;
use crate::error::{Error, Result};

pub(super) const COLUMNS: &str = "id, session_id, role, content, status, response_id, usage, created_at";

pub(super) fn message(row: &Row) -> Result<Message> {
    Ok(Message {
        id: int(row, 0)?,
        session: int(row, 1)?,
        role: text(row, 2)?,
        content: text(row, 3)?,
        status: opt_text(row, 4)?,
        response_id: opt_text(row, 5)?,
        usage: opt_json_col(row, 6)?,
        created_at: text(row, 7)?,
    })
}

impl Store {
    /// The session's messages in the order they were written; 404 when the session does not exist.
    pub async fn list_messages(
        &self,
        viewer: &crate::auth::Caller,
        session: i64,
        slice: Slice,
    ) -> Result<Listed<Message>> {
        let conn = self.conn().await;
        sessions::find_visible(&conn, viewer, session).await?;
        let total = count(&conn, "SELECT COUNT(*) FROM agent_messages WHERE session_id = ?1", [session]).await?;
        let rows = conn
            .query(
                &format!("SELECT {COLUMNS} FROM agent_messages WHERE session_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"),
                params![session, slice.limit, slice.offset],
            )
            .await?;
        Ok(Listed { count: total, items: collect(rows, message).await? })
    }

    /// Stores a message as sent (user messages; the runtime stores assistant messages with their response).
    pub async fn add_message(&self, session: i64, role: &str, content: &str) -> Result<Message> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                &format!(
                    "INSERT INTO agent_messages (session_id, role, content, created_at) VALUES (?1, ?2, ?3, ?4)
                     RETURNING {COLUMNS}"
                ),
                params![session, role, content, self.now()],
            )
            .await?;
        first(rows, message).await?.ok_or_else(|| Error::Internal("INSERT returned no row".into()))
    }
}
