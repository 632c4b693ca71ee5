//! A person's decisions on tool calls that wait for approval (`POST /api/agent/approvals/`), and what a
//! continuation is told when outputs or decisions complete a response.

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};

use super::ids::SessionId;
use super::input::{Input, Mode, check_text};
use super::turns::ToolOutput;
use super::wire::{Bool, FieldKind, KeyField, body, present};
use crate::config::Limits;
use crate::error::Result;

/// Characters of a denial's reason.
pub const REASON_CHARS: usize = 2000;

/// One decision: approve the call (it runs on the server), or deny it (the model is told, with the reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub call_id: String,
    pub approve: bool,
    pub reason: Option<String>,
}

/// What a submission answers a response's calls with: a client's outputs, or a person's decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answers {
    Outputs(Vec<ToolOutput>),
    Decisions(Vec<Decision>),
}

impl Answers {
    /// The calls answered, in the order given.
    pub fn call_ids(&self) -> Vec<&str> {
        match self {
            Self::Outputs(outputs) => outputs.iter().map(|o| o.call_id.as_str()).collect(),
            Self::Decisions(decisions) => decisions.iter().map(|d| d.call_id.as_str()).collect(),
        }
    }

    pub fn is_decisions(&self) -> bool {
        matches!(self, Self::Decisions(_))
    }

    /// Each answer as the store writes it: `[call_id, output or null, approval or null]` (an approved call
    /// keeps no output: it runs in the continuation).
    pub fn rows(&self) -> Vec<Value> {
        match self {
            Self::Outputs(outputs) => outputs.iter().map(|o| json!([o.call_id, o.output, null])).collect(),
            Self::Decisions(decisions) => decisions
                .iter()
                .map(|d| match d.approve {
                    true => json!([d.call_id, null, "approved"]),
                    false => json!([d.call_id, denial_output(d.reason.as_deref()), "denied"]),
                })
                .collect(),
        }
    }
}

/// The output a denied call answers the model with.
pub fn denial_output(reason: Option<&str>) -> String {
    match reason {
        Some(reason) => json!({"error": "A person denied this tool call.", "reason": reason}).to_string(),
        None => json!({"error": "A person denied this tool call."}).to_string(),
    }
}

/// A call that waits for approval, as the `done` frame lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApprovalRequest {
    pub call_id: String,
    pub name: String,
    /// The call's JSON arguments (a custom tool's input).
    pub arguments: String,
}

/// Decisions: a non-empty list of `{call_id, approve, reason?}`.
struct Decisions;

impl FieldKind for Decisions {
    type Out = Vec<Decision>;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<Vec<Decision>> {
        let items = match input.json(field, required)? {
            Value::Array(items) if items.len() > Limits::TOOL_OUTPUTS => {
                input.error(field, format!("Ensure this list has no more than {} decisions.", Limits::TOOL_OUTPUTS));
                return None;
            }
            Value::Array(items) if !items.is_empty() => items,
            _ => {
                input.error(field, "Must be a non-empty list of {\"call_id\", \"approve\", \"reason\"} objects.");
                return None;
            }
        };
        let mut decisions = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let call_id = item.get("call_id").and_then(Value::as_str).filter(|c| !c.trim().is_empty());
            let reason = match item.get("reason") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(reason)) if reason.chars().count() > REASON_CHARS => {
                    Err(format!("Item {i}: ensure \"reason\" has no more than {REASON_CHARS} characters."))
                }
                Some(Value::String(reason)) => {
                    check_text(reason).map(|()| Some(reason.clone())).map_err(|m| format!("Item {i}: {m}"))
                }
                Some(_) => Err(format!("Item {i}: \"reason\" must be a string.")),
            };
            match (call_id, item.get("approve").and_then(Value::as_bool), reason) {
                (_, _, Err(message)) => input.error(field, message),
                (Some(call_id), Some(approve), Ok(reason)) if call_id.chars().count() <= Limits::CALL_ID_CHARS => {
                    decisions.push(Decision { call_id: call_id.to_owned(), approve, reason })
                }
                _ => input.error(field, format!("Item {i} needs a \"call_id\" and \"approve\": true or false.")),
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = decisions.iter().find(|d| !seen.insert(d.call_id.as_str())) {
            input.error(field, format!("\"{}\" is decided more than once.", dup.call_id));
        }
        Some(decisions)
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        let decision = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("call_id", ObjectBuilder::new().schema_type(Type::String))
            .property("approve", ObjectBuilder::new().schema_type(Type::Boolean))
            .property("reason", ObjectBuilder::new().schema_type(Type::String).max_length(Some(REASON_CHARS)))
            .required("call_id")
            .required("approve");
        ArrayBuilder::new().items(decision).min_items(Some(1)).max_items(Some(Limits::TOOL_OUTPUTS)).into()
    }

    fn is_required(&self) -> bool {
        true
    }
}

body! {
    /// `POST /api/agent/approvals/`: decisions on calls that wait for approval.
    #[schema(name = "ApprovalWrite", example = {"session_id": 1, "decisions": [{"call_id": "call_1", "approve": true},
        {"call_id": "call_2", "approve": false, "reason": "Not on a Friday."}]})]
    pub struct ApprovalWrite {
        session_id: SessionId = SessionId::PK.required(),
        /// Every call of the response that waits must be decided (one request or several, as tool outputs):
        /// until then the answer is 202. A denial's `reason` (at most 2000 characters) goes to the model.
        decisions: Vec<Decision> = Decisions,
        /// Whether calls the continuation makes to tools with executors run on the server, as for tool-output.
        auto_execute_tools: bool = Bool,
    }
}

/// A submission that answers calls of a response: tool outputs or decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub session_id: SessionId,
    pub answers: Answers,
    pub auto_execute_tools: bool,
}

impl Submitted {
    /// An approvals body.
    pub fn decisions(body: &Value) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let write = ApprovalWrite::read(&mut input, &Limits::default());
        input.finish()?;
        Ok(Self {
            session_id: present("session_id", write.session_id)?,
            answers: Answers::Decisions(present("decisions", write.decisions)?),
            auto_execute_tools: write.auto_execute_tools.unwrap_or(false),
        })
    }
}

impl From<super::ToolOutputRequest> for Submitted {
    fn from(r: super::ToolOutputRequest) -> Self {
        Self {
            session_id: r.session_id,
            answers: Answers::Outputs(r.outputs),
            auto_execute_tools: r.auto_execute_tools,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn decisions_are_read_with_each_bad_item_named() {
        let ok = Submitted::decisions(&json!({"session_id": 1, "decisions": [
            {"call_id": "a", "approve": true}, {"call_id": "b", "approve": false, "reason": "no"}]}))
        .unwrap();
        assert_eq!(
            ok.answers.rows(),
            [json!(["a", null, "approved"]), json!(["b", denial_output(Some("no")), "denied"])]
        );
        let Err(Error::Validation(e)) = Submitted::decisions(&json!({"session_id": 1, "decisions": [
            {"call_id": "a"}, {"call_id": "a", "approve": true}, {"call_id": "a", "approve": false, "reason": 3}]}))
        else {
            panic!()
        };
        assert_eq!(
            e.to_json(),
            json!({"decisions": ["Item 0 needs a \"call_id\" and \"approve\": true or false.",
                "Item 2: \"reason\" must be a string."]})
        );
        let Err(Error::Validation(e)) = Submitted::decisions(&json!({"session_id": 1})) else { panic!() };
        assert_eq!(e.to_json(), json!({"decisions": ["This field is required."]}));
    }
}
