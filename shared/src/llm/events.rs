//! Reading a Responses event stream: the few fields a turn needs (text, tool calls, how it ended). Every
//! other field and event type is left alone; the relay forwards events unchanged.

use std::borrow::Cow;
use std::collections::HashSet;

use serde_json::{Value, json};

use crate::domain::{ErrorCode, ResponseStatus, ToolCall, ToolType};

/// A `function_call` or `custom_tool_call` output item as a tool call.
fn tool_call_of(item: &Value) -> Option<ToolCall> {
    let (kind, payload) = match item.get("type")?.as_str()? {
        "function_call" => (ToolType::Function, "arguments"),
        "custom_tool_call" => (ToolType::Custom, "input"),
        _ => return None,
    };
    Some(ToolCall {
        call_id: item.get("call_id")?.as_str()?.to_owned(),
        name: item.get("name")?.as_str()?.to_owned(),
        kind,
        arguments: item.get(payload).and_then(Value::as_str).unwrap_or_default().to_owned(),
    })
}

/// How a response ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseEnd {
    Completed {
        output: Value,
        usage: Option<Value>,
    },
    /// `response.failed`, `response.incomplete` or an `error` event: `code` is Lambent's error code, `usage`
    /// what the provider reported the response spent (it bills an incomplete response's tokens too).
    Failed {
        code: ErrorCode,
        message: String,
        status: ResponseStatus,
        usage: Option<Value>,
    },
}

/// The `usage` a response-ending event carries, if the provider reported one.
fn reported_usage(event: &Value) -> Option<Value> {
    event.pointer("/response/usage").filter(|u| !u.is_null()).cloned()
}

/// What one event means for the turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    Nothing,
    TextDelta(String),
    ToolCall(ToolCall),
    Ended(ResponseEnd),
}

/// Follows one response's events.
#[derive(Debug, Default)]
pub struct ResponseAccumulator {
    pub response_id: Option<String>,
    /// The model that answered (`response.model`), as first seen ([`Self::observe_raw`]).
    pub model: Option<String>,
    text: String,
    calls: Vec<ToolCall>,
    announced: HashSet<String>,
    /// Output items as `response.output_item.done` gave them, by output index: they carry what a replay
    /// needs (a reasoning item's `encrypted_content`) even where the completed response abridges them.
    items: Vec<(u64, Value)>,
}

/// What most events need read — their type, a text delta's text, the response's id and model — read without
/// building the event's tree.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    delta: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    response: Option<HeadResponse<'a>>,
}

#[derive(serde::Deserialize)]
struct HeadResponse<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// The event types [`ResponseAccumulator::observe`] reads more of than the head (a text delta whose `delta` is
/// not text goes that way too).
const READ_WHOLE: [&str; 5] =
    ["response.output_item.done", "response.completed", "response.failed", "response.incomplete", "error"];

