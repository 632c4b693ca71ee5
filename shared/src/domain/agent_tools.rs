use serde::Serialize;
use utoipa::ToSchema;

use super::ids::AgentId;
use super::wire::{Bool, KeyField, body, present};

/// A tool linked to an agent; `enabled` switches it off without unlinking.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "agent": 1, "tool": 1, "enabled": true}))]
pub struct AgentToolLink {
    pub id: i64,
    #[schema(value_type = i64)]
    pub agent: AgentId,
    pub tool: i64,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkFields {
    pub agent: AgentId,
    pub tool: i64,
    pub enabled: bool,
}

impl From<&AgentToolLink> for LinkFields {
    fn from(l: &AgentToolLink) -> Self {
        Self { agent: l.agent, tool: l.tool, enabled: l.enabled }
    }
}

body! {
    /// The request body of agent-tool link writes, for the OpenAPI document.
    #[schema(name = "AgentToolLinkWrite", example = {"agent": 1, "tool": 1, "enabled": true})]
    pub struct LinkChanges {
        agent: AgentId = AgentId::PK.required(),
        tool: i64 = i64::PK.required(),
        /// Default true.
        enabled: bool = Bool,
    }
}

impl LinkChanges {
    /// For a create, `parse` has already required `agent` and `tool`.
    pub fn into_new(self) -> crate::error::Result<LinkFields> {
        Ok(LinkFields {
            agent: present("agent", self.agent)?,
            tool: present("tool", self.tool)?,
            enabled: self.enabled.unwrap_or(true),
        })
    }

    pub fn apply(self, base: LinkFields) -> LinkFields {
        LinkFields {
            agent: self.agent.unwrap_or(base.agent),
            tool: self.tool.unwrap_or(base.tool),
            enabled: self.enabled.unwrap_or(base.enabled),
        }
    }
}
