use reqwest::StatusCode;
use serde_json::json;

use lambent::domain::{Role, SessionId};

use crate::helpers::TestApp;

#[tokio::test]
async fn sessions_are_created_listed_by_agent_read_and_deleted() {
    let app = TestApp::spawn().await;
    let a = app.create("/api/agents/", json!({"name": "a"})).await;
    let b = app.create("/api/agents/", json!({"name": "b"})).await;
    let session = app.create("/api/sessions/", json!({"agent": a["id"]})).await;
    assert_eq!(session["agent"], a["id"]);
    assert_eq!(session["previous_response_id"], serde_json::Value::Null);
    assert_eq!(session["last_output"], serde_json::Value::Null);
    let other = app.create("/api/sessions/", json!({"agent": b["id"]})).await;

    assert_eq!(app.get(&format!("/api/sessions/?agent={}", a["id"])).await.1["results"], json!([session]));
    assert_eq!(app.get("/api/sessions/").await.1["results"], json!([session, other]));
    let path = format!("/api/sessions/{}/", session["id"]);
    assert_eq!(app.get(&path).await, (StatusCode::OK, session.clone()));
    assert_eq!(app.delete(&path).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_session_needs_an_existing_agent_and_cannot_be_edited() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post("/api/sessions/", json!({})).await,
        (StatusCode::BAD_REQUEST, json!({"agent": ["This field is required."]}))
    );
    assert_eq!(
        app.post("/api/sessions/", json!({"agent": 5})).await,
        (StatusCode::BAD_REQUEST, json!({"agent": ["Invalid pk \"5\" - object does not exist."]}))
    );
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let session = app.create("/api/sessions/", json!({"agent": agent["id"]})).await;
    assert_eq!(
        app.patch(&format!("/api/sessions/{}/", session["id"]), json!({"agent": 1})).await,
        (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method \"PATCH\" not allowed."}))
    );
}

#[tokio::test]
async fn messages_are_listed_oldest_first_and_go_with_their_session() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let session = app.create("/api/sessions/", json!({"agent": agent["id"]})).await;
    let id = session["id"].as_i64().unwrap();
    let first = app.store().add_message(SessionId(id), Role::User, "Hello").await.unwrap();
    let second = app.store().add_message(SessionId(id), Role::Assistant, "Hi! How can I help?").await.unwrap();

    let (status, page) = app.get(&format!("/api/sessions/{id}/messages/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["count"], 2);
    assert_eq!(
        page["results"],
        json!([
            {"id": first.id, "session": id, "role": "user", "content": "Hello", "status": null,
             "response_id": null, "usage": null, "created_at": first.created_at},
            {"id": second.id, "session": id, "role": "assistant", "content": "Hi! How can I help?", "status": null,
             "response_id": null, "usage": null, "created_at": second.created_at},
        ])
    );
    assert_eq!(app.get("/api/sessions/999/messages/").await, (StatusCode::NOT_FOUND, json!({"detail": "Not found."})));
    app.delete(&format!("/api/sessions/{id}/")).await;
    assert_eq!(app.count("agent_messages").await, 0);
}

#[tokio::test]
async fn the_database_refuses_a_message_role_outside_the_seed_choices() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let session = app.create("/api/sessions/", json!({"agent": agent["id"]})).await;
    // `Role` cannot say `system`; the CHECK constraint holds whatever writes the row.
    let insert = format!(
        "INSERT INTO agent_messages (session_id, role, content, created_at) VALUES ({}, 'system', 'x', 'now') RETURNING id",
        session["id"]
    );
    let result = app.store().query_json(&insert).await;
    assert!(result.is_err(), "the CHECK constraint keeps roles to user/assistant: {result:?}");
    assert_eq!(app.count("agent_messages").await, 0);
}
