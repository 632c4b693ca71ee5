//! Reads a conversation turn needs: the default agent, an agent's tools and its instruction templates.

use libsql::params;

use super::{Store, agents, collect, first, opt_int_value};
use crate::domain::{Agent, Template, Tool};
use crate::error::Result;

impl Store {
    /// The default agent: an owner's own default first, then the global one.
    pub async fn default_agent(&self, owner: Option<i64>) -> Result<Option<Agent>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT id FROM agent_profiles WHERE is_default = 1 AND (owner_id IS ?1 OR owner_id IS NULL)
                 ORDER BY owner_id IS NULL, id LIMIT 1",
                [opt_int_value(owner)],
            )
            .await?;
        match first(rows, |r| super::int(r, 0)).await? {
            Some(id) => agents::find(conn.sql(), id).await,
            None => Ok(None),
        }
    }

    /// The tools a model may call for this agent: enabled links to active tools, in link order.
    pub async fn agent_active_tools(&self, agent: i64) -> Result<Vec<Tool>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT t.id, t.name, t.owner_id, t.description, t.tool_type, t.parameters, t.format, t.is_active,
                        t.created_at, t.executor
                 FROM agent_profile_tools l JOIN agent_tools t ON t.id = l.tool_id
                 WHERE l.agent_id = ?1 AND l.enabled = 1 AND t.is_active = 1 ORDER BY l.id",
                [agent],
            )
            .await?;
        collect(rows, super::tools::tool).await
    }

    /// The templates that extend an agent's instructions: its own default templates if it has any, otherwise
    /// the global defaults (of its owner, and ownerless ones), in creation order.
    pub async fn instruction_templates(&self, agent: &Agent) -> Result<Vec<Template>> {
        let conn = self.conn().await;
        let scoped = conn
            .query(
                &format!(
                    "SELECT {} FROM agent_prompt_templates WHERE is_default = 1 AND agent_id = ?1 ORDER BY id",
                    super::templates::COLUMNS
                ),
                [agent.id],
            )
            .await?;
        let scoped = collect(scoped, super::templates::template).await?;
        if !scoped.is_empty() {
            return Ok(scoped);
        }
        let global = conn
            .query(
                &format!(
                    "SELECT {} FROM agent_prompt_templates
                     WHERE is_default = 1 AND agent_id IS NULL AND (owner_id IS ?1 OR owner_id IS NULL) ORDER BY id",
                    super::templates::COLUMNS
                ),
                params![opt_int_value(agent.owner)],
            )
            .await?;
        collect(global, super::templates::template).await
    }
}
