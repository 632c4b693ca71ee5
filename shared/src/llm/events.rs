//! Reading a Responses event stream: the few fields a turn needs (text, tool calls, how it ended). Every
//! other field and event type is left alone; the relay forwards events unchanged.

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
    text: String,
    calls: Vec<ToolCall>,
    announced: HashSet<String>,
}

impl ResponseAccumulator {
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
            "response.output_item.done" => match event.get("item").and_then(tool_call_of) {
                Some(call) if self.announced.insert(call.call_id.clone()) => {
                    self.calls.push(call.clone());
                    Observed::ToolCall(call)
                }
                _ => Observed::Nothing,
            },
            "response.completed" => {
                let response = event.get("response").cloned().unwrap_or(Value::Null);
                let output = response.get("output").cloned().unwrap_or_else(|| json!([]));
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
    fn unknown_events_mean_nothing() {
        let mut acc = ResponseAccumulator::default();
        assert_eq!(acc.observe(&json!({"type": "response.future_thing.delta", "x": 1})), Observed::Nothing);
    }
}
