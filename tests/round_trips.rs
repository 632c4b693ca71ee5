//! Round-trip budgets against a remote database (issue 13): a request on a warm instance reaches the database
//! at most this many times. Counted by a proxy in front of a real sqld, so every HTTP request the store sends
//! is seen, whatever the code believes it sends. Budgets are counts, not times: they hold on any machine.

use std::time::Duration;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::{Streamed, TestApp};
use crate::remote::remote_app;
use lambent_testkit::openai::{FakeOpenAi, Step, frames, function_call_events, text_events};
use lambent_testkit::{Proxy, Sqld};

/// An app over sqld through a counting proxy; its token has been used once (the instance is warm).
async fn counted_app() -> (TestApp, Proxy, FakeOpenAi, Sqld) {
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let app = remote_app(&proxy.url, &sqld.token(), &fake).await;
    assert_eq!(app.get("/api/auth/me/").await.0, 200);
    (app, proxy, fake, sqld)
}

/// The database requests `f` caused.
async fn trips<T>(proxy: &Proxy, f: impl std::future::Future<Output = T>) -> (u64, T) {
    let before = proxy.count();
    let out = f.await;
    (proxy.count() - before, out)
}

#[tokio::test]
async fn crud_reads_and_writes_reach_the_database_at_most_twice() {
    let (app, proxy, _fake, _sqld) = counted_app().await;
    let agent = app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let tool = app.create("/api/tools/", json!({"name": "t"})).await;
    let session = app.create("/api/sessions/", json!({"agent": agent["id"]})).await;
    let (a, t, s) = (agent["id"].clone(), tool["id"].clone(), session["id"].clone());
    let mut report = Vec::new();
    let mut check = |what: String, n: u64, status: u16| report.push((what, n, status));

    for path in [
        "/api/agents/".to_owned(),
        format!("/api/agents/{a}/"),
        "/api/tools/".to_owned(),
        format!("/api/tools/{t}/"),
        "/api/templates/".to_owned(),
        "/api/agent-tools/".to_owned(),
        "/api/sessions/".to_owned(),
        format!("/api/sessions/{s}/"),
        format!("/api/sessions/{s}/messages/"),
        format!("/api/sessions/{s}/tool-calls/"),
        "/api/tokens/".to_owned(),
        "/api/auth/me/".to_owned(),
        "/api/usage/?by=agent".to_owned(),
        "/api/providers/".to_owned(),
    ] {
        let (n, (status, _)) = trips(&proxy, app.get(&path)).await;
        check(format!("GET {path}"), n, status.as_u16());
    }
    let writes: Vec<(&str, String, Option<Value>)> = vec![
        ("POST", "/api/agents/".into(), Some(json!({"name": "B", "is_default": true}))),
        ("PATCH", format!("/api/agents/{a}/"), Some(json!({"system_prompt": "Be brief.", "is_default": true}))),
        ("PUT", format!("/api/agents/{a}/"), Some(json!({"name": "A2"}))),
        ("POST", "/api/tools/".into(), Some(json!({"name": "u"}))),
        ("PATCH", format!("/api/tools/{t}/"), Some(json!({"description": "d"}))),
        ("POST", "/api/templates/".into(), Some(json!({"name": "x", "template": "y", "agent": a, "is_default": true}))),
        ("POST", "/api/agent-tools/".into(), Some(json!({"agent": a, "tool": t}))),
        ("POST", "/api/sessions/".into(), Some(json!({"agent": a}))),
        ("POST", "/api/tokens/".into(), Some(json!({"name": "ci"}))),
        ("POST", format!("/api/sessions/{s}/fork/"), Some(json!({"agent": a}))),
        ("DELETE", format!("/api/sessions/{s}/"), None),
        ("DELETE", format!("/api/tools/{t}/"), None),
    ];
    for (method, path, body) in writes {
        let method: reqwest::Method = method.parse().unwrap();
        let (n, (status, _)) = trips(&proxy, app.call(method.clone(), &path, body)).await;
        check(format!("{method} {path}"), n, status.as_u16());
    }
    let over: Vec<_> = report.iter().filter(|(_, n, status)| *n > 2 || *status >= 300).collect();
    assert!(over.is_empty(), "over budget (or failed): {over:?}\nall: {report:#?}");
}

