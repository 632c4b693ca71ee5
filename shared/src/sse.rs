//! Server-sent events framing for the stream endpoints: `event:` + `id:` (increasing within the turn) +
//! `data:`, and a `: ping` comment after a stretch of silence so proxies and API Gateway keep the stream open.

use std::convert::Infallible;
use std::time::Duration;

use axum::http::HeaderValue;
use axum::http::header::CACHE_CONTROL;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use crate::turn::TurnEvent;

pub fn stream_response(events: mpsc::Receiver<TurnEvent>, keepalive: Duration) -> Response {
    let frames = futures::stream::unfold((events, 0_u64), |(mut events, seq)| async move {
        let event = events.recv().await?;
        let seq = seq + 1;
        let frame = Event::default().event(event.name()).id(seq.to_string()).data(event.data());
        Some((Ok::<_, Infallible>(frame), (events, seq)))
    });
    let mut response = Sse::new(frames).keep_alive(KeepAlive::new().interval(keepalive).text("ping")).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells nginx-style proxies not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
