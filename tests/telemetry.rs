//! Traces, logs and metrics (issue 17), observed from outside: spans as real OTLP receivers decode them — over
//! gRPC (fake-opentelemetry-collector, the official protos) and over HTTP (`lambent-testkit`'s `otlp_http_receiver.py`, the
//! OpenTelemetry project's Python protos) — log lines as the subscriber writes them, EMF lines as CloudWatch would
//! read them.
//!
//! Each test sets its own subscriber for its thread (`#[tokio::test]` runs the server, the turn's tasks and the
//! test on one thread), so tests running side by side never see each other's lines. tracing caches whether a
//! call site is wanted when the site is first reached, asking every live subscriber — except while only one is
//! alive: then it asks the reaching thread's, which on another test's thread is none, and the site is cached
//! as unwanted for this test too (seen: a turn's log line without its spans, 1 run in 2). [`watch`] keeps a
//! second, idle subscriber alive for the whole binary so every site asks them all, and [`settled`] rebuilds the
//! cache once the app is up, for a site reached while this test's subscriber was being set.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use lambent::telemetry::{self, Export, LogFormat, Metrics, Protocol, SpanTally, Traces};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::helpers::{Streamed, TestApp, fresh_state_with, http_client};
use lambent_testkit::openai::{FakeOpenAi, Reply, frames, function_call_events, text_events};
use lambent_testkit::otlp::OtlpHttpReceiver;

/// Log lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn writer(&self) -> BoxMakeWriter {
        let me = self.clone();
        BoxMakeWriter::new(move || me.clone())
    }

    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every line, parsed: a line that is not a JSON object fails the test.
    fn json_lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
            .inspect(|line| assert!(line.is_object(), "{line}"))
            .collect()
    }
}

/// Sets `subscriber` as this thread's (the test's) until the guard drops; see the module's docs.
fn watch(subscriber: impl tracing::Subscriber + Send + Sync + 'static) -> tracing::subscriber::DefaultGuard {
    static IDLE: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    IDLE.get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let guard = tracing::subscriber::set_default(subscriber);
    settled();
    guard
}

/// Recomputes every call site's interest with this thread's subscriber in place (see the module's docs).
fn settled() {
    tracing::callsite::rebuild_interest_cache();
}

/// An app on a fake upstream with a default agent `Helper` on `gpt-4.1`, the call sites' interest recomputed
/// for the subscriber in place.
async fn app_with_helper(fake: &FakeOpenAi) -> TestApp {
    let (state, dir) = fresh_state_with(&fake.env()).await;
    let app = TestApp::serve(state, dir).await;
    app.create("/api/agents/", json!({"name": "Helper", "model": "gpt-4.1", "is_default": true})).await;
    settled();
    app
}