/// The health check looks at the database in one statement, on a cold instance (whose schema is not checked
/// yet) as on a warm one; the login throttle is read with the user and written with the login's outcome, so a
/// successful login costs the two round trips it did before the throttle (user, token), a failed one two
/// (user, and its failure counted).
#[tokio::test]
async fn health_reaches_the_database_once_and_the_login_throttle_adds_no_round_trip_to_a_successful_login() {
    let (app, proxy, _fake, _sqld) = counted_app().await;
    // Another instance, just started: its schema is not checked yet.
    let cold = app.twin().await.as_user(None);

    let (cold_trips, (cold_status, _)) = trips(&proxy, cold.get("/api/health/")).await;
    let (warm_trips, (warm_status, _)) = trips(&proxy, app.get("/api/health/")).await;
    app.account("bob", false).await;
    let login = |password: &str| app.post("/api/auth/login/", json!({"username": "bob", "password": password}));
    let (ok_trips, (ok_status, _)) = trips(&proxy, login("bob-password")).await;
    let (failed_trips, (failed_status, _)) = trips(&proxy, login("guess")).await;

    assert_eq!((cold_trips, cold_status.as_u16()), (1, 200), "health, cold");
    assert_eq!((warm_trips, warm_status.as_u16()), (1, 200), "health, warm");
    assert_eq!((ok_trips, ok_status.as_u16()), (2, 200), "a successful login");
    assert_eq!((failed_trips, failed_status.as_u16()), (2, 400), "a failed login");
}

