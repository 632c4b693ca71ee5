//! `Idempotency-Key`: a retried request gets the first one's outcome and never a second model call; and
//! racing tool-output submissions start exactly one continuation.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Notify;

use super::Rig;
use crate::helpers::{Streamed, TestApp};
use lambent_testkit::openai::{Step, frames, function_call_events, text_events};

async fn keyed(app: &TestApp, path: &str, body: serde_json::Value, key: &str) -> Streamed {
    app.stream_with(Method::POST, path, Some(body), &[("Idempotency-Key", key)]).await
}

fn same(a: &Streamed, b: &Streamed) -> bool {
    a.frames.len() == b.frames.len()
        && a.frames.iter().zip(&b.frames).all(|(x, y)| x.event == y.event && x.id == y.id && x.data == y.data)
}

#[tokio::test]
async fn a_retried_stream_with_the_same_key_replays_the_turn_without_a_second_model_call() {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_1", &["Only", " once."])));
    let body = json!({"message": "hello"});
    let first = keyed(&rig.app, "/api/agent/stream/", body.clone(), "retry-me-1").await;
    assert_eq!(first.done()["status"], "completed");
    let again = keyed(&rig.app, "/api/agent/stream/", body.clone(), "retry-me-1").await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(same(&first, &again), "{:?}", again.names());
    assert_eq!(rig.fake.requests().len(), 1, "the model was called once");
    assert_eq!(rig.app.count("agent_messages").await, 2, "one user message, one answer");

    // Another user's identical key is theirs alone.
    let bob = rig.app.account("bob", false).await;
    let as_bob = rig.app.as_user(Some(&bob.token));
    as_bob.create("/api/agents/", json!({"name": "Bob's", "is_default": true})).await;
    rig.fake.push_stream(frames(text_events("resp_bob", &["Hi Bob."])));
    let theirs = keyed(&as_bob, "/api/agent/stream/", body, "retry-me-1").await;
    assert_eq!(theirs.text(), "Hi Bob.");
}

