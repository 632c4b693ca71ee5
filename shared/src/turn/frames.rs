//! What a turn reports, as events and as the SSE frames they become: numbered, recorded, replayed.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::domain::{ErrorCode, ResponseStatus};
use crate::store::StoredFrame;

/// One thing a turn reports, in order; each becomes one SSE frame.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// An upstream event, byte for byte.
    OpenAi(Box<RawValue>),
    TextDelta(String),
    ToolCall(Value),
    ToolResult {
        call_id: String,
        output: String,
    },
    Error(TurnError),
    Done(Done),
}

impl TurnEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenAi(_) => "openai_event",
            Self::TextDelta(_) => "text_delta",
            Self::ToolCall(_) => "tool_call",
            Self::ToolResult { .. } => "tool_result",
            Self::Error(_) => "error",
            Self::Done(_) => "done",
        }
    }

    /// The frame's `data:` line.
    pub fn data(&self) -> String {
        match self {
            Self::OpenAi(raw) => raw.get().to_owned(),
            Self::TextDelta(delta) => json!({"delta": delta}).to_string(),
            Self::ToolCall(call) => call.to_string(),
            Self::ToolResult { call_id, output } => json!({"call_id": call_id, "output": output}).to_string(),
            Self::Error(error) => json!(error).to_string(),
            Self::Done(done) => json!(done).to_string(),
        }
    }
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
    pub session_id: i64,
    /// The one turn the frames belong to; `None` for the session event stream (it may span turns).
    pub turn_id: Option<String>,
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
    pub session_id: i64,
    pub response_id: Option<String>,
    pub status: ResponseStatus,
    pub pending_tool_calls: Vec<String>,
}