/// An app on a fake upstream with a default agent `Helper` on `gpt-4.1`, its metric lines captured, and a
/// server-side `echo` tool.
async fn app_with_echo(fake: &FakeOpenAi, metrics: Metrics) -> TestApp {
    let (state, dir) = fresh_state_with(&fake.env()).await;
    let app = TestApp::serve(state.with_metrics(metrics), dir).await;
    let agent = app
        .create(
            "/api/agents/",
            json!({"name": "Helper", "model": "gpt-4.1", "system_prompt": "You are helpful.", "is_default": true}),
        )
        .await;
    let tool = app
        .create(
            "/api/tools/",
            json!({"name": "echo", "executor": {"type": "echo"},
                                      "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}),
        )
        .await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    settled();
    app
}

/// Two rounds: the model calls `echo`, the server runs it, the model answers.
fn two_rounds(fake: &FakeOpenAi) {
    fake.push_stream(frames(function_call_events("resp_r1", &[("call_1", "echo", "{\"text\":\"one\"}")])));
    fake.push_stream(frames(text_events("resp_r2", &["Echoed one."])));
}

/// An exporter to a gRPC receiver.
fn grpc_traces(collector: &FakeCollectorServer) -> Traces {
    Traces::new(&Export::to(collector.endpoint(), Protocol::Grpc)).expect("an exporter")
}

/// The two rounds of [`two_rounds`] on a new app, streamed in the caller's trace (`traceparent`); they
/// complete. The app is handed back to outlive the spans' flush.
async fn echo_in_callers_trace(fake: &FakeOpenAi) -> (TestApp, Streamed) {
    let app = app_with_echo(fake, Metrics::off()).await;
    two_rounds(fake);
    let traceparent = format!("00-{TRACE_ID}-{CALLER_SPAN}-01");
    let reply = app
        .stream_with(
            Method::POST,
            "/api/agent/stream/",
            Some(json!({"message": "Echo once", "auto_execute_tools": true})),
            &[("traceparent", &traceparent)],
        )
        .await;
    assert_eq!(reply.done()["status"], "completed", "{}", reply.raw);
    (app, reply)
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// An attribute's value as the receiver decoded it (`Some(AnyValue { value: Some(StringValue("chat")) })`),
/// as plain text: `chat`, `40`.
fn attr(span: &ExportedSpan, key: &str) -> Option<String> {
    let raw = span.attributes.get(key)?;
    let inner = raw.strip_prefix("Some(AnyValue { value: Some(")?.strip_suffix(") })")?;
    let (kind, value) = inner.split_once('(')?;
    let value = value.strip_suffix(')')?;
    Some(if kind == "StringValue" {
        serde_json::from_str(value).unwrap_or_else(|_| value.to_owned())
    } else {
        value.to_owned()
    })
}

#[tokio::test]
async fn a_two_round_tool_conversation_exports_its_spans_with_their_links_and_logs_json_lines_with_its_ids() {
    let mut collector = FakeCollectorServer::start().await.expect("the OTLP receiver starts");
    let traces = grpc_traces(&collector);
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("info"), Some(&traces));
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let (_app, reply) = echo_in_callers_trace(&fake).await;
    traces.flush().await;

    let mut spans: Vec<ExportedSpan> = Vec::new();
    for _ in 0..100 {
        spans.extend(collector.exported_spans(1, Duration::from_millis(100)).await);
        if spans.iter().filter(|s| s.trace_id == TRACE_ID).count() >= 5 {
            break;
        }
    }
    let ours: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let names: BTreeMap<&str, usize> = ours.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.name.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        names,
        BTreeMap::from([
            ("POST /api/agent/stream/", 1),
            ("chat gpt-4.1", 2),
            ("execute_tool echo", 1),
            ("invoke_agent Helper", 1)
        ]),
        "the conversation's spans, all in the caller's trace: {ours:#?}"
    );
    let one = |name: &str| *ours.iter().find(|s| s.name == name).unwrap();
    let (request, turn, tool) = (one("POST /api/agent/stream/"), one("invoke_agent Helper"), one("execute_tool echo"));
    let chats: Vec<&ExportedSpan> = ours.iter().copied().filter(|s| s.name == "chat gpt-4.1").collect();

    // Links: caller -> request -> turn -> (chat, tool, chat).
    assert_eq!(request.parent_span_id, CALLER_SPAN, "the request's span continues the caller's traceparent");
    assert_eq!(request.kind, "SPAN_KIND_SERVER");
    assert_eq!(turn.parent_span_id, request.span_id, "the turn, run in its own task, stays under the request");
    assert_eq!(tool.parent_span_id, turn.span_id);
    for chat in &chats {
        assert_eq!(chat.parent_span_id, turn.span_id);
        assert_eq!(chat.kind, "SPAN_KIND_CLIENT");
    }
    let (first, second) = if chats[0].start_time_unix_nano < chats[1].start_time_unix_nano {
        (chats[0], chats[1])
    } else {
        (chats[1], chats[0])
    };
    assert!(first.end_time_unix_nano <= tool.start_time_unix_nano, "the tool runs after the first response");
    assert!(tool.end_time_unix_nano <= second.start_time_unix_nano, "and before the second");

    // Attributes, as the GenAI conventions name them.
    assert_eq!(attr(request, "http.route").as_deref(), Some("/api/agent/stream/"));
    assert_eq!(attr(request, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attr(request, "http.response.status_code").as_deref(), Some("200"));
    let session = reply.done()["session_id"].to_string();
    assert_eq!(attr(turn, "gen_ai.operation.name").as_deref(), Some("invoke_agent"));
    assert_eq!(attr(turn, "gen_ai.agent.name").as_deref(), Some("Helper"));
    assert!(attr(turn, "gen_ai.agent.id").is_some_and(|id| id.parse::<i64>().is_ok()), "{turn:?}");
    assert_eq!(attr(turn, "gen_ai.conversation.id"), Some(session.clone()));
    for (chat, id, input, output) in [(first, "resp_r1", "40", "20"), (second, "resp_r2", "12", "9")] {
        assert_eq!(attr(chat, "gen_ai.operation.name").as_deref(), Some("chat"));
        assert_eq!(attr(chat, "gen_ai.provider.name").as_deref(), Some("openai"));
        assert_eq!(attr(chat, "gen_ai.request.model").as_deref(), Some("gpt-4.1"));
        assert_eq!(attr(chat, "gen_ai.response.model").as_deref(), Some("gpt-4.1-2025-04-14"));
        assert_eq!(attr(chat, "gen_ai.response.id").as_deref(), Some(id));
        assert_eq!(attr(chat, "gen_ai.usage.input_tokens").as_deref(), Some(input));
        assert_eq!(attr(chat, "gen_ai.usage.output_tokens").as_deref(), Some(output));
        assert!(attr(chat, "lambent.time_to_first_chunk_ms").is_some_and(|ms| ms.parse::<f64>().is_ok()));
        assert_eq!(attr(chat, "error.type"), None);
        assert_eq!(attr(chat, "gen_ai.input.messages"), None, "no content without LAMBENT_TRACE_CONTENT");
    }
    assert_eq!(attr(tool, "gen_ai.tool.name").as_deref(), Some("echo"));
    assert_eq!(attr(tool, "gen_ai.tool.call.id").as_deref(), Some("call_1"));
    assert_eq!(attr(tool, "gen_ai.tool.call.arguments"), None);

    // The logs of that run: JSON lines, the request's with its id, the turn's with its session and turn ids.
    let request_id = reply.headers["x-request-id"].to_str().unwrap().to_owned();
    let lines = logs.json_lines();
    let of_request: Vec<&Value> =
        lines.iter().filter(|l| l["spans"][0]["request_id"].as_str() == Some(&request_id)).collect();
    let request_line = of_request.iter().find(|l| l["target"] == "lambent::request").expect("the request's line");
    assert_eq!(
        (&request_line["level"], &request_line["method"], &request_line["route"], &request_line["status"]),
        (&json!("INFO"), &json!("POST"), &json!("/api/agent/stream/"), &json!(200))
    );
    assert!(request_line["duration_ms"].is_f64(), "{request_line}");
    let turn_line = of_request.iter().find(|l| l["target"] == "lambent::turn").expect("the turn's end line");
    assert_eq!(turn_line["message"], "turn ended");
    assert_eq!(
        (&turn_line["status"], &turn_line["input_tokens"], &turn_line["output_tokens"]),
        (&json!("completed"), &json!(52), &json!(29))
    );
    assert!(turn_line["time_to_first_event_ms"].is_f64(), "{turn_line}");
    let turn_span = &turn_line["spans"][1];
    assert_eq!(turn_span["session_id"].to_string(), session, "{turn_line}");
    assert_eq!(turn_span["turn_id"].as_str(), reply.headers["lambent-turn-id"].to_str().ok(), "{turn_line}");
}

#[tokio::test]
async fn message_content_is_on_the_spans_only_when_asked_for() {
    let mut collector = FakeCollectorServer::start().await.expect("the OTLP receiver starts");
    let traces = grpc_traces(&collector);
    let subscriber = telemetry::subscriber(
        LogFormat::Json,
        BoxMakeWriter::new(std::io::sink),
        EnvFilter::new("info"),
        Some(&traces),
    );
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let mut env = fake.env();
    env.push(("LAMBENT_TRACE_CONTENT", "true".to_owned()));
    let (state, dir) = fresh_state_with(&env).await;
    let app = TestApp::serve(state, dir).await;
    app.create("/api/agents/", json!({"name": "Helper", "model": "gpt-4.1", "is_default": true})).await;
    settled();
    fake.push_stream(frames(text_events("resp_1", &["Hello ", "there."])));

    let reply = app.stream("/api/agent/stream/", json!({"message": "Say hello"})).await;
    assert_eq!(reply.done()["status"], "completed");
    traces.flush().await;

    let mut chat = None;
    for _ in 0..100 {
        let spans = collector.exported_spans(1, Duration::from_millis(100)).await;
        chat = chat.or_else(|| spans.into_iter().find(|s| s.name == "chat gpt-4.1"));
        if chat.is_some() {
            break;
        }
    }
    let chat = chat.expect("the chat span");
    assert!(attr(&chat, "gen_ai.input.messages").is_some_and(|m| m.contains("Say hello")), "{chat:?}");
    assert_eq!(attr(&chat, "gen_ai.output.messages").as_deref(), Some("Hello there."));
}

#[tokio::test]
async fn spans_are_exported_when_rust_log_quiets_the_logs_to_warnings() {
    // Found by the export-on benchmark: its server runs at RUST_LOG=warn, and one filter for logs and spans
    // exported nothing.
    let mut collector = FakeCollectorServer::start().await.expect("the OTLP receiver starts");
    let traces = grpc_traces(&collector);
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("warn"), Some(&traces));
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let app = app_with_helper(&fake).await;
    fake.push_stream(frames(text_events("resp_1", &["Hello."])));

    let reply = app.stream("/api/agent/stream/", json!({"message": "Say hello"})).await;
    assert_eq!(reply.done()["status"], "completed");
    traces.flush().await;

    let mut names = Vec::new();
    for _ in 0..100 {
        names.extend(collector.exported_spans(1, Duration::from_millis(100)).await.into_iter().map(|s| s.name));
        if names.iter().any(|n| n == "chat gpt-4.1") && names.iter().any(|n| n == "invoke_agent Helper") {
            break;
        }
    }
    assert!(names.iter().any(|n| n == "invoke_agent Helper"), "{names:?}");
    assert!(names.iter().any(|n| n == "chat gpt-4.1"), "{names:?}");
    let info_lines: Vec<_> = logs.json_lines().into_iter().filter(|line| line["level"] == "INFO").collect();
    assert!(info_lines.is_empty(), "RUST_LOG=warn still filters the lines: {info_lines:?}");
}

#[tokio::test]
async fn a_failed_turn_logs_a_warning_with_its_code_and_counts_as_an_upstream_error() {
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("info"), None);
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let metrics = Metrics::capture("test-stack");
    let app = app_with_echo(&fake, metrics.clone()).await;
    fake.push(Reply::Status {
        status: 400,
        body: json!({"error": {"message": "bad model"}}).to_string(),
        retry_after: None,
    });

    let reply = app.stream("/api/agent/stream/", json!({"message": "Hi"})).await;
    assert_eq!(reply.events("error")[0]["code"], "upstream_rejected", "{}", reply.raw);

    let lines = logs.json_lines();
    let failed: Vec<&Value> = lines.iter().filter(|l| l["message"] == "turn failed").collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert_eq!((&failed[0]["level"], &failed[0]["error_code"]), (&json!("WARN"), &json!("upstream_rejected")));
    assert!(failed[0]["error"].as_str().is_some_and(|e| e.contains("bad model")), "{}", failed[0]);
    assert_eq!(
        failed[0]["spans"][0]["request_id"].as_str(),
        reply.headers["x-request-id"].to_str().ok(),
        "{}",
        failed[0]
    );

    let turns: Vec<Value> = metrics.lines().into_iter().filter(|l| l.get("Turns").is_some()).collect();
    assert_eq!(turns.len(), 1, "{turns:#?}");
    let turn = &turns[0];
    assert_eq!(
        (&turn["TurnErrors"], &turn["UpstreamErrors"], &turn["ErrorCode"], &turn["Service"]),
        (&json!(1), &json!(1), &json!("upstream_rejected"), &json!("test-stack"))
    );
    let directives = turn["_aws"]["CloudWatchMetrics"].as_array().unwrap();
    assert_eq!(directives[1]["Dimensions"], json!([["Service", "ErrorCode"]]));
    assert_eq!(directives[1]["Metrics"], json!([{"Name": "TurnErrors", "Unit": "Count"}]));
}

