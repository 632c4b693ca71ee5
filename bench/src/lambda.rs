//! Cold start and memory of each Lambda function, through a stub of the Lambda Runtime API.
//!
//! The stub hands a function exactly one API Gateway REST proxy event (the shape of
//! `tests/fixtures/apigw_rest_*.json`) on `GET /2018-06-01/runtime/invocation/next`, takes the answer on
//! `POST .../invocation/{id}/response` (a streamed body for the streaming functions: a JSON prelude, eight
//! NUL bytes, then the SSE body), and holds the function's next `GET .../next` open: that call is the sign
//! that the function is idle again, when its peak RSS is read. Errors (`/init/error`, `/invocation/{id}/error`)
//! are failures.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::relay::ms;
use crate::server::{Env, Result, status_mb};

/// What a function is sent.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub method: &'static str,
    pub path: &'static str,
    pub body: Option<Value>,
    /// The status the answer must carry.
    pub expect: u16,
}

/// The ten functions and a request that reaches each: an authenticated list for the CRUD groups, the OpenAPI
/// document, the caller for `auth`, a real turn against the fake upstream for `agent-chat` and
/// `agent-stream`, and a tool output for a session that does not exist (404 after auth and validation) for
/// `tool-output`.
pub fn functions() -> Vec<(&'static str, Invocation)> {
    let get = |path| Invocation { method: "GET", path, body: None, expect: 200 };
    vec![
        ("agents", get("/api/agents/")),
        ("tools", get("/api/tools/")),
        ("agent-tools", get("/api/agent-tools/")),
        ("templates", get("/api/templates/")),
        ("sessions", get("/api/sessions/")),
        ("docs", get("/api/openapi.json")),
        ("auth", get("/api/auth/me/")),
        (
            "agent-chat",
            Invocation {
                method: "POST",
                path: "/api/agent/chat/",
                body: Some(json!({"message": "bench"})),
                expect: 200,
            },
        ),
        (
            "agent-stream",
            Invocation {
                method: "POST",
                path: "/api/agent/stream/",
                body: Some(json!({"message": "bench"})),
                expect: 200,
            },
        ),
        (
            "tool-output",
            Invocation {
                method: "POST",
                path: "/api/agent/tool-output/",
                body: Some(json!({"session_id": 999_999_999, "call_id": "call_bench", "output": "x"})),
                expect: 404,
            },
        ),
    ]
}

/// The functions the 25 ms cold-start target is about: buffered, and no model call in the request.
pub fn is_crud(name: &str) -> bool {
    ["agents", "tools", "agent-tools", "templates", "sessions", "docs", "auth"].contains(&name)
}

/// One cold start.
#[derive(Debug, Clone)]
pub struct ColdStart {
    /// exec → the whole answer received by the runtime API.
    pub answered_ms: f64,
    /// exec → the first byte of the answer (for streaming functions, the metadata prelude).
    pub first_byte_ms: f64,
    /// exec → the first SSE `event:` of a streamed answer (NaN for buffered ones).
    pub first_event_ms: f64,
    /// exec → the function's first `GET /next` (its initialisation, before any request).
    pub ready_ms: f64,
    /// VmHWM once the function waits for its next invocation.
    pub peak_rss_mb: f64,
}

/// What the stub saw.
#[derive(Debug)]
enum Seen {
    /// The first `GET /next`: the function has initialised.
    Ready(Instant),
    /// The answer: first byte, first SSE event (streamed answers), end, status code, body.
    Answered {
        first: Instant,
        first_event: Option<Instant>,
        end: Instant,
        status: u16,
        body: String,
    },
    /// `GET /next` again: the function is idle.
    Idle,
    Failed(String),
}

#[derive(Clone)]
struct Stub {
    event: Arc<Mutex<Option<(String, Bytes)>>>,
    seen: mpsc::UnboundedSender<Seen>,
    /// Becomes true when the measurement is over: releases the held `GET /next`.
    over: watch::Receiver<bool>,
}

