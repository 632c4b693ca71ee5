use serde::Serialize;
use utoipa::ToSchema;

use super::ids::AgentId;
use super::wire::{Bool, KeyField, body, present};

/// A tool linked to an agent; `enabled` switches it off without unlinking.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "agent": 1, "tool": 1, "enabled": true, "require_approval": false}))]
pub struct AgentToolLink {
    pub id: i64,
    #[schema(value_type = i64)]
    pub agent: AgentId,
    pub tool: i64,
    pub enabled: bool,
    /// A call of the tool waits for a person's decision (`POST /api/agent/approvals/`) before it runs.
    pub require_approval: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkFields {
    pub agent: AgentId,
    pub tool: i64,
    pub enabled: bool,
    pub require_approval: bool,
}

impl From<&AgentToolLink> for LinkFields {
    fn from(l: &AgentToolLink) -> Self {
        Self { agent: l.agent, tool: l.tool, enabled: l.enabled, require_approval: l.require_approval }
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
        /// Default false: true makes every call of the tool wait for `POST /api/agent/approvals/` (the tool
        /// then runs on the server, with its executor, once approved).
        require_approval: bool = Bool,
    }
}

impl LinkChanges {
    /// For a create, `parse` has already required `agent` and `tool`.
    pub fn into_new(self) -> crate::error::Result<LinkFields> {
        Ok(LinkFields {
            agent: present("agent", self.agent)?,
            tool: present("tool", self.tool)?,
            enabled: self.enabled.unwrap_or(true),
            require_approval: self.require_approval.unwrap_or(false),
        })
    }

    pub fn apply(self, base: LinkFields) -> LinkFields {
        LinkFields {
            agent: self.agent.unwrap_or(base.agent),
            tool: self.tool.unwrap_or(base.tool),
            enabled: self.enabled.unwrap_or(base.enabled),
            require_approval: self.require_approval.unwrap_or(base.require_approval),
        }
    }
}
