//! Every upstream failure ends the stream with `error` then `done`, keeps the user's message, stores the
//! partial answer with its status, and leaves the session where its last completed response left it.

use std::time::Duration;

use serde_json::{Value, json};

use super::Rig;
use lambent_testkit::openai::{Reply, Step, failing_events, frames, text_events};

/// Runs one failing turn after a good one and checks everything the failure must leave behind.
async fn assert_failure(rig: &Rig, code: &str, status: &str, partial: &str) -> Value {
    let session = rig.app.stream("/api/agent/stream/", json!({"message": "first"})).await.done()["session_id"].clone();
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "second", "session_id": session})).await;

    let names = reply.names();
    assert_eq!(&names[names.len() - 2..], ["error", "done"], "{}", reply.raw);
    let error = reply.events("error")[0].clone();
    assert_eq!(error["code"], code, "{error}");
    assert!(!error["message"].as_str().unwrap().is_empty());
    let done = reply.done();
    assert_eq!((done["status"].as_str(), &done["session_id"]), (Some(status), &session));
    assert_eq!(done["pending_tool_calls"], json!([]));
    assert_eq!(reply.text(), partial);

    let messages = rig.messages(&session).await;
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert_eq!((messages[2]["role"].as_str(), messages[2]["content"].as_str()), (Some("user"), Some("second")));
    assert_eq!((messages[3]["content"].as_str(), messages[3]["status"].as_str()), (Some(partial), Some(status)));
    assert_eq!(
        rig.session(&session).await["previous_response_id"],
        "resp_good",
        "only completed responses move the chain"
    );
    error
}

async fn rig_after_a_good_turn() -> Rig {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_good", &["fine"])));
    rig
}

#[tokio::test]
async fn rate_limiting_past_the_retries_ends_with_upstream_rate_limited() {
    let rig = rig_after_a_good_turn().await;
    let body =
        r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    for _ in 0..4 {
        rig.fake.push(Reply::Status { status: 429, body: body.into(), retry_after: Some("0") });
    }
    let error = assert_failure(&rig, "upstream_rate_limited", "failed", "").await;
    assert!(error["message"].as_str().unwrap().contains("Rate limit reached"), "{error}");
    assert_eq!(rig.fake.requests().len(), 5, "one good turn, then the first try and three retries");
}

#[tokio::test]
async fn a_server_error_that_persists_ends_with_upstream_unavailable() {
    let rig = rig_after_a_good_turn().await;
    for _ in 0..4 {
        rig.fake.push(Reply::Status { status: 500, body: "upstream exploded".into(), retry_after: Some("0") });
    }
    assert_failure(&rig, "upstream_unavailable", "failed", "").await;
}

#[tokio::test]
async fn a_retried_server_error_that_recovers_is_invisible() {
    let rig = Rig::new().await;
    rig.fake.push(Reply::Status { status: 503, body: "busy".into(), retry_after: Some("0") });
    rig.fake.push_stream(frames(text_events("resp_ok", &["recovered"])));
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(reply.done()["status"], "completed");
    assert!(reply.events("error").is_empty());
    assert_eq!(rig.fake.requests().len(), 2);
}

#[tokio::test]
async fn an_error_event_mid_stream_ends_with_upstream_error() {
    let rig = rig_after_a_good_turn().await;
    let error = json!({"type": "error", "code": "server_error", "message": "The server had an error", "param": null});
    rig.fake.push_stream(frames(failing_events("resp_bad", &["Par", "tial"], error)));
    let error = assert_failure(&rig, "upstream_error", "failed", "Partial").await;
    assert_eq!(error["message"], "The server had an error (server_error)");
}

#[tokio::test]
async fn a_failed_response_ends_with_response_failed() {
    let rig = rig_after_a_good_turn().await;
    let mut response = lambent_testkit::openai::response_object("resp_bad", "failed", json!([]), Value::Null);
    response["error"] = json!({"code": "server_error", "message": "Something went wrong"});
    rig.fake.push_stream(frames(failing_events(
        "resp_bad",
        &["Half"],
        json!({"type": "response.failed", "response": response}),
    )));
    let error = assert_failure(&rig, "response_failed", "failed", "Half").await;
    assert_eq!(error["message"], "Something went wrong (server_error)");
}