impl ResponseAccumulator {
    /// [`Self::observe`] for an event as it came (JSON text), noting the response's model too. Only the events
    /// that end a response or announce a tool call are parsed into a tree; the rest — text deltas, most of a
    /// streamed turn's events, and the `response.created`-like ones that carry the whole response object — are
    /// read for their head alone (measured: issue 24, BENCHMARKS.md).
    pub fn observe_raw(&mut self, raw: &str) -> serde_json::Result<Observed> {
        if let Ok(head) = serde_json::from_str::<Head<'_>>(raw) {
            if let Some(HeadResponse { id, model }) = &head.response {
                self.note_response(id.as_deref(), model.as_deref());
            }
            match (head.kind.as_deref(), head.delta) {
                (Some("response.output_text.delta"), Some(delta)) => {
                    self.text.push_str(&delta);
                    return Ok(Observed::TextDelta(delta.into_owned()));
                }
                (Some(kind), _) if kind != "response.output_text.delta" && !READ_WHOLE.contains(&kind) => {
                    return Ok(Observed::Nothing);
                }
                _ => {}
            }
        }
        let event: Value = serde_json::from_str(raw)?;
        let response = event.get("response");
        let field = |name: &str| response.and_then(|r| r.get(name)).and_then(Value::as_str);
        self.note_response(field("id"), field("model"));
        Ok(self.observe(&event))
    }

    fn note_response(&mut self, id: Option<&str>, model: Option<&str>) {
        if let (None, Some(id)) = (&self.response_id, id) {
            self.response_id = Some(id.to_owned());
        }
        if let (None, Some(model)) = (&self.model, model) {
            self.model = Some(model.to_owned());
        }
    }

    pub fn observe(&mut self, event: &Value) -> Observed {
        if let Some(id) = event.pointer("/response/id").and_then(Value::as_str) {
            self.response_id.get_or_insert_with(|| id.to_owned());
        }
        match event.get("type").and_then(Value::as_str).unwrap_or_default() {
            "response.output_text.delta" => match event.get("delta").and_then(Value::as_str) {
                Some(delta) => {
                    self.text.push_str(delta);
                    Observed::TextDelta(delta.to_owned())
                }
                None => Observed::Nothing,
            },
            "response.output_item.done" => {
                let Some(item) = event.get("item") else { return Observed::Nothing };
                let index = event.get("output_index").and_then(Value::as_u64).unwrap_or(self.items.len() as u64);
                self.items.push((index, item.clone()));
                match tool_call_of(item) {
                    Some(call) if self.announced.insert(call.call_id.clone()) => {
                        self.calls.push(call.clone());
                        Observed::ToolCall(call)
                    }
                    _ => Observed::Nothing,
                }
            }
            "response.completed" => {
                let response = event.get("response").cloned().unwrap_or(Value::Null);
                let mut output = response.get("output").cloned().unwrap_or_else(|| json!([]));
                self.merge_items(&mut output);
                // The completed response is the source of truth: pick up any call whose item event we missed.
                for call in output.as_array().into_iter().flatten().filter_map(tool_call_of) {
                    if self.announced.insert(call.call_id.clone()) {
                        self.calls.push(call);
                    }
                }
                if let Some(text) = output_text(&output).filter(|t| !t.is_empty()) {
                    self.text = text;
                }
                Observed::Ended(ResponseEnd::Completed { output, usage: reported_usage(event) })
            }
            "response.failed" => {
                let error = event.pointer("/response/error");
                let detail =
                    error.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("the response failed");
                let upstream_code = error.and_then(|e| e.get("code")).and_then(Value::as_str);
                let message = match upstream_code {
                    Some(code) => format!("{detail} ({code})"),
                    None => detail.to_owned(),
                };
                Observed::Ended(ResponseEnd::Failed {
                    code: ErrorCode::ResponseFailed,
                    message,
                    status: ResponseStatus::Failed,
                    usage: reported_usage(event),
                })
            }
            "response.incomplete" => {
                let reason =
                    event.pointer("/response/incomplete_details/reason").and_then(Value::as_str).unwrap_or("unknown");
                Observed::Ended(ResponseEnd::Failed {
                    code: ErrorCode::ResponseIncomplete,
                    message: format!("the response stopped early: {reason}"),
                    status: ResponseStatus::Incomplete,
                    usage: reported_usage(event),
                })
            }
            "error" => {
                // Documented flat {code, message, param}; a nested {"error": {...}} is seen in the wild.
                let body = event.get("error").filter(|e| e.is_object()).unwrap_or(event);
                let detail = body.get("message").and_then(Value::as_str).unwrap_or("upstream reported an error");
                let message = match body.get("code").and_then(Value::as_str) {
                    Some(code) => format!("{detail} ({code})"),
                    None => detail.to_owned(),
                };
                Observed::Ended(ResponseEnd::Failed {
                    code: ErrorCode::UpstreamError,
                    message,
                    status: ResponseStatus::Failed,
                    usage: None,
                })
            }
            _ => Observed::Nothing,
        }
    }

    /// The completed response's output with each item `response.output_item.done` gave in its place (and any
    /// item only those events gave, at the end, in index order).
    fn merge_items(&mut self, output: &mut Value) {
        let Some(list) = output.as_array_mut() else { return };
        self.items.sort_by_key(|(index, _)| *index);
        for (index, item) in self.items.drain(..) {
            match usize::try_from(index).ok().and_then(|i| list.get_mut(i)) {
                Some(slot) if slot.get("type") == item.get("type") => *slot = item,
                Some(_) => {}
                None => list.push(item),
            }
        }
    }

    /// The assistant text so far (all of it once completed).
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn calls(&self) -> &[ToolCall] {
        &self.calls
    }
}

