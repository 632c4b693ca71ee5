use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::ids::{AgentId, MessageId, SessionId, UserId};
use super::wire::{KeyField, body};

/// A conversation with one agent. `previous_response_id` chains it on the Responses API.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "agent": 1, "owner": null, "previous_response_id": null, "last_output": null,
    "created_at": "2026-11-25T20:14:11.000000Z", "updated_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Session {
    #[schema(value_type = i64)]
    pub id: SessionId,
    #[schema(value_type = i64)]
    pub agent: AgentId,
    #[schema(value_type = Option<i64>)]
    pub owner: Option<UserId>,
    pub previous_response_id: Option<String>,
    /// The `output` array of the last completed response.
    #[schema(value_type = Option<Vec<Object>>)]
    pub last_output: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
}

/// One stored message of a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 2, "session": 1, "role": "assistant", "content": "Hello! How can I help?",
    "status": "completed", "response_id": "resp_123", "usage": {"input_tokens": 12, "output_tokens": 9,
    "total_tokens": 21}, "created_at": "2026-11-25T20:14:11.000000Z"}))]
pub struct Message {
    #[schema(value_type = i64)]
    pub id: MessageId,
    #[schema(value_type = i64)]
    pub session: SessionId,
    pub role: super::Role,
    pub content: String,
    /// Assistant messages: how the response ended; null for user messages.
    pub status: Option<super::ResponseStatus>,
    /// Assistant messages: the upstream response id, when the upstream created one.
    pub response_id: Option<String>,
    /// Assistant messages: token usage as the upstream reported it.
    #[schema(value_type = Option<Usage>)]
    pub usage: Option<Value>,
    pub created_at: String,
}

/// One tool call a response asked for, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "session": 1, "response_id": "resp_123", "call_id": "call_abc",
    "name": "get_weather", "type": "function", "arguments": "{\"city\":\"Paris\"}", "status": "submitted",
    "output": "{\"temp\": 21}", "created_at": "2026-11-25T20:14:11.000000Z", "updated_at": "2026-11-25T20:14:12.000000Z"}))]
pub struct ToolCallRecord {
    pub id: i64,
    #[schema(value_type = i64)]
    pub session: SessionId,
    pub response_id: String,
    pub call_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: super::ToolType,
    /// A function call's JSON arguments, or a custom call's input.
    pub arguments: String,
    pub status: super::ToolCallStatus,
    pub output: Option<String>,
    /// For a call that needs a person's decision: `required`, `approved` or `denied`; null otherwise.
    pub approval: Option<super::Approval>,
    pub created_at: String,
    pub updated_at: String,
}

body! {
    #[schema(name = "SessionWrite", example = {"agent": 1})]
    pub struct NewSession {
        agent: AgentId = AgentId::PK.required(),
    }
}

/// Token usage as the upstream reported it: the Responses API's `usage` object, with whatever else it holds
/// (`input_tokens_details`, ...), passed on unchanged.
// Read as this type where its counts are needed (a turn's token totals); kept as the upstream's JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[schema(example = json!({"input_tokens": 12, "output_tokens": 7, "total_tokens": 19}))]
pub struct Usage {
    #[schema(nullable = false)]
    pub input_tokens: Option<u64>,
    #[schema(nullable = false)]
    pub output_tokens: Option<u64>,
    #[schema(nullable = false)]
    pub total_tokens: Option<u64>,
}