#[tokio::test]
async fn an_incomplete_response_ends_with_response_incomplete() {
    let rig = rig_after_a_good_turn().await;
    let mut response = lambent_testkit::openai::response_object("resp_bad", "incomplete", json!([]), Value::Null);
    response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    rig.fake.push_stream(frames(failing_events(
        "resp_bad",
        &["Trunc"],
        json!({"type": "response.incomplete", "response": response}),
    )));
    let error = assert_failure(&rig, "response_incomplete", "incomplete", "Trunc").await;
    assert!(error["message"].as_str().unwrap().contains("max_output_tokens"));
}

#[tokio::test]
async fn a_cut_connection_ends_with_upstream_disconnected() {
    let rig = rig_after_a_good_turn().await;
    let mut steps = frames(text_events("resp_cut", &["Cut ", "short", " never"]));
    steps.truncate(6);
    // Let the frames reach the client before the connection drops, as a real cut mid-answer would.
    steps.push(Step::Pause(Duration::from_millis(100)));
    steps.push(Step::Cut);
    rig.fake.push_stream(steps);
    assert_failure(&rig, "upstream_disconnected", "failed", "Cut short").await;
}

#[tokio::test]
async fn a_stream_that_ends_without_completing_ends_with_upstream_disconnected() {
    let rig = rig_after_a_good_turn().await;
    let mut steps = frames(text_events("resp_short", &["Only"]));
    steps.truncate(5);
    rig.fake.push_stream(steps);
    let error = assert_failure(&rig, "upstream_disconnected", "failed", "Only").await;
    assert!(error["message"].as_str().unwrap().contains("response.completed"), "{error}");
}

#[tokio::test]
async fn a_stall_past_the_read_timeout_ends_with_upstream_timeout() {
    let rig = Rig::with(&[("OPENAI_READ_TIMEOUT", "0.3")]).await;
    rig.fake.push_stream(frames(text_events("resp_good", &["fine"])));
    let mut steps = frames(text_events("resp_stall", &["Wait", "ing"]));
    steps.truncate(6);
    steps.push(Step::Stall);
    rig.fake.push_stream(steps);
    let started = std::time::Instant::now();
    assert_failure(&rig, "upstream_timeout", "failed", "Waiting").await;
    assert!(started.elapsed() < Duration::from_secs(10), "the stall is cut at the read timeout");
}

#[tokio::test]
async fn a_malformed_frame_ends_with_upstream_malformed() {
    let rig = rig_after_a_good_turn().await;
    let mut steps = frames(text_events("resp_junk", &["Bro", "ken"]));
    steps.truncate(5);
    steps.push(Step::Frame("event: response.output_text.delta\ndata: {not json\n\n".into()));
    rig.fake.push_stream(steps);
    assert_failure(&rig, "upstream_malformed", "failed", "Bro").await;
}

#[tokio::test]
async fn the_next_message_after_a_failure_simply_works() {
    let rig = Rig::new().await;
    rig.fake.push(Reply::Status {
        status: 400,
        body: r#"{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}"#.into(),
        retry_after: None,
    });
    rig.fake.push_stream(frames(text_events("resp_fine", &["Back."])));
    let failed = rig.app.stream("/api/agent/stream/", json!({"message": "one"})).await;
    assert_eq!(failed.events("error")[0]["code"], "upstream_rejected");
    let session = failed.done()["session_id"].clone();
    let next = rig.app.stream("/api/agent/stream/", json!({"message": "two", "session_id": session})).await;
    assert_eq!((next.text(), next.done()["status"].clone()), ("Back.".to_owned(), json!("completed")));
    assert_eq!(rig.fake.request(1).get("previous_response_id"), None, "nothing completed before, so nothing to chain");
}