#[tokio::test]
async fn a_conversation_writes_one_emf_line_per_turn_and_per_request_in_cloudwatchs_shape() {
    let fake = FakeOpenAi::start().await;
    let metrics = Metrics::capture("test-stack");
    let app = app_with_echo(&fake, metrics.clone()).await;
    let before = metrics.lines().len();
    two_rounds(&fake);

    let reply = app.stream("/api/agent/stream/", json!({"message": "Echo once", "auto_execute_tools": true})).await;
    assert_eq!(reply.done()["status"], "completed");
    // The request's line is written when its last task (the turn's) lets go of it.
    let mut lines = metrics.lines();
    for _ in 0..50 {
        if lines.len() >= before + 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        lines = metrics.lines();
    }
    let new = &lines[before..];
    assert_eq!(new.len(), 2, "one turn line, one request line: {new:#?}");
    let turn = new.iter().find(|l| l.get("Turns").is_some()).expect("the turn's line");
    let first_ms = turn["TimeToFirstEvent"].as_f64().expect("a time to first event");
    assert!(first_ms >= 0.0);
    let timestamp = turn["_aws"]["Timestamp"].as_u64().expect("a millisecond timestamp");
    assert!(timestamp > 1_700_000_000_000, "{timestamp}");
    assert_eq!(
        turn,
        &json!({
            "Service": "test-stack", "Turns": 1, "TurnErrors": 0, "UpstreamErrors": 0, "UpstreamRetries": 0,
            "InputTokens": 52, "OutputTokens": 29, "TimeToFirstEvent": first_ms,
            "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [{
                "Namespace": "Lambent", "Dimensions": [["Service"]],
                "Metrics": [
                    {"Name": "Turns", "Unit": "Count"}, {"Name": "TurnErrors", "Unit": "Count"},
                    {"Name": "UpstreamErrors", "Unit": "Count"}, {"Name": "UpstreamRetries", "Unit": "Count"},
                    {"Name": "InputTokens", "Unit": "Count"}, {"Name": "OutputTokens", "Unit": "Count"},
                    {"Name": "TimeToFirstEvent", "Unit": "Milliseconds"}
                ]
            }]}
        })
    );
    let request = new.iter().find(|l| l.get("DbRoundTrips").is_some()).expect("the request's line");
    assert_eq!(request["DbRoundTrips"], 0, "a database file has no round trips");
    assert_eq!((request["DbRetries"].clone(), request["DbGiveUps"].clone()), (json!(0), json!(0)));
    assert_eq!(
        request["_aws"]["CloudWatchMetrics"],
        json!([{"Namespace": "Lambent", "Dimensions": [["Service"]], "Metrics": [
            {"Name": "DbRoundTrips", "Unit": "Count"}, {"Name": "DbRetries", "Unit": "Count"},
            {"Name": "DbGiveUps", "Unit": "Count"}
        ]}])
    );
}

