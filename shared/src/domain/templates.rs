use serde::Serialize;
use utoipa::ToSchema;

use super::ids::{AgentId, UserId};
use super::wire::{Bool, KeyField, Text, body};
use crate::config::Limits;

/// A reusable prompt fragment appended to an agent's instructions. Scoped to one agent, or global (agent null).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "Support Template", "template": "Answer as {{company}} support.",
    "owner": null, "agent": null, "is_default": true, "created_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Template {
    pub id: i64,
    pub name: String,
    pub template: String,
    #[schema(value_type = Option<i64>)]
    pub owner: Option<UserId>,
    /// The agent this template is scoped to; null for a global template.
    #[schema(value_type = Option<i64>)]
    pub agent: Option<AgentId>,
    /// At most one default per scope (one agent's templates, or the global ones).
    pub is_default: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateFields {
    pub name: String,
    pub template: String,
    pub agent: Option<AgentId>,
    pub is_default: bool,
}

impl From<&Template> for TemplateFields {
    fn from(t: &Template) -> Self {
        Self { name: t.name.clone(), template: t.template.clone(), agent: t.agent, is_default: t.is_default }
    }
}

body! {
    /// The request body of template writes, for the OpenAPI document.
    #[schema(name = "TemplateWrite", example = {"name": "Support Template",
        "template": "Answer as {{company}} support.", "agent": null, "is_default": true})]
    pub struct TemplateChanges {
        /// Staff only, on create: the owner's id, or null for a global template. Others always own what they
        /// create.
        owner: Option<UserId> = UserId::NULLABLE_PK,
        /// At most 200 characters, no control, bidi-override or zero-width character.
        name: String = Text::name(|_| Limits::NAME_CHARS).required(),
        /// `{{name}}` placeholders are filled from a conversation's `variables`; at most `LAMBENT_MAX_PROMPT_CHARS`
        /// characters (default 32000).
        template: String = Text::new().max(|limits| limits.prompt_chars).required(),
        /// An agent id, or null for a global template.
        agent: Option<AgentId> = AgentId::NULLABLE_PK,
        is_default: bool = Bool,
    }
}

impl TemplateChanges {
    pub fn apply(self, base: TemplateFields) -> TemplateFields {
        TemplateFields {
            name: self.name.unwrap_or(base.name),
            template: self.template.unwrap_or(base.template),
            agent: self.agent.unwrap_or(base.agent),
            is_default: self.is_default.unwrap_or(base.is_default),
        }
    }
}

/// Which templates a list asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateScope {
    All,
    Agent(i64),
    Global,
}
