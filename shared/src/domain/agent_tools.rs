use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::input::{Input, Mode};
use crate::error::Result;

/// A tool linked to an agent; `enabled` switches it off without unlinking.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "agent": 1, "tool": 1, "enabled": true}))]
pub struct AgentToolLink {
    pub id: i64,
    pub agent: i64,
    pub tool: i64,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinkFields {
    pub agent: i64,
    pub tool: i64,
    pub enabled: bool,
}

impl From<&AgentToolLink> for LinkFields {
    fn from(l: &AgentToolLink) -> Self {
        Self { agent: l.agent, tool: l.tool, enabled: l.enabled }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkChanges {
    pub agent: Option<i64>,
    pub tool: Option<i64>,
    pub enabled: Option<bool>,
}

impl LinkChanges {
    pub fn parse(body: &Value, mode: Mode) -> Result<Self> {
        let mut input = Input::new(body, mode)?;
        let changes = Self {
            agent: input.pk("agent", true, false).flatten(),
            tool: input.pk("tool", true, false).flatten(),
            enabled: input.boolean("enabled"),
        };
        input.finish()?;
        Ok(changes)
    }

    /// For a create, `parse` has already required `agent` and `tool`.
    pub fn into_new(self) -> LinkFields {
        LinkFields {
            agent: self.agent.unwrap_or_default(),
            tool: self.tool.unwrap_or_default(),
            enabled: self.enabled.unwrap_or(true),
        }
    }

    pub fn apply(self, base: LinkFields) -> LinkFields {
        LinkFields {
            agent: self.agent.unwrap_or(base.agent),
            tool: self.tool.unwrap_or(base.tool),
            enabled: self.enabled.unwrap_or(base.enabled),
        }
    }
}

/// The request body of agent-tool link writes, for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"agent": 1, "tool": 1, "enabled": true}))]
#[schema(as = AgentToolLinkWrite)]
#[allow(dead_code)]
pub struct LinkWrite {
    agent: i64,
    tool: i64,
    /// Default true.
    #[schema(nullable = false)]
    enabled: Option<bool>,
}