#[tokio::test]
async fn every_answer_names_its_request_and_a_server_error_quotes_it_in_the_body() {
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("info"), None);
    let _guard = watch(subscriber);
    let app = TestApp::spawn().await;
    settled();
    let ok = reqwest::Client::new().get(app.url("/api/health/")).send().await.unwrap();
    let first = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(first.len(), 36, "a UUID: {first}");
    assert_eq!(&first[14..15], "7", "version 7: {first}");

    // A table gone from under the code: the read fails, a 500.
    app.rows("DROP TABLE agent_profile_tools").await;
    let response = reqwest::Client::new()
        .get(app.url("/api/agent-tools/"))
        .bearer_auth(app.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, first, "each request has its own id");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"detail": "A server error occurred.", "request_id": id}));
    let lines = logs.json_lines();
    let failed = lines.iter().find(|l| l["message"] == "request failed").expect("the error's log line");
    assert_eq!(
        failed["spans"][0]["request_id"].as_str(),
        Some(id.as_str()),
        "the log line an operator finds by that id"
    );
    assert!(failed["error"].as_str().is_some_and(|e| e.contains("agent_profile_tools")), "{failed}");
}

#[tokio::test]
async fn a_full_conversation_logged_at_debug_never_shows_the_api_key_the_token_or_the_password() {
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("debug"), None);
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let app = app_with_echo(&fake, Metrics::off()).await;
    let (status, login) =
        app.as_user(None).post("/api/auth/login/", json!({"username": "alice", "password": "alice-password"})).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["token"].as_str().expect("a token").to_owned();
    let alice = app.as_user(Some(&token));
    two_rounds(&fake);
    let reply = alice.stream("/api/agent/stream/", json!({"message": "Echo once", "auto_execute_tools": true})).await;
    assert_eq!(reply.done()["status"], "completed", "{}", reply.raw);
    fake.push_stream(frames(text_events("resp_chat", &["Fine."])));
    let (status, _) = alice.post("/api/agent/chat/", json!({"message": "And you?"})).await;
    assert_eq!(status, StatusCode::OK);
    alice.post("/api/auth/logout/", json!({})).await;

    let text = logs.text();
    assert!(text.lines().count() > 20, "debug lines were written:\n{text}");
    let api_key = fake.env().into_iter().find(|(k, _)| *k == "OPENAI_API_KEY").unwrap().1;
    for (what, secret) in [
        ("the OpenAI API key", api_key.as_str()),
        ("the login token", token.as_str()),
        ("alice's API token", app.token.as_deref().unwrap()),
        ("the password", "alice-password"),
    ] {
        assert!(!text.contains(secret), "{what} is in the logs:\n{text}");
    }
}

