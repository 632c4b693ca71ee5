//! One turn at a time per session: a lease in the database, with an expiry.

use reqwest::StatusCode;
use serde_json::json;

use super::Rig;
use lambent_testkit::openai::{frames, function_call_events, text_events};

#[tokio::test]
async fn a_second_turn_on_a_busy_session_is_refused_with_the_running_turn() {
    let rig = Rig::new().await;
    let (session, gate, running) = rig.held_turn(None).await;
    let turn_id = rig.app.rows("SELECT turn_id FROM agent_sessions").await[0]["turn_id"].clone();

    for path in ["/api/agent/stream/", "/api/agent/chat/"] {
        let reply = rig.app.stream(path, json!({"message": "me too", "session_id": session})).await;
        assert_eq!(reply.status, StatusCode::CONFLICT, "{path}");
        assert_eq!(
            reply.body(),
            json!({"detail": "Another turn is still running on this session; wait for its done event.", "turn_id": turn_id})
        );
    }
    assert_eq!(rig.app.count("agent_messages").await, 1, "the refused messages were not stored");

    gate.notify_one();
    assert_eq!(running.await.unwrap().done()["status"], "completed");
    rig.fake.push_stream(frames(text_events("resp_next", &["Now you."])));
    let next = rig.app.stream("/api/agent/stream/", json!({"message": "my turn", "session_id": session})).await;
    assert_eq!(next.done()["status"], "completed", "the lease was given back at the end");
    assert_eq!(rig.app.rows("SELECT turn_id FROM agent_sessions").await, [json!({"turn_id": null})]);
}

#[tokio::test]
async fn tool_outputs_wait_for_the_running_turn_too() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "lookup"})).await;
    rig.fake.push_stream(frames(function_call_events("resp_calls", &[("call_1", "lookup", "{}")])));
    let session = rig.app.stream("/api/agent/stream/", json!({"message": "look"})).await.done()["session_id"].clone();
    // A new message expires call_1 and runs; meanwhile the old call cannot be answered into the same session.
    let (_, gate, running) = rig.held_turn(Some(&session)).await;
    let reply = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_1", "output": "x"}))
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    gate.notify_one();
    running.await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_from_a_crashed_turn_does_not_lock_the_session() {
    let rig = Rig::new().await;
    let session = rig.app.create("/api/sessions/", json!({"agent": rig.agent["id"]})).await;
    // As a process killed mid-turn leaves it: a lease nobody will give back, already past its expiry.
    rig.app
        .store()
        .query_json(&format!(
            "UPDATE agent_sessions SET turn_id = 'turn_dead', turn_expires_at = '2020-01-01T00:00:00.000000Z'
             WHERE id = {} RETURNING id",
            session["id"]
        ))
        .await
        .unwrap();
    rig.fake.push_stream(frames(text_events("resp_after_crash", &["Recovered."])));
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "hello?", "session_id": session["id"]})).await;
    assert_eq!(reply.done()["status"], "completed");
}
