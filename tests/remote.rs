//! The same API over a real remote libsql server (sqld) with token authentication.

use lambent::store::Migration;
use lambent::{AppState, Config, Store};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use lambent_testkit::Sqld;
use lambent_testkit::openai::{FakeOpenAi, frames, function_call_events, text_events};

#[tokio::test]
async fn a_remote_server_refuses_a_missing_token() {
    let sqld = Sqld::start().await;
    let err = Store::open_url(&sqld.url, None).await.unwrap_err();
    assert!(err.to_string().contains("401 Unauthorized"), "{err}");
    let forged = Store::open_url(&sqld.url, Some("not-a-jwt")).await.unwrap_err();
    assert!(forged.to_string().contains("401"), "{forged}");
    assert!(Store::open_url(&sqld.url, Some(&sqld.token())).await.is_ok());
}

#[tokio::test]
async fn the_whole_api_runs_on_a_remote_libsql_server() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    let token = sqld.token();
    let mut env = fake.env();
    env.push(("DATABASE_URL", sqld.url.clone()));
    env.push(("DATABASE_AUTH_TOKEN", token.clone()));
    let config = Config::from_lookup(|key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())).unwrap();
    let store = Store::open(&config).await.unwrap();
    assert!(store.is_remote());
    assert_eq!(store.migrate().await.unwrap().len(), lambent::store::MIGRATIONS.len());
    assert!(store.migrate().await.unwrap().is_empty(), "the runner is idempotent remotely too");
    let app = TestApp::serve(AppState::new(config, store), tempfile::tempdir().unwrap()).await;

    // CRUD, validation and uniqueness.
    let agent = app.create("/api/agents/", json!({"name": "Remote", "is_default": true})).await;
    let tool = app.create("/api/tools/", json!({"name": "lookup"})).await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    // sqld's UNIQUE violations (one in a batch, one in a single statement) are told by their constraint.
    let name_taken = (StatusCode::BAD_REQUEST, json!({"name": ["A tool named \"lookup\" already exists."]}));
    assert_eq!(app.post("/api/tools/", json!({"name": "lookup"})).await, name_taken);
    let other = app.create("/api/tools/", json!({"name": "other"})).await;
    assert_eq!(app.patch(&format!("/api/tools/{}/", other["id"]), json!({"name": "lookup"})).await, name_taken);
    assert_eq!(
        app.post("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await,
        (StatusCode::BAD_REQUEST, json!({"non_field_errors": ["This tool is already linked to this agent."]}))
    );
    let second = app.create("/api/agents/", json!({"name": "Second", "is_default": true})).await;
    assert_eq!(app.get(&format!("/api/agents/{}/", agent["id"])).await.1["is_default"], false, "exclusive remotely");

    // A tool conversation.
    fake.push_stream(frames(function_call_events("resp_r1", &[("call_r", "lookup", "{}")])));
    fake.push_stream(frames(text_events("resp_r2", &["remote ", "ok"])));
    let first = app.stream("/api/agent/stream/", json!({"message": "hi", "agent_id": agent["id"]})).await.done();
    let session = first["session_id"].clone();
    assert_eq!(first["pending_tool_calls"], json!(["call_r"]));
    let second_turn = app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_r", "output": "42"}))
        .await;
    assert_eq!(second_turn.text(), "remote ok");
    assert_eq!(app.get(&format!("/api/sessions/{session}/messages/")).await.1["count"], 3);

    // Cascades need foreign keys enforced on the remote connection as well.
    assert_eq!(app.delete(&format!("/api/agents/{}/", agent["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.count("agent_messages").await, 0);
    assert_eq!(app.count("agent_tool_calls").await, 0);
    assert_eq!(app.count("agent_profile_tools").await, 0);
    assert_eq!(app.get(&format!("/api/agents/{}/", second["id"])).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_remote_migration_rolls_back_whole() {
    let sqld = Sqld::start().await;
    let store = Store::open_url(&sqld.url, Some(&sqld.token())).await.unwrap();
    let migrations = [
        Migration { name: "0001_ok.sql", sql: "CREATE TABLE ok (x INTEGER);" },
        Migration { name: "0002_bad.sql", sql: "CREATE TABLE half (x INTEGER); INSERT INTO missing VALUES (1);" },
    ];
    assert!(store.migrate_with(&migrations).await.is_err());
    let tables = store
        .query_json("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('ok', 'half')")
        .await
        .unwrap();
    assert_eq!(tables, vec![json!({"name": "ok"})]);
}

/// A migrated app over the test sqld (or a proxy in front of it), with the fake upstream configured.
pub async fn remote_app(url: &str, token: &str, fake: &FakeOpenAi) -> TestApp {
    remote_app_with(url, token, fake, &[]).await
}

/// The same with more settings.
pub async fn remote_app_with(url: &str, token: &str, fake: &FakeOpenAi, extra: &[(&'static str, &str)]) -> TestApp {
    TestApp::serve(remote_state_with(url, token, fake, extra).await, tempfile::tempdir().unwrap()).await
}

/// The state [`remote_app`] serves (to add to it first, e.g. captured metrics).
pub async fn remote_state(url: &str, token: &str, fake: &FakeOpenAi) -> AppState {
    remote_state_with(url, token, fake, &[]).await
}

/// The state [`remote_app_with`] serves.
async fn remote_state_with(url: &str, token: &str, fake: &FakeOpenAi, extra: &[(&'static str, &str)]) -> AppState {
    let mut env = fake.env();
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    env.push(("DATABASE_URL", url.to_owned()));
    env.push(("DATABASE_AUTH_TOKEN", token.to_owned()));
    let config = Config::from_lookup(|key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())).unwrap();
    let store = Store::open(&config).await.unwrap();
    store.migrate().await.unwrap();
    AppState::new(config, store)
}

#[tokio::test]
async fn an_instance_that_idled_past_the_servers_stream_expiry_still_reads_writes_and_streams() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    let app = remote_app(&sqld.url, &sqld.token(), &fake).await;
    let agent = app.create("/api/agents/", json!({"name": "Idle", "is_default": true})).await;
    fake.push_stream(frames(text_events("resp_i1", &["before"])));
    let session = app.stream("/api/agent/stream/", json!({"message": "one"})).await.done()["session_id"].clone();

    // sqld expires an idle Hrana stream after ~10 s (STREAM_EXPIRED); an instance must not depend on one.
    tokio::time::sleep(std::time::Duration::from_secs(12)).await;

    let (status, body) = app.get("/api/agents/").await;
    assert_eq!((status, body["count"].clone()), (StatusCode::OK, json!(1)), "{body}");
    let tool = app.create("/api/tools/", json!({"name": "after_idle"})).await;
    assert_eq!(tool["name"], "after_idle");
    fake.push_stream(frames(text_events("resp_i2", &["after ", "idle"])));
    let turn = app.stream("/api/agent/stream/", json!({"message": "two", "session_id": session})).await;
    assert_eq!((turn.text(), turn.done()["status"].clone()), ("after idle".to_owned(), json!("completed")));
    // The recorder and the lease survived too: the turn was recorded whole and the session is free again.
    let replay = app.stream_with(reqwest::Method::GET, &format!("/api/sessions/{session}/events/"), None, &[]).await;
    assert_eq!(replay.text(), "after idle");
    assert_eq!(app.get(&format!("/api/sessions/{session}/messages/")).await.1["count"], 4);
    assert_eq!(app.get(&format!("/api/agents/{}/", agent["id"])).await.0, StatusCode::OK);
}

#[tokio::test]
async fn while_the_database_is_down_requests_get_503_and_the_first_after_it_returns_works() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    let app = remote_app(&sqld.url, &sqld.token(), &fake).await;
    app.create("/api/agents/", json!({"name": "Before", "is_default": true})).await;

    sqld.stop().await;
    let response = crate::helpers::http_client()
        .get(app.url("/api/agents/"))
        .bearer_auth(app.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"detail": "The database is unavailable; try again shortly.", "request_id": id}));
    let (status, _) = app.post("/api/agents/", json!({"name": "Lost"})).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    fake.push_stream(frames(text_events("resp_down", &["never"])));
    let turn = app.stream("/api/agent/stream/", json!({"message": "while down"})).await;
    assert_eq!(turn.status, StatusCode::SERVICE_UNAVAILABLE, "{}", turn.raw);

    sqld.start_again().await.expect("sqld starts again");
    let (status, body) = app.get("/api/agents/").await;
    assert_eq!((status, body["count"].clone()), (StatusCode::OK, json!(1)), "{body}");
    app.create("/api/agents/", json!({"name": "After"})).await;
    let turn = app.stream("/api/agent/stream/", json!({"message": "back"})).await;
    assert_eq!(turn.text(), "never", "the scripted answer is used by the first turn that reaches upstream");
    assert_eq!(turn.done()["status"], "completed");
}

#[tokio::test]
async fn thirty_two_concurrent_turns_on_a_remote_database_all_complete() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    let app = remote_app(&sqld.url, &sqld.token(), &fake).await;
    app.create("/api/agents/", json!({"name": "Busy", "is_default": true})).await;
    for i in 0..32 {
        fake.push_stream(frames(text_events(&format!("resp_c{i}"), &["con", "current"])));
    }
    let turns: Vec<_> = (0..32)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.stream("/api/agent/stream/", json!({"message": format!("m{i}")})).await })
        })
        .collect();
    for turn in turns {
        let out = tokio::time::timeout(std::time::Duration::from_secs(20), turn).await.expect("a turn hung").unwrap();
        assert_eq!((out.status, out.done()["status"].clone()), (StatusCode::OK, json!("completed")), "{}", out.raw);
    }
    assert_eq!(app.count("agent_messages").await, 64);
}

#[tokio::test]
async fn a_kept_stream_that_a_restarted_server_forgot_is_sent_again_on_a_fresh_one_and_writes_once() {
    let sqld = Sqld::start().await;
    let proxy = lambent_testkit::Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let app = remote_app(&proxy.url, &sqld.token(), &fake).await;
    // This write leaves its stream open for the next unit of work; the restart makes the server forget it.
    app.create("/api/agents/", json!({"name": "Before"})).await;
    sqld.stop().await;
    sqld.start_again().await.expect("sqld starts again");

    let before = proxy.count();
    let tool = app.create("/api/tools/", json!({"name": "after_restart"})).await;
    assert_eq!(tool["name"], "after_restart");
    assert_eq!(proxy.count() - before, 2, "the refused request on the forgotten stream, then the same on a fresh one");
    assert_eq!(app.count("agent_tools").await, 1, "written once");
}
