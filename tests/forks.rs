//! Forks: a session copied up to a message, continuing from there — from that point's response id on a
//! provider that keeps state, from the copied history on one whose state Lambent keeps or on another agent.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::stateless::{answer, user};
use lambent_testkit::openai::{FakeOpenAi, frames, function_call_events, text_events};

/// Two turns on a new session of the default agent: "one" → "First.", "two" → "Second.".
async fn two_turns(app: &TestApp, fake: &FakeOpenAi) -> (Value, Vec<Value>) {
    fake.push_stream(frames(text_events("resp_1", &["First."])));
    let session = app.stream("/api/agent/stream/", json!({"message": "one"})).await.done()["session_id"].clone();
    fake.push_stream(frames(text_events("resp_2", &["Second."])));
    app.stream("/api/agent/stream/", json!({"message": "two", "session_id": session})).await;
    let messages =
        app.get(&format!("/api/sessions/{session}/messages/")).await.1["results"].as_array().unwrap().clone();
    (session, messages)
}

async fn contents(app: &TestApp, session: &Value) -> Vec<String> {
    let page = app.get(&format!("/api/sessions/{session}/messages/")).await.1;
    page["results"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_fork_copies_up_to_its_message_and_continues_from_that_response_on_a_provider_that_keeps_state() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await;
    let agent = app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let (session, messages) = two_turns(&app, &fake).await;

    let fork = app.create(&format!("/api/sessions/{session}/fork/"), json!({"message": messages[1]["id"]})).await;

    assert_ne!(fork["id"], session);
    assert_eq!((fork["agent"].clone(), fork["previous_response_id"].clone()), (agent["id"].clone(), json!("resp_1")));
    assert_eq!(contents(&app, &fork["id"]).await, ["one", "First."]);
    assert_eq!(contents(&app, &session).await, ["one", "First.", "two", "Second."], "the original is untouched");
    fake.push_stream(frames(text_events("resp_f", &["Forked."])));
    let next = app.stream("/api/agent/stream/", json!({"message": "other two", "session_id": fork["id"]})).await;
    assert_eq!(next.text(), "Forked.");
    assert_eq!(fake.request(2)["previous_response_id"], "resp_1");
    assert_eq!(fake.request(2)["input"], json!([user("other two")]));

    // Without a message, a fork keeps everything and continues from the last response.
    let whole = app.create(&format!("/api/sessions/{session}/fork/"), json!({})).await;
    assert_eq!(whole["previous_response_id"], "resp_2");
    assert_eq!(contents(&app, &whole["id"]).await.len(), 4);
    // A message of another session is not a fork point of this one.
    let (status, body) = app.post(&format!("/api/sessions/{session}/fork/"), json!({"message": 999_999})).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, json!({"message": [format!("No message 999999 in session {session}.")]}))
    );
}

#[tokio::test]
async fn a_fork_between_a_tool_call_and_its_output_is_refused_saying_why_and_one_after_the_output_keeps_the_calls() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await;
    let agent = app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let tool = app.create("/api/tools/", json!({"name": "lookup"})).await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    fake.push_stream(frames(function_call_events("resp_call", &[("call_1", "lookup", "{}")])));
    let session = app.stream("/api/agent/stream/", json!({"message": "look"})).await.done()["session_id"].clone();

    let (status, body) = app.post(&format!("/api/sessions/{session}/fork/"), json!({})).await;

    assert_eq!(status, StatusCode::BAD_REQUEST);
    let why = body["message"][0].as_str().unwrap();
    assert!(why.contains("between a call and its output"), "{why}");
    assert_eq!(app.count("agent_sessions").await, 1, "nothing was created");

    fake.push_stream(frames(text_events("resp_after", &["Found."])));
    app.stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_1", "output": "42"})).await;
    let fork = app.create(&format!("/api/sessions/{session}/fork/"), json!({})).await;
    let calls = app.get(&format!("/api/sessions/{}/tool-calls/", fork["id"])).await.1;
    assert_eq!(calls["count"], 1);
    assert_eq!(
        (calls["results"][0]["call_id"].as_str(), calls["results"][0]["output"].as_str()),
        (Some("call_1"), Some("42"))
    );
    assert_eq!(fork["previous_response_id"], "resp_after");
}

#[tokio::test]
async fn a_fork_onto_another_agent_sends_the_copied_history_whole_on_its_first_turn_then_chains_again() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await;
    app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let other = app.create("/api/agents/", json!({"name": "B", "model": "gpt-5-mini"})).await;
    let (session, messages) = two_turns(&app, &fake).await;

    let fork = app
        .create(&format!("/api/sessions/{session}/fork/"), json!({"message": messages[1]["id"], "agent": other["id"]}))
        .await;

    assert_eq!((fork["agent"].clone(), fork["previous_response_id"].clone()), (other["id"].clone(), Value::Null));
    fake.push_stream(frames(text_events("resp_b1", &["B here."])));
    app.stream("/api/agent/stream/", json!({"message": "and you?", "session_id": fork["id"]})).await;
    let first = fake.request(2);
    assert_eq!(first["model"], "gpt-5-mini");
    assert!(first.get("previous_response_id").is_none(), "{first}");
    assert_eq!(first["input"], json!([user("one"), answer("resp_1", "First."), user("and you?")]));
    fake.push_stream(frames(text_events("resp_b2", &["Still B."])));
    app.stream("/api/agent/stream/", json!({"message": "again", "session_id": fork["id"]})).await;
    assert_eq!(fake.request(3)["previous_response_id"], "resp_b1", "the provider has the history now");
    assert_eq!(fake.request(3)["input"], json!([user("again")]));
}

#[tokio::test]
async fn a_fork_in_local_mode_continues_from_the_copied_history() {
    let fake = FakeOpenAi::start_stateless().await;
    let mut env = fake.env();
    env.push(("LAMBENT_PROVIDER_OPENAI_STATE", "local".to_owned()));
    let app = TestApp::spawn_with(&env).await;
    app.create("/api/agents/", json!({"name": "A", "is_default": true})).await;
    let (session, messages) = two_turns(&app, &fake).await;

    let fork = app.create(&format!("/api/sessions/{session}/fork/"), json!({"message": messages[1]["id"]})).await;
    fake.push_stream(frames(text_events("resp_f", &["Forked."])));
    let next = app.stream("/api/agent/stream/", json!({"message": "other two", "session_id": fork["id"]})).await;

    assert_eq!(next.text(), "Forked.", "{}", next.raw);
    let request = fake.request(2);
    assert_eq!(request["store"], false);
    assert_eq!(request["input"], json!([user("one"), answer("resp_1", "First."), user("other two")]));
}
