//! MCP servers, and agents' links to them.

use libsql::params;

use super::conn::{Batch, Conn};
use super::{
    Listed, Row, Slice, Sql, Store, Unique, agents, first, flag, int, json_col, listed, opt_int, opt_int_value,
    opt_text, text, vals,
};
use crate::domain::{
    AgentMcpLink, Caller, LinkedMcpServer, McpLinkChanges, McpLinkFields, McpServer, McpServerFields,
    SERVERS_PER_AGENT, UserId, missing_pk,
};
use crate::error::{Error, FieldErrors, Result};

pub(super) const COLUMNS: &str = "id, name, owner_id, url, header_names, allowed_tools, is_active, created_at";
const LINK_COLUMNS: &str = "id, agent_id, mcp_server_id, enabled, require_approval";
const NOT_UNIQUE: &str = "This MCP server is already linked to this agent.";
/// `agent_mcp_servers`' `UNIQUE (agent_id, mcp_server_id)`.
const PAIR: Unique = Unique::new("agent_mcp_servers", &["agent_id", "mcp_server_id"]);

/// A server's header values as the store keeps them: sealed by the caller (`auth::seal`), with their names.
#[derive(Debug, Clone, PartialEq)]
pub struct SealedHeaders {
    /// `None` when there are no headers.
    pub sealed: Option<String>,
    pub names: Vec<String>,
}

fn names(row: &Row, i: i32) -> Result<Vec<String>> {
    serde_json::from_value(json_col(row, i)?).map_err(|e| Error::internal("a stored list of names", e))
}

pub(super) fn server(row: &Row) -> Result<McpServer> {
    Ok(McpServer {
        id: int(row, 0)?,
        name: text(row, 1)?,
        owner: opt_int(row, 2)?,
        url: text(row, 3)?,
        header_names: names(row, 4)?,
        allowed_tools: names(row, 5)?,
        is_active: flag(row, 6)?,
        created_at: text(row, 7)?,
    })
}

async fn find(conn: Sql<'_>, id: i64) -> Result<Option<McpServer>> {
    first(conn.query(&format!("SELECT {COLUMNS} FROM mcp_servers WHERE id = ?1"), [id]).await?, server).await
}

fn link(row: &Row) -> Result<AgentMcpLink> {
    Ok(AgentMcpLink {
        id: int(row, 0)?,
        agent: int(row, 1)?,
        mcp_server: int(row, 2)?,
        enabled: flag(row, 3)?,
        require_approval: flag(row, 4)?,
    })
}

/// The servers a turn of agent `?1` uses: every enabled link of an active server, with its sealed headers.
pub(super) const LINKED: &str = "SELECT s.id, s.name, s.url, s.headers_sealed, s.allowed_tools, l.require_approval
 FROM agent_mcp_servers l JOIN mcp_servers s ON s.id = l.mcp_server_id
 WHERE l.agent_id = ?1 AND l.enabled = 1 AND s.is_active = 1 ORDER BY l.id";

pub(super) fn linked(row: &Row) -> Result<LinkedMcpServer> {
    Ok(LinkedMcpServer {
        id: int(row, 0)?,
        name: text(row, 1)?,
        url: text(row, 2)?,
        headers_sealed: opt_text(row, 3)?,
        allowed_tools: names(row, 4)?,
        require_approval: flag(row, 5)?,
    })
}

fn encode(names: &[String]) -> String {
    serde_json::Value::from(names).to_string()
}