async fn next(State(stub): State<Stub>) -> Response {
    let event = stub.event.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some((request_id, event)) = event else {
        // The invocation was served: hold this poll open until the measurement is over.
        let _ = stub.seen.send(Seen::Idle);
        let mut over = stub.over.clone();
        let _ = over.wait_for(|over| *over).await;
        return StatusCode::GONE.into_response();
    };
    let _ = stub.seen.send(Seen::Ready(Instant::now()));
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default() + Duration::from_secs(900);
    Response::builder()
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", request_id)
        .header("lambda-runtime-deadline-ms", deadline.as_millis().to_string())
        .header("lambda-runtime-invoked-function-arn", "arn:aws:lambda:eu-west-1:123456789012:function:bench")
        .header("lambda-runtime-trace-id", "Root=1-6744d0a3-4a2b6c1d0e9f8a7b6c5d4e3f;Parent=53995c3f42cd8ad8;Sampled=0")
        .body(Body::from(event))
        .unwrap_or_default()
}

async fn response(
    State(stub): State<Stub>,
    UrlPath(_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> StatusCode {
    let streaming = headers.get("lambda-runtime-function-response-mode").is_some_and(|v| v == "streaming");
    let mut chunks = body.into_data_stream();
    let (mut first, mut first_event, mut bytes) = (None, None, Vec::new());
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                let now = Instant::now();
                first.get_or_insert(now);
                bytes.extend_from_slice(&chunk);
                if streaming && first_event.is_none() && bytes.windows(6).any(|w| w == b"event:") {
                    first_event = Some(now);
                }
            }
            Err(err) => {
                let _ = stub.seen.send(Seen::Failed(format!("the answer broke off: {err}")));
                return StatusCode::ACCEPTED;
            }
        }
    }
    let end = Instant::now();
    let (status, body) = if streaming { streamed_answer(&bytes) } else { buffered_answer(&bytes) };
    let _ = stub.seen.send(Seen::Answered { first: first.unwrap_or(end), first_event, end, status, body });
    StatusCode::ACCEPTED
}