/// The concatenated `output_text` parts of the output's message items.
fn output_text(output: &Value) -> Option<String> {
    let mut text = String::new();
    for item in output.as_array()?.iter().filter(|i| i.get("type").and_then(Value::as_str) == Some("message")) {
        for part in item.get("content").and_then(Value::as_array).into_iter().flatten() {
            if part.get("type").and_then(Value::as_str) == Some("output_text") {
                text.push_str(part.get("text").and_then(Value::as_str).unwrap_or_default());
            }
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_error_shapes_are_read() {
        let mut acc = ResponseAccumulator::default();
        let flat = json!({"type": "error", "code": "server_error", "message": "boom", "param": null});
        let nested =
            json!({"type": "error", "error": {"type": "server_error", "code": "overloaded", "message": "busy"}});
        let Observed::Ended(ResponseEnd::Failed { code, message, .. }) = acc.observe(&flat) else { panic!() };
        assert_eq!((code, message.as_str()), (ErrorCode::UpstreamError, "boom (server_error)"));
        let Observed::Ended(ResponseEnd::Failed { message, .. }) = acc.observe(&nested) else { panic!() };
        assert_eq!(message, "busy (overloaded)");
    }

    #[test]
    fn the_completed_output_takes_each_items_done_version() {
        let mut acc = ResponseAccumulator::default();
        let full = json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"});
        acc.observe(&json!({"type": "response.output_item.done", "output_index": 0, "item": full}));
        let abridged = json!({"type": "reasoning", "id": "rs_1", "summary": []});
        let message = json!({"type": "message", "role": "assistant", "content": []});
        let completed = json!({"type": "response.completed", "response": {"id": "r", "output": [abridged, message]}});
        let Observed::Ended(ResponseEnd::Completed { output, .. }) = acc.observe(&completed) else { panic!() };
        assert_eq!(output, json!([full, message]));
    }

    #[test]
    fn an_event_read_from_its_text_means_what_its_tree_means() {
        let events = [
            json!({"type": "response.created", "response": {"id": "resp_1", "model": "gpt-4.1"}}),
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hel", "sequence_number": 3}),
            json!({"sequence_number": 4, "delta": "lo \"there\"\né", "type": "response.output_text.delta"}),
            json!({"type": "response.output_text.delta", "delta": 7}),
            json!({"type": "response.output_text.done", "text": "Hello"}),
            json!({"delta": "no type"}),
            json!({"type": "response.output_item.done", "item": {"type": "function_call", "call_id": "c1",
                   "name": "f", "arguments": "{}"}}),
            json!({"type": "response.in_progress", "response": null}),
            json!({"type": "response.completed", "response": {"id": "resp_2", "model": "other", "output": [],
                   "usage": {"input_tokens": 1}}}),
        ];
        let (mut by_tree, mut by_text) = (ResponseAccumulator::default(), ResponseAccumulator::default());
        for event in &events {
            assert_eq!(by_text.observe_raw(&event.to_string()).unwrap(), by_tree.observe(event), "{event}");
        }
        assert_eq!((by_text.text(), by_text.response_id.as_deref()), (by_tree.text(), Some("resp_1")));
        assert_eq!(by_text.model.as_deref(), Some("gpt-4.1"), "the model as first seen");
        assert!(by_text.observe_raw("{not json").is_err());
    }

    #[test]
    fn unknown_events_mean_nothing() {
        let mut acc = ResponseAccumulator::default();
        assert_eq!(acc.observe(&json!({"type": "response.future_thing.delta", "x": 1})), Observed::Nothing);
    }
}
