//! Cold start and memory of each Lambda function, through a stub of the Lambda Runtime API.
//!
//! The stub hands a function exactly one API Gateway REST proxy event (the shape of
//! `tests/fixtures/apigw_rest_*.json`) on `GET /2018-06-01/runtime/invocation/next`, takes the answer on
//! `POST .../invocation/{id}/response` (a streamed body for the streaming functions: a JSON prelude, eight
//! NUL bytes, then the SSE body), and holds the function's next `GET .../next` open: that call is the sign
//! that the function is idle again, when its peak RSS is read. Errors (`/init/error`, `/invocation/{id}/error`)
//! are failures.
//!
//! A function runs in one of two [`Shape`]s: the stub's (the bench's embedded file, secrets in the environment)
//! or as `template.yaml` deploys it ([`deployed`]: its memory size, and its secrets read from SSM parameters;
//! `remote::Deployment::functions` adds the remote database and the AWS emulator).

use std::collections::HashMap;
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
use crate::report::{self, Function, median};
use crate::server::{Env, Result, clock_ticks, cpu_ms, status_mb};
use crate::services::Proxy;

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
    /// User + system CPU time of the process by then: initialisation and the one request.
    pub cpu_ms: f64,
}

/// How a function is configured beyond the shared environment: the memory size it is told it has (nothing
/// enforces it here: no cgroup limits memory or CPU, so a CPU-bound cold start runs faster than on a Lambda of
/// that size, which gets a share of a vCPU proportional to its memory), and the settings its template entry adds.
#[derive(Debug, Clone)]
pub struct Shape {
    pub memory_mb: u32,
    pub vars: Vec<(&'static str, String)>,
}

impl Shape {
    /// The stub's own: 1024 MB and nothing more (the embedded-file figures).
    pub fn stub() -> Self {
        Self { memory_mb: 1024, vars: Vec::new() }
    }

    /// As `template.yaml` deploys the function: its memory size, and the OpenAI key's SSM parameter where the
    /// template names it (the agent functions).
    pub fn deployed(deployed: &Deployed) -> Self {
        let vars = if deployed.openai_key_parameter {
            vec![("OPENAI_API_KEY_PARAMETER", crate::services::OPENAI_KEY_PARAMETER.to_owned())]
        } else {
            Vec::new()
        };
        Self { memory_mb: deployed.memory_mb, vars }
    }
}

/// What `template.yaml` deploys one function with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployed {
    pub memory_mb: u32,
    pub openai_key_parameter: bool,
}

/// Each function's memory size (its own `MemorySize`, else the one under `Globals`) and whether it is given the
/// OpenAI key's parameter, by binary name. A line reader, not a YAML parser: the template is this repository's,
/// one resource per block indented by two spaces under `Resources:`, its binary in `BuildProperties.Binary`.
pub fn deployed(template: &str) -> HashMap<String, Deployed> {
    let value = |line: &str, key: &str| line.trim().strip_prefix(key).map(|v| v.trim().to_owned());
    let (mut section, mut global_memory) = ("", None);
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in template.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            section = line.trim_end();
            continue;
        }
        match section {
            "Globals:" => global_memory = global_memory.or_else(|| value(line, "MemorySize:")),
            "Resources:" if line.starts_with("  ") && !line[2..].starts_with(' ') && !line.trim().is_empty() => {
                blocks.push(vec![line]);
            }
            "Resources:" => blocks.last_mut().into_iter().for_each(|block| block.push(line)),
            _ => {}
        }
    }
    let global_memory: u32 = global_memory.and_then(|m| m.parse().ok()).unwrap_or(128);
    blocks
        .iter()
        .filter_map(|block| {
            let binary = block.iter().find_map(|l| value(l, "Binary:"))?;
            let memory_mb = block.iter().find_map(|l| value(l, "MemorySize:")).and_then(|m| m.parse().ok());
            let openai_key_parameter = block.iter().any(|l| l.contains("OPENAI_API_KEY_PARAMETER"));
            Some((binary, Deployed { memory_mb: memory_mb.unwrap_or(global_memory), openai_key_parameter }))
        })
        .collect()
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

/// `runs` cold starts of `name`, each configured as `shape` says, into the report's row; through `proxy`, the
/// database requests of each cold process are counted too.
pub async fn figure(
    env: &Env,
    (name, invocation): (&str, &Invocation),
    token: &str,
    runs: usize,
    shape: &Shape,
    proxy: Option<&Proxy>,
) -> Function {
    let (mut samples, mut errors, mut round_trips) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let before = proxy.map(Proxy::count);
        match cold_start(env, name, invocation, token, run, shape).await {
            Ok(sample) => samples.push(sample),
            Err(err) => errors.push(err.to_string()),
        }
        if let (Some(proxy), Some(before)) = (proxy, before) {
            round_trips.push((proxy.count() - before) as f64);
        }
    }
    let field = |f: fn(&ColdStart) -> f64| samples.iter().map(f).collect::<Vec<_>>();
    let (answered, rss) = (field(|s| s.answered_ms), field(|s| s.peak_rss_mb));
    let function = Function {
        name: name.to_owned(),
        request: format!("{} {} → {}", invocation.method, invocation.path, invocation.expect),
        crud: is_crud(name),
        answered_ms: median(&answered),
        answered_ms_min: report::min(&answered),
        answered_ms_max: report::max(&answered),
        first_byte_ms: median(&field(|s| s.first_byte_ms)),
        first_event_ms: median(&field(|s| s.first_event_ms)),
        ready_ms: median(&field(|s| s.ready_ms)),
        peak_rss_mb: median(&rss),
        peak_rss_mb_max: report::max(&rss),
        cpu_ms: median(&field(|s| s.cpu_ms)),
        memory_mb: shape.memory_mb,
        round_trips: proxy.map(|_| median(&round_trips)),
        size_mb: None,
        size_source: None,
        runs,
        failures: errors.len(),
        errors: errors.into_iter().take(2).collect(),
    };
    crate::say(format!(
        "function {name}: answered {:.1} ms, peak RSS {:.1} MB, {} failures",
        function.answered_ms, function.peak_rss_mb, function.failures
    ));
    function
}

/// Starts `name` cold against a fresh stub, sends it `invocation`, and measures it.
async fn cold_start(
    env: &Env,
    name: &str,
    invocation: &Invocation,
    token: &str,
    run: usize,
    shape: &Shape,
) -> Result<ColdStart> {
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
        .envs(shape.vars.iter().cloned())
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", shape.memory_mb.to_string())
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
            cpu_ms: cpu_ms(pid, clock_ticks())?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_functions_memory_and_secrets_from_the_template() {
        let mut deployed = deployed(include_str!("../../template.yaml"));
        // The scheduled `prune` has no request to time here (tests/prune.rs drives it through a Runtime API).
        assert_eq!(deployed.remove("prune"), Some(Deployed { memory_mb: 256, openai_key_parameter: false }));
        let names: Vec<&str> = functions().into_iter().map(|(name, _)| name).collect();
        for name in &names {
            assert!(deployed.contains_key(*name), "{name} is not in the template");
        }
        assert_eq!(deployed.len(), names.len(), "{deployed:?}");
        assert_eq!(deployed["agents"], Deployed { memory_mb: 256, openai_key_parameter: false });
        assert_eq!(deployed["docs"], Deployed { memory_mb: 128, openai_key_parameter: false });
        assert_eq!(deployed["agent-stream"], Deployed { memory_mb: 256, openai_key_parameter: true });
    }
}
