//! Agent ↔ tool links.

use libsql::params;

use super::conn::{Batch, Conn};
use super::{Row, listed, vals};

use super::{Listed, Slice, Sql, Store, Unique, agents, first, flag, int, opt_int_value, tools};
use crate::config::Limits;
use crate::domain::{AgentId, Caller, UserId};
use crate::domain::{AgentToolLink, LinkChanges, LinkFields, missing_pk};
use crate::error::{Error, FieldErrors, Result};

const COLUMNS: &str = "id, agent_id, tool_id, enabled, require_approval";
const NOT_UNIQUE: &str = "This tool is already linked to this agent.";
/// `agent_profile_tools`' `UNIQUE (agent_id, tool_id)`.
const PAIR: Unique = Unique::new("agent_profile_tools", &["agent_id", "tool_id"]);

fn link(row: &Row) -> Result<AgentToolLink> {
    Ok(AgentToolLink {
        id: int(row, 0)?,
        agent: int(row, 1)?,
        tool: int(row, 2)?,
        enabled: flag(row, 3)?,
        require_approval: flag(row, 4)?,
    })
}

async fn find(conn: Sql<'_>, id: i64) -> Result<Option<AgentToolLink>> {
    first(conn.query(&format!("SELECT {COLUMNS} FROM agent_profile_tools WHERE id = ?1"), [id]).await?, link).await
}

/// Both ends must exist for the viewer, the agent must be the viewer's to change, and the pair must not be
/// linked already (by another link than `except`).
async fn check(conn: &Conn<'_>, viewer: &Caller, fields: &LinkFields, except: Option<i64>) -> Result<()> {
    let mut errors = FieldErrors::default();
    // Both ends in one read (one round trip remotely).
    let mut batch = Batch::read();
    let agent = batch.push(format!("SELECT {} FROM agent_profiles WHERE id = ?1", agents::COLUMNS), [fields.agent])?;
    let tool = batch.push(format!("SELECT {} FROM agent_tools WHERE id = ?1", tools::COLUMNS), [fields.tool])?;
    // Every linked tool goes upstream with every turn of the agent: their number is bounded too.
    let linked = batch.push(
        "SELECT COUNT(*) FROM agent_profile_tools WHERE agent_id = ?1 AND id IS NOT ?2",
        params![fields.agent, except],
    )?;
    let mut out = conn.batch(batch).await?;
    let linked = out.take(linked)?.rows().next().map(|r| int(&r, 0)).transpose()?.unwrap_or(0);
    if usize::try_from(linked).unwrap_or(usize::MAX) >= Limits::TOOLS_PER_AGENT {
        errors.add("agent", format!("An agent may have at most {} tools.", Limits::TOOLS_PER_AGENT));
    }
    let tool = out.take(tool)?.rows().next().map(|r| tools::tool(&r)).transpose()?;
    match out.take(agent)?.rows().next().map(|r| agents::agent(&r)).transpose()?.filter(|a| viewer.sees(a.owner)) {
        None => errors.add("agent", missing_pk(fields.agent)),
        Some(agent) if !viewer.may_change(agent.owner) => {
            errors.add("agent", "Tools can only be linked to your own agents.");
        }
        Some(_) => {}
    }
    if tool.filter(|t| viewer.sees(t.owner)).is_none() {
        errors.add("tool", missing_pk(fields.tool));
    }
    errors.into_result()?;
    // A new link's pair is guarded by the UNIQUE index (the INSERT's error says the same).
    let Some(except) = except else { return Ok(()) };
    let rows = conn
        .sql()
        .query(
            "SELECT id FROM agent_profile_tools WHERE agent_id = ?1 AND tool_id = ?2 AND id IS NOT ?3",
            params![fields.agent, fields.tool, except],
        )
        .await?;
    if first(rows, |r| int::<i64>(r, 0)).await?.is_some() {
        return Err(Error::field("non_field_errors", NOT_UNIQUE));
    }
    Ok(())
}