/// A named provider's key, set by its variable, stays out of the logs too: on the turn, on a refused request
/// (whose error is logged) and on the providers list.
#[tokio::test]
async fn a_named_providers_key_never_reaches_a_log_line() {
    const KEY: &str = "sk-named-provider-secret-5f1e";
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("debug"), None);
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&[
        ("LAMBENT_PROVIDER_OTHER_BASE_URL", fake.base_url.clone()),
        ("LAMBENT_PROVIDER_OTHER_API_KEY", KEY.to_owned()),
        ("LAMBENT_PROVIDER_OTHER_STATE", "local".to_owned()),
    ])
    .await;
    app.create("/api/agents/", json!({"name": "Other", "provider": "other", "is_default": true})).await;
    fake.push_stream(frames(text_events("resp_other", &["Fine."])));
    let reply = app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(reply.text(), "Fine.", "{}", reply.raw);
    fake.push(Reply::Status { status: 401, body: "{\"error\": {\"message\": \"bad key\"}}".into(), retry_after: None });
    let refused = app.stream("/api/agent/stream/", json!({"message": "again"})).await;
    assert_eq!(refused.events("error")[0]["code"], "upstream_rejected");
    assert_eq!(app.get("/api/providers/").await.0, StatusCode::OK);

    assert_eq!(fake.requests()[0].authorization.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let text = logs.text();
    assert!(text.lines().count() > 10, "debug lines were written:\n{text}");
    assert!(!text.contains(KEY), "the provider's key is in the logs:\n{text}");
    assert!(!refused.raw.contains(KEY) && !reply.raw.contains(KEY));
}