impl Store {
    /// The servers the viewer sees: its own and the ones without an owner (staff: all).
    pub async fn list_mcp_servers(&self, viewer: &Caller, slice: Slice) -> Result<Listed<McpServer>> {
        let conn = self.conn().await;
        let filter = "(?1 OR owner_id = ?2 OR owner_id IS NULL)";
        listed(
            &conn,
            (&format!("SELECT COUNT(*) FROM mcp_servers WHERE {filter}"), vals(params![viewer.is_staff, viewer.id])?),
            (
                &format!("SELECT {COLUMNS} FROM mcp_servers WHERE {filter} ORDER BY id LIMIT ?3 OFFSET ?4"),
                vals(params![viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            server,
        )
        .await
    }

    pub async fn get_mcp_server(&self, viewer: &Caller, id: i64) -> Result<McpServer> {
        find(self.conn().await.sql(), id).await?.filter(|s| viewer.sees(s.owner)).ok_or(Error::NotFound)
    }

    pub async fn create_mcp_server(
        &self,
        owner: Option<UserId>,
        fields: McpServerFields,
        headers: SealedHeaders,
    ) -> Result<McpServer> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                &format!(
                    "INSERT INTO mcp_servers (name, owner_id, url, headers_sealed, header_names, allowed_tools, is_active, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING {COLUMNS}"
                ),
                params![
                    fields.name,
                    opt_int_value(owner),
                    fields.url,
                    super::opt_text_value(headers.sealed),
                    encode(&headers.names),
                    encode(&fields.allowed_tools),
                    fields.is_active,
                    self.now()
                ],
            )
            .await?;
        first(rows, server).await?.ok_or_else(|| Error::bug("INSERT returned no row"))
    }

    /// Reads the server to change (404 unless visible, 403 unless the viewer's) for `apply`.
    pub async fn mcp_server_to_change(&self, viewer: &Caller, id: i64) -> Result<McpServer> {
        let existing = find(self.conn().await.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        Ok(existing)
    }

    /// Writes a server's fields (`headers`: `None` keeps the stored ones), if its owner is still the one
    /// checked.
    pub async fn update_mcp_server(
        &self,
        existing: &McpServer,
        fields: McpServerFields,
        headers: Option<SealedHeaders>,
    ) -> Result<McpServer> {
        let keep = headers.is_none();
        let headers = headers.unwrap_or(SealedHeaders { sealed: None, names: Vec::new() });
        let conn = self.conn().await;
        let rows = conn
            .query(
                &format!(
                    "UPDATE mcp_servers SET name = ?1, url = ?2, allowed_tools = ?3, is_active = ?4,
                     headers_sealed = CASE WHEN ?5 THEN headers_sealed ELSE ?6 END,
                     header_names = CASE WHEN ?5 THEN header_names ELSE ?7 END
                     WHERE id = ?8 AND owner_id IS ?9 RETURNING {COLUMNS}"
                ),
                params![
                    fields.name,
                    fields.url,
                    encode(&fields.allowed_tools),
                    fields.is_active,
                    keep,
                    super::opt_text_value(headers.sealed),
                    encode(&headers.names),
                    existing.id,
                    opt_int_value(existing.owner)
                ],
            )
            .await?;
        first(rows, server).await?.ok_or(Error::NotFound)
    }

    /// Deletes the server and its agent links.
    pub async fn delete_mcp_server(&self, viewer: &Caller, id: i64) -> Result<()> {
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        viewer.check_change(existing.owner)?;
        conn.execute("DELETE FROM mcp_servers WHERE id = ?1", [id]).await?;
        Ok(())
    }
}

// Agents' links to servers.

async fn find_link(conn: Sql<'_>, id: i64) -> Result<Option<AgentMcpLink>> {
    first(conn.query(&format!("SELECT {LINK_COLUMNS} FROM agent_mcp_servers WHERE id = ?1"), [id]).await?, link).await
}

/// Both ends must exist for the viewer, the agent must be the viewer's to change, the agent's links are
/// bounded, and the pair must not be linked already (by another link than `except`).
async fn check(conn: &Conn<'_>, viewer: &Caller, fields: &McpLinkFields, except: Option<i64>) -> Result<()> {
    let mut errors = FieldErrors::default();
    let mut batch = Batch::read();
    let agent = batch.push(format!("SELECT {} FROM agent_profiles WHERE id = ?1", agents::COLUMNS), [fields.agent])?;
    let found = batch.push(format!("SELECT {COLUMNS} FROM mcp_servers WHERE id = ?1"), [fields.mcp_server])?;
    let linked = batch.push(
        "SELECT COUNT(*) FROM agent_mcp_servers WHERE agent_id = ?1 AND id IS NOT ?2",
        params![fields.agent, except],
    )?;
    let taken = batch.push(
        "SELECT id FROM agent_mcp_servers WHERE agent_id = ?1 AND mcp_server_id = ?2 AND id IS NOT ?3",
        params![fields.agent, fields.mcp_server, except],
    )?;
    let mut out = conn.batch(batch).await?;
    let count = out.take(linked)?.rows().next().map(|r| int(&r, 0)).transpose()?.unwrap_or(0);
    if usize::try_from(count).unwrap_or(usize::MAX) >= SERVERS_PER_AGENT {
        errors.add("agent", format!("An agent may have at most {SERVERS_PER_AGENT} MCP servers."));
    }
    match out.take(agent)?.rows().next().map(|r| agents::agent(&r)).transpose()?.filter(|a| viewer.sees(a.owner)) {
        None => errors.add("agent", missing_pk(fields.agent)),
        Some(agent) if !viewer.may_change(agent.owner) => {
            errors.add("agent", "MCP servers can only be linked to your own agents.");
        }
        Some(_) => {}
    }
    if out.take(found)?.rows().next().map(|r| server(&r)).transpose()?.filter(|s| viewer.sees(s.owner)).is_none() {
        errors.add("mcp_server", missing_pk(fields.mcp_server));
    }
    errors.into_result()?;
    if out.take(taken)?.rows().next().is_some() {
        return Err(Error::field("non_field_errors", NOT_UNIQUE));
    }
    Ok(())
}

fn unique_to_field(err: Error) -> Error {
    if PAIR.violated_by(&err) { Error::field("non_field_errors", NOT_UNIQUE) } else { err }
}

/// A link the viewer may see (its agent is visible), with the agent's owner.
async fn visible(conn: Sql<'_>, viewer: &Caller, id: i64) -> Result<(AgentMcpLink, Option<UserId>)> {
    let link = find_link(conn, id).await?.ok_or(Error::NotFound)?;
    let agent = agents::find(conn, link.agent).await?.filter(|a| viewer.sees(a.owner)).ok_or(Error::NotFound)?;
    Ok((link, agent.owner))
}

impl Store {
    /// Links of the agents the viewer sees.
    pub async fn list_agent_mcp_servers(
        &self,
        viewer: &Caller,
        agent: Option<i64>,
        slice: Slice,
    ) -> Result<Listed<AgentMcpLink>> {
        let conn = self.conn().await;
        let filter = "(?1 IS NULL OR agent_id = ?1) AND agent_id IN
            (SELECT id FROM agent_profiles WHERE ?2 OR owner_id = ?3 OR owner_id IS NULL)";
        listed(
            &conn,
            (
                &format!("SELECT COUNT(*) FROM agent_mcp_servers WHERE {filter}"),
                vals(params![opt_int_value(agent), viewer.is_staff, viewer.id])?,
            ),
            (
                &format!("SELECT {LINK_COLUMNS} FROM agent_mcp_servers WHERE {filter} ORDER BY id LIMIT ?4 OFFSET ?5"),
                vals(params![opt_int_value(agent), viewer.is_staff, viewer.id, slice.limit, slice.offset])?,
            ),
            link,
        )
        .await
    }

    pub async fn get_agent_mcp_server(&self, viewer: &Caller, id: i64) -> Result<AgentMcpLink> {
        Ok(visible(self.conn().await.sql(), viewer, id).await?.0)
    }

    pub async fn create_agent_mcp_server(&self, viewer: &Caller, fields: McpLinkFields) -> Result<AgentMcpLink> {
        let conn = self.conn().await;
        check(&conn, viewer, &fields, None).await?;
        let rows = conn
            .query(
                &format!(
                    "INSERT INTO agent_mcp_servers (agent_id, mcp_server_id, enabled, require_approval)
                     VALUES (?1, ?2, ?3, ?4) RETURNING {LINK_COLUMNS}"
                ),
                params![fields.agent, fields.mcp_server, fields.enabled, fields.require_approval],
            )
            .await
            .map_err(unique_to_field)?;
        first(rows, link).await.map_err(unique_to_field)?.ok_or_else(|| Error::bug("INSERT returned no row"))
    }

    pub async fn update_agent_mcp_server(
        &self,
        viewer: &Caller,
        id: i64,
        changes: McpLinkChanges,
    ) -> Result<AgentMcpLink> {
        let conn = self.conn().await;
        let (existing, agent_owner) = visible(conn.sql(), viewer, id).await?;
        viewer.check_change(agent_owner)?;
        let fields = changes.apply(McpLinkFields::from(&existing));
        check(&conn, viewer, &fields, Some(id)).await?;
        let rows = conn
            .query(
                &format!(
                    "UPDATE agent_mcp_servers SET agent_id = ?1, mcp_server_id = ?2, enabled = ?3, require_approval = ?4
                     WHERE id = ?5 RETURNING {LINK_COLUMNS}"
                ),
                params![fields.agent, fields.mcp_server, fields.enabled, fields.require_approval, id],
            )
            .await
            .map_err(unique_to_field)?;
        first(rows, link).await.map_err(unique_to_field)?.ok_or(Error::NotFound)
    }

    pub async fn delete_agent_mcp_server(&self, viewer: &Caller, id: i64) -> Result<()> {
        let conn = self.conn().await;
        let (_, agent_owner) = visible(conn.sql(), viewer, id).await?;
        viewer.check_change(agent_owner)?;
        conn.execute("DELETE FROM agent_mcp_servers WHERE id = ?1", [id]).await?;
        Ok(())
    }
}
