//! A stub of the Lambda Runtime API on 127.0.0.1, for a real function process driven by the real
//! `lambda_runtime` loop: it hands out the events queued with [`RuntimeApi::invoke`] on
//! `GET /2018-06-01/runtime/invocation/next` (holding the poll open until one is queued, as the real API holds
//! it until an invocation comes), and reports each answer posted to `.../{id}/response` with the times its
//! parts arrived, each error posted to `.../{id}/error` or `/init/error`, and (for the bench's cold starts)
//! each poll. Like the real one (a Go server), it sets `TCP_NODELAY` on what it accepts.
//!
//! A streamed answer (`Lambda-Runtime-Function-Response-Mode: streaming`) is a JSON metadata prelude, eight
//! NUL bytes, then the body; a buffered one is API Gateway's `{"statusCode", "headers", "body", …}`.
//! Dropping the stub ends a held poll (410) and stops the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

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
    /// The whole body had arrived.
    pub end_at: Instant,
    pub streaming: bool,
    /// The body; for a streamed answer, what follows the prelude and its eight NUL bytes.
    pub body: String,
    /// The metadata prelude of a streamed answer (JSON).
    pub prelude: String,
}

impl Answer {
    /// The HTTP status the function answered: the prelude's `statusCode` for a streamed answer, the body's
    /// for a buffered one.
    pub fn status(&self) -> Option<u16> {
        let head = if self.streaming { &self.prelude } else { &self.body };
        let head: Value = serde_json::from_str(head).ok()?;
        head["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok())
    }

    /// The HTTP body the function answered: the streamed body, or the buffered answer's `body`.
    pub fn http_body(&self) -> String {
        if self.streaming {
            return self.body.clone();
        }
        let answer: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        answer["body"].as_str().unwrap_or_default().to_owned()
    }
}

/// What the function posted.
#[derive(Debug)]
pub enum Seen {
    Answer(Answer),
    /// `/init/error` or `/invocation/{id}/error`, or a broken body.
    Failed(String),
}

/// Everything the stub noticed, in order.
#[derive(Debug)]
pub enum Activity {
    /// A `GET /next` arrived: the function is initialised (the first) or idle again (the later ones).
    Polled(Instant),
    Posted(Seen),
}

/// A queued invocation.
struct Invocation {
    request_id: String,
    event: String,
    deadline: SystemTime,
}

#[derive(Clone)]
struct Stub {
    events: Arc<Mutex<mpsc::UnboundedReceiver<Invocation>>>,
    activity: mpsc::UnboundedSender<Activity>,
}

/// The stub: queue events with [`RuntimeApi::invoke`], read answers with [`RuntimeApi::next_seen`].
pub struct RuntimeApi {
    /// What `AWS_LAMBDA_RUNTIME_API` is set to.
    pub addr: SocketAddr,
    events: mpsc::UnboundedSender<Invocation>,
    activity: mpsc::UnboundedReceiver<Activity>,
    _stop: oneshot::Sender<()>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (activity_tx, activity) = mpsc::unbounded_channel();
        let stub = Stub { events: Arc::new(Mutex::new(events)), activity: activity_tx };
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(stub);
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let addr = crate::serve(app, shutdown).await.unwrap_or_else(|e| panic!("the runtime API cannot listen: {e}"));
        Self { addr, events: events_tx, activity, _stop: stop }
    }

    /// Queues an event (the JSON API Gateway or EventBridge sends) for the function's next `GET /next`, due
    /// in 900 s.
    pub fn invoke(&self, request_id: &str, event: String) {
        self.invoke_until(request_id, event, SystemTime::now() + Duration::from_secs(900));
    }

    /// Queues an event whose invocation must end by `deadline` (`Lambda-Runtime-Deadline-Ms`).
    pub fn invoke_until(&self, request_id: &str, event: String, deadline: SystemTime) {
        let invocation = Invocation { request_id: request_id.to_owned(), event, deadline };
        // The receiver lives in the server's state, as long as `self`.
        let _ = self.events.send(invocation);
    }

    /// What the function posted next (an answer or an error), within `timeout`; polls are passed over. Panics
    /// when nothing comes, as a test would.
    pub async fn next_seen(&mut self, timeout: Duration) -> Seen {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next_activity(left).await {
                Some(Activity::Posted(seen)) => return seen,
                Some(Activity::Polled(_)) => continue,
                None => panic!("the function posted nothing within {timeout:?}"),
            }
        }
    }

    /// The next thing the stub noticed, polls included; None if nothing within `timeout`.
    pub async fn next_activity(&mut self, timeout: Duration) -> Option<Activity> {
        tokio::time::timeout(timeout, self.activity.recv()).await.ok().flatten()
    }
}

async fn next(State(stub): State<Stub>) -> Response {
    let _ = stub.activity.send(Activity::Polled(Instant::now()));
    // Held open until an event is queued; the stub dropped, it ends.
    let Some(invocation) = stub.events.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = invocation.deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
    Response::builder()
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", invocation.request_id)
        .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:eu-west-1:123456789012:function:test")
        .header("lambda-runtime-trace-id", "Root=1-6744d0a3-4a2b6c1d0e9f8a7b6c5d4e3f;Parent=53995c3f42cd8ad8;Sampled=0")
        .body(Body::from(invocation.event))
        .unwrap_or_default()
}

fn report(stub: &Stub, seen: Seen) -> StatusCode {
    let _ = stub.activity.send(Activity::Posted(seen));
    StatusCode::ACCEPTED
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
            Err(err) => return report(&stub, Seen::Failed(format!("the answer broke off: {err}"))),
        };
        let now = Instant::now();
        first_byte_at.get_or_insert(now);
        bytes.extend_from_slice(&chunk);
        if streaming && first_event_at.is_none() && bytes.windows(6).any(|w| w == b"event:") {
            first_event_at = Some(now);
        }
    }
    let end_at = Instant::now();
    let (prelude, body) = match bytes.windows(8).position(|w| w == [0; 8]).filter(|_| streaming) {
        Some(at) => (&bytes[..at], &bytes[at + 8..]),
        None => (&[][..], &bytes[..]),
    };
    let answer = Answer {
        request_id,
        head_at,
        first_byte_at,
        first_event_at,
        end_at,
        streaming,
        body: String::from_utf8_lossy(body).into_owned(),
        prelude: String::from_utf8_lossy(prelude).into_owned(),
    };
    report(&stub, Seen::Answer(answer))
}

async fn invocation_error(State(stub): State<Stub>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    report(&stub, Seen::Failed(format!("invocation {id} failed: {}", String::from_utf8_lossy(&body))))
}

async fn init_error(State(stub): State<Stub>, body: Bytes) -> StatusCode {
    report(&stub, Seen::Failed(format!("init failed: {}", String::from_utf8_lossy(&body))))
}
