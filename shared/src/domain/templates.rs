use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::input::{Input, Mode};
use crate::config::Limits;
use crate::error::Result;

/// A reusable prompt fragment appended to an agent's instructions. Scoped to one agent, or global (agent null).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "Support Template", "template": "Answer as {{company}} support.",
    "owner": null, "agent": null, "is_default": true, "created_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Template {
    pub id: i64,
    pub name: String,
    pub template: String,
    pub owner: Option<i64>,
    /// The agent this template is scoped to; null for a global template.
    pub agent: Option<i64>,
    /// At most one default per scope (one agent's templates, or the global ones).
    pub is_default: bool,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateFields {
    pub name: String,
    pub template: String,
    pub agent: Option<i64>,
    pub is_default: bool,
}

impl From<&Template> for TemplateFields {
    fn from(t: &Template) -> Self {
        Self { name: t.name.clone(), template: t.template.clone(), agent: t.agent, is_default: t.is_default }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateChanges {
    /// Staff only, on create: the owner (`null` = global). Others always own what they create.
    pub owner: Option<Option<i64>>,
    pub name: Option<String>,
    pub template: Option<String>,
    pub agent: Option<Option<i64>>,
    pub is_default: Option<bool>,
}

impl TemplateChanges {
    pub fn parse(body: &Value, mode: Mode, limits: &Limits) -> Result<Self> {
        let mut input = Input::new(body, mode)?;
        let changes = Self {
            owner: input.pk("owner", false, true),
            name: input.name("name", true, Limits::NAME_CHARS),
            template: input.string("template", true, Some(limits.prompt_chars), false),
            agent: input.pk("agent", false, true),
            is_default: input.boolean("is_default"),
        };
        input.finish()?;
        Ok(changes)
    }

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

/// The request body of template writes, for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"name": "Support Template", "template": "Answer as {{company}} support.", "agent": null,
    "is_default": true}))]
#[allow(dead_code)]
pub struct TemplateWrite {
    /// At most 200 characters, no control, bidi-override or zero-width character.
    #[schema(max_length = 200)]
    name: String,
    /// `{{name}}` placeholders are filled from a conversation's `variables`; at most `LAMBENT_MAX_PROMPT_CHARS`
    /// characters (default 32000).
    #[schema(max_length = 32000)]
    template: String,
    /// An agent id, or null for a global template.
    agent: Option<i64>,
    #[schema(nullable = false)]
    is_default: Option<bool>,
}
