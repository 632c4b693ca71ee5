//! The conversation endpoints: `/api/agent/stream/`, `/api/agent/tool-output/`, `/api/agent/approvals/` (SSE)
//! and `/api/agent/chat/` (JSON). Each is its own group, so each can be its own Lambda function.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{IdempotencyKey, JsonBody, LeaseTime};
use super::openapi::{
    ErrorDetail, IDEMPOTENCY_REUSED, INVALID_FIELDS, NO_PROVIDER, OVER_BUDGET, TurnRunning, ValidationErrors,
};
use super::sse::{SSE_DESCRIPTION, stream_response};
use crate::domain::{
    ApprovalRequest, ApprovalWrite, Caller, MessageId, MessageRequest, MessageWrite, PendingToolCalls, ResponseStatus,
    Role, SessionId, Submitted, ToolOutputRequest, ToolOutputWrite,
};
use crate::error::BudgetExceeded;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::KeptAnswer;
use crate::turn::{self, ChatOutcome, ToolOutputStart, TurnEnd, TurnError};

/// A 404 from the conversation endpoints.
const NOT_FOUND: &str = "The named agent or session does not exist, or is not yours to see.";

/// What the conversation endpoints say about `Idempotency-Key`.
const KEY_DESCRIPTION: &str = "Optional, 1 to 255 visible ASCII characters, remembered for 24 hours per user. A \
    retried request with the same key and body gets the first one's outcome (its recorded frames, or its JSON \
    answer) without a second model call; 409 while the first still runs; 422 for a different request.";

pub fn stream_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

pub fn tool_output_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(tool_output)).routes(routes!(approvals))
}

pub fn chat_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat))
}

/// Send a message and stream the agent's answer as server-sent events.
///
/// The user's message is stored before the model is called. Without `agent_id` the default agent answers;
/// without `session_id` a new session starts.
#[utoipa::path(post, path = "/api/agent/stream/", operation_id = "agent_stream", tag = "agent", request_body = MessageWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = String,
            headers(("Lambent-Session-Id" = i64, description = "The session the turn runs in (a new one's id too)."),
                ("Lambent-Turn-Id" = String, description = "The turn: what `POST /api/sessions/{id}/cancel/` stops."))),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors),
        (status = 404, description = NOT_FOUND, body = ErrorDetail),
        (status = 409, description = "A turn (or this key's request) is still running.", body = TurnRunning),
        (status = 422, description = IDEMPOTENCY_REUSED, body = ErrorDetail),
        (status = 429, description = OVER_BUDGET, body = BudgetExceeded),
        (status = 503, description = NO_PROVIDER, body = ErrorDetail)))]
async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    LeaseTime(lease): LeaseTime,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = MessageRequest::parse(&body, &state.config.limits)?;
    let frames = turn::stream(&state, &caller, request, lease, key.as_deref(), &body).await?;
    Ok(stream_response(frames, state.config.sse_keepalive))
}

/// Submit tool outputs and stream the continuation.
///
/// With parallel calls, outputs are collected until every call of the response has one: earlier submissions
/// answer 202 with the calls still pending; the last one streams the continuation with all outputs.
#[utoipa::path(post, path = "/api/agent/tool-output/", operation_id = "agent_tool_output", tag = "agent",
    request_body = ToolOutputWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = String,
            headers(("Lambent-Session-Id" = i64, description = "The session the turn runs in (a new one's id too)."),
                ("Lambent-Turn-Id" = String, description = "The turn: what `POST /api/sessions/{id}/cancel/` stops."))),
        (status = 202, description = "Accepted: other calls of the turn still wait for their output.", body = PendingToolCalls),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors),
        (status = 404, description = "No such session or pending tool call, or not yours to see.", body = ErrorDetail),
        (status = 409, description = "The call is not pending, or a turn is still running.", body = ErrorDetail),
        (status = 422, description = IDEMPOTENCY_REUSED, body = ErrorDetail),
        (status = 429, description = OVER_BUDGET, body = BudgetExceeded),
        (status = 503, description = NO_PROVIDER, body = ErrorDetail)))]
async fn tool_output(
    State(state): State<AppState>,
    caller: Caller,
    LeaseTime(lease): LeaseTime,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = ToolOutputRequest::parse(&body)?;
    Ok(started(&state, turn::tool_output(&state, &caller, request, lease, key.as_deref(), &body).await?))
}

