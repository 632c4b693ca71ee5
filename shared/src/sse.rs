//! Server-sent events framing for the stream endpoints: `event:` + `id:` (`<turn_id>:<seq>`, the same id the
//! frame is recorded under, so `Last-Event-ID` resumes exactly) + `data:`, and a `: ping` comment after a
//! stretch of silence so proxies and API Gateway keep the stream open.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

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
