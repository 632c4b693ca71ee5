//! What a conversation request says, and how an agent's instructions are put together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::input::{Input, Mode};
use crate::error::{Error, FieldErrors, MissingVariables, Result};

/// `POST /api/agent/stream/` and `/api/agent/chat/`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageRequest {
    pub message: String,
    pub agent_id: Option<i64>,
    pub session_id: Option<i64>,
    pub auto_execute_tools: bool,
    pub variables: BTreeMap<String, String>,
}

impl MessageRequest {
    pub fn parse(body: &Value, max_chars: usize) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let message = input.string("message", true, Some(max_chars), false);
        let agent_id = input.pk("agent_id", false, true).flatten();
        let session_id = input.pk("session_id", false, true).flatten();
        let auto_execute_tools = input.boolean("auto_execute_tools").unwrap_or(false);
        let variables = match input.nullable_json("variables").flatten() {
            None => BTreeMap::new(),
            Some(Value::Object(map)) => {
                let mut out = BTreeMap::new();
                for (name, value) in map {
                    match value {
                        Value::String(s) => drop(out.insert(name, s)),
                        Value::Number(_) | Value::Bool(_) => drop(out.insert(name, value.to_string())),
                        _ => input.error("variables", format!("\"{name}\" must be a string, number or boolean.")),
                    }
                }
                out
            }
            Some(_) => {
                input.error("variables", "Must be an object mapping template variable names to values.");
                BTreeMap::new()
            }
        };
        input.finish()?;
        Ok(Self { message: message.unwrap_or_default(), agent_id, session_id, auto_execute_tools, variables })
    }
}

/// `POST /api/agent/tool-output/`: one output (`call_id`, `output`) or several (`outputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutputRequest {
    pub session_id: i64,
    /// (call_id, output) pairs, in the order given.
    pub outputs: Vec<(String, String)>,
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

impl ToolOutputRequest {
    pub fn parse(body: &Value) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let session_id = input.pk("session_id", true, false).flatten();
        let auto_execute_tools = input.boolean("auto_execute_tools").unwrap_or(false);
        let mut outputs = Vec::new();
        match body.get("outputs") {
            Some(Value::Array(items)) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    let call_id = item.get("call_id").and_then(Value::as_str).filter(|c| !c.trim().is_empty());
                    let output = item.get("output").and_then(output_text);
                    match (call_id, output) {
                        (Some(call_id), Some(output)) => outputs.push((call_id.to_owned(), output)),
                        _ => input.error("outputs", format!("Item {i} needs a \"call_id\" and an \"output\".")),
                    }
                }
            }
            Some(_) => input.error("outputs", "Must be a non-empty list of {\"call_id\", \"output\"} objects."),
            None => {
                let call_id = input.string("call_id", true, Some(200), false);
                let output = match body.get("output") {
                    None => {
                        input.error("output", "This field is required.");
                        None
                    }
                    Some(value) => output_text(value).or_else(|| {
                        input.error("output", "This field may not be null.");
                        None
                    }),
                };
                if let (Some(call_id), Some(output)) = (call_id, output) {
                    outputs.push((call_id, output));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some((dup, _)) = outputs.iter().find(|(call_id, _)| !seen.insert(call_id.clone())) {
            input.error("outputs", format!("\"{dup}\" is given more than once."));
        }
        input.finish()?;
        Ok(Self { session_id: session_id.unwrap_or_default(), outputs, auto_execute_tools })
    }
}

/// Fills `{{name}}` placeholders (spaces inside the braces allowed); each name without a value is added to
/// `missing`, once.
pub fn render_template(template: &str, variables: &BTreeMap<String, String>, missing: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push_str(&rest[..start]);
        match variables.get(name) {
            Some(value) => out.push_str(value),
            None if missing.iter().any(|m| m == name) => {}
            None => missing.push(name.to_owned()),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

/// The `instructions` sent upstream: the system prompt, then each template, separated by blank lines. The
/// system prompt's `{{name}}` placeholders are filled as the templates' are (one rule for all the text the model
/// is instructed with: an unfilled one would reach the model as literal braces); every name without a value
/// makes it a [`Error::MissingVariables`].
pub fn build_instructions(
    system_prompt: &str,
    templates: &[&str],
    variables: &BTreeMap<String, String>,
) -> Result<Option<String>> {
    let mut missing = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    if !system_prompt.trim().is_empty() {
        parts.push(render_template(system_prompt, variables, &mut missing));
    }
    for template in templates {
        parts.push(render_template(template, variables, &mut missing));
    }
    if !missing.is_empty() {
        return Err(Error::MissingVariables(MissingVariables::new(missing)));
    }
    Ok((!parts.is_empty()).then(|| parts.join("\n\n")))
}

/// Request bodies of the agent endpoints, for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"message": "Hello", "agent_id": 1, "session_id": null, "auto_execute_tools": false,
    "variables": {"company": "Acme"}}))]