/// Approve or deny tool calls that wait for a person's decision, and stream the continuation.
///
/// A turn whose `done` has status `requires_approval` lists its `approval_requests`; their calls run only once
/// approved. As with tool outputs, decisions are collected until every call of the response is answered or
/// decided (202 until then); the last submission streams the continuation: approved calls run on the server
/// first (`tool_result` frames), denied ones answer the model with the reason.
#[utoipa::path(post, path = "/api/agent/approvals/", operation_id = "agent_approvals", tag = "agent",
    request_body = ApprovalWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = String,
            headers(("Lambent-Session-Id" = i64, description = "The session the turn runs in."),
                ("Lambent-Turn-Id" = String, description = "The turn: what `POST /api/sessions/{id}/cancel/` stops."))),
        (status = 202, description = "Accepted: other calls of the response still wait for an output or a decision.", body = PendingToolCalls),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors),
        (status = 404, description = "No such session or tool call, or not yours to see.", body = ErrorDetail),
        (status = 409, description = "The call was already decided, needs no approval, or a turn is still running.", body = ErrorDetail),
        (status = 422, description = IDEMPOTENCY_REUSED, body = ErrorDetail),
        (status = 429, description = OVER_BUDGET, body = BudgetExceeded),
        (status = 503, description = NO_PROVIDER, body = ErrorDetail)))]
async fn approvals(
    State(state): State<AppState>,
    caller: Caller,
    LeaseTime(lease): LeaseTime,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = Submitted::decisions(&body)?;
    Ok(started(&state, turn::approvals(&state, &caller, request, lease, key.as_deref(), &body).await?))
}

/// A submission's answer: 202 with what still waits, or the continuation's frames.
fn started(state: &AppState, start: ToolOutputStart) -> Response {
    match start {
        ToolOutputStart::Waiting(pending) => (StatusCode::ACCEPTED, Json(pending)).into_response(),
        ToolOutputStart::Streaming(frames) => stream_response(frames, state.config.sse_keepalive),
    }
}

/// Send a message and wait for the whole answer (no streaming).
#[utoipa::path(post, path = "/api/agent/chat/", operation_id = "agent_chat", tag = "agent", request_body = MessageWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, description = "The agent's answer, after any tool calls.", body = ChatReply),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors),
        (status = 404, description = NOT_FOUND, body = ErrorDetail),
        (status = 409, description = "A turn (or this key's request) is still running.", body = TurnRunning),
        (status = 422, description = IDEMPOTENCY_REUSED, body = ErrorDetail),
        (status = 502, description = "The upstream failed; the user's message is stored.", body = ChatReply),
        (status = 429, description = OVER_BUDGET, body = BudgetExceeded),
        (status = 503, description = NO_PROVIDER, body = ErrorDetail)))]
async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    LeaseTime(lease): LeaseTime,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = MessageRequest::parse(&body, &state.config.limits)?;
    Ok(chat_response(turn::chat(&state, &caller, request, lease, key.as_deref(), &body, ChatReply::kept).await?))
}

/// The chat endpoint's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    #[schema(value_type = i64)]
    pub session_id: SessionId,
    pub response_id: Option<String>,
    pub status: ResponseStatus,
    pub message: Option<ChatMessage>,
    pub output_text: String,
    pub pending_tool_calls: Vec<String>,
    /// With status `requires_approval`: the calls that wait for `POST /api/agent/approvals/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval_requests: Vec<ApprovalRequest>,
    #[schema(value_type = Option<crate::domain::Usage>)]
    pub usage: Option<Value>,
    /// Why the turn ended early, when it did.
    pub error: Option<TurnError>,
    /// The error message again, DRF-style, when the upstream failed (502).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessage {
    #[schema(value_type = i64)]
    pub id: MessageId,
    pub role: Role,
    pub content: String,
    pub created_at: String,
}

impl From<TurnEnd> for ChatReply {
    fn from(end: TurnEnd) -> Self {
        let upstream_failed = end.error.as_ref().is_some_and(|e| e.code.is_failure());
        Self {
            session_id: end.done.session_id,
            response_id: end.done.response_id,
            status: end.done.status,
            message: end.message.map(|m| ChatMessage {
                id: m.id,
                role: m.role,
                content: m.content,
                created_at: m.created_at,
            }),
            output_text: end.output_text,
            pending_tool_calls: end.done.pending_tool_calls,
            approval_requests: end.done.approval_requests,
            usage: end.usage,
            detail: upstream_failed.then(|| end.error.as_ref().map(|e| e.message.clone())).flatten(),
            error: end.error,
        }
    }
}

impl ChatReply {
    /// 502 when the upstream failed the turn; 200 otherwise.
    pub fn http_status(&self) -> StatusCode {
        if self.detail.is_some() { StatusCode::BAD_GATEWAY } else { StatusCode::OK }
    }

    /// The reply a keyed chat's retries get, recorded with the turn's end.
    fn kept(end: &TurnEnd) -> Result<KeptAnswer> {
        let reply = Self::from(end.clone());
        let body = serde_json::to_string(&reply).map_err(|e| Error::internal("a chat reply's JSON", e))?;
        Ok(KeptAnswer { status: reply.http_status(), body })
    }
}

impl IntoResponse for ChatReply {
    fn into_response(self) -> Response {
        (self.http_status(), Json(self)).into_response()
    }
}

fn chat_response(outcome: ChatOutcome) -> Response {
    match outcome {
        ChatOutcome::Ran(end) => ChatReply::from(*end).into_response(),
        ChatOutcome::Replayed { status, body } => (status, Json(body)).into_response(),
    }
}
