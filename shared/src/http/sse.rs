//! Server-sent events for the stream endpoints (`/api/agent/stream/`, `/api/agent/tool-output/`,
//! `/api/sessions/{id}/events/`): the framing, and what their OpenAPI entries say about the frames.
//!
//! Framing: `event:` + `id:` (`<turn_id>:<seq>`, the same id the frame is recorded under, so `Last-Event-ID`
//! resumes exactly) + `data:`, and a `: ping` comment after a stretch of silence so proxies and API Gateway
//! keep the stream open. The bytes are axum's `Sse` framing (a unit test holds them to it), written in one
//! buffer per frame: axum's `Event` builder grew its buffer field by field and split the data through a
//! writer, ~3.5k instructions a frame (issue 24 part 5, BENCHMARKS.md).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderValue;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::Response;

use serde_json::{Value, json};

use crate::turn::{Frame, TurnStream};

/// The keep-alive comment.
const PING: &[u8] = b": ping\n\n";

/// The SSE answer for a turn stream, with its `Lambent-Session-Id` / `Lambent-Turn-Id` headers.
pub fn stream_response(stream: TurnStream, keepalive: Duration) -> Response {
    let TurnStream { session_id, turn_id, frames } = stream;
    // As axum's keep-alive: a ping when no frame came for `keepalive`, the wait starting again after each.
    let timer = Box::pin(tokio::time::sleep(keepalive));
    let body = futures::stream::unfold((frames, timer), move |(mut frames, mut timer)| async move {
        // `None` when the frames have ended; `Some(None)` when the wait ran out.
        let next = tokio::select! {
            biased;
            frame = frames.recv() => frame.map(Some),
            () = &mut timer => Some(None),
        };
        let frame = next?;
        let bytes = frame.map_or_else(|| PING.to_vec(), |frame| encode(&frame));
        timer.as_mut().reset(tokio::time::Instant::now() + keepalive);
        Some((Ok::<_, Infallible>(bytes), (frames, timer)))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert("lambent-session-id", HeaderValue::from(session_id.0));
    if let Some(turn_id) = turn_id.and_then(|id| HeaderValue::from_str(id.as_str()).ok()) {
        headers.insert("lambent-turn-id", turn_id);
    }
    response
}

/// One frame's bytes: `event: <event>\nid: <id>\ndata: <data>\n\n`, a line break (`\n` or `\r`) in the data
/// starting a new `data: ` line after it, as axum's `Event` writes them. Event names and ids hold no line
/// breaks (the names are fixed, the ids `<turn_id>:<seq>`).
fn encode(frame: &Frame) -> Vec<u8> {
    let data = frame.data.as_bytes();
    let mut out = Vec::with_capacity(frame.event.len() + frame.id.len() + data.len() + 24);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(frame.event.as_bytes());
    out.extend_from_slice(b"\nid: ");
    out.extend_from_slice(frame.id.as_bytes());
    out.push(b'\n');
    if !data.is_empty() {
        out.extend_from_slice(b"data: ");
        let mut start = 0;
        for i in memchr::memchr2_iter(b'\n', b'\r', data) {
            out.extend_from_slice(&data[start..=i]);
            out.extend_from_slice(b"data: ");
            start = i + 1;
        }
        out.extend_from_slice(&data[start..]);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// What the stream endpoints' OpenAPI entries say about their frames.
pub(super) const SSE_DESCRIPTION: &str = "`text/event-stream`: `openai_event` (each upstream event, \
    unchanged), `text_delta` `{delta}`, `tool_call` `{call_id, name, type, arguments|input}`, `tool_result` \
    `{call_id, output}`, `notice` `{message}` (e.g. an MCP server left out), `error` `{code, message}`, and always \
    last `done` `{session_id, response_id, status, pending_tool_calls, approval_requests?}`. Every frame's `id` is `<turn_id>:<seq>`; `GET /api/sessions/{id}/events/` replays from \
    it. Each frame is an `SseEvent`; its `data` is JSON text, read as the schema its `contentSchema` names.";

/// The events, each with the schema of its `data`, as the document lists them.
const EVENTS: [(&str, &str); 7] = [
    ("text_delta", "TextDelta"),
    ("tool_call", "ToolCall"),
    ("tool_result", "ToolResult"),
    ("notice", "Notice"),
    ("error", "TurnError"),
    ("done", "TurnDone"),
    ("openai_event", "OpenaiEvent"),
];

/// The frame schemas, added to the document's components: `SseEvent` (one of the seven frames, told apart by
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

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use axum::response::IntoResponse;
    use axum::response::sse::{Event, KeepAlive, Sse};

    use super::*;

    /// What axum's `Sse` sends for these events, keep-alive first.
    async fn axum_bytes(events: Vec<Event>) -> Vec<u8> {
        let ping = Sse::new(futures::stream::pending::<Result<Event, Infallible>>())
            .keep_alive(KeepAlive::new().interval(Duration::from_millis(1)).text("ping"))
            .into_response();
        let mut body = ping.into_body().into_data_stream();
        let mut out = futures::StreamExt::next(&mut body).await.unwrap().unwrap().to_vec();
        let events = Sse::new(futures::stream::iter(events.into_iter().map(Ok::<_, Infallible>))).into_response();
        out.extend_from_slice(&axum::body::to_bytes(events.into_body(), usize::MAX).await.unwrap());
        out
    }

    #[tokio::test]
    async fn frames_are_the_bytes_axums_sse_framing_writes() {
        let frames: Vec<Frame> = [
            ("openai_event", r#"{"type":"response.output_text.delta","delta":"Hi"}"#),
            ("text_delta", "{\"delta\":\"a\"}\nsecond line\r\nthird\rfourth\n"),
            ("done", ""),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (event, data))| Frame {
            seq: i as u64 + 1,
            id: format!("turn_x:{}", i + 1),
            event: Cow::Borrowed(event),
            data: data.to_owned(),
        })
        .collect();
        let events = frames.iter().map(|f| Event::default().event(&*f.event).id(&f.id).data(&f.data)).collect();
        let mut ours = PING.to_vec();
        for frame in &frames {
            ours.extend(encode(frame));
        }
        assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(axum_bytes(events).await).unwrap());
    }
}
