//! What a turn reports, as events and as the SSE frames they become: numbered, recorded, replayed.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::domain::{ApprovalRequest, ErrorCode, ResponseStatus, SessionId, ToolCall, ToolType, TurnId};
use crate::store::StoredFrame;

/// One thing a turn reports, in order; each becomes one SSE frame, whose `data` is the variant's payload
/// serialised: each payload type is also the frame's schema in the OpenAPI document (`http::sse`).
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// An upstream event, byte for byte.
    OpenAi(Box<RawValue>),
    TextDelta(TextDelta),
    ToolCall(CallFrame),
    ToolResult(ToolResult),
    Notice(Notice),
    Error(TurnError),
    Done(Done),
}

impl TurnEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenAi(_) => "openai_event",
            Self::TextDelta(_) => "text_delta",
            Self::ToolCall(_) => "tool_call",
            Self::ToolResult(_) => "tool_result",
            Self::Notice(_) => "notice",
            Self::Error(_) => "error",
            Self::Done(_) => "done",
        }
    }

    /// The frame's `data:` line: the payload as JSON.
    pub fn data(&self) -> serde_json::Result<String> {
        match self {
            Self::OpenAi(raw) => Ok(raw.get().to_owned()),
            Self::TextDelta(delta) => serde_json::to_string(delta),
            Self::ToolCall(call) => serde_json::to_string(call),
            Self::ToolResult(result) => serde_json::to_string(result),
            Self::Notice(notice) => serde_json::to_string(notice),
            Self::Error(error) => serde_json::to_string(error),
            Self::Done(done) => serde_json::to_string(done),
        }
    }
}

// Fields in name order: the frames' JSON kept the key order it had when built as `serde_json::Value` maps.

/// A `text_delta` frame's data: the next piece of the answer's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TextDelta {
    pub delta: String,
}

/// A `tool_call` frame's data: a call the model made. A `function` tool's call has `arguments` (JSON text), a
/// `custom` tool's `input` (free text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ToolCall)]
pub struct CallFrame {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub arguments: Option<String>,
    pub call_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub input: Option<String>,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ToolType,
}

impl From<&ToolCall> for CallFrame {
    fn from(call: &ToolCall) -> Self {
        let (arguments, input) = match call.kind {
            ToolType::Function => (Some(call.arguments.clone()), None),
            ToolType::Custom => (None, Some(call.arguments.clone())),
        };
        Self { arguments, call_id: call.call_id.clone(), input, name: call.name.clone(), kind: call.kind }
    }
}

/// A `tool_result` frame's data: a server-side tool's output for a call (client tools' outputs arrive by
/// `POST /api/agent/tool-output/` instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ToolResult {
    pub call_id: String,
    pub output: String,
}

/// A `notice` frame's data: something the turn went on without, e.g. an MCP server that could not be reached
/// (its tools were left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Notice {
    pub message: String,
}

/// One SSE frame as it goes out and as it is recorded: `id` is `<turn_id>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub id: String,
    pub event: Cow<'static, str>,
    pub data: String,
}

impl From<StoredFrame> for Frame {
    fn from(stored: StoredFrame) -> Self {
        Self {
            seq: u64::try_from(stored.seq).unwrap_or(0),
            id: format!("{}:{}", stored.turn_id, stored.seq),
            event: Cow::Owned(stored.event),
            data: stored.data,
        }
    }
}

/// The frames a client reads: a live turn's, or recorded ones replayed.
pub type Frames = mpsc::Receiver<Arc<Frame>>;

/// A stream answer: its frames, and what the response headers name (`Lambent-Session-Id`, `Lambent-Turn-Id`)
/// so a client knows a new session's id, and what to cancel, before the first frame.
#[derive(Debug)]
pub struct TurnStream {
    pub session_id: SessionId,
    /// The one turn the frames belong to; `None` for the session event stream (it may span turns).
    pub turn_id: Option<TurnId>,
    pub frames: Frames,
}

/// Why a turn ended early: an `error` frame's data, and a chat reply's `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TurnError {
    pub code: ErrorCode,
    pub message: String,
}

impl TurnError {
    /// `storage_error`: what the turn could not store.
    pub fn not_stored(message: &str) -> Self {
        Self { code: ErrorCode::StorageError, message: message.to_owned() }
    }
}

/// The `done` frame's data, the last of every turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = TurnDone)]
pub struct Done {
    #[schema(value_type = i64)]
    pub session_id: SessionId,
    pub response_id: Option<String>,
    pub status: ResponseStatus,
    pub pending_tool_calls: Vec<String>,
    /// With status `requires_approval`: the calls that wait for a person's decision (`POST
    /// /api/agent/approvals/`), also listed in `pending_tool_calls`; absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_requests: Vec<ApprovalRequest>,
    /// How many of the oldest turns the agent's `input_budget` left out of the history this turn sent (only
    /// when Lambent keeps the conversation; absent when none were).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped_turns: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_serialises_its_payload_as_the_frame_data_clients_read() {
        let function = ToolCall {
            call_id: "c1".into(),
            name: "get_weather".into(),
            kind: ToolType::Function,
            arguments: "{\"city\":\"Paris\"}".into(),
        };
        let custom = ToolCall { kind: ToolType::Custom, arguments: "free text".into(), ..function.clone() };
        let data = |event: TurnEvent| event.data().unwrap();
        assert_eq!(data(TurnEvent::TextDelta(TextDelta { delta: "Hi".into() })), r#"{"delta":"Hi"}"#);
        assert_eq!(
            data(TurnEvent::ToolCall(CallFrame::from(&function))),
            r#"{"arguments":"{\"city\":\"Paris\"}","call_id":"c1","name":"get_weather","type":"function"}"#
        );
        assert_eq!(
            data(TurnEvent::ToolCall(CallFrame::from(&custom))),
            r#"{"call_id":"c1","input":"free text","name":"get_weather","type":"custom"}"#
        );
        let result = ToolResult { call_id: "c1".into(), output: "21".into() };
        assert_eq!(data(TurnEvent::ToolResult(result)), r#"{"call_id":"c1","output":"21"}"#);
        let error = TurnError { code: ErrorCode::Cancelled, message: "stop".into() };
        assert_eq!(data(TurnEvent::Error(error)), r#"{"code":"cancelled","message":"stop"}"#);
        let done = Done {
            session_id: SessionId(3),
            response_id: None,
            status: ResponseStatus::Completed,
            pending_tool_calls: vec![],
            approval_requests: vec![],
            dropped_turns: 0,
        };
        assert_eq!(
            data(TurnEvent::Done(done.clone())),
            r#"{"session_id":3,"response_id":null,"status":"completed","pending_tool_calls":[]}"#
        );
        assert_eq!(
            data(TurnEvent::Done(Done { dropped_turns: 2, ..done })),
            r#"{"session_id":3,"response_id":null,"status":"completed","pending_tool_calls":[],"dropped_turns":2}"#
        );
    }
}
