//! Conversation sessions.

use libsql::params;

use super::{Row, listed, vals};

use super::{Listed, Slice, Sql, Store, agents, first, int, opt_int, opt_int_value, opt_json_col, opt_text, text};
use crate::domain::{AgentId, Caller, SessionId};
use crate::domain::{Session, missing_pk};
use crate::error::{Error, Result};

/// The upstream's `previous_response_id` as a blob: read whole (see `text` in `mod.rs`).
pub(super) const COLUMNS: &str = "id, agent_id, owner_id, CAST(previous_response_id AS BLOB) AS previous_response_id, \
    last_output, created_at, updated_at";

pub(super) fn session(row: &Row) -> Result<Session> {
    Ok(Session {
        id: int(row, 0)?,
        agent: int(row, 1)?,
        owner: opt_int(row, 2)?,
        previous_response_id: opt_text(row, 3)?,
        last_output: opt_json_col(row, 4)?,
        created_at: text(row, 5)?,
        updated_at: text(row, 6)?,
    })
}

/// A session the viewer may read, or 404.
pub(super) async fn find_visible(conn: Sql<'_>, viewer: &Caller, id: SessionId) -> Result<Session> {
    find(conn, id).await?.filter(|s| viewer.sees_private(s.owner)).ok_or(Error::NotFound)
}

pub(super) async fn find(conn: Sql<'_>, id: SessionId) -> Result<Option<Session>> {
    first(conn.query(&format!("SELECT {COLUMNS} FROM agent_sessions WHERE id = ?1"), [id]).await?, session).await
}

impl Store {
    /// The viewer's own sessions (staff: all).
    pub async fn list_sessions(
        &self,
        viewer: &Caller,
        agent: Option<AgentId>,
        slice: Slice,
    ) -> Result<Listed<Session>> {
        let conn = self.conn().await;
        let filter = "(?1 IS NULL OR agent_id = ?1) AND (?2 OR owner_id = ?3)";
        listed(
            &conn,
            (
                &format!("SELECT COUNT(*) FROM agent_sessions WHERE {filter}"),
                vals(params![opt_int_value(agent), viewer.is_staff, viewer.id])?,
            ),
            (
                &format!("SELECT {COLUMNS} FROM agent_sessions WHERE {filter} ORDER BY id LIMIT ?4 OFFSET ?5"),
                vals(params![opt_int_value(agent), viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            session,
        )
        .await
    }

    /// One of the viewer's sessions; 404 for anyone else's.
    pub async fn get_session(&self, viewer: &Caller, id: SessionId) -> Result<Session> {
        find_visible(self.conn().await.sql(), viewer, id).await
    }

    /// A new session owned by the viewer, with an agent it sees.
    pub async fn create_session(&self, viewer: &Caller, agent: AgentId) -> Result<Session> {
        let conn = self.conn().await;
        if agents::find(conn.sql(), agent).await?.filter(|a| viewer.sees(a.owner)).is_none() {
            return Err(Error::field("agent", missing_pk(agent)));
        }
        let owner = viewer.owner_for(None);
        let now = self.now();
        let rows = conn
            .query(
                &format!(
                    "INSERT INTO agent_sessions (agent_id, owner_id, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                     RETURNING {COLUMNS}"
                ),
                params![agent, opt_int_value(owner), now],
            )
            .await?;
        first(rows, session).await?.ok_or_else(|| Error::bug("INSERT returned no row"))
    }

    /// Deletes the session and its messages.
    pub async fn delete_session(&self, viewer: &Caller, id: SessionId) -> Result<()> {
        let conn = self.conn().await;
        find_visible(conn.sql(), viewer, id).await?;
        conn.execute("DELETE FROM agent_sessions WHERE id = ?1", [id]).await?;
        Ok(())
    }
}