#[tokio::test]
async fn a_request_reports_the_database_round_trips_it_and_its_turn_made() {
    use lambent_testkit::{Proxy, Sqld};
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let metrics = Metrics::capture("test-stack");
    let state = crate::remote::remote_state(&proxy.url, &sqld.token(), &fake).await.with_metrics(metrics.clone());
    let app = TestApp::serve(state, tempfile::tempdir().unwrap()).await;
    app.create("/api/agents/", json!({"name": "Counted", "is_default": true})).await;
    fake.push_stream(frames(text_events("resp_counted", &["Counted."])));

    let before = (proxy.count(), metrics.lines().len());
    let reply = app.stream("/api/agent/stream/", json!({"message": "Count me"})).await;
    assert_eq!(reply.done()["status"], "completed");
    let mut lines = metrics.lines();
    for _ in 0..50 {
        if lines[before.1..].iter().any(|l| l.get("DbRoundTrips").is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        lines = metrics.lines();
    }
    let trips = proxy.count() - before.0;
    let reported: Vec<&Value> = lines[before.1..].iter().filter(|l| l.get("DbRoundTrips").is_some()).collect();
    assert_eq!(reported.len(), 1, "{lines:#?}");
    assert!(trips >= 2, "a streamed turn reads before the upstream and writes after it: {trips}");
    assert_eq!(reported[0]["DbRoundTrips"], json!(trips), "every request the proxy saw, the turn's own included");
}

#[tokio::test]
async fn a_conversation_s_spans_reach_an_otlp_http_receiver_over_http_protobuf_with_their_links() {
    let (receiver, traces, _guard) = http_receiver("info").await;
    let fake = FakeOpenAi::start().await;
    let _conversation = echo_in_callers_trace(&fake).await;
    traces.flush().await;

    let spans = receiver.spans(traces.tally().ended as usize).await;
    let ours: Vec<&Value> = spans.iter().filter(|s| s["trace_id"] == TRACE_ID).collect();
    let one = |name: &str| {
        let found: Vec<&&Value> = ours.iter().filter(|s| s["name"] == name).collect();
        assert_eq!(found.len(), 1, "one {name} span: {ours:#?}");
        *found[0]
    };
    let (request, turn, tool) = (one("POST /api/agent/stream/"), one("invoke_agent Helper"), one("execute_tool echo"));
    let chats: Vec<&&Value> = ours.iter().filter(|s| s["name"] == "chat gpt-4.1").collect();
    assert_eq!((ours.len(), chats.len()), (5, 2), "the conversation's spans, in the caller's trace: {ours:#?}");
    assert_eq!(request["parent_span_id"], CALLER_SPAN, "the request's span continues the caller's traceparent");
    assert_eq!(turn["parent_span_id"], request["span_id"]);
    assert_eq!(tool["parent_span_id"], turn["span_id"]);
    for chat in &chats {
        assert_eq!(chat["parent_span_id"], turn["span_id"]);
        assert_eq!(chat["attributes"]["gen_ai.request.model"], "gpt-4.1");
    }
    assert_eq!(request["attributes"]["http.response.status_code"], "200");
    assert_eq!(request["service"], "lambent", "the resource names the service");
    assert_eq!(
        traces.tally(),
        SpanTally { ended: spans.len() as u64, exported: spans.len() as u64, failed: 0, dropped: 0 }
    );
}

/// A new OTLP/HTTP receiver and an exporter to it, which this thread's subscriber feeds until the guard drops
/// (its lines at `filter`, discarded).
async fn http_receiver(filter: &str) -> (OtlpHttpReceiver, Traces, tracing::subscriber::DefaultGuard) {
    let receiver = OtlpHttpReceiver::start().await;
    lambent::tls::install_crypto_provider();
    let traces = Traces::new(&Export::to(receiver.traces_url(), Protocol::HttpProtobuf)).expect("an exporter");
    let lines = BoxMakeWriter::new(std::io::sink);
    let guard = watch(telemetry::subscriber(LogFormat::Json, lines, EnvFilter::new(filter), Some(&traces)));
    (receiver, traces, guard)
}

/// `n` turns at once, each in its own session, each answered.
async fn burst(app: &TestApp, fake: &FakeOpenAi, n: usize) {
    for i in 0..n {
        fake.push_stream(frames(text_events(&format!("resp_{i}"), &["Hello."])));
    }
    let turns = (0..n).map(|i| app.stream("/api/agent/stream/", json!({"message": format!("Turn {i}")})));
    for reply in futures::future::join_all(turns).await {
        assert_eq!(reply.done()["status"], "completed", "{}", reply.raw);
    }
}

#[tokio::test]
async fn under_a_burst_every_span_reaches_an_http_receiver_that_keeps_up() {
    let (receiver, traces, _guard) = http_receiver("warn").await;
    let fake = FakeOpenAi::start().await;
    let app = app_with_helper(&fake).await;

    burst(&app, &fake, 40).await;
    traces.flush().await;

    let tally = traces.tally();
    assert!(tally.ended >= 3 * 40, "a request, a turn and a chat span per turn: {tally:?}");
    assert_eq!(tally, SpanTally { ended: tally.ended, exported: tally.ended, failed: 0, dropped: 0 });
    let spans = receiver.spans(tally.ended as usize).await;
    assert_eq!(spans.len() as u64, tally.ended, "the receiver has every span the tally says it took");
    assert_eq!(spans.iter().filter(|s| s["name"] == "invoke_agent Helper").count(), 40);
}

#[tokio::test]
async fn under_a_burst_a_receiver_that_holds_its_exports_gets_what_the_queue_kept_and_the_rest_is_counted_and_logged() {
    // fake-opentelemetry-collector hands spans to the test through a 64-span channel and holds an export until
    // there is room: undrained, it is a receiver that stops answering (the telemetry benchmark's sink drained it
    // every 5 s, and 576 of ~4,800 turns' spans arrived). Behind the held export the 16-span queue fills.
    let mut collector = FakeCollectorServer::start().await.expect("the OTLP receiver starts");
    let export = Export { queue: 16, ..Export::to(collector.endpoint(), Protocol::Grpc) };
    let traces = Traces::new(&export).expect("an exporter");
    let logs = Captured::default();
    let subscriber = telemetry::subscriber(LogFormat::Json, logs.writer(), EnvFilter::new("warn"), Some(&traces));
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let app = app_with_helper(&fake).await;

    burst(&app, &fake, 60).await;
    // Drain the receiver while the flush waits on it, then until nothing more comes.
    let mut received = 0;
    let flush = traces.flush();
    tokio::pin!(flush);
    loop {
        tokio::select! {
            () = &mut flush => break,
            spans = collector.exported_spans(1, Duration::from_millis(50)) => received += spans.len() as u64,
        }
    }
    loop {
        let more = collector.exported_spans(1, Duration::from_millis(300)).await.len() as u64;
        if more == 0 {
            break;
        }
        received += more;
    }

    let tally = traces.tally();
    assert!(tally.ended >= 3 * 60, "a request, a turn and a chat span per turn: {tally:?}");
    assert!(tally.dropped > 0, "the held exports left no room for some spans: {tally:?}");
    assert_eq!(tally.ended, tally.exported + tally.failed + tally.dropped, "every span accounted for: {tally:?}");
    // An export that timed out while held may still have reached the receiver.
    assert!(tally.exported <= received && received <= tally.exported + tally.failed, "{received} received: {tally:?}");
    let warnings: Vec<Value> = logs
        .json_lines()
        .into_iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("spans were dropped")))
        .collect();
    assert_eq!(
        warnings.iter().map(|l| l["dropped"].as_u64().unwrap()).sum::<u64>(),
        tally.dropped,
        "the drops are logged, with how many: {warnings:?}"
    );
    assert!(warnings.iter().all(|l| l["level"] == "WARN" && l["queue"] == 16), "{warnings:?}");
}

