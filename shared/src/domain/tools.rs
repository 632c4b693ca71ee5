use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::executor::Executor;
use super::ids::UserId;
use super::wire::{Bool, JsonObject, KeyField, NullableJson, Text, body, choice};
use crate::config::Limits;
use crate::error::{FieldErrors, Result};

/// The two kinds of tool the Responses API accepts from us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolType {
    /// Arguments are JSON matching `parameters` (a JSON Schema object).
    Function,
    /// Freeform text input, optionally constrained by `format` (a grammar).
    Custom,
}

impl ToolType {
    pub const CHOICES: [&'static str; 2] = ["function", "custom"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Function => "function",
            Self::Custom => "custom",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "function" => Some(Self::Function),
            "custom" => Some(Self::Custom),
            _ => None,
        }
    }
}

/// A tool call the model made, complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub call_id: String,
    pub name: String,
    pub kind: ToolType,
    /// A function call's JSON arguments, or a custom call's free-form input.
    pub arguments: String,
}

/// A tool an agent may call.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "get_weather", "owner": null, "description": "Current weather for a city.",
    "tool_type": "function", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
    "required": ["city"]}, "format": null, "is_active": true, "created_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Tool {
    pub id: i64,
    pub name: String,
    #[schema(value_type = Option<i64>)]
    pub owner: Option<UserId>,
    pub description: String,
    pub tool_type: ToolType,
    /// JSON Schema of a function tool's arguments.
    #[schema(value_type = Object)]
    pub parameters: Value,
    /// A custom tool's input format (`{"type": "text"}` or `{"type": "grammar", "syntax": "lark"|"regex",
    /// "definition": "..."}`); null otherwise.
    #[schema(value_type = Option<Object>)]
    pub format: Option<Value>,
    /// How the server runs this tool when a conversation asks for `auto_execute_tools`: `{"type": "echo"}`,
    /// `{"type": "now"}` or `{"type": "http", "url": "https://...", "timeout_ms": 5000}`; null = the client runs it.
    /// Shown whole to the tool's owner and staff; anyone else reads an `http` URL's userinfo and query values
    /// as `REDACTED`.
    pub executor: Option<Executor>,
    pub is_active: bool,
    pub created_at: String,
}

impl Tool {
    /// The tool as `viewer` may see it: whole for its owner and staff, else with its executor's credentials
    /// hidden ([`Executor::redacted`]).
    pub fn seen_by(mut self, viewer: &super::Caller) -> Self {
        if !viewer.may_change(self.owner) {
            self.executor = self.executor.as_ref().map(Executor::redacted);
        }
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolFields {
    pub name: String,
    pub description: String,
    pub tool_type: ToolType,
    pub parameters: Value,
    pub format: Option<Value>,
    pub executor: Option<Executor>,
    pub is_active: bool,
}

impl Default for ToolFields {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            tool_type: ToolType::Function,
            parameters: empty_schema(),
            format: None,
            executor: None,
            is_active: true,
        }
    }
}

impl From<&Tool> for ToolFields {
    fn from(t: &Tool) -> Self {
        Self {
            name: t.name.clone(),
            description: t.description.clone(),
            tool_type: t.tool_type,
            parameters: t.parameters.clone(),
            format: t.format.clone(),
            executor: t.executor.clone(),
            is_active: t.is_active,
        }
    }
}

fn empty_schema() -> Value {
    json!({"type": "object", "properties": {}})
}

/// The prefix of the names MCP servers' tools are offered under (see `mcp_servers`): reserved.
pub const MCP_PREFIX: &str = "mcp__";

/// Whether a name is reserved for MCP tools (Lambent's own tools may not take it).
pub fn is_reserved_tool_name(name: &str) -> bool {
    name.starts_with(MCP_PREFIX)
}

/// OpenAI's rule for tool names.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A tool's `parameters` or `format` goes upstream with every turn of every agent it is linked to: its JSON
/// text is bounded ([`Limits::TOOL_SCHEMA_CHARS`]).
fn bounded_schema(value: &Value) -> Result<(), String> {
    if value.to_string().chars().count() > Limits::TOOL_SCHEMA_CHARS {
        return Err(format!("Ensure this JSON has no more than {} characters.", Limits::TOOL_SCHEMA_CHARS));
    }
    Ok(())
}

/// The `name` rule's message.
fn check_tool_name(name: &str) -> Result<(), String> {
    if is_reserved_tool_name(name) {
        Err(format!("Names starting with \"{MCP_PREFIX}\" are reserved for MCP servers' tools."))
    } else if is_valid_tool_name(name) {
        Ok(())
    } else {
        Err("Tool names are 1 to 64 characters: letters, digits, '_' and '-'.".into())
    }
}

body! {
    /// The request body of tool writes, for the OpenAPI document.
    #[schema(name = "ToolWrite", example = {"name": "get_weather", "description": "Current weather for a city.",
        "tool_type": "function", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
        "required": ["city"]}})]
    pub struct ToolChanges {
        /// Staff only, on create: the owner's id, or null for a global tool. Others always own what they
        /// create.
        owner: Option<UserId> = UserId::NULLABLE_PK,
        /// Required on create and PUT; unique; `^[a-zA-Z0-9_-]{1,64}$`, not starting with `mcp__` (reserved for MCP
        /// servers' tools).
        name: String = Text::new()
            .max(|_| Limits::TOOL_NAME_CHARS)
            .check(check_tool_name, Some("^[a-zA-Z0-9_-]{1,64}$"))
            .required(),
        /// At most 8000 characters.
        description: String = Text::new().blank().max(|_| Limits::TOOL_DESCRIPTION_CHARS),
        /// Default `function`.
        tool_type: ToolType = choice!(ToolType),
        /// A JSON Schema object for function tools; default `{"type": "object", "properties": {}}`. At most 32000
        /// characters as JSON text.
        parameters: Value = JsonObject { check: Some(bounded_schema) },
        /// Custom tools only. At most 32000 characters as JSON text.
        format: Option<Value> = NullableJson {
            parse: |value| bounded_schema(value).map(|()| value.clone()),
            schema: None,
            register: |_| {},
        },
        /// `{"type": "echo"}`, `{"type": "now"}` or `{"type": "http", "url": ..., "timeout_ms": ...}`.
        executor: Option<Executor> = NullableJson {
            parse: Executor::parse,
            schema: Some("ToolExecutor"),
            register: super::executor::document,
        },
        is_active: bool = Bool,
    }
}

