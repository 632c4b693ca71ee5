use serde::Serialize;
use utoipa::ToSchema;

use super::ids::{AgentId, UserId};
use super::input::{Input, Mode};
use super::wire::{Bool, KeyField, NullableCount, Text, body};
use crate::config::{Config, DEFAULT_PROVIDER, Limits};
use crate::error::Result;

/// The largest input budget an agent may set, in tokens (far above any model's context window).
pub const MAX_INPUT_BUDGET: i64 = 100_000_000;

pub const DEFAULT_MODEL: &str = "gpt-4.1";

/// An agent profile: which model answers, with which system prompt.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "Default Agent", "owner": null, "model": "gpt-4.1",
    "system_prompt": "You are a helpful assistant.", "is_default": true, "provider": "openai", "input_budget": null,
    "created_at": "2026-11-25T20:14:11.000000Z", "updated_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Agent {
    #[schema(value_type = i64)]
    pub id: AgentId,
    pub name: String,
    /// The owning user's id; null for a global agent.
    #[schema(value_type = Option<i64>)]
    pub owner: Option<UserId>,
    pub model: String,
    pub system_prompt: String,
    /// The owner's default agent, used when a conversation names none. At most one per owner.
    pub is_default: bool,
    /// The model provider it talks to (`GET /api/providers/` lists them).
    pub provider: String,
    /// With a provider whose state is `local`: the most tokens of history a request carries (estimated from
    /// stored usage); over it the oldest whole turns are left out. Null: no limit.
    pub input_budget: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentFields {
    pub name: String,
    pub model: String,
    pub system_prompt: String,
    pub is_default: bool,
    pub provider: String,
    pub input_budget: Option<i64>,
}

impl Default for AgentFields {
    fn default() -> Self {
        Self {
            name: String::new(),
            model: DEFAULT_MODEL.to_owned(),
            system_prompt: String::new(),
            is_default: false,
            provider: DEFAULT_PROVIDER.to_owned(),
            input_budget: None,
        }
    }
}

impl From<&Agent> for AgentFields {
    fn from(a: &Agent) -> Self {
        Self {
            name: a.name.clone(),
            model: a.model.clone(),
            system_prompt: a.system_prompt.clone(),
            is_default: a.is_default,
            provider: a.provider.clone(),
            input_budget: a.input_budget,
        }
    }
}

body! {
    /// The request body of agent writes, for the OpenAPI document.
    #[schema(name = "AgentWrite", example = {"name": "Default Agent", "model": "gpt-4.1",
        "system_prompt": "You are a helpful assistant.", "is_default": true, "provider": "openai"})]
    pub struct AgentChanges {
        /// Staff only, on create: the owner's id, or null for a global agent. Others always own what they
        /// create.
        owner: Option<UserId> = UserId::NULLABLE_PK,
        /// Required on create and PUT; at most 200 characters, no control, bidi-override or zero-width character.
        name: String = Text::name(|_| Limits::NAME_CHARS).required(),
        /// Default `gpt-4.1`; at most 100 characters.
        model: String = Text::name(|_| Limits::MODEL_CHARS),
        /// At most `LAMBENT_MAX_PROMPT_CHARS` characters (default 32000).
        system_prompt: String = Text::new().blank().max(|limits| limits.prompt_chars),
        is_default: bool = Bool,
        /// Default `openai`; one of the configured providers (`GET /api/providers/`). On create without a
        /// `model`, the provider's default model (if it has one) is the agent's.
        provider: String = Text::new().max(|_| PROVIDER_CHARS),
        /// Tokens of history a request may carry with a `local`-state provider (1 to 100000000); null: no limit.
        input_budget: Option<i64> = NullableCount { max: MAX_INPUT_BUDGET },
    }
}

/// The longest provider name a write may give (names are the configuration's, far shorter).
const PROVIDER_CHARS: usize = 40;

impl AgentChanges {
    /// Reads an agent write against the configuration: the body's fields, then `provider` must name a
    /// provider the configuration defines (its error reported with the others), and an agent created without
    /// a `model` gets its provider's default model, if it has one.
    pub fn parse_configured(body: &serde_json::Value, mode: Mode, config: &Config) -> Result<Self> {
        let mut input = Input::new(body, mode)?;
        let mut changes = Self::read(&mut input, &config.limits);
        let name = changes.provider.as_deref().unwrap_or(DEFAULT_PROVIDER);
        match config.provider(name) {
            None => {
                let known: Vec<&str> = config.providers.iter().map(|p| p.name.as_str()).collect();
                input.error("provider", format!("\"{name}\" is not a configured provider: {}.", known.join(", ")));
            }
            Some(provider) if mode == Mode::Create && changes.model.is_none() => {
                changes.model = provider.default_model.clone();
            }
            Some(_) => {}
        }
        input.finish()?;
        Ok(changes)
    }

    pub fn apply(self, base: AgentFields) -> AgentFields {
        AgentFields {
            name: self.name.unwrap_or(base.name),
            model: self.model.unwrap_or(base.model),
            system_prompt: self.system_prompt.unwrap_or(base.system_prompt),
            is_default: self.is_default.unwrap_or(base.is_default),
            provider: self.provider.unwrap_or(base.provider),
            input_budget: self.input_budget.unwrap_or(base.input_budget),
        }
    }
}
