use serde::Serialize;
use utoipa::ToSchema;

use super::wire::{Bool, NullablePk, Text, body};
use crate::config::Limits;

pub const DEFAULT_MODEL: &str = "gpt-4.1";

/// An agent profile: which model answers, with which system prompt.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "Default Agent", "owner": null, "model": "gpt-4.1",
    "system_prompt": "You are a helpful assistant.", "is_default": true,
    "created_at": "2026-11-25T20:14:11.000000Z", "updated_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Agent {
    pub id: i64,
    pub name: String,
    /// The owning user's id; null for a global agent.
    pub owner: Option<i64>,
    pub model: String,
    pub system_prompt: String,
    /// The owner's default agent, used when a conversation names none. At most one per owner.
    pub is_default: bool,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentFields {
    pub name: String,
    pub model: String,
    pub system_prompt: String,
    pub is_default: bool,
}

impl Default for AgentFields {
    fn default() -> Self {
        Self { name: String::new(), model: DEFAULT_MODEL.to_owned(), system_prompt: String::new(), is_default: false }
    }
}

impl From<&Agent> for AgentFields {
    fn from(a: &Agent) -> Self {
        Self {
            name: a.name.clone(),
            model: a.model.clone(),
            system_prompt: a.system_prompt.clone(),
            is_default: a.is_default,
        }
    }
}

body! {
    /// The request body of agent writes, for the OpenAPI document.
    #[schema(name = "AgentWrite", example = {"name": "Default Agent", "model": "gpt-4.1",
        "system_prompt": "You are a helpful assistant.", "is_default": true})]
    pub struct AgentChanges {
        /// Staff only, on create: the owner's id, or null for a global agent. Others always own what they
        /// create.
        owner: Option<i64> = NullablePk,
        /// Required on create and PUT; at most 200 characters, no control, bidi-override or zero-width character.
        name: String = Text::name(|_| Limits::NAME_CHARS).required(),
        /// Default `gpt-4.1`; at most 100 characters.
        model: String = Text::name(|_| Limits::MODEL_CHARS),
        /// At most `LAMBENT_MAX_PROMPT_CHARS` characters (default 32000).
        system_prompt: String = Text::new().blank().max(|limits| limits.prompt_chars),
        is_default: bool = Bool,
    }
}

impl AgentChanges {
    pub fn apply(self, base: AgentFields) -> AgentFields {
        AgentFields {
            name: self.name.unwrap_or(base.name),
            model: self.model.unwrap_or(base.model),
            system_prompt: self.system_prompt.unwrap_or(base.system_prompt),
            is_default: self.is_default.unwrap_or(base.is_default),
        }
    }
}