/// Runs a turn whose upstream waits at a gate until the database count at its request is noted; answers
/// (before upstream, after it, the answer).
async fn turn_trips(
    app: &TestApp,
    proxy: &Proxy,
    fake: &FakeOpenAi,
    path: &'static str,
    body: Value,
    key: Option<&'static str>,
    events: Vec<Step>,
) -> (u64, u64, Streamed) {
    let gate = Arc::new(tokio::sync::Notify::new());
    let mut steps = vec![Step::Gate(gate.clone())];
    steps.extend(events);
    fake.push_stream(steps);
    let seen = fake.requests().len();
    let before = proxy.count();
    let turn = tokio::spawn({
        let app = app.clone();
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        async move { app.stream_with(reqwest::Method::POST, path, Some(body), &headers).await }
    });
    while fake.requests().len() == seen {
        assert!(!turn.is_finished(), "the turn ended before it called upstream");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_upstream = proxy.count() - before;
    gate.notify_one();
    let out = turn.await.unwrap();
    (at_upstream, proxy.count() - before - at_upstream, out)
}

#[tokio::test]
async fn a_turn_reaches_the_database_at_most_twice_before_upstream_and_twice_after_its_last_event() {
    let (app, proxy, fake, _sqld) = counted_app().await;
    let agent = app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let tool = app.create("/api/tools/", json!({"name": "lookup"})).await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    app.create("/api/templates/", json!({"name": "g", "template": "Reply in {{lang}}.", "is_default": true})).await;
    let answer = || frames(text_events("resp_x", &["a", "b", "c", "d", "e", "f", "g", "h"]));
    let mut report = Vec::new();

    let message = json!({"message": "hi", "variables": {"lang": "en"}});
    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/stream/", message.clone(), None, answer()).await;
    assert_eq!(out.text(), "abcdefgh");
    let session = out.done()["session_id"].clone();
    report.push(("stream, new session", pre, post));

    let next = json!({"message": "again", "session_id": session, "variables": {"lang": "en"}});
    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/stream/", next, None, answer()).await;
    assert_eq!(out.done()["status"], "completed");
    report.push(("stream, existing session", pre, post));

    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/chat/", message.clone(), None, answer()).await;
    assert_eq!(out.body()["output_text"], "abcdefgh", "{}", out.raw);
    report.push(("chat, new session", pre, post));

    let keyed = json!({"message": "keyed", "variables": {"lang": "en"}});
    let (pre, post, out) =
        turn_trips(&app, &proxy, &fake, "/api/agent/stream/", keyed.clone(), Some("key-s"), answer()).await;
    assert_eq!(out.text(), "abcdefgh");
    report.push(("stream with an Idempotency-Key", pre, post));
    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/chat/", keyed, Some("key-c"), answer()).await;
    assert_eq!(out.body()["output_text"], "abcdefgh", "{}", out.raw);
    report.push(("chat with an Idempotency-Key", pre, post));

    let call = frames(function_call_events("resp_c", &[("call_1", "lookup", "{}")]));
    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/stream/", message, None, call).await;
    let session = out.done()["session_id"].clone();
    assert_eq!(out.done()["pending_tool_calls"], json!(["call_1"]));
    report.push(("stream ending in a tool call", pre, post));

    let output = json!({"session_id": session, "call_id": "call_1", "output": "42"});
    let (pre, post, out) =
        turn_trips(&app, &proxy, &fake, "/api/agent/tool-output/", output, Some("key-t"), answer()).await;
    assert_eq!(out.text(), "abcdefgh");
    report.push(("tool-output with an Idempotency-Key", pre, post));

    let over: Vec<_> = report.iter().filter(|(_, pre, post)| *pre > 2 || *post > 2).collect();
    assert!(over.is_empty(), "over budget (before upstream, after its last event): {over:?}\nall: {report:?}");
}

/// Lambent keeping the conversation costs no round trip: the history is read in the batch that reads the
/// turn's context, and the response's items are stored in the write that records it.
#[tokio::test]
async fn a_local_mode_turn_keeps_the_same_budget_with_its_history_read_and_its_items_stored() {
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let app =
        crate::remote::remote_app_with(&proxy.url, &sqld.token(), &fake, &[("LAMBENT_PROVIDER_OPENAI_STATE", "local")])
            .await;
    app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let answer = || frames(text_events("resp_x", &["a", "b"]));
    let (_, _, out) =
        turn_trips(&app, &proxy, &fake, "/api/agent/stream/", json!({"message": "one"}), None, answer()).await;
    let session = out.done()["session_id"].clone();
    let next = json!({"message": "two", "session_id": session});
    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/stream/", next, None, answer()).await;
    assert_eq!(out.text(), "ab");
    assert_eq!(fake.request(1)["input"].as_array().unwrap().len(), 3, "the history went with the message");
    assert!(pre <= 2 && post <= 2, "before upstream {pre}, after its last event {post}");
}

#[tokio::test]
async fn the_first_request_after_a_cold_start_adds_only_the_schema_check() {
    let (app, proxy, _fake, _sqld) = counted_app().await;
    // A new instance over the same database, as a Lambda cold start builds it (its store's probe is part of
    // the cold start, before any request).
    let cold = app.twin().await;
    let (n, (status, body)) = trips(&proxy, cold.get("/api/agents/")).await;
    assert_eq!(status, 200, "{body}");
    assert!(n <= 3, "first request after a cold start: {n} round trips (budget 2 + the schema check)");
    let (n, _) = trips(&proxy, cold.get("/api/agents/")).await;
    assert!(n <= 1, "the next one, token trusted: {n}");
}

#[tokio::test]
async fn a_long_turns_frames_reach_the_database_at_most_once_per_quarter_second() {
    let (app, proxy, fake, _sqld) = counted_app().await;
    app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    // About 1.2 s of stream: 24 deltas 50 ms apart.
    let deltas: Vec<String> = (0..24).map(|i| format!("d{i} ")).collect();
    let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
    let mut paced = Vec::new();
    for step in frames(text_events("resp_long", &deltas)) {
        paced.push(step);
        paced.push(Step::Pause(Duration::from_millis(50)));
    }
    let started = std::time::Instant::now();
    let (_, during_and_after, out) =
        turn_trips(&app, &proxy, &fake, "/api/agent/stream/", json!({"message": "long"}), None, paced).await;
    let elapsed = started.elapsed();
    assert_eq!(out.done()["status"], "completed");
    // One write per 250 ms of stream (each also reads the cancel flag), the cancel poll when no write
    // happened for a second, then the two turn-end round trips.
    let quarter_seconds = u64::try_from(elapsed.as_millis() / 250).unwrap() + 1;
    assert!(
        during_and_after <= quarter_seconds + 2,
        "{during_and_after} round trips after the upstream request, over {elapsed:?} of stream"
    );
    assert!(during_and_after >= 3, "the frames were written while streaming: {during_and_after}");
    let replay = app
        .stream_with(reqwest::Method::GET, &format!("/api/sessions/{}/events/", out.done()["session_id"]), None, &[])
        .await;
    assert_eq!(replay.text(), deltas.concat(), "every frame was recorded, in order");
}

#[tokio::test]
async fn a_budget_check_rides_in_the_turns_read_and_a_refused_turn_costs_one_round_trip() {
    let (app, proxy, fake, _sqld) = counted_app().await;
    app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let me = lambent::domain::UserId(app.get("/api/auth/me/").await.1["id"].as_i64().unwrap());
    let answer = || frames(text_events("resp_b", &["a", "b"]));
    let message = json!({"message": "hi"});
    let (free_pre, free_post, _) =
        turn_trips(&app, &proxy, &fake, "/api/agent/stream/", message.clone(), None, answer()).await;
    let budget =
        |daily: i64| lambent::store::UserChanges { daily_token_budget: Some(Some(daily)), ..Default::default() };
    app.store().update_user(me, budget(1_000)).await.unwrap();
    app.get("/api/auth/me/").await; // a changed user is checked again: the instance is warm again
    let (pre, post, out) = turn_trips(&app, &proxy, &fake, "/api/agent/stream/", message.clone(), None, answer()).await;
    assert_eq!(out.done()["status"], "completed");
    assert_eq!((pre, post), (free_pre, free_post), "a budget adds no round trip to a turn");

    // Two turns of 21 tokens spent 42: a budget of 42 is spent.
    app.store().update_user(me, budget(42)).await.unwrap();
    app.get("/api/auth/me/").await;
    let seen = fake.requests().len();
    let (n, refused) = trips(&proxy, app.stream("/api/agent/stream/", message)).await;
    assert_eq!(
        (refused.status.as_u16(), refused.body()["code"].as_str()),
        (429, Some("budget_exceeded")),
        "{}",
        refused.raw
    );
    assert_eq!(n, 1, "refused in the turn's one read");
    assert_eq!(fake.requests().len(), seen, "nothing reached the model");
}

/// MCP servers cost a turn no round trip: they are read in the turn's batch (and the submission's), listed
/// beside its first write; an approval's continuation keeps tool-output's budget, its MCP call included.
#[tokio::test]
async fn mcp_servers_and_approvals_keep_the_turns_budget() {
    let servers = lambent_testkit::mcp::McpServers::shared();
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let app =
        crate::remote::remote_app_with(&proxy.url, &sqld.token(), &fake, &[("LAMBENT_TOOL_HOSTS", "127.0.0.1")]).await;
    let agent = app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let server = app.create("/api/mcp-servers/", json!({"name": "everything", "url": servers.everything})).await;
    let link = json!({"agent": agent["id"], "mcp_server": server["id"], "require_approval": true});
    app.create("/api/agent-mcp-servers/", link).await;
    let echo = format!("mcp__{}__echo", server["id"]);
    let mut report = Vec::new();

    let call = frames(function_call_events("resp_m", &[("call_m", &echo, "{\"message\":\"counted\"}")]));
    let (pre, post, out) =
        turn_trips(&app, &proxy, &fake, "/api/agent/stream/", json!({"message": "hi"}), None, call).await;
    assert_eq!(out.done()["status"], "requires_approval", "{}", out.raw);
    report.push(("stream ending in a call that needs approval", pre, post));

    let decision =
        json!({"session_id": out.done()["session_id"], "decisions": [{"call_id": "call_m", "approve": true}]});
    let answer = frames(text_events("resp_n", &["a", "b"]));
    let (pre, post, out) =
        turn_trips(&app, &proxy, &fake, "/api/agent/approvals/", decision, Some("key-a"), answer).await;
    assert_eq!(out.events("tool_result"), [json!({"call_id": "call_m", "output": "Echo: counted"})]);
    report.push(("approvals running the MCP call", pre, post));

    let over: Vec<_> = report.iter().filter(|(_, pre, post)| *pre > 2 || *post > 2).collect();
    assert!(over.is_empty(), "over budget (before upstream, after its last event): {over:?}\nall: {report:?}");
}

/// A rate limit's count rides in the request's own round trip: with both limits set, a warm CRUD read, a
/// write, the token lookup of a cold instance and a turn reach the database as often as without, and every
/// one of those requests was counted.
#[tokio::test]
async fn rate_limits_add_no_round_trip_to_a_request_or_a_turn() {
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let limits = [("LAMBENT_REQUESTS_PER_MINUTE", "1000"), ("LAMBENT_MAX_CONCURRENT_TURNS", "4")];
    let limited = crate::remote::remote_app_with(&proxy.url, &sqld.token(), &fake, &limits).await;
    // The same user on an instance without limits.
    let free_state = crate::remote::remote_state(&proxy.url, &sqld.token(), &fake).await;
    let free =
        TestApp::serve_anonymous(free_state, tempfile::tempdir().unwrap()).await.as_user(limited.token.as_deref());
    let me = limited.get("/api/auth/me/").await.1["id"].as_i64().unwrap();
    assert_eq!(free.get("/api/auth/me/").await.0, 200);
    let mut seen = Vec::new();
    for app in [&free, &limited] {
        let agent = app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
        let (read, _) = trips(&proxy, app.get("/api/agents/")).await;
        let (write, _) = trips(&proxy, app.patch(&format!("/api/agents/{}/", agent["id"]), json!({"name": "B"}))).await;
        let cold = app.twin().await;
        let (lookup, (status, _)) = trips(&proxy, cold.get("/api/sessions/")).await;
        assert_eq!(status, 200);
        let answer = frames(text_events("resp_r", &["a", "b"]));
        let (pre, post, out) =
            turn_trips(app, &proxy, &fake, "/api/agent/stream/", json!({"message": "hi"}), None, answer).await;
        assert_eq!(out.done()["status"], "completed");
        seen.push((read, write, lookup, pre, post));
    }
    assert_eq!(seen[0], seen[1], "without limits, then with them: (read, write, cold lookup, turn before, after)");
    let window = limited.rows(&format!("SELECT requests FROM request_windows WHERE user_id = {me}")).await;
    // me, create, read, write, the cold lookup, the turn: 6 (unless a minute ended in between).
    assert!(matches!(window[0]["requests"].as_i64(), Some(1..=6)), "{window:?}");
}
