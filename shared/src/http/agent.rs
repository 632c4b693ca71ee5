//! The conversation endpoints: `/api/agent/stream/`, `/api/agent/tool-output/` (both SSE) and
//! `/api/agent/chat/` (JSON). Each is its own group, so each can be its own Lambda function.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{IdempotencyKey, JsonBody};
use super::openapi::{ErrorDetail, ValidationErrors};
use crate::auth::Caller;
use crate::domain::{MessageRequest, MessageWrite, ToolOutputRequest, ToolOutputWrite};
use crate::error::Result;
use crate::sse::stream_response;
use crate::state::AppState;
use crate::turn::{self, ChatReply, ToolOutputStart};

/// What the conversation endpoints say about `Idempotency-Key`.
const KEY_DESCRIPTION: &str = "Optional, 1 to 255 visible ASCII characters, remembered for 24 hours per user. A \
    retried request with the same key and body gets the first one's outcome (its recorded frames, or its JSON \
    answer) without a second model call; 409 while the first still runs; 422 for a different request.";

/// `/api/agent/stream/` and the session event stream: the two that answer with live frames for long.
pub fn stream_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream)).merge(super::sessions::events_api())
}

pub fn tool_output_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(tool_output))
}

pub fn chat_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat))
}

pub fn stream_router(state: AppState) -> Router {
    super::finish(stream_api(), state)
}

pub fn tool_output_router(state: AppState) -> Router {
    super::finish(tool_output_api(), state)
}

pub fn chat_router(state: AppState) -> Router {
    super::finish(chat_api(), state)
}

pub(super) const SSE_DESCRIPTION: &str = "`text/event-stream`: `openai_event` (each upstream event, \
    unchanged), `text_delta` `{delta}`, `tool_call` `{call_id, name, type, arguments|input}`, `tool_result` \
    `{call_id, output}`, `error` `{code, message}`, and always last `done` `{session_id, response_id, status, \
    pending_tool_calls}`. Every frame's `id` is `<turn_id>:<seq>`; `GET /api/sessions/{id}/events/` replays from it.";

/// One frame of a `text/event-stream` answer (the body is a sequence of them; `: ping` comments carry none).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SseEvent {
    event: SseEventName,
    /// `<turn_id>:<seq>`, the sequence increasing within the turn.
    id: String,
    /// The event's payload: a JSON object, as text.
    #[schema(content_media_type = "application/json")]
    data: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum SseEventName {
    OpenaiEvent,
    TextDelta,
    ToolCall,
    ToolResult,
    Error,
    Done,
}

/// Send a message and stream the agent's answer as server-sent events.
///
/// The user's message is stored before the model is called. Without `agent_id` the default agent answers;
/// without `session_id` a new session starts.
#[utoipa::path(post, path = "/api/agent/stream/", operation_id = "agent_stream", tag = "agent", request_body = MessageWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = SseEvent,
            headers(("Lambent-Session-Id" = i64, description = "The session the turn runs in (a new one's id too)."),
                ("Lambent-Turn-Id" = String, description = "The turn: what `POST /api/sessions/{id}/cancel/` stops."))),
        (status = 400, body = ValidationErrors), (status = 404, body = ErrorDetail),
        (status = 409, description = "A turn (or this key's request) is still running.", body = TurnRunning),
        (status = 422, description = "The Idempotency-Key was used for another request.", body = ErrorDetail),
        (status = 503, description = "No model provider configured (OPENAI_API_KEY).", body = ErrorDetail)))]
async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = MessageRequest::parse(&body, state.config.max_message_chars)?;
    let frames = turn::stream(&state, &caller, request, key.as_deref(), &body).await?;
    Ok(stream_response(frames, state.config.sse_keepalive))
}

/// 409 while another turn runs on the session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnRunning {
    pub detail: String,
    pub turn_id: String,
}

/// Outputs still missing before the continuation can start.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingToolCalls {
    pub pending_tool_calls: Vec<String>,
}

/// Submit tool outputs and stream the continuation.
///
/// With parallel calls, outputs are collected until every call of the response has one: earlier submissions
/// answer 202 with the calls still pending; the last one streams the continuation with all outputs.
#[utoipa::path(post, path = "/api/agent/tool-output/", operation_id = "agent_tool_output", tag = "agent",
    request_body = ToolOutputWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = SseEvent,
            headers(("Lambent-Session-Id" = i64, description = "The session the turn runs in (a new one's id too)."),
                ("Lambent-Turn-Id" = String, description = "The turn: what `POST /api/sessions/{id}/cancel/` stops."))),
        (status = 202, body = PendingToolCalls), (status = 400, body = ValidationErrors),
        (status = 404, body = ErrorDetail),
        (status = 409, description = "The call is not pending, or a turn is still running.", body = ErrorDetail),
        (status = 422, description = "The Idempotency-Key was used for another request.", body = ErrorDetail),
        (status = 503, body = ErrorDetail)))]
async fn tool_output(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let request = ToolOutputRequest::parse(&body)?;
    Ok(match turn::tool_output(&state, &caller, request, key.as_deref(), &body).await? {
        ToolOutputStart::Waiting(pending) => (StatusCode::ACCEPTED, Json(pending)).into_response(),
        ToolOutputStart::Streaming(frames) => stream_response(frames, state.config.sse_keepalive),
    })
}

/// Send a message and wait for the whole answer (no streaming).
#[utoipa::path(post, path = "/api/agent/chat/", operation_id = "agent_chat", tag = "agent", request_body = MessageWrite,
    params(("Idempotency-Key" = Option<String>, Header, description = KEY_DESCRIPTION)),
    responses((status = 200, body = ChatReply), (status = 400, body = ValidationErrors), (status = 404, body = ErrorDetail),
        (status = 409, description = "A turn (or this key's request) is still running.", body = TurnRunning),
        (status = 422, description = "The Idempotency-Key was used for another request.", body = ErrorDetail),
        (status = 502, description = "The upstream failed; the user's message is stored.", body = ChatReply),
        (status = 503, body = ErrorDetail)))]
async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<serde_json::Value>)> {
    let request = MessageRequest::parse(&body, state.config.max_message_chars)?;
    let (status, reply) = turn::chat(&state, &caller, request, key.as_deref(), &body).await?;
    Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(reply)))
}
