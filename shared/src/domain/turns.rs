//! What a conversation request says, and how an agent's instructions are put together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};

use super::input::{Input, Mode};
use super::wire::{Bool, FieldKind, NullablePk, Pk, Text, body, present};
use crate::config::Config;
use crate::error::{Error, FieldErrors, Result};

body! {
    /// Request bodies of the agent endpoints, for the OpenAPI document.
    #[schema(name = "MessageWrite", example = {"message": "Hello", "agent_id": 1, "session_id": null,
        "auto_execute_tools": false, "variables": {"company": "Acme"}})]
    pub struct MessageWrite {
        /// The user's message; required, not blank.
        message: String = Text::new().max(|config| config.max_message_chars).required(),
        /// Default: the default agent.
        agent_id: Option<i64> = NullablePk,
        /// Default: a new session. Must belong to `agent_id` when both are given.
        session_id: Option<i64> = NullablePk,
        /// Run tools that have a server-side executor and continue in the same stream (at most 8 rounds).
        auto_execute_tools: bool = Bool,
        /// Values for `{{name}}` placeholders in the agent's templates.
        variables: Option<BTreeMap<String, String>> = Variables,
    }
}

/// `POST /api/agent/stream/` and `/api/agent/chat/`: a [`MessageWrite`] with its defaults applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageRequest {
    pub message: String,
    pub agent_id: Option<i64>,
    pub session_id: Option<i64>,
    pub auto_execute_tools: bool,
    pub variables: BTreeMap<String, String>,
}

impl MessageRequest {
    pub fn parse(body: &Value, config: &Config) -> Result<Self> {
        let write = MessageWrite::parse(body, Mode::Create, config)?;
        Ok(Self {
            message: present("message", write.message)?,
            agent_id: write.agent_id.flatten(),
            session_id: write.session_id.flatten(),
            auto_execute_tools: write.auto_execute_tools.unwrap_or(false),
            variables: write.variables.flatten().unwrap_or_default(),
        })
    }
}

/// Template variables: an object of names to strings (numbers and booleans are taken as their text).
struct Variables;

impl FieldKind for Variables {
    type Out = Option<BTreeMap<String, String>>;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Config) -> Option<Self::Out> {
        let map = match input.nullable_json(field)? {
            None => return Some(None),
            Some(Value::Object(map)) => map,
            Some(_) => {
                input.error(field, "Must be an object mapping template variable names to values.");
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for (name, value) in map {
            match value {
                Value::String(s) => drop(out.insert(name, s)),
                Value::Number(_) | Value::Bool(_) => drop(out.insert(name, value.to_string())),
                _ => input.error(field, format!("\"{name}\" must be a string, number or boolean.")),
            }
        }
        Some(Some(out))
    }

    fn schema(&self, _: &Config) -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::Object, Type::Null]))
            .additional_properties(Some(string()))
            .property_names(Some(string()))
            .into()
    }
}

/// One tool output a client submits: the call it answers, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    pub call_id: String,
    pub output: String,
}

body! {
    #[schema(name = "ToolOutputWrite", example = {"session_id": 1, "call_id": "call_123",
        "output": "{\"result\": \"ok\"}"})]
    pub struct ToolOutputWrite {
        session_id: i64 = Pk.required(),
        /// One output: the call it answers…
        call_id: String = Text::new().max(|_| 200),
        /// …and its text (JSON values are sent as JSON text).
        output: String = OutputText,
        /// Several outputs at once: `[{"call_id": ..., "output": ...}]`.
        outputs: Vec<ToolOutput> = Outputs,
        auto_execute_tools: bool = Bool,
    }
}

/// `POST /api/agent/tool-output/`: one output (`call_id`, `output`) or several (`outputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutputRequest {
    pub session_id: i64,
    /// The outputs, in the order given.
    pub outputs: Vec<ToolOutput>,
    pub auto_execute_tools: bool,
}

// The 202 answer of a tool-output submission, also kept as JSON for the key's retries (the store builds the
// same object in the submission's write, and a replay reads it back as this type).
/// Outputs still missing before the continuation can start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingToolCalls {
    pub pending_tool_calls: Vec<String>,
}

/// Tool outputs travel as text; JSON values are sent as their JSON text.
fn output_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// One output's text: any JSON value but null.
struct OutputText;

impl FieldKind for OutputText {
    type Out = String;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Config) -> Option<String> {
        let value = input.nullable_json(field)?;
        let text = value.as_ref().and_then(output_text);
        if text.is_none() {
            input.error(field, "This field may not be null.");
        }
        text
    }

    fn schema(&self, _: &Config) -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).into()
    }
}

/// Several outputs: a non-empty list of `{call_id, output}`.
struct Outputs;

