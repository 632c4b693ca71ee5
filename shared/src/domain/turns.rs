//! What a conversation request says, and how an agent's instructions are put together.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};

use super::ids::{AgentId, SessionId};
use super::input::{Input, Mode, check_text};
use super::wire::{Bool, FieldKind, KeyField, Text, body, present};
use crate::config::Limits;
use crate::error::{Error, FieldErrors, MissingVariables, Result};

body! {
    /// Request bodies of the agent endpoints, for the OpenAPI document.
    #[schema(name = "MessageWrite", example = {"message": "Hello", "agent_id": 1, "session_id": null,
        "auto_execute_tools": false, "variables": {"company": "Acme"}})]
    pub struct MessageWrite {
        /// The user's message; required, not blank, at most `LAMBENT_MAX_MESSAGE_CHARS` characters (default 32000).
        message: String = Text::new().max(|limits| limits.message_chars).required(),
        /// Default: the default agent.
        agent_id: Option<AgentId> = AgentId::NULLABLE_PK,
        /// Default: a new session. Must belong to `agent_id` when both are given.
        session_id: Option<SessionId> = SessionId::NULLABLE_PK,
        /// Run tools that have a server-side executor and continue in the same stream (at most 8 rounds).
        auto_execute_tools: bool = Bool,
        /// Values for `{{name}}` placeholders in the agent's templates: at most 50, names of at most 100
        /// characters, values of at most `LAMBENT_MAX_VARIABLE_CHARS` (default 4000); the instructions they fill in
        /// at most `LAMBENT_MAX_INSTRUCTIONS_CHARS` (default 100000).
        variables: Option<BTreeMap<String, String>> = Variables,
    }
}

/// `POST /api/agent/stream/` and `/api/agent/chat/`: a [`MessageWrite`] with its defaults applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessageRequest {
    pub message: String,
    pub agent_id: Option<AgentId>,
    pub session_id: Option<SessionId>,
    pub auto_execute_tools: bool,
    pub variables: BTreeMap<String, String>,
}

impl MessageRequest {
    pub fn parse(body: &Value, limits: &Limits) -> Result<Self> {
        let write = MessageWrite::parse(body, Mode::Create, limits)?;
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

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, limits: &Limits) -> Option<Self::Out> {
        let map = match input.nullable_json(field)? {
            None => return Some(None),
            Some(Value::Object(map)) if map.len() > Limits::VARIABLES => {
                input.error(field, format!("Ensure there are no more than {} variables.", Limits::VARIABLES));
                return None;
            }
            Some(Value::Object(map)) => map,
            Some(_) => {
                input.error(field, "Must be an object mapping template variable names to values.");
                return None;
            }
        };
        let mut out = BTreeMap::new();
        for (name, value) in map {
            let value = match value {
                Value::String(s) => s,
                Value::Number(_) | Value::Bool(_) => value.to_string(),
                _ => {
                    input.error(field, format!("\"{}\" must be a string, number or boolean.", shown(&name)));
                    continue;
                }
            };
            match check_variable(&name, &value, limits) {
                Ok(()) => drop(out.insert(name, value)),
                Err(message) => input.error(field, message),
            }
        }
        Some(Some(out))
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
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
        session_id: SessionId = SessionId::PK.required(),
        /// One output: the call it answers…
        call_id: String = Text::new().max(|_| Limits::CALL_ID_CHARS),
        /// …and its text (JSON values are sent as JSON text), at most 65536 characters.
        output: String = OutputText,
        /// Several outputs at once (at most 64): `[{"call_id": ..., "output": ...}]`.
        outputs: Vec<ToolOutput> = Outputs,
        auto_execute_tools: bool = Bool,
    }
}

/// `POST /api/agent/tool-output/`: one output (`call_id`, `output`) or several (`outputs`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutputRequest {
    pub session_id: SessionId,
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

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Limits) -> Option<String> {
        let value = input.nullable_json(field)?;
        let Some(text) = value.as_ref().and_then(output_text) else {
            input.error(field, "This field may not be null.");
            return None;
        };
        match check_output("", &text) {
            Ok(()) => Some(text),
            Err(message) => {
                input.error(field, message);
                None
            }
        }
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::String).max_length(Some(Limits::TOOL_OUTPUT_CHARS)).into()
    }
}

