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

use super::extract::JsonBody;
use super::openapi::{ErrorDetail, ValidationErrors};
use crate::auth::Caller;
use crate::domain::{MessageRequest, MessageWrite, ToolOutputRequest, ToolOutputWrite};
use crate::error::Result;
use crate::sse::stream_response;
use crate::state::AppState;
use crate::turn::{self, ChatReply, ToolOutputStart};

pub fn stream_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
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

const SSE_DESCRIPTION: &str = "`text/event-stream`: `openai_event` (each upstream event, unchanged), `text_delta` \
    `{delta}`, `tool_call` `{call_id, name, type, arguments|input}`, `tool_result` `{call_id, output}`, `error` \
    `{code, message}`, and always last `done` `{session_id, response_id, status, pending_tool_calls}`.";

/// Send a message and stream the agent's answer as server-sent events.
///
/// The user's message is stored before the model is called. Without `agent_id` the default agent answers;
/// without `session_id` a new session starts.
#[utoipa::path(post, path = "/api/agent/stream/", operation_id = "agent_stream", tag = "agent", request_body = MessageWrite,
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = String),
        (status = 400, body = ValidationErrors), (status = 404, body = ErrorDetail),
        (status = 503, description = "No model provider configured (OPENAI_API_KEY).", body = ErrorDetail)))]
async fn stream(State(state): State<AppState>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response> {
    let request = MessageRequest::parse(&body, state.config.max_message_chars)?;
    let turn = turn::start_message(&state, &caller, request).await?;
    Ok(stream_response(turn.spawn(state.clone()), state.config.sse_keepalive))
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
    responses((status = 200, description = SSE_DESCRIPTION, content_type = "text/event-stream", body = String),
        (status = 202, body = PendingToolCalls), (status = 400, body = ValidationErrors),
        (status = 404, body = ErrorDetail), (status = 409, description = "The call is not pending.", body = ErrorDetail),
        (status = 503, body = ErrorDetail)))]
async fn tool_output(State(state): State<AppState>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response> {
    let request = ToolOutputRequest::parse(&body)?;
    Ok(match turn::start_tool_output(&state, &caller, request).await? {
        ToolOutputStart::Waiting(pending) => {
            (StatusCode::ACCEPTED, Json(PendingToolCalls { pending_tool_calls: pending })).into_response()
        }
        ToolOutputStart::Ready(turn) => stream_response(turn.spawn(state.clone()), state.config.sse_keepalive),
    })
}

/// Send a message and wait for the whole answer (no streaming).
#[utoipa::path(post, path = "/api/agent/chat/", operation_id = "agent_chat", tag = "agent", request_body = MessageWrite,
    responses((status = 200, body = ChatReply), (status = 400, body = ValidationErrors), (status = 404, body = ErrorDetail),
        (status = 502, description = "The upstream failed; the user's message is stored.", body = ChatReply),
        (status = 503, body = ErrorDetail)))]
async fn chat(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ChatReply>)> {
    let reply = turn::chat(&state, &caller, MessageRequest::parse(&body, state.config.max_message_chars)?).await?;
    Ok((reply.http_status(), Json(reply)))
}