/// The `lambent` binary serving on a fresh file with `env` besides, its spans sent every 100 ms; it answers one
/// health check, and its stderr is returned once it has been killed.
async fn lambent_binary_answers_a_health_check(
    env: &[(&str, &str)],
    mut wait_for: impl AsyncFnMut() -> bool,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambent-under-test"))
        .current_dir(dir.path())
        .env_clear()
        .env("DATABASE_URL", format!("file:{}", dir.path().join("lambent.db").display()))
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("start lambent");
    let client = http_client();
    let mut answered = false;
    for _ in 0..300 {
        if client.get(format!("http://127.0.0.1:{port}/api/health/")).send().await.is_ok() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered, "lambent did not come up: {}", std::fs::read_to_string(dir.path().join("stderr")).unwrap());
    for _ in 0..100 {
        if wait_for().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().await.unwrap();
    std::fs::read_to_string(dir.path().join("stderr")).unwrap()
}

#[tokio::test]
async fn the_lambent_binary_exports_over_http_protobuf_by_default_and_over_grpc_when_the_protocol_variable_says() {
    let health = "GET /api/health/";

    // OTEL_EXPORTER_OTLP_ENDPOINT alone: the specification's default, http/protobuf to <endpoint>/v1/traces.
    let receiver = OtlpHttpReceiver::start().await;
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()), ("OTEL_SERVICE_NAME", "lambent-local")];
    let arrived = async || receiver.spans(0).await.iter().any(|s| s["name"] == health);
    lambent_binary_answers_a_health_check(&env, arrived).await;
    let spans = receiver.spans(1).await;
    let span = spans.iter().find(|s| s["name"] == health).unwrap_or_else(|| panic!("the request's span: {spans:?}"));
    assert_eq!(span["service"], "lambent-local", "OTEL_SERVICE_NAME names the service");

    // grpc, from either variable (the traces' own wins over the general one).
    let mut collector = FakeCollectorServer::start().await.expect("the OTLP receiver starts");
    let endpoint = collector.endpoint();
    for protocol in [
        [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_SERVICE_NAME", "lambent")],
        [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")],
    ] {
        let env = [[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())].as_slice(), protocol.as_slice()].concat();
        let names = std::sync::Mutex::new(Vec::new());
        let arrived = async || {
            let spans = collector.exported_spans(1, Duration::from_millis(10)).await;
            let mut names = names.lock().unwrap();
            names.extend(spans.into_iter().map(|s| s.name));
            names.iter().any(|n| n == health)
        };
        lambent_binary_answers_a_health_check(&env, arrived).await;
        assert!(names.lock().unwrap().iter().any(|n| n == health), "{protocol:?}: {:?}", names.lock().unwrap());
    }

    // A protocol Lambent does not speak is named on stderr, not replaced by another silently.
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base.as_str()), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")];
    let stderr = lambent_binary_answers_a_health_check(&env, async || true).await;
    assert!(stderr.contains("traces are not exported: OTEL_EXPORTER_OTLP_PROTOCOL is `http/json`"), "{stderr}");
}