/// Several outputs: a non-empty list of `{call_id, output}`.
struct Outputs;

impl FieldKind for Outputs {
    type Out = Vec<ToolOutput>;

    fn read(&self, input: &mut Input<'_>, field: &str, _: bool, _: &Limits) -> Option<Vec<ToolOutput>> {
        let items = match input.nullable_json(field)? {
            Some(Value::Array(items)) if items.len() > Limits::TOOL_OUTPUTS => {
                input.error(field, format!("Ensure this list has no more than {} outputs.", Limits::TOOL_OUTPUTS));
                return Some(Vec::new());
            }
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
                (Some(call_id), Some(output)) => match check_output(call_id, &output) {
                    Ok(()) => outputs.push(ToolOutput { call_id: call_id.to_owned(), output }),
                    Err(message) => input.error(field, format!("Item {i}: {message}")),
                },
                _ => input.error(field, format!("Item {i} needs a \"call_id\" and an \"output\".")),
            }
        }
        Some(outputs)
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::Object))
            .min_items(Some(1))
            .max_items(Some(Limits::TOOL_OUTPUTS))
            .into()
    }
}

impl ToolOutputRequest {
    /// `outputs`, or else `call_id` and `output`, both then required. Its bounds are constants (none is a
    /// setting), so the default limits are its limits.
    pub fn parse(body: &Value) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let write = ToolOutputWrite::read(&mut input, &Limits::default());
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

/// A variable name as an error message quotes it: cut to [`Limits::VARIABLE_NAME_CHARS`], so a long name cannot
/// make a long answer.
fn shown(name: &str) -> String {
    match name.char_indices().nth(Limits::VARIABLE_NAME_CHARS) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}

/// One template variable: a bounded name and value, neither holding U+0000.
fn check_variable(name: &str, value: &str, limits: &Limits) -> std::result::Result<(), String> {
    let quoted = shown(name);
    if name.chars().count() > Limits::VARIABLE_NAME_CHARS {
        return Err(format!(
            "\"{quoted}\": ensure variable names have no more than {} characters.",
            Limits::VARIABLE_NAME_CHARS
        ));
    }
    if value.chars().count() > limits.variable_chars {
        return Err(format!("\"{quoted}\": ensure this value has no more than {} characters.", limits.variable_chars));
    }
    check_text(name).and(check_text(value)).map_err(|message| format!("\"{quoted}\": {message}"))
}

/// A submitted tool output: bounded (it is stored, sent upstream and recorded for replay), its call id too, and
/// neither holding U+0000.
fn check_output(call_id: &str, output: &str) -> std::result::Result<(), String> {
    if call_id.chars().count() > Limits::CALL_ID_CHARS {
        return Err(format!("Ensure \"call_id\" has no more than {} characters.", Limits::CALL_ID_CHARS));
    }
    if output.chars().count() > Limits::TOOL_OUTPUT_CHARS {
        return Err(format!("Ensure this output has no more than {} characters.", Limits::TOOL_OUTPUT_CHARS));
    }
    check_text(call_id).and(check_text(output)).map_err(str::to_owned)
}

/// Instructions being put together, never longer than their bound: a piece that would pass it is not added.
struct Bounded {
    text: String,
    chars: usize,
    max_chars: usize,
    over: bool,
}

impl Bounded {
    fn push(&mut self, piece: &str) {
        if self.over {
            return;
        }
        let chars = piece.chars().count();
        if self.chars + chars > self.max_chars {
            self.over = true;
            return;
        }
        self.chars += chars;
        self.text.push_str(piece);
    }
}

/// The names of missing variables, each once, in the order the instructions name them (a set beside the list:
/// a template of many distinct names must not cost a scan of the list per placeholder).
#[derive(Default)]
struct Missing<'t> {
    seen: std::collections::BTreeSet<&'t str>,
    names: Vec<&'t str>,
}

