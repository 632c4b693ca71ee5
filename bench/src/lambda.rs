//! Cold start and memory of each Lambda function, through the kit's stub of the Lambda Runtime API.
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
use std::time::{Duration, Instant};

use lambent_testkit::runtime_api::{Activity, RuntimeApi, Seen};
use lambent_testkit::{Proxy, Result};
use serde_json::{Value, json};

use crate::cli::say;
use crate::machine::{clock_ticks, cpu_ms, file_mb, status_mb};
use crate::relay::done_status;
use crate::results::Function;
use crate::server::{Env, OPENAI_KEY_PARAMETER};
use crate::stats::{self, median, ms};

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
            vec![("OPENAI_API_KEY_PARAMETER", OPENAI_KEY_PARAMETER.to_owned())]
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
        answered_ms_min: stats::min(&answered),
        answered_ms_max: stats::max(&answered),
        first_byte_ms: median(&field(|s| s.first_byte_ms)),
        first_event_ms: median(&field(|s| s.first_event_ms)),
        ready_ms: median(&field(|s| s.ready_ms)),
        peak_rss_mb: median(&rss),
        peak_rss_mb_max: stats::max(&rss),
        cpu_ms: median(&field(|s| s.cpu_ms)),
        memory_mb: shape.memory_mb,
        round_trips: proxy.map(|_| median(&round_trips)),
        size_mb: None,
        size_source: None,
        runs,
        failures: errors.len(),
        errors: errors.into_iter().take(2).collect(),
    };
    say(format!(
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
    let mut api = RuntimeApi::start().await;
    api.invoke(&request_id, event(invocation, token, &request_id).to_string());
    let log = std::fs::File::create(env.work_dir.join(format!("{name}-{run}.log")))?;
    let mut command = tokio::process::Command::new(env.bin(name));
    command
        .envs(env.vars())
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
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
    let outcome = measure(&mut api, (name, invocation), exec, pid).await;
    let _ = child.kill().await;
    // Dropping the stub ends the function's held poll and stops the stub's server.
    drop(api);
    outcome
}

/// Follows one cold process through the stub: its first `GET /next` (initialised), its answer (checked
/// against what `invocation` expects), and its next `GET /next` (idle again: its peak RSS and CPU time are
/// read then).
async fn measure(
    api: &mut RuntimeApi,
    (name, invocation): (&str, &Invocation),
    exec: Instant,
    pid: u32,
) -> Result<ColdStart> {
    let (mut ready, mut answered) = (None, None);
    loop {
        match api.next_activity(Duration::from_secs(60)).await.ok_or("no answer within 60 s")? {
            Activity::Polled(at) if ready.is_none() => ready = Some(at),
            Activity::Polled(_) => break,
            Activity::Posted(Seen::Answer(answer)) => {
                let (status, body) = (answer.status().unwrap_or(0), answer.http_body());
                if status != invocation.expect {
                    return Err(format!("{name}: status {status}, expected {}: {body}", invocation.expect).into());
                }
                if name == "agent-stream" && done_status(&body).as_deref() != Some("completed") {
                    return Err(format!("{name}: the turn did not complete: {body}").into());
                }
                answered = Some(answer);
            }
            Activity::Posted(Seen::Failed(why)) => return Err(format!("{name}: {why}").into()),
        }
    }
    let answer = answered.ok_or("the function polled again without answering")?;
    Ok(ColdStart {
        answered_ms: ms(answer.end_at - exec),
        first_byte_ms: ms(answer.first_byte_at.unwrap_or(answer.end_at) - exec),
        first_event_ms: answer.first_event_at.map_or(f64::NAN, |at| ms(at - exec)),
        ready_ms: ready.map_or(f64::NAN, |at| ms(at - exec)),
        peak_rss_mb: status_mb(pid, "VmHWM")?,
        cpu_ms: cpu_ms(pid, clock_ticks())?,
    })
}

/// The stub's figures: every function's cold starts in the stub's [`Shape`] over the bench's embedded file,
/// with its binary's size.
pub async fn stub_figures(
    env: &Env,
    token: &str,
    runs: usize,
    lambda_dir: &Path,
    notes: &mut Vec<String>,
) -> Vec<Function> {
    let mut figures = Vec::new();
    for (name, invocation) in functions() {
        let mut function = figure(env, (name, &invocation), token, runs, &Shape::stub(), None).await;
        let size = binary_size(lambda_dir, &env.bin_dir, name);
        function.size_mb = size.map(|(mb, _)| mb);
        function.size_source = size.map(|(_, source)| source.to_owned());
        figures.push(function);
    }
    if figures.iter().any(|f| f.size_source.as_deref() == Some("native")) {
        notes.push(
            "Binary sizes are the native x86_64 release binaries: `cargo lambda build --release` (arm64) was not \
             run here; its `bootstrap` files are used when present."
                .into(),
        );
    }
    figures
}

/// A function binary's size: what `cargo lambda build --release` wrote, else the native release binary.
fn binary_size(lambda_dir: &Path, bin_dir: &Path, name: &str) -> Option<(f64, &'static str)> {
    file_mb(&lambda_dir.join(name).join("bootstrap"))
        .map(|mb| (mb, "cargo lambda"))
        .or_else(|| file_mb(&bin_dir.join(name)).map(|mb| (mb, "native")))
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
