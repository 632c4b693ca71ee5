//! Server-sent events for the stream endpoints (`/api/agent/stream/`, `/api/agent/tool-output/`,
//! `/api/sessions/{id}/events/`): the framing, and what their OpenAPI entries say about the frames.
//!
//! Framing: `event:` + `id:` (`<turn_id>:<seq>`, the same id the frame is recorded under, so `Last-Event-ID`
//! resumes exactly) + `data:`, and a `: ping` comment after a stretch of silence so proxies and API Gateway
//! keep the stream open.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use utoipa::ToSchema;

use crate::turn::TurnStream;

/// The SSE answer for a turn stream, with its `Lambent-Session-Id` / `Lambent-Turn-Id` headers.
pub fn stream_response(stream: TurnStream, keepalive: Duration) -> Response {
    let TurnStream { session_id, turn_id, frames } = stream;
    let frames = futures::stream::unfold(frames, |mut frames| async move {
        let frame = frames.recv().await?;
        let event = Event::default().event(&*frame.event).id(&frame.id).data(&frame.data);
        Some((Ok::<_, Infallible>(event), frames))
    });
    let mut response = Sse::new(frames).keep_alive(KeepAlive::new().interval(keepalive).text("ping")).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("lambent-session-id", HeaderValue::from(session_id));
    if let Some(turn_id) = turn_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        headers.insert("lambent-turn-id", turn_id);
    }
    response
}

/// What the stream endpoints' OpenAPI entries say about their frames.
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