#[allow(dead_code)]
pub struct MessageWrite {
    /// The user's message; required, not blank.
    message: String,
    /// Default: the default agent.
    agent_id: Option<i64>,
    /// Default: a new session. Must belong to `agent_id` when both are given.
    session_id: Option<i64>,
    /// Run tools that have a server-side executor and continue in the same stream (at most 8 rounds).
    #[schema(nullable = false)]
    auto_execute_tools: Option<bool>,
    /// Values for `{{name}}` placeholders in the agent's templates.
    #[schema(value_type = Option<std::collections::HashMap<String, String>>)]
    variables: Option<Value>,
}

#[derive(Debug, ToSchema)]
#[schema(example = json!({"session_id": 1, "call_id": "call_123", "output": "{\"result\": \"ok\"}"}))]
#[allow(dead_code)]
pub struct ToolOutputWrite {
    session_id: i64,
    /// One output: the call it answers…
    #[schema(nullable = false, max_length = 200)]
    call_id: Option<String>,
    /// …and its text (JSON values are sent as JSON text).
    #[schema(nullable = false)]
    output: Option<String>,
    /// Several outputs at once: `[{"call_id": ..., "output": ...}]`.
    #[schema(value_type = Vec<Object>, required = false, min_items = 1)]
    outputs: Option<Value>,
    #[schema(nullable = false)]
    auto_execute_tools: Option<bool>,
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
        let Err(Error::MissingVariables(answer)) = build_instructions("", &["Hi {{name}} from {{company}}"], &vars)
        else {
            panic!()
        };
        assert_eq!(answer, MissingVariables::new(vec!["name".to_owned()]));
        assert_eq!(answer.variables, ["Missing value for template variable \"name\"."]);
        assert_eq!(build_instructions(" ", &[], &vars).unwrap(), None);
    }

    #[test]
    fn the_system_prompt_s_placeholders_are_filled_as_the_templates_are_and_each_missing_name_is_named_once() {
        let vars = BTreeMap::from([("company".to_owned(), "Acme".to_owned())]);
        let built = build_instructions("You work for {{company}}.", &["Sign as {{ company }}."], &vars).unwrap();
        assert_eq!(built.as_deref(), Some("You work for Acme.\n\nSign as Acme."));
        let Err(Error::MissingVariables(answer)) =
            build_instructions("Greet {{customer}} of {{company}}.", &["Thank {{customer}}, then {{tone}}."], &vars)
        else {
            panic!()
        };
        assert_eq!(answer.missing_variables, ["customer", "tone"]);
        // An unclosed `{{` is text, as in templates.
        assert_eq!(build_instructions("Use {{ literally", &[], &vars).unwrap().as_deref(), Some("Use {{ literally"));
    }

    #[test]
    fn tool_outputs_come_singly_or_as_a_list() {
        let one = ToolOutputRequest::parse(&json!({"session_id": 1, "call_id": "c", "output": {"ok": true}})).unwrap();
        assert_eq!(one.outputs, [("c".to_owned(), "{\"ok\":true}".to_owned())]);
        let many = ToolOutputRequest::parse(
            &json!({"session_id": 1, "outputs": [{"call_id": "a", "output": "1"}, {"call_id": "b", "output": "2"}]}),
        )
        .unwrap();
        assert_eq!(many.outputs.len(), 2);
        let Err(Error::Validation(e)) = ToolOutputRequest::parse(
            &json!({"session_id": 1, "outputs": [{"call_id": "a", "output": "1"}, {"call_id": "a", "output": "2"}]}),
        ) else {
            panic!()
        };
        assert_eq!(e.to_json(), json!({"outputs": ["\"a\" is given more than once."]}));
    }
}
