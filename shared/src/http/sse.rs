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

use serde_json::{Value, json};

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
    headers.insert("lambent-session-id", HeaderValue::from(session_id.0));
    if let Some(turn_id) = turn_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        headers.insert("lambent-turn-id", turn_id);
    }
    response
}

/// What the stream endpoints' OpenAPI entries say about their frames.
pub(super) const SSE_DESCRIPTION: &str = "`text/event-stream`: `openai_event` (each upstream event, \
    unchanged), `text_delta` `{delta}`, `tool_call` `{call_id, name, type, arguments|input}`, `tool_result` \
    `{call_id, output}`, `error` `{code, message}`, and always last `done` `{session_id, response_id, status, \
    pending_tool_calls}`. Every frame's `id` is `<turn_id>:<seq>`; `GET /api/sessions/{id}/events/` replays from \
    it. Each frame is an `SseEvent`; its `data` is JSON text, read as the schema its `contentSchema` names.";

/// The events, each with the schema of its `data`, as the document lists them.
const EVENTS: [(&str, &str); 6] = [
    ("text_delta", "TextDelta"),
    ("tool_call", "ToolCall"),
    ("tool_result", "ToolResult"),
    ("error", "TurnError"),
    ("done", "TurnDone"),
    ("openai_event", "OpenaiEvent"),
];

/// The frame schemas, added to the document's components: `SseEvent` (one of the six frames, told apart by
/// `event`), one `<Event>Frame` per event, and `OpenaiEvent`.
///
/// A `text/event-stream` answer's `schema` is `SseEvent`, the schema of *each frame*: OpenAPI 3.1 has no word
/// for a stream's items (3.2 adds `itemSchema`), and reading `schema` as the item's is what schemathesis and
/// hey-api's SSE client do. A frame's `data` is JSON *text*, so it is a string with `contentMediaType` and
/// `contentSchema` (JSON Schema 2020-12) naming the data's schema; schemathesis validates `data` against it.
pub(super) fn frame_schemas() -> serde_json::Map<String, Value> {
    let mut schemas = serde_json::Map::new();
    let mut one_of = Vec::new();
    let mut mapping = serde_json::Map::new();
    for (event, data) in EVENTS {
        let frame = format!("{}Frame", camel(event));
        let reference = format!("#/components/schemas/{frame}");
        one_of.push(json!({"$ref": reference}));
        mapping.insert(event.to_owned(), Value::String(reference));
        schemas.insert(
            frame,
            json!({
                "type": "object",
                "description": format!("The `{event}` frame: `data` is a `{data}` as JSON text."),
                "required": ["event", "id", "data"],
                "properties": {
                    "event": {"type": "string", "const": event},
                    "id": {"type": "string", "description": "`<turn_id>:<seq>`, the sequence increasing within the turn."},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": format!("#/components/schemas/{data}")},
                    },
                },
            }),
        );
    }
    schemas.insert(
        "SseEvent".to_owned(),
        json!({
            "description": "One frame of a `text/event-stream` answer: its `event:`, `id:` and `data:` lines \
                (the body is a sequence of them; `: ping` comments carry none).",
            "oneOf": one_of,
            "discriminator": {"propertyName": "event", "mapping": mapping},
        }),
    );
    schemas.insert(
        "OpenaiEvent".to_owned(),
        json!({
            "type": "object",
            "description": "An OpenAI Responses streaming event, exactly as the upstream sent it (`response.created`, \
                `response.output_text.delta`, ...).",
            "required": ["type"],
            "properties": {"type": {"type": "string"}},
            "additionalProperties": true,
        }),
    );
    schemas
}

/// `tool_result` → `ToolResult`.
fn camel(event: &str) -> String {
    event
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}