/// A buffered answer: `{"statusCode", "headers", "body", "isBase64Encoded"}`.
fn buffered_answer(bytes: &[u8]) -> (u16, String) {
    let answer: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let status = answer["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    (status, answer["body"].as_str().unwrap_or_default().to_owned())
}

/// A streamed answer: the metadata prelude (JSON), eight NUL bytes, then the body.
fn streamed_answer(bytes: &[u8]) -> (u16, String) {
    let split = bytes.windows(8).position(|w| w == [0; 8]);
    let (prelude, body) = match split {
        Some(at) => (&bytes[..at], &bytes[at + 8..]),
        None => (bytes, &[][..]),
    };
    let prelude: Value = serde_json::from_slice(prelude).unwrap_or(Value::Null);
    let status = prelude["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).unwrap_or(0);
    (status, String::from_utf8_lossy(body).into_owned())
}

async fn error(State(stub): State<Stub>, body: Bytes) -> StatusCode {
    let _ = stub.seen.send(Seen::Failed(format!("runtime error: {}", String::from_utf8_lossy(&body))));
    StatusCode::ACCEPTED
}

async fn invocation_error(State(stub): State<Stub>, UrlPath(_id): UrlPath<String>, body: Bytes) -> StatusCode {
    error(State(stub), body).await
}

/// An API Gateway REST proxy event for `invocation`, as `tests/fixtures/apigw_rest_get_agents.json` is shaped.
fn event(invocation: &Invocation, token: &str, request_id: &str) -> Value {
    let mut headers = json!({
        "Accept": "application/json",
        "Authorization": format!("Bearer {token}"),
        "Host": "abc123defg.execute-api.eu-west-1.amazonaws.com",
        "User-Agent": "lambent-bench",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https"
    });
    if invocation.body.is_some() {
        headers["Content-Type"] = json!("application/json");
    }
    let multi: serde_json::Map<String, Value> =
        headers.as_object().into_iter().flatten().map(|(k, v)| (k.clone(), json!([v]))).collect();
    let resource = invocation.path.trim_end_matches('/');
    json!({
        "resource": resource,
        "path": invocation.path,
        "httpMethod": invocation.method,
        "headers": headers,
        "multiValueHeaders": multi,
        "queryStringParameters": null,
        "multiValueQueryStringParameters": null,
        "pathParameters": null,
        "stageVariables": null,
        "requestContext": {
            "resourceId": "k3x9qa",
            "resourcePath": resource,
            "httpMethod": invocation.method,
            "requestTime": "25/Nov/2026:20:14:11 +0000",
            "path": format!("/prod{}", invocation.path),
            "accountId": "123456789012",
            "protocol": "HTTP/1.1",
            "stage": "prod",
            "domainPrefix": "abc123defg",
            "requestTimeEpoch": 1795637651000_u64,
            "requestId": request_id,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "lambent-bench"},
            "domainName": "abc123defg.execute-api.eu-west-1.amazonaws.com",
            "apiId": "abc123defg"
        },
        "body": invocation.body.as_ref().map(Value::to_string),
        "isBase64Encoded": false
    })
}

/// Starts `name` cold against a fresh stub, sends it `invocation`, and measures it.
pub async fn cold_start(env: &Env, name: &str, invocation: &Invocation, token: &str, run: usize) -> Result<ColdStart> {
    let request_id = format!("bench-{name}-{run}");
    let payload = Bytes::from(event(invocation, token, &request_id).to_string());
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let (over_tx, over) = watch::channel(false);
    let stub = Stub { event: Arc::new(Mutex::new(Some((request_id, payload)))), seen: seen_tx, over };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(invocation_error))
        .route("/2018-06-01/runtime/init/error", post(error))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(crate::upstream::no_delay);
    let mut stop = over_tx.subscribe();
    let server = tokio::spawn(async move {
        let shutdown = async move { drop(stop.wait_for(|over| *over).await) };
        let _ = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    });

    let log = std::fs::File::create(env.work_dir.join(format!("{name}-{run}.log")))?;
    let mut command = tokio::process::Command::new(env.bin(name));
    command
        .envs(env.vars())
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[1]bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .current_dir(&env.work_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // `spawn` returns once exec has succeeded: this is the "exec" the figures count from.
    let exec = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", env.bin(name).display()))?;
    let pid = child.id().ok_or("the function exited at once")?;

    let outcome = async {
        let (mut ready, mut answered) = (None, None);
        loop {
            let next = tokio::time::timeout(Duration::from_secs(60), seen.recv()).await;
            match next.map_err(|_| "no answer within 60 s")?.ok_or("the stub stopped")? {
                Seen::Ready(at) => ready = Some(at),
                Seen::Answered { first, first_event, end, status, body } => {
                    if status != invocation.expect {
                        return Err(format!("{name}: status {status}, expected {}: {body}", invocation.expect).into());
                    }
                    if name == "agent-stream" && crate::relay::done_status(&body).as_deref() != Some("completed") {
                        return Err(format!("{name}: the turn did not complete: {body}").into());
                    }
                    answered = Some((first, first_event, end));
                }
                Seen::Idle => break,
                Seen::Failed(why) => return Err(format!("{name}: {why}").into()),
            }
        }
        let (first, first_event, end) = answered.ok_or("the function polled again without answering")?;
        Ok::<_, crate::server::Error>(ColdStart {
            answered_ms: ms(end - exec),
            first_byte_ms: ms(first - exec),
            first_event_ms: first_event.map_or(f64::NAN, |at| ms(at - exec)),
            ready_ms: ready.map_or(f64::NAN, |at| ms(at - exec)),
            peak_rss_mb: status_mb(pid, "VmHWM")?,
        })
    }
    .await;

    let _ = child.kill().await;
    let _ = over_tx.send(true);
    // Graceful: the held poll is released above, so this ends at once; the timeout is a safety net.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    outcome
}

/// A function binary's size: what `cargo lambda build --release` wrote, else the native release binary.
pub fn binary_size(lambda_dir: &Path, bin_dir: &Path, name: &str) -> Option<(f64, &'static str)> {
    crate::server::file_mb(&lambda_dir.join(name).join("bootstrap"))
        .map(|mb| (mb, "cargo lambda"))
        .or_else(|| crate::server::file_mb(&bin_dir.join(name)).map(|mb| (mb, "native")))
}
