//! Agent profiles.

use libsql::params;

use super::conn::Batch;
use super::messages::returned;
use super::{Row, listed, owner_exists, push_owner_check, vals};

use super::{Listed, Slice, Sql, Store, first, flag, int, opt_int, opt_int_value, text};
use crate::domain::{Agent, AgentChanges, AgentFields};
use crate::domain::{AgentId, Caller, UserId};
use crate::error::{Error, Result};

pub(super) const COLUMNS: &str =
    "id, name, owner_id, model, system_prompt, is_default, created_at, updated_at, provider, input_budget";

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
        provider: text(row, 8)?,
        input_budget: opt_int(row, 9)?,
    })
}

pub(super) async fn find(conn: Sql<'_>, id: AgentId) -> Result<Option<Agent>> {
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
    pub async fn get_agent(&self, viewer: &Caller, id: AgentId) -> Result<Agent> {
        find(self.conn().await.sql(), id).await?.filter(|a| viewer.sees(a.owner)).ok_or(Error::NotFound)
    }

    pub async fn create_agent(&self, owner: Option<UserId>, fields: AgentFields) -> Result<Agent> {
        let now = self.now();
        let mut batch = Batch::write();
        let owner_found = push_owner_check(&mut batch, owner)?;
        if fields.is_default {
            push_clear_default(&mut batch, owner, None, &now)?;
        }
        let inserted = batch.push(
            format!(
                "INSERT INTO agent_profiles
                 (name, owner_id, model, system_prompt, is_default, created_at, updated_at, provider, input_budget)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8) RETURNING {COLUMNS}"
            ),
            params![
                fields.name,
                opt_int_value(owner),
                fields.model,
                fields.system_prompt,
                fields.is_default,
                now,
                fields.provider,
                opt_int_value(fields.input_budget)
            ],
        )?;
        let mut out = self.conn().await.batch(batch).await?;
        owner_exists(&mut out, owner_found, owner)?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        returned(out.take(inserted)?, agent)
    }

    /// Reads the agent, then writes in one batch guarded by the owner it read (a concurrent change of owner
    /// answers 404 rather than a write past the permission check).
    pub async fn update_agent(&self, viewer: &Caller, id: AgentId, changes: AgentChanges) -> Result<Agent> {
        let conn = self.conn().await;
        let now = self.now();
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        let fields = changes.apply(AgentFields::from(&existing));
        let mut batch = Batch::write();
        if fields.is_default && !existing.is_default {
            push_clear_default(&mut batch, existing.owner, Some(id), &now)?;
        }
        let updated = batch.push(
            format!(
                "UPDATE agent_profiles SET name = ?1, model = ?2, system_prompt = ?3, is_default = ?4, updated_at = ?5,
                        provider = ?8, input_budget = ?9
                 WHERE id = ?6 AND owner_id IS ?7 RETURNING {COLUMNS}"
            ),
            params![
                fields.name,
                fields.model,
                fields.system_prompt,
                fields.is_default,
                now,
                id,
                opt_int_value(existing.owner),
                fields.provider,
                opt_int_value(fields.input_budget)
            ],
        )?;
        let mut out = conn.batch(batch).await?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        out.take(updated)?.rows().next().map(|r| agent(&r)).transpose()?.ok_or(Error::NotFound)
    }

    /// Deletes the agent with its links, sessions, messages and agent-scoped templates (foreign-key cascade).
    pub async fn delete_agent(&self, viewer: &Caller, id: AgentId) -> Result<()> {
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        conn.execute("DELETE FROM agent_profiles WHERE id = ?1", [id]).await?;
        Ok(())
    }
}

/// Unsets the owner's current default agent (all but `keep`), so a new default can take its place.
fn push_clear_default(batch: &mut Batch, owner: Option<UserId>, keep: Option<AgentId>, now: &str) -> Result<usize> {
    batch.push(
        "UPDATE agent_profiles SET is_default = 0, updated_at = ?1
         WHERE is_default = 1 AND owner_id IS ?2 AND id IS NOT ?3",
        params![now, opt_int_value(owner), opt_int_value(keep)],
    )
}