#[tokio::test]
async fn retries_can_be_turned_off() {
    let rig = Rig::with(&[("LAMBENT_UPSTREAM_RETRIES", "0")]).await;
    rig.fake.push(Reply::Status { status: 503, body: "busy".into(), retry_after: Some("0") });
    rig.fake.push_stream(frames(text_events("resp_never", &["unused"])));
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(reply.events("error")[0]["code"], "upstream_unavailable");
    assert_eq!(rig.fake.requests().len(), 1, "no retry");
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_is_not_waited_for() {
    let rig = Rig::with(&[("LAMBENT_UPSTREAM_RETRY_BUDGET", "5")]).await;
    let body = r#"{"error":{"message":"Slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    rig.fake.push(Reply::Status { status: 429, body: body.into(), retry_after: Some("60") });
    rig.fake.push_stream(frames(text_events("resp_never", &["unused"])));
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(reply.events("error")[0]["code"], "upstream_rate_limited");
    assert_eq!(rig.fake.requests().len(), 1, "a 60 s wait does not fit a 5 s budget: give up at once");
}

#[tokio::test]
async fn a_client_error_is_never_retried() {
    let rig = Rig::new().await;
    let body = r#"{"error":{"message":"Invalid model","type":"invalid_request_error","param":"model","code":null}}"#;
    rig.fake.push(Reply::Status { status: 400, body: body.into(), retry_after: None });
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "hi"})).await;
    assert_eq!(reply.events("error")[0]["code"], "upstream_rejected");
    assert_eq!(rig.fake.requests().len(), 1);
}

#[tokio::test]
async fn a_failed_continuation_hands_its_tool_outputs_to_the_next_message() {
    let rig = Rig::with(&[("LAMBENT_UPSTREAM_RETRIES", "0")]).await;
    rig.tool(json!({"name": "echo", "executor": {"type": "echo"}})).await;
    rig.fake.push_stream(frames(lambent_testkit::openai::function_call_events(
        "resp_call",
        &[("call_1", "echo", "{\"x\":1}")],
    )));
    rig.fake.push(Reply::Status { status: 500, body: "down".into(), retry_after: None });
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "echo", "auto_execute_tools": true})).await;
    assert_eq!(reply.events("error")[0]["code"], "upstream_unavailable");
    let session = reply.done()["session_id"].clone();

    // The executed output never reached the model: the next message carries it before the user's words.
    rig.fake.push_stream(frames(text_events("resp_next", &["Got it."])));
    let next = rig.app.stream("/api/agent/stream/", json!({"message": "and?", "session_id": session})).await;
    assert_eq!(next.done()["status"], "completed");
    let sent = rig.fake.request(2);
    assert_eq!(sent["previous_response_id"], "resp_call");
    assert_eq!(
        sent["input"],
        json!([{"type": "function_call_output", "call_id": "call_1", "output": "{\"x\":1}"},
               {"type": "message", "role": "user", "content": "and?"}])
    );
}

#[tokio::test]
async fn an_upstream_that_refuses_connections_ends_with_upstream_unavailable_after_its_retries() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let rig = Rig::with(&[("OPENAI_BASE_URL", &base), ("LAMBENT_UPSTREAM_RETRIES", "1")]).await;
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "anyone?"})).await;
    let error = reply.events("error")[0].clone();
    assert_eq!(error["code"], "upstream_unavailable", "{error}");
    assert!(!error["message"].as_str().unwrap().contains("sk-test"), "no secret in messages: {error}");
    let session = reply.done()["session_id"].clone();
    assert_eq!(rig.messages(&session).await[0]["content"], "anyone?", "the message was kept");
}

#[tokio::test]
async fn an_upstream_that_never_answers_the_request_ends_with_upstream_timeout() {
    // Accepts the connection, reads nothing, answers nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let rig = Rig::with(&[("OPENAI_BASE_URL", &base), ("OPENAI_READ_TIMEOUT", "1")]).await;
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "hello?"})).await;
    assert_eq!(reply.events("error")[0]["code"], "upstream_timeout", "{}", reply.raw);
    assert_eq!(reply.done()["status"], "failed");
    held.abort();
}