fn unique_to_field(err: Error) -> Error {
    if PAIR.violated_by(&err) { Error::field("non_field_errors", NOT_UNIQUE) } else { err }
}

/// A link the viewer may see (its agent is visible), with the agent's owner.
async fn visible(conn: Sql<'_>, viewer: &Caller, id: i64) -> Result<(AgentToolLink, Option<UserId>)> {
    let link = find(conn, id).await?.ok_or(Error::NotFound)?;
    let agent = agents::find(conn, link.agent).await?.filter(|a| viewer.sees(a.owner)).ok_or(Error::NotFound)?;
    Ok((link, agent.owner))
}

impl Store {
    /// Links of the agents the viewer sees.
    pub async fn list_agent_tools(
        &self,
        viewer: &Caller,
        agent: Option<AgentId>,
        slice: Slice,
    ) -> Result<Listed<AgentToolLink>> {
        let conn = self.conn().await;
        let filter = "(?1 IS NULL OR agent_id = ?1) AND agent_id IN
            (SELECT id FROM agent_profiles WHERE ?2 OR owner_id = ?3 OR owner_id IS NULL)";
        listed(
            &conn,
            (
                &format!("SELECT COUNT(*) FROM agent_profile_tools WHERE {filter}"),
                vals(params![opt_int_value(agent), viewer.is_staff, viewer.id])?,
            ),
            (
                &format!("SELECT {COLUMNS} FROM agent_profile_tools WHERE {filter} ORDER BY id LIMIT ?4 OFFSET ?5"),
                vals(params![opt_int_value(agent), viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            link,
        )
        .await
    }

    pub async fn get_agent_tool(&self, viewer: &Caller, id: i64) -> Result<AgentToolLink> {
        Ok(visible(self.conn().await.sql(), viewer, id).await?.0)
    }

    pub async fn create_agent_tool(&self, viewer: &Caller, fields: LinkFields) -> Result<AgentToolLink> {
        let conn = self.conn().await;
        check(&conn, viewer, &fields, None).await?;
        let rows = conn
            .query(
                &format!("INSERT INTO agent_profile_tools (agent_id, tool_id, enabled, require_approval) VALUES (?1, ?2, ?3, ?4) RETURNING {COLUMNS}"),
                params![fields.agent, fields.tool, fields.enabled, fields.require_approval],
            )
            .await
            .map_err(unique_to_field)?;
        first(rows, link).await.map_err(unique_to_field)?.ok_or_else(|| Error::bug("INSERT returned no row"))
    }

    pub async fn update_agent_tool(&self, viewer: &Caller, id: i64, changes: LinkChanges) -> Result<AgentToolLink> {
        let conn = self.conn().await;
        let (existing, agent_owner) = visible(conn.sql(), viewer, id).await?;
        viewer.check_change(agent_owner)?;
        let fields = changes.apply(LinkFields::from(&existing));
        check(&conn, viewer, &fields, Some(id)).await?;
        let rows = conn
            .query(
                &format!(
                    "UPDATE agent_profile_tools SET agent_id = ?1, tool_id = ?2, enabled = ?3, require_approval = ?5
                     WHERE id = ?4 RETURNING {COLUMNS}"
                ),
                params![fields.agent, fields.tool, fields.enabled, id, fields.require_approval],
            )
            .await
            .map_err(unique_to_field)?;
        first(rows, link).await.map_err(unique_to_field)?.ok_or(Error::NotFound)
    }

    pub async fn delete_agent_tool(&self, viewer: &Caller, id: i64) -> Result<()> {
        let conn = self.conn().await;
        let (_, agent_owner) = visible(conn.sql(), viewer, id).await?;
        viewer.check_change(agent_owner)?;
        conn.execute("DELETE FROM agent_profile_tools WHERE id = ?1", [id]).await?;
        Ok(())
    }
}
