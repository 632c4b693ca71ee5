//! Conversation state kept by Lambent (`_STATE=local`), against the fake in its stateless variant: it answers
//! 400 to any `previous_response_id` or `store: true`, as Ollama, Groq or OpenRouter would refuse or ignore
//! them. Every request carries the whole conversation rebuilt from the store.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use lambent_testkit::openai::{
    FakeOpenAi, Reply, failing_events, frames, function_call_events, response_object, text_events, usage,
};

/// An app on a stateless fake, `openai` in `state` mode, with a default agent.
async fn on_stateless(state: &str) -> (TestApp, FakeOpenAi, Value) {
    let fake = FakeOpenAi::start_stateless().await;
    let mut env = fake.env();
    env.push(("LAMBENT_PROVIDER_OPENAI_STATE", state.to_owned()));
    let app = TestApp::spawn_with(&env).await;
    let agent =
        app.create("/api/agents/", json!({"name": "Local", "system_prompt": "Be brief.", "is_default": true})).await;
    (app, fake, agent)
}

pub fn user(text: &str) -> Value {
    json!({"type": "message", "role": "user", "content": text})
}

/// The message item the fake's `text_events(id, …)` answers with.
pub fn answer(id: &str, text: &str) -> Value {
    json!({"id": format!("msg_{id}_0"), "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]})
}

fn call(id: &str, index: usize, call_id: &str, name: &str, arguments: &str) -> Value {
    json!({"id": format!("fc_{id}_{index}"), "type": "function_call", "status": "completed", "arguments": arguments,
           "call_id": call_id, "name": name})
}

fn output(call_id: &str, output: &str) -> Value {
    json!({"type": "function_call_output", "call_id": call_id, "output": output})
}

/// A response that reasons first: its reasoning item's `encrypted_content` comes only in the item's
/// `response.output_item.done` (the completed response abridges it), then a text answer.
fn reasoning_then_text(id: &str, text: &str) -> Vec<Value> {
    let reasoning =
        json!({"id": format!("rs_{id}"), "type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-opaque"});
    let abridged = json!({"id": format!("rs_{id}"), "type": "reasoning", "summary": []});
    let mut events = text_events(id, &[text]);
    let completed = events.pop().unwrap();
    let mut output = vec![abridged];
    output.extend(completed["response"]["output"].as_array().unwrap().iter().cloned());
    // The message moves to output index 1.
    for event in &mut events {
        if event.get("output_index").is_some() {
            event["output_index"] = json!(1);
        }
    }
    events.insert(2, json!({"type": "response.output_item.added", "output_index": 0, "item": {"id": format!("rs_{id}"), "type": "reasoning", "summary": []}}));
    events.insert(3, json!({"type": "response.output_item.done", "output_index": 0, "item": reasoning}));
    events.push(json!({"type": "response.completed",
                       "response": response_object(id, "completed", Value::Array(output), usage(30, 12))}));
    events
}

fn assert_stateless(request: &Value) {
    assert_eq!(request["store"], false, "{request}");
    assert!(request.get("previous_response_id").is_none(), "{request}");
    assert_eq!(request["include"], json!(["reasoning.encrypted_content"]));
    assert_eq!(request["instructions"], "Be brief.");
}

#[tokio::test]
async fn in_local_mode_every_request_carries_the_whole_conversation_with_reasoning_calls_and_outputs_in_order() {
    let (app, fake, _) = on_stateless("local").await;
    app.create(
        "/api/tools/",
        json!({"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}),
    )
    .await;
    let tool = app.rows("SELECT id FROM agent_tools").await[0]["id"].clone();
    let agent = app.rows("SELECT id FROM agent_profiles").await[0]["id"].clone();
    app.create("/api/agent-tools/", json!({"agent": agent, "tool": tool})).await;

    fake.push_stream(frames(reasoning_then_text("resp_1", "Hello.")));
    let first = app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(first.text(), "Hello.");
    let session = first.done()["session_id"].clone();
    assert_stateless(&fake.request(0));
    assert_eq!(fake.request(0)["input"], json!([user("hi")]));

    // Two parallel calls the client answers.
    fake.push_stream(frames(function_call_events(
        "resp_2",
        &[("call_a", "lookup", "{\"q\":\"a\"}"), ("call_b", "lookup", "{\"q\":\"b\"}")],
    )));
    let second = app.stream("/api/agent/stream/", json!({"message": "look up a and b", "session_id": session})).await;
    assert_eq!(second.done()["pending_tool_calls"], json!(["call_a", "call_b"]));
    let reasoning =
        json!({"id": "rs_resp_1", "type": "reasoning", "summary": [], "encrypted_content": "gAAAAB-opaque"});
    let so_far = vec![user("hi"), reasoning, answer("resp_1", "Hello."), user("look up a and b")];
    assert_stateless(&fake.request(1));
    assert_eq!(fake.request(1)["input"], Value::from(so_far.clone()), "reasoning replayed with its encrypted content");

    let (status, waiting) =
        app.post("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_a", "output": "A"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waiting}");
    fake.push_stream(frames(text_events("resp_3", &["Both found."])));
    let continued =
        app.stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_b", "output": "B"})).await;
    assert_eq!(continued.text(), "Both found.", "{}", continued.raw);
    let calls = [
        call("resp_2", 0, "call_a", "lookup", "{\"q\":\"a\"}"),
        call("resp_2", 1, "call_b", "lookup", "{\"q\":\"b\"}"),
    ];
    let mut so_far = so_far;
    so_far.extend(calls);
    so_far.extend([output("call_a", "A"), output("call_b", "B")]);
    assert_stateless(&fake.request(2));
    assert_eq!(fake.request(2)["input"], Value::from(so_far.clone()));

    fake.push_stream(frames(text_events("resp_4", &["Bye."])));
    let third = app.stream("/api/agent/stream/", json!({"message": "thanks", "session_id": session})).await;
    assert_eq!(third.text(), "Bye.");
    so_far.extend([answer("resp_3", "Both found."), user("thanks")]);
    assert_stateless(&fake.request(3));
    assert_eq!(fake.request(3)["input"], Value::from(so_far));
    assert_eq!(fake.requests().len(), 4, "no request was refused");
    assert!(third.done().get("dropped_turns").is_none(), "nothing dropped without a budget");
}

#[tokio::test]
async fn in_local_mode_server_side_tool_rounds_extend_the_history_within_the_turn() {
    let (app, fake, agent) = on_stateless("local").await;
    let tool = app
        .create("/api/tools/", json!({"name": "echo", "parameters": {"type": "object"}, "executor": {"type": "echo"}}))
        .await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    fake.push_stream(frames(function_call_events(
        "resp_1",
        &[("c1", "echo", "{\"x\":1}"), ("c2", "echo", "{\"x\":2}")],
    )));
    fake.push_stream(frames(text_events("resp_2", &["Echoed."])));

    let turn = app.stream("/api/agent/stream/", json!({"message": "echo twice", "auto_execute_tools": true})).await;

    assert_eq!(turn.text(), "Echoed.", "{}", turn.raw);
    let outputs: Vec<Value> = turn
        .events("tool_result")
        .iter()
        .map(|r| output(r["call_id"].as_str().unwrap(), r["output"].as_str().unwrap()))
        .collect();
    let mut expected = vec![
        user("echo twice"),
        call("resp_1", 0, "c1", "echo", "{\"x\":1}"),
        call("resp_1", 1, "c2", "echo", "{\"x\":2}"),
    ];
    expected.extend(outputs);
    assert_stateless(&fake.request(1));
    assert_eq!(fake.request(1)["input"], Value::from(expected));
}

#[tokio::test]
async fn over_its_input_budget_an_agent_sends_only_the_newest_whole_turns_and_done_says_how_many_were_left_out() {
    let (app, fake, agent) = on_stateless("local").await;
    let long = "x".repeat(400);
    let mut session = Value::Null;
    for (i, id) in ["resp_1", "resp_2"].into_iter().enumerate() {
        fake.push_stream(frames(text_events(id, &["ok"])));
        let mut body = json!({"message": format!("{i} {long}")});
        if !session.is_null() {
            body["session_id"] = session.clone();
        }
        session = app.stream("/api/agent/stream/", body).await.done()["session_id"].clone();
    }
    // Each earlier turn is ~100 tokens of user text and 9 of answer (its stored usage).
    app.patch(&format!("/api/agents/{}/", agent["id"]), json!({"input_budget": 150})).await;
    fake.push_stream(frames(text_events("resp_3", &["ok"])));

    let third = app.stream("/api/agent/stream/", json!({"message": "short", "session_id": session})).await;

    assert_eq!(third.done()["dropped_turns"], 1, "{}", third.raw);
    let input = fake.request(2)["input"].clone();
    assert_eq!(input[0], user(&format!("1 {long}")), "the oldest turn went first: {input}");
    assert_eq!(input.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn in_provider_mode_a_server_that_keeps_no_state_ends_the_turn_with_upstream_rejected_naming_the_setting() {
    let (app, fake, _) = on_stateless("provider").await;

    let turn = app.stream("/api/agent/stream/", json!({"message": "hi"})).await;

    let errors = turn.events("error");
    assert_eq!(errors.len(), 1, "{}", turn.raw);
    assert_eq!(errors[0]["code"], "upstream_rejected");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains("LAMBENT_PROVIDER_OPENAI_STATE=local"), "{message}");
    assert!(message.contains("keeps no responses"), "the upstream's own words stay: {message}");
    assert_eq!(turn.done()["status"], "failed");
    assert_eq!(fake.requests().len(), 1, "a refusal is not retried");
}

#[tokio::test]
async fn in_local_mode_retries_failures_and_replays_behave_as_in_provider_mode() {
    let (app, fake, _) = on_stateless("local").await;
    // A refused attempt is retried with the same body.
    fake.push(Reply::Status { status: 503, body: "{}".into(), retry_after: Some("0") });
    fake.push_stream(frames(text_events("resp_1", &["Hello."])));
    let first = app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(first.text(), "Hello.", "{}", first.raw);
    assert_eq!(fake.request(0), fake.request(1), "the retry sends the same request");
    let session = first.done()["session_id"].clone();

    // A response that fails midway is not part of the history; its user message is.
    let boom = json!({"type": "error", "code": "server_error", "message": "boom", "param": null});
    fake.push_stream(frames(failing_events("resp_2", &["Par"], boom)));
    let failed = app.stream("/api/agent/stream/", json!({"message": "and then?", "session_id": session})).await;
    assert_eq!(failed.events("error")[0]["code"], "upstream_error");
    assert_eq!(failed.done()["status"], "failed");

    // A retried Idempotency-Key replays the turn without a request upstream.
    fake.push_stream(frames(text_events("resp_3", &["Again."])));
    let body = json!({"message": "once more", "session_id": session});
    let headers = [("Idempotency-Key", "local-mode-key-1")];
    let live = app.stream_with(reqwest::Method::POST, "/api/agent/stream/", Some(body.clone()), &headers).await;
    let replayed = app.stream_with(reqwest::Method::POST, "/api/agent/stream/", Some(body), &headers).await;
    assert_eq!(live.text(), "Again.");
    assert_eq!(replayed.raw, live.raw, "the replay is the recorded frames, byte for byte");
    assert_eq!(fake.requests().len(), 4);
    assert_stateless(&fake.request(3));
    assert_eq!(
        fake.request(3)["input"],
        json!([user("hi"), answer("resp_1", "Hello."), user("and then?"), user("once more")])
    );
}