#[tokio::test]
async fn a_key_still_running_answers_409_and_a_key_reused_for_another_request_422() {
    let rig = Rig::new().await;
    let gate = Arc::new(Notify::new());
    let mut steps = frames(text_events("resp_held", &["Wait", "ing"]));
    steps.insert(5, Step::Gate(gate.clone()));
    rig.fake.push_stream(steps);
    let app = rig.app.clone();
    let running =
        tokio::spawn(async move { keyed(&app, "/api/agent/stream/", json!({"message": "slow"}), "k-409").await });
    let mut turn_id = serde_json::Value::Null;
    for _ in 0..250 {
        if let Some(row) = rig.app.rows("SELECT turn_id FROM idempotency_keys").await.first() {
            turn_id = row["turn_id"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(turn_id.is_string());
    for path in ["/api/agent/stream/", "/api/agent/chat/"] {
        let twin = keyed(&rig.app, path, json!({"message": "slow"}), "k-409").await;
        if path == "/api/agent/stream/" {
            assert_eq!(twin.status, StatusCode::CONFLICT);
            assert_eq!(twin.body()["turn_id"], turn_id);
            assert!(twin.body()["detail"].as_str().unwrap().contains("Idempotency-Key"), "{}", twin.raw);
        } else {
            assert_eq!(twin.status, StatusCode::UNPROCESSABLE_ENTITY, "same key, another endpoint: {}", twin.raw);
        }
    }
    gate.notify_one();
    assert_eq!(running.await.unwrap().done()["status"], "completed");
    let other = keyed(&rig.app, "/api/agent/stream/", json!({"message": "different"}), "k-409").await;
    assert_eq!(
        (other.status, other.body()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"detail": "This Idempotency-Key was already used for a different request."})
        )
    );
    assert_eq!(rig.fake.requests().len(), 1);
    assert_eq!(rig.app.count("agent_messages").await, 2);
}

#[tokio::test]
async fn chat_with_a_key_answers_the_same_reply_again_even_after_a_502() {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_chat", &["Sure."])));
    let first = keyed(&rig.app, "/api/agent/chat/", json!({"message": "ok?"}), "chat-1").await;
    let again = keyed(&rig.app, "/api/agent/chat/", json!({"message": "ok?"}), "chat-1").await;
    assert_eq!((first.status, again.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first.body(), again.body());
    assert_eq!(first.body()["output_text"], "Sure.");

    for _ in 0..4 {
        rig.fake.push(lambent_testkit::openai::Reply::Status {
            status: 500,
            body: "down".into(),
            retry_after: Some("0"),
        });
    }
    let failed = keyed(&rig.app, "/api/agent/chat/", json!({"message": "still?"}), "chat-2").await;
    let replayed = keyed(&rig.app, "/api/agent/chat/", json!({"message": "still?"}), "chat-2").await;
    assert_eq!((failed.status, replayed.status), (StatusCode::BAD_GATEWAY, StatusCode::BAD_GATEWAY));
    // The same reply, except the id of the request that answered it (every 5xx body quotes its own).
    let (mut failed_body, mut replayed_body) = (failed.body(), replayed.body());
    let ids = (failed_body["request_id"].take(), replayed_body["request_id"].take());
    assert_eq!(ids.0.as_str(), failed.headers["x-request-id"].to_str().ok());
    assert_eq!(ids.1.as_str(), replayed.headers["x-request-id"].to_str().ok());
    assert_ne!(ids.0, ids.1);
    assert_eq!(failed_body, replayed_body);
    assert_eq!(rig.fake.requests().len(), 5, "one good call, four tries of the failing one, no more");
}

#[tokio::test]
async fn tool_output_with_a_key_is_answered_the_same_way_again() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "lookup"})).await;
    let calls = [("call_a", "lookup", "{}"), ("call_b", "lookup", "{}")];
    rig.fake.push_stream(frames(function_call_events("resp_calls", &calls)));
    let session = rig.app.stream("/api/agent/stream/", json!({"message": "two"})).await.done()["session_id"].clone();

    let first_body = json!({"session_id": session, "call_id": "call_a", "output": "A"});
    let waiting = keyed(&rig.app, "/api/agent/tool-output/", first_body.clone(), "out-a").await;
    let waiting_again = keyed(&rig.app, "/api/agent/tool-output/", first_body, "out-a").await;
    assert_eq!((waiting.status, waiting_again.status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(waiting.body(), json!({"pending_tool_calls": ["call_b"]}));
    assert_eq!(waiting_again.body(), waiting.body());

    rig.fake.push_stream(frames(text_events("resp_done", &["Both."])));
    let last_body = json!({"session_id": session, "call_id": "call_b", "output": "B"});
    let continued = keyed(&rig.app, "/api/agent/tool-output/", last_body.clone(), "out-b").await;
    let replayed = keyed(&rig.app, "/api/agent/tool-output/", last_body, "out-b").await;
    assert_eq!(continued.done()["status"], "completed");
    assert!(same(&continued, &replayed));
    assert_eq!(rig.fake.requests().len(), 2, "one continuation");
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_a_field_error() {
    let rig = Rig::new().await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "has space"] {
        let reply = keyed(&rig.app, "/api/agent/stream/", json!({"message": "hi"}), key).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{key:?}");
        assert_eq!(reply.body(), json!({"Idempotency-Key": ["Must be 1 to 255 visible ASCII characters."]}));
    }
    assert_eq!(rig.app.count("agent_messages").await, 0);
}

#[tokio::test]
async fn two_racing_submissions_for_the_last_calls_start_exactly_one_continuation() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "lookup"})).await;
    let calls = [("call_1", "lookup", "{}"), ("call_2", "lookup", "{}")];
    rig.fake.push_stream(frames(function_call_events("resp_calls", &calls)));
    let session = rig.app.stream("/api/agent/stream/", json!({"message": "two"})).await.done()["session_id"].clone();
    rig.fake.push_stream(frames(text_events("resp_done", &["Done."])));
    rig.fake.push_stream(frames(text_events("resp_extra", &["Never."])));

    let submit = |call: &'static str| {
        let app = rig.app.clone();
        let body = json!({"session_id": session, "call_id": call, "output": call});
        async move { app.stream("/api/agent/tool-output/", body).await }
    };
    let (one, two) = tokio::join!(submit("call_1"), submit("call_2"));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::ACCEPTED], "{} / {}", one.raw, two.raw);
    let streamed = if one.status == StatusCode::OK { one } else { two };
    assert_eq!(streamed.done()["status"], "completed");
    assert_eq!(rig.fake.requests().len(), 2, "exactly one continuation went upstream");
    let input = rig.fake.request(1)["input"].clone();
    let answered: Vec<&str> = input.as_array().unwrap().iter().map(|i| i["call_id"].as_str().unwrap()).collect();
    assert_eq!(answered, ["call_1", "call_2"]);
}
