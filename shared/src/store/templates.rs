//! Prompt templates, scoped to one agent or global.

use libsql::params;

use super::conn::Batch;
use super::messages::returned;
use super::{Row, listed, owner_exists, push_owner_check, vals};

use super::{Listed, Slice, Sql, Store, agents, first, flag, int, opt_int, opt_int_value, text};
use crate::domain::{AgentId, Caller, UserId};
use crate::domain::{Template, TemplateChanges, TemplateFields, TemplateScope, missing_pk};
use crate::error::{Error, Result};

pub(super) const COLUMNS: &str = "id, name, template, owner_id, agent_id, is_default, created_at";

pub(super) fn template(row: &Row) -> Result<Template> {
    Ok(Template {
        id: int(row, 0)?,
        name: text(row, 1)?,
        template: text(row, 2)?,
        owner: opt_int(row, 3)?,
        agent: opt_int(row, 4)?,
        is_default: flag(row, 5)?,
        created_at: text(row, 6)?,
    })
}

async fn find(conn: Sql<'_>, id: i64) -> Result<Option<Template>> {
    first(conn.query(&format!("SELECT {COLUMNS} FROM agent_prompt_templates WHERE id = ?1"), [id]).await?, template)
        .await
}

/// A template's agent must exist for the viewer and be the viewer's own: a template changes what every
/// conversation with that agent is told.
async fn check_agent(conn: Sql<'_>, viewer: &Caller, agent: Option<AgentId>) -> Result<()> {
    let Some(id) = agent else { return Ok(()) };
    scoped_to(viewer, id, agents::find(conn, id).await?)
}

/// Whether the viewer may scope a template to this agent (as read).
fn scoped_to(viewer: &Caller, id: AgentId, agent: Option<crate::domain::Agent>) -> Result<()> {
    match agent.filter(|a| viewer.sees(a.owner)) {
        None => Err(Error::field("agent", missing_pk(id))),
        Some(agent) if !viewer.may_change(agent.owner) => {
            Err(Error::field("agent", "Templates can only be scoped to your own agents."))
        }
        Some(_) => Ok(()),
    }
}

/// Unsets the other defaults of the scope the template lands in: its agent's, or its owner's global ones.
fn push_clear_default(
    batch: &mut Batch,
    owner: Option<UserId>,
    agent: Option<AgentId>,
    keep: Option<i64>,
) -> Result<usize> {
    batch.push(clear_default_sql(agent), params![opt_int_value(owner), opt_int_value(agent), opt_int_value(keep)])
}

fn clear_default_sql(agent: Option<AgentId>) -> &'static str {
    if agent.is_some() {
        "UPDATE agent_prompt_templates SET is_default = 0 WHERE is_default = 1 AND agent_id = ?2 AND id IS NOT ?3"
    } else {
        "UPDATE agent_prompt_templates SET is_default = 0
         WHERE is_default = 1 AND agent_id IS NULL AND owner_id IS ?1 AND id IS NOT ?3"
    }
}

async fn clear_default(conn: Sql<'_>, owner: Option<UserId>, agent: Option<AgentId>, keep: Option<i64>) -> Result<()> {
    let sql = clear_default_sql(agent);
    conn.execute(sql, params![opt_int_value(owner), opt_int_value(agent), opt_int_value(keep)]).await?;
    Ok(())
}

impl Store {
    /// The templates the viewer sees (its own and global ones; staff: all), narrowed by `scope`.
    pub async fn list_templates(
        &self,
        viewer: &Caller,
        scope: TemplateScope,
        slice: Slice,
    ) -> Result<Listed<Template>> {
        let conn = self.conn().await;
        let (mode, agent) = match scope {
            TemplateScope::All => (0, None),
            TemplateScope::Agent(id) => (1, Some(id)),
            TemplateScope::Global => (2, None),
        };
        let filter = "(?1 = 0 OR (?1 = 1 AND agent_id = ?2) OR (?1 = 2 AND agent_id IS NULL))
            AND (?3 OR owner_id = ?4 OR owner_id IS NULL)";
        listed(
            &conn,
            (
                &format!("SELECT COUNT(*) FROM agent_prompt_templates WHERE {filter}"),
                vals(params![mode, opt_int_value(agent), viewer.is_staff, viewer.id])?,
            ),
            (
                &format!("SELECT {COLUMNS} FROM agent_prompt_templates WHERE {filter} ORDER BY id LIMIT ?5 OFFSET ?6"),
                vals(params![mode, opt_int_value(agent), viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            template,
        )
        .await
    }

    pub async fn get_template(&self, viewer: &Caller, id: i64) -> Result<Template> {
        find(self.conn().await.sql(), id).await?.filter(|t| viewer.sees(t.owner)).ok_or(Error::NotFound)
    }

    pub async fn create_template(
        &self,
        viewer: &Caller,
        owner: Option<UserId>,
        changes: TemplateChanges,
    ) -> Result<Template> {
        let fields = changes.apply(TemplateFields::default());
        let conn = self.conn().await;
        // Two round trips remotely: the owner and the agent read together, then the writes in one batch.
        let mut checks = Batch::read();
        let owner_found = push_owner_check(&mut checks, owner)?;
        let agent_found = fields
            .agent
            .map(|id| checks.push(format!("SELECT {} FROM agent_profiles WHERE id = ?1", agents::COLUMNS), [id]))
            .transpose()?;
        if !checks.is_empty() {
            let mut out = conn.batch(checks).await?;
            owner_exists(&mut out, owner_found, owner)?;
            if let (Some(found), Some(id)) = (agent_found, fields.agent) {
                let agent = out.take(found)?.rows().next().map(|r| agents::agent(&r)).transpose()?;
                scoped_to(viewer, id, agent)?;
            }
        }
        let mut batch = Batch::write();
        if fields.is_default {
            push_clear_default(&mut batch, owner, fields.agent, None)?;
        }
        let inserted = batch.push(
            format!(
                "INSERT INTO agent_prompt_templates (name, template, owner_id, agent_id, is_default, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING {COLUMNS}"
            ),
            params![
                fields.name,
                fields.template,
                opt_int_value(owner),
                opt_int_value(fields.agent),
                fields.is_default,
                self.now()
            ],
        )?;
        let mut out = conn.batch(batch).await?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        returned(out.take(inserted)?, template)
    }

    pub async fn update_template(&self, viewer: &Caller, id: i64, changes: TemplateChanges) -> Result<Template> {
        let conn = self.conn().await;
        let tx = conn.transaction().await?;
        let existing = find(tx.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        let fields = changes.apply(TemplateFields::from(&existing));
        if fields.agent != existing.agent {
            check_agent(tx.sql(), viewer, fields.agent).await?;
        }
        if fields.is_default {
            clear_default(tx.sql(), existing.owner, fields.agent, Some(id)).await?;
        }
        let rows = tx
            .query(
                &format!(
                    "UPDATE agent_prompt_templates SET name = ?1, template = ?2, agent_id = ?3, is_default = ?4
                     WHERE id = ?5 RETURNING {COLUMNS}"
                ),
                params![fields.name, fields.template, opt_int_value(fields.agent), fields.is_default, id],
            )
            .await?;
        let updated = first(rows, template).await?.ok_or(Error::NotFound)?;
        tx.commit().await?;
        Ok(updated)
    }

    pub async fn delete_template(&self, viewer: &Caller, id: i64) -> Result<()> {
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        conn.execute("DELETE FROM agent_prompt_templates WHERE id = ?1", [id]).await?;
        Ok(())
    }
}