impl FieldKind for Outputs {
    type Out = Vec<ToolOutput>;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Config) -> Option<Vec<ToolOutput>> {
        let items = match input.nullable_json(field)? {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => {
                input.error(field, "Must be a non-empty list of {\"call_id\", \"output\"} objects.");
                return Some(Vec::new());
            }
        };
        let mut outputs = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let call_id = item.get("call_id").and_then(Value::as_str).filter(|c| !c.trim().is_empty());
            match (call_id, item.get("output").and_then(output_text)) {
                (Some(call_id), Some(output)) => outputs.push(ToolOutput { call_id: call_id.to_owned(), output }),
                _ => input.error(field, format!("Item {i} needs a \"call_id\" and an \"output\".")),
            }
        }
        Some(outputs)
    }

    fn schema(&self, _: &Config) -> RefOr<Schema> {
        ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)).min_items(Some(1)).into()
    }
}

impl ToolOutputRequest {
    /// `outputs`, or else `call_id` and `output`, both then required.
    pub fn parse(body: &Value, config: &Config) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let write = ToolOutputWrite::read(&mut input, config);
        let outputs = match write.outputs {
            Some(outputs) => outputs,
            None => {
                for field in ["call_id", "output"].into_iter().filter(|field| body.get(field).is_none()) {
                    input.error(field, "This field is required.");
                }
                match (write.call_id, write.output) {
                    (Some(call_id), Some(output)) => vec![ToolOutput { call_id, output }],
                    _ => Vec::new(),
                }
            }
        };
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = outputs.iter().find(|o| !seen.insert(o.call_id.as_str())) {
            input.error("outputs", format!("\"{}\" is given more than once.", dup.call_id));
        }
        input.finish()?;
        Ok(Self {
            session_id: present("session_id", write.session_id)?,
            outputs,
            auto_execute_tools: write.auto_execute_tools.unwrap_or(false),
        })
    }
}

/// Fills `{{name}}` placeholders (spaces inside the braces allowed). Every missing variable is named.
pub fn render_template(template: &str, variables: &BTreeMap<String, String>, missing: &mut FieldErrors) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        match variables.get(name) {
            Some(value) => out.push_str(value),
            None => {
                missing.add("variables", format!("Missing value for template variable \"{name}\"."));
            }
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The `instructions` sent upstream: the system prompt, then each template, separated by blank lines.
pub fn build_instructions(
    system_prompt: &str,
    templates: &[&str],
    variables: &BTreeMap<String, String>,
) -> Result<Option<String>> {
    let mut missing = FieldErrors::default();
    let mut parts: Vec<String> = Vec::new();
    if !system_prompt.trim().is_empty() {
        parts.push(system_prompt.to_owned());
    }
    for template in templates {
        parts.push(render_template(template, variables, &mut missing));
    }
    missing.into_result()?;
    Ok((!parts.is_empty()).then(|| parts.join("\n\n")))
}

impl From<FieldErrors> for Error {
    fn from(errors: FieldErrors) -> Self {
        Error::Validation(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_fill_placeholders_and_name_missing_ones() {
        let vars = BTreeMap::from([("company".to_owned(), "Acme".to_owned())]);
        let built = build_instructions("Be brief.", &["Answer as {{ company }} support.", "Plain"], &vars).unwrap();
        assert_eq!(built.as_deref(), Some("Be brief.\n\nAnswer as Acme support.\n\nPlain"));
        let Err(Error::Validation(e)) = build_instructions("", &["Hi {{name}} from {{company}}"], &vars) else {
            panic!()
        };
        assert_eq!(e.to_json(), json!({"variables": ["Missing value for template variable \"name\"."]}));
        assert_eq!(build_instructions(" ", &[], &vars).unwrap(), None);
    }

    #[test]
    fn tool_outputs_come_singly_or_as_a_list() {
        let config = Config::documented();
        let one = ToolOutputRequest::parse(&json!({"session_id": 1, "call_id": "c", "output": {"ok": true}}), config)
            .unwrap();
        assert_eq!(one.outputs, [ToolOutput { call_id: "c".to_owned(), output: "{\"ok\":true}".to_owned() }]);
        let many = ToolOutputRequest::parse(
            &json!({"session_id": 1, "outputs": [{"call_id": "a", "output": "1"}, {"call_id": "b", "output": "2"}]}),
            config,
        )
        .unwrap();
        assert_eq!(many.outputs.len(), 2);
        let Err(Error::Validation(e)) = ToolOutputRequest::parse(
            &json!({"session_id": 1, "outputs": [{"call_id": "a", "output": "1"}, {"call_id": "a", "output": "2"}]}),
            config,
        ) else {
            panic!()
        };
        assert_eq!(e.to_json(), json!({"outputs": ["\"a\" is given more than once."]}));
    }
}
