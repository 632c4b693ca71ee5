use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::input::{Input, Mode};
use crate::config::Limits;
use crate::error::Result;

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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentChanges {
    /// Staff only, on create: the owner (`null` = global). Others always own what they create.
    pub owner: Option<Option<i64>>,
    pub name: Option<String>,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub is_default: Option<bool>,
}

impl AgentChanges {
    pub fn parse(body: &Value, mode: Mode, limits: &Limits) -> Result<Self> {
        let mut input = Input::new(body, mode)?;
        let changes = Self {
            owner: input.pk("owner", false, true),
            name: input.name("name", true, Limits::NAME_CHARS),
            model: input.name("model", false, Limits::MODEL_CHARS),
            system_prompt: input.string("system_prompt", false, Some(limits.prompt_chars), true),
            is_default: input.boolean("is_default"),
        };
        input.finish()?;
        Ok(changes)
    }

    pub fn apply(self, base: AgentFields) -> AgentFields {
        AgentFields {
            name: self.name.unwrap_or(base.name),
            model: self.model.unwrap_or(base.model),
            system_prompt: self.system_prompt.unwrap_or(base.system_prompt),
            is_default: self.is_default.unwrap_or(base.is_default),
        }
    }
}

/// The request body of agent writes, for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"name": "Default Agent", "model": "gpt-4.1",
    "system_prompt": "You are a helpful assistant.", "is_default": true}))]
#[allow(dead_code)]
pub struct AgentWrite {
    /// Required on create and PUT; at most 200 characters, no control, bidi-override or zero-width character.
    #[schema(max_length = 200)]
    name: String,
    /// Default `gpt-4.1`; at most 100 characters.
    #[schema(nullable = false, max_length = 100)]
    model: Option<String>,
    /// At most `LAMBENT_MAX_PROMPT_CHARS` characters (default 32000).
    #[schema(nullable = false, max_length = 32000)]
    system_prompt: Option<String>,
    #[schema(nullable = false)]
    is_default: Option<bool>,
}