#[tokio::test]
async fn a_name_stored_before_the_name_rule_cannot_forge_or_colour_a_text_log_line() {
    let logs = Captured::default();
    let subscriber =
        telemetry::subscriber(LogFormat::Text { ansi: false }, logs.writer(), EnvFilter::new("info"), None);
    let _guard = watch(subscriber);
    let fake = FakeOpenAi::start().await;
    let (state, dir) = fresh_state_with(&fake.env()).await;
    // Straight into the store, past the API's name rule, as a name written before the rule was.
    let forged = "x\n2026-12-07T19:00:00Z  INFO lambent::request: POST /api/auth/login/ 200 \u{1b}[31m";
    let fields = lambent::domain::AgentFields { name: forged.to_owned(), is_default: true, ..Default::default() };
    state.store.create_agent(None, fields).await.unwrap();
    let app = TestApp::serve(state, dir).await;
    settled();
    fake.push_stream(frames(text_events("resp_f", &["ok"])));
    fake.push(Reply::Status {
        status: 400,
        body: json!({"error": {"message": "bad\nline"}}).to_string(),
        retry_after: None,
    });
    app.stream("/api/agent/stream/", json!({"message": "Hi"})).await.done();
    app.stream("/api/agent/stream/", json!({"message": "Again"})).await.done();

    let text = logs.text();
    assert!(
        text.contains(
            r"invoke_agent x\n2026-12-07T19:00:00Z  INFO lambent::request: POST /api/auth/login/ 200 \u{1b}[31m"
        ),
        "{text}"
    );
    assert!(text.contains(r"bad\nline"), "{text}");
    assert!(!text.contains('\u{1b}'), "an ESC reached the log: {text}");
    assert!(!text.lines().any(|line| line.starts_with("2026-12-07T19:00:00Z")), "a forged line: {text}");
}