impl ToolChanges {
    /// Merges onto `base` and checks the fields that depend on each other (type, parameters, format).
    pub fn apply(self, base: ToolFields) -> Result<ToolFields> {
        let fields = ToolFields {
            name: self.name.unwrap_or(base.name),
            description: self.description.unwrap_or(base.description),
            tool_type: self.tool_type.unwrap_or(base.tool_type),
            parameters: self.parameters.unwrap_or(base.parameters),
            format: self.format.unwrap_or(base.format),
            executor: self.executor.unwrap_or(base.executor),
            is_active: self.is_active.unwrap_or(base.is_active),
        };
        fields.validate()?;
        Ok(fields)
    }
}

impl ToolFields {
    fn validate(&self) -> Result<()> {
        let mut errors = FieldErrors::default();
        if self.tool_type == ToolType::Function {
            if let Err(message) = check_parameters_schema(&self.parameters) {
                errors.add("parameters", message);
            }
            if self.format.is_some() {
                errors.add("format", "Only custom tools take a format; function tools use parameters.");
            }
        }
        if let Some(format) = &self.format
            && let Err(message) = check_custom_format(format)
        {
            errors.add("format", message);
        }
        errors.into_result()
    }
}

/// A function tool's parameters must be a JSON Schema object, as the Responses API requires.
fn check_parameters_schema(schema: &Value) -> Result<(), String> {
    let Some(obj) = schema.as_object() else {
        return Err("Must be a JSON Schema object, e.g. {\"type\": \"object\", \"properties\": {}}.".into());
    };
    if obj.get("type").and_then(Value::as_str) != Some("object") {
        return Err("A function tool's schema must have \"type\": \"object\".".into());
    }
    if obj.get("properties").is_some_and(|p| !p.is_object()) {
        return Err("\"properties\" must be an object mapping argument names to schemas.".into());
    }
    if let Some(required) = obj.get("required") {
        let names = required.as_array().filter(|items| items.iter().all(Value::is_string));
        let Some(names) = names else {
            return Err("\"required\" must be a list of argument names.".into());
        };
        let properties = obj.get("properties").and_then(Value::as_object);
        if let Some(missing) =
            names.iter().filter_map(Value::as_str).find(|n| !properties.is_some_and(|p| p.contains_key(*n)))
        {
            return Err(format!("\"required\" names \"{missing}\", which is not in \"properties\"."));
        }
    }
    Ok(())
}

/// OpenAI's custom tool formats: plain text, or a Lark / regex grammar.
fn check_custom_format(format: &Value) -> Result<(), String> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(()),
        Some("grammar") => {
            let syntax = format.get("syntax").and_then(Value::as_str);
            if !matches!(syntax, Some("lark" | "regex")) {
                return Err("A grammar format needs \"syntax\": \"lark\" or \"regex\".".into());
            }
            match format.get("definition").and_then(Value::as_str) {
                Some(d) if !d.trim().is_empty() => Ok(()),
                _ => Err("A grammar format needs a non-empty \"definition\".".into()),
            }
        }
        _ => {
            Err("Must be {\"type\": \"text\"} or {\"type\": \"grammar\", \"syntax\": ..., \"definition\": ...}.".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn field_errors(result: Result<ToolFields>) -> Value {
        match result {
            Err(Error::Validation(e)) => e.to_json(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn tool_names_follow_openai_rules() {
        assert!(is_valid_tool_name("get_weather-2"));
        assert!(!is_valid_tool_name("get weather"));
        assert!(!is_valid_tool_name(""));
        assert!(!is_valid_tool_name(&"a".repeat(65)));
    }

    #[test]
    fn function_parameters_must_be_an_object_schema() {
        let changes = |p: Value| ToolChanges { parameters: Some(p), ..Default::default() };
        assert!(
            changes(json!({"type": "object", "properties": {"a": {}}, "required": ["a"]}))
                .apply(ToolFields::default())
                .is_ok()
        );
        for bad in [json!([]), json!({"type": "string"}), json!({"type": "object", "required": ["x"]})] {
            let errors = field_errors(changes(bad).apply(ToolFields::default()));
            assert!(errors.get("parameters").is_some(), "{errors}");
        }
    }

    #[test]
    fn only_custom_tools_take_a_format() {
        let custom = ToolChanges {
            tool_type: Some(ToolType::Custom),
            format: Some(Some(json!({"type": "grammar", "syntax": "lark", "definition": "start: \"x\""}))),
            ..Default::default()
        };
        assert!(custom.apply(ToolFields::default()).is_ok());
        let function = ToolChanges { format: Some(Some(json!({"type": "text"}))), ..Default::default() };
        assert!(field_errors(function.apply(ToolFields::default())).get("format").is_some());
    }
}
