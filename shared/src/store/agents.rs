//! Agent profiles.

use libsql::params;

use super::{Row, listed, vals};

use super::{Listed, Slice, Sql, Store, check_owner, collect, count, first, flag, int, opt_int, opt_int_value, text};
use crate::auth::Caller;
use crate::domain::{Agent, AgentChanges, AgentFields};
use crate::error::{Error, Result};

pub(super) const COLUMNS: &str = "id, name, owner_id, model, system_prompt, is_default, created_at, updated_at";

pub(super) fn agent(row: &Row) -> Result<Agent> {
    Ok(Agent {
        id: int(row, 0)?,
        name: text(row, 1)?,
        owner: opt_int(row, 2)?,
        model: text(row, 3)?,
        system_prompt: text(row, 4)?,
        is_default: flag(row, 5)?,
        created_at: text(row, 6)?,
        updated_at: text(row, 7)?,
    })
}

pub(super) async fn find(conn: Sql<'_>, id: i64) -> Result<Option<Agent>> {
    first(conn.query(&format!("SELECT {COLUMNS} FROM agent_profiles WHERE id = ?1"), [id]).await?, agent).await
}

impl Store {
    /// The agents the viewer sees: its own and the global ones (staff: all).
    pub async fn list_agents(&self, viewer: &Caller, slice: Slice) -> Result<Listed<Agent>> {
        let conn = self.conn().await;
        let filter = "(?1 OR owner_id = ?2 OR owner_id IS NULL)";
        listed(
            &conn,
            (
                &format!("SELECT COUNT(*) FROM agent_profiles WHERE {filter}"),
                vals(params![viewer.is_staff, viewer.id])?,
            ),
            (
                &format!("SELECT {COLUMNS} FROM agent_profiles WHERE {filter} ORDER BY id LIMIT ?3 OFFSET ?4"),
                vals(params![viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            agent,
        )
        .await
    }

    /// An agent the viewer sees; 404 otherwise.
    pub async fn get_agent(&self, viewer: &Caller, id: i64) -> Result<Agent> {
        find(self.conn().await.sql(), id).await?.filter(|a| viewer.sees(a.owner)).ok_or(Error::NotFound)
    }

    pub async fn create_agent(&self, owner: Option<i64>, fields: AgentFields) -> Result<Agent> {
        let conn = self.conn().await;
        let now = self.now();
        let tx = conn.transaction().await?;
        check_owner(tx.sql(), owner).await?;
        if fields.is_default {
            clear_default(tx.sql(), owner, None, &now).await?;
        }
        let rows = tx
            .query(
                &format!(
                    "INSERT INTO agent_profiles (name, owner_id, model, system_prompt, is_default, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) RETURNING {COLUMNS}"
                ),
                params![fields.name, opt_int_value(owner), fields.model, fields.system_prompt, fields.is_default, now],
            )
            .await?;
        let created = first(rows, agent).await?.ok_or_else(|| Error::Internal("INSERT returned no row".into()))?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_agent(&self, viewer: &Caller, id: i64, changes: AgentChanges) -> Result<Agent> {
        let conn = self.conn().await;
        let now = self.now();
        let tx = conn.transaction().await?;
        let existing = find(tx.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        let fields = changes.apply(AgentFields::from(&existing));
        if fields.is_default && !existing.is_default {
            clear_default(tx.sql(), existing.owner, Some(id), &now).await?;
        }
        let rows = tx
            .query(
                &format!(
                    "UPDATE agent_profiles SET name = ?1, model = ?2, system_prompt = ?3, is_default = ?4, updated_at = ?5
                     WHERE id = ?6 RETURNING {COLUMNS}"
                ),
                params![fields.name, fields.model, fields.system_prompt, fields.is_default, now, id],
            )
            .await?;
        let updated = first(rows, agent).await?.ok_or(Error::NotFound)?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Deletes the agent with its links, sessions, messages and agent-scoped templates (foreign-key cascade).
    pub async fn delete_agent(&self, viewer: &Caller, id: i64) -> Result<()> {
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        conn.execute("DELETE FROM agent_profiles WHERE id = ?1", [id]).await?;
        Ok(())
    }
}

/// Unsets the owner's current default agent (all but `keep`), so a new default can take its place.
async fn clear_default(conn: Sql<'_>, owner: Option<i64>, keep: Option<i64>, now: &str) -> Result<()> {
    conn.execute(
        "UPDATE agent_profiles SET is_default = 0, updated_at = ?1
         WHERE is_default = 1 AND owner_id IS ?2 AND id IS NOT ?3",
        params![now, opt_int_value(owner), opt_int_value(keep)],
    )
    .await?;
    Ok(())
}
