//! The same API over a real remote libsql server (sqld) with token authentication.

use lambent::store::Migration;
use lambent::{AppState, Config, Store};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;
use crate::helpers::fake_openai::{FakeOpenAi, frames, function_call_events, text_events};
use crate::helpers::services::Sqld;

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
    let app = TestApp::serve(AppState::new(config, store).unwrap(), tempfile::tempdir().unwrap()).await;

    // CRUD, validation and uniqueness.
    let agent = app.create("/api/agents/", json!({"name": "Remote", "is_default": true})).await;
    let tool = app.create("/api/tools/", json!({"name": "lookup"})).await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    assert_eq!(
        app.post("/api/tools/", json!({"name": "lookup"})).await,
        (StatusCode::BAD_REQUEST, json!({"name": ["agent tool with this name already exists."]}))
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