impl<'t> Missing<'t> {
    fn add(&mut self, name: &'t str) {
        if self.seen.insert(name) {
            self.names.push(name);
        }
    }
}

/// Fills `{{name}}` placeholders (spaces inside the braces allowed) into `out`, which stops growing at its
/// bound; the names of missing variables go into `missing` (once each, however often they appear).
fn render_template<'t>(
    template: &'t str,
    variables: &BTreeMap<String, String>,
    out: &mut Bounded,
    missing: &mut Missing<'t>,
) {
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else { break };
        let name = rest[start + 2..start + 2 + len].trim();
        out.push(&rest[..start]);
        match variables.get(name) {
            Some(value) => out.push(value),
            None => missing.add(name),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push(rest);
}

/// The `instructions` sent upstream: the system prompt, then each template, separated by blank lines; at most
/// `max_chars` characters (`LAMBENT_MAX_INSTRUCTIONS_CHARS`), which rendering never goes past. The system
/// prompt's `{{name}}` placeholders are filled as the templates' are (one rule for all the text the model is
/// instructed with: an unfilled one would reach the model as literal braces). Names without a value make it a
/// [`Error::MissingVariables`], each named once.
pub fn build_instructions(
    system_prompt: &str,
    templates: &[&str],
    variables: &BTreeMap<String, String>,
    max_chars: usize,
) -> Result<Option<String>> {
    let mut out = Bounded { text: String::new(), chars: 0, max_chars, over: false };
    let mut missing = Missing::default();
    if !system_prompt.trim().is_empty() {
        render_template(system_prompt, variables, &mut out, &mut missing);
    }
    for template in templates {
        if out.chars > 0 {
            out.push("\n\n");
        }
        render_template(template, variables, &mut out, &mut missing);
    }
    let over = out
        .over
        .then(|| format!("The agent's instructions would be longer than {max_chars} characters with these values."));
    if !missing.names.is_empty() {
        let more = missing.names.len().saturating_sub(Limits::VARIABLES);
        let names = missing.names.iter().take(Limits::VARIABLES).map(|name| shown(name)).collect();
        let mut answer = MissingVariables::new(names);
        if more > 0 {
            answer.variables.push(format!("…and {more} more missing variables."));
        }
        answer.variables.extend(over);
        return Err(Error::MissingVariables(answer));
    }
    if let Some(message) = over {
        let mut errors = FieldErrors::default();
        errors.add("variables", message);
        return Err(errors.into());
    }
    Ok((out.chars > 0).then_some(out.text))
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
        let built =
            build_instructions("Be brief.", &["Answer as {{ company }} support.", "Plain"], &vars, 1000).unwrap();
        assert_eq!(built.as_deref(), Some("Be brief.\n\nAnswer as Acme support.\n\nPlain"));
        let Err(Error::MissingVariables(answer)) =
            build_instructions("", &["Hi {{name}} from {{company}}, {{ name }}"], &vars, 1000)
        else {
            panic!()
        };
        assert_eq!(answer, MissingVariables::new(vec!["name".to_owned()]));
        assert_eq!(answer.variables, ["Missing value for template variable \"name\"."]);
        assert_eq!(build_instructions(" ", &[], &vars, 1000).unwrap(), None);
    }

    #[test]
    fn rendering_stops_at_its_bound_and_names_each_missing_variable_once() {
        let vars = BTreeMap::from([("x".to_owned(), "v".repeat(1000))]);
        let template = "{{x}}".repeat(10_000);
        let Err(Error::Validation(e)) = build_instructions("", &[&template], &vars, 5_000) else { panic!() };
        assert_eq!(
            e.to_json(),
            json!({"variables": ["The agent's instructions would be longer than 5000 characters with these values."]})
        );
        assert_eq!(build_instructions("", &["{{x}}{{x}}"], &vars, 2_000).unwrap().map(|t| t.len()), Some(2_000));
        let Err(Error::MissingVariables(answer)) = build_instructions("", &[&"{{y}}".repeat(10_000)], &vars, 5_000)
        else {
            panic!()
        };
        assert_eq!(answer.variables, ["Missing value for template variable \"y\"."]);
        let many: String = (0..60).map(|i| format!("{{{{v{i}}}}}")).collect();
        let Err(Error::MissingVariables(answer)) = build_instructions("", &[&many], &vars, 5_000) else { panic!() };
        assert_eq!(answer.missing_variables.len(), Limits::VARIABLES);
        assert_eq!(answer.variables.len(), Limits::VARIABLES + 1);
        assert_eq!(answer.variables.last().unwrap(), "…and 10 more missing variables.");
    }

    #[test]
    fn variables_are_bounded_in_number_name_and_value_and_refuse_null_characters() {
        let limits = Limits { variable_chars: 5, ..Limits::default() };
        let refused = |variables: Value| match MessageRequest::parse(
            &json!({"message": "hi", "variables": variables}),
            &limits,
        ) {
            Err(Error::Validation(e)) => e.to_json(),
            other => panic!("{other:?}"),
        };
        let many: serde_json::Map<String, Value> = (0..51).map(|i| (format!("v{i}"), json!("x"))).collect();
        assert_eq!(refused(Value::Object(many)), json!({"variables": ["Ensure there are no more than 50 variables."]}));
        assert_eq!(
            refused(json!({"a": "123456"})),
            json!({"variables": ["\"a\": ensure this value has no more than 5 characters."]})
        );
        assert_eq!(refused(json!({"a": "1\u{0}2"})), json!({"variables": ["\"a\": Null characters are not allowed."]}));
        let long = "n".repeat(101);
        let expected = format!("\"{}…\": ensure variable names have no more than 100 characters.", "n".repeat(100));
        assert_eq!(refused(json!({long: "x"})), json!({"variables": [expected]}));
        let Err(Error::Validation(e)) = MessageRequest::parse(&json!({"message": "a\u{0}b"}), &limits) else {
            panic!()
        };
        assert_eq!(e.to_json(), json!({"message": ["Null characters are not allowed."]}));
    }

    #[test]
    fn the_system_prompt_s_placeholders_are_filled_as_the_templates_are_and_each_missing_name_is_named_once() {
        let vars = BTreeMap::from([("company".to_owned(), "Acme".to_owned())]);
        let built = build_instructions("You work for {{company}}.", &["Sign as {{ company }}."], &vars, 1000).unwrap();
        assert_eq!(built.as_deref(), Some("You work for Acme.\n\nSign as Acme."));
        let Err(Error::MissingVariables(answer)) = build_instructions(
            "Greet {{customer}} of {{company}}.",
            &["Thank {{customer}}, then {{tone}}."],
            &vars,
            1000,
        ) else {
            panic!()
        };
        assert_eq!(answer.missing_variables, ["customer", "tone"]);
        // An unclosed `{{` is text, as in templates.
        assert_eq!(
            build_instructions("Use {{ literally", &[], &vars, 1000).unwrap().as_deref(),
            Some("Use {{ literally")
        );
    }

    #[test]
    fn tool_outputs_come_singly_or_as_a_list() {
        let one = ToolOutputRequest::parse(&json!({"session_id": 1, "call_id": "c", "output": {"ok": true}})).unwrap();
        assert_eq!(one.outputs, [ToolOutput { call_id: "c".to_owned(), output: "{\"ok\":true}".to_owned() }]);
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
        let Err(Error::Validation(e)) =
            ToolOutputRequest::parse(&json!({"session_id": 1, "call_id": "c", "output": "a\u{0}"}))
        else {
            panic!()
        };
        assert_eq!(e.to_json(), json!({"output": ["Null characters are not allowed."]}));
        let outputs: Vec<Value> = (0..65).map(|i| json!({"call_id": format!("c{i}"), "output": "1"})).collect();
        let Err(Error::Validation(e)) = ToolOutputRequest::parse(&json!({"session_id": 1, "outputs": outputs})) else {
            panic!()
        };
        assert_eq!(e.to_json(), json!({"outputs": ["Ensure this list has no more than 64 outputs."]}));
    }
}
