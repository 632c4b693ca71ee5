//! A stub of the Lambda Runtime API on 127.0.0.1, for a real function process (`bin/stream_function.rs`, the
//! `prune` function) driven by the real `lambda_runtime` loop: it hands out the events a test queues on
//! `GET /2018-06-01/runtime/invocation/next` and reports each answer posted to `.../{id}/response` with the
//! time its parts arrived. Like the real one (a Go server), it sets `TCP_NODELAY` on what it accepts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};

/// An answer as the Runtime API received it.
#[derive(Debug)]
pub struct Answer {
    pub request_id: String,
    /// Its head had arrived (the handler ran).
    pub head_at: Instant,
    /// The first body bytes arrived (for a streamed answer, the metadata prelude).
    pub first_byte_at: Option<Instant>,
    /// The first SSE `event:` of a streamed answer arrived.
    pub first_event_at: Option<Instant>,
    pub streaming: bool,
    /// The body; for a streamed answer, what follows the prelude and its eight NUL bytes.
    pub body: String,
    /// The metadata prelude of a streamed answer (JSON).
    pub prelude: String,
}

#[derive(Debug)]
pub enum Seen {
    Answer(Answer),
    /// `/init/error` or `/invocation/{id}/error`, or a broken body.
    Failed(String),
}

/// A queued invocation: request id, event, deadline.
type Invocation = (String, String, SystemTime);

#[derive(Clone)]
struct Stub {
    events: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    seen: mpsc::UnboundedSender<Seen>,
}

/// The stub: queue events with [`RuntimeApi::invoke`], read answers with [`RuntimeApi::next_seen`].
pub struct RuntimeApi {
    pub addr: SocketAddr,
    events: mpsc::UnboundedSender<Invocation>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        let stub = Stub { events: Arc::new(Mutex::new(events)), seen: seen_tx };
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(stub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the runtime API");
        let addr = listener.local_addr().expect("addr");
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await.expect("runtime API serve") });
        Self { addr, events: events_tx, seen }
    }

    /// Queues an event (the JSON API Gateway sends) for the function's next `GET /next`, due in 900 s.
    pub fn invoke(&self, request_id: &str, event: String) {
        self.invoke_until(request_id, event, SystemTime::now() + Duration::from_secs(900));
    }

    /// Queues an event whose invocation must end by `deadline` (`Lambda-Runtime-Deadline-Ms`).
    pub fn invoke_until(&self, request_id: &str, event: String, deadline: SystemTime) {
        self.events.send((request_id.to_owned(), event, deadline)).expect("the stub is running");
    }

    /// What the function posted next (an answer or an error), within `timeout`.
    pub async fn next_seen(&mut self, timeout: Duration) -> Seen {
        tokio::time::timeout(timeout, self.seen.recv())
            .await
            .unwrap_or_else(|_| panic!("the function posted nothing within {timeout:?}"))
            .expect("the stub is running")
    }
}

async fn next(State(stub): State<Stub>) -> Response {
    // Held open until the test queues an event, as the real API holds it until an invocation comes.
    let Some((request_id, event, deadline)) = stub.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
    Response::builder()
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", request_id)
        .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:eu-west-1:123456789012:function:test")
        .header("lambda-runtime-trace-id", "Root=1-6744d0a3-4a2b6c1d0e9f8a7b6c5d4e3f;Parent=53995c3f42cd8ad8;Sampled=0")
        .body(Body::from(event))
        .unwrap_or_default()
}

async fn response(
    State(stub): State<Stub>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let head_at = Instant::now();
    let streaming = headers.get("lambda-runtime-function-response-mode").is_some_and(|v| v == "streaming");
    let (mut first_byte_at, mut first_event_at, mut bytes) = (None, None, Vec::new());
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                let _ = stub.seen.send(Seen::Failed(format!("the answer broke off: {err}")));
                return StatusCode::ACCEPTED;
            }
        };
        let now = Instant::now();
        first_byte_at.get_or_insert(now);
        bytes.extend_from_slice(&chunk);
        if streaming && first_event_at.is_none() && bytes.windows(6).any(|w| w == b"event:") {
            first_event_at = Some(now);
        }
    }
    let (prelude, body) = match bytes.windows(8).position(|w| w == [0; 8]).filter(|_| streaming) {
        Some(at) => (&bytes[..at], &bytes[at + 8..]),
        None => (&[][..], &bytes[..]),
    };
    let answer = Answer {
        request_id,
        head_at,
        first_byte_at,
        first_event_at,
        streaming,
        body: String::from_utf8_lossy(body).into_owned(),
        prelude: String::from_utf8_lossy(prelude).into_owned(),
    };
    let _ = stub.seen.send(Seen::Answer(answer));
    StatusCode::ACCEPTED
}

async fn invocation_error(State(stub): State<Stub>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    let _ = stub.seen.send(Seen::Failed(format!("invocation {id} failed: {}", String::from_utf8_lossy(&body))));
    StatusCode::ACCEPTED
}

async fn init_error(State(stub): State<Stub>, body: Bytes) -> StatusCode {
    let _ = stub.seen.send(Seen::Failed(format!("init failed: {}", String::from_utf8_lossy(&body))));
    StatusCode::ACCEPTED
}
