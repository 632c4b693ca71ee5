use reqwest::StatusCode;
use serde_json::json;

use super::Rig;
use crate::helpers::transcript;
use lambent_testkit::openai::{Reply, frames, function_call_events, text_events};

#[tokio::test]
async fn chat_answers_with_the_whole_turn_as_json() {
    let rig = Rig::new().await;
    rig.fake.push_stream(transcript("text.sse"));

    let (status, reply) = rig.app.post("/api/agent/chat/", json!({"message": "Hello"})).await;

    assert_eq!(status, StatusCode::OK, "{reply}");
    let session = reply["session_id"].clone();
    let messages = rig.app.get(&format!("/api/sessions/{session}/messages/")).await.1;
    let stored = &messages["results"][1];
    assert_eq!(
        reply,
        json!({
            "session_id": session,
            "response_id": "resp_0a1b2c3d4e5f60718293a4b5c6d7e8f90000000000000001",
            "status": "completed",
            "message": {"id": stored["id"], "role": "assistant", "content": "Hello! How can I help you today?",
                        "created_at": stored["created_at"]},
            "output_text": "Hello! How can I help you today?",
            "pending_tool_calls": [],
            "usage": stored["usage"],
            "error": null,
        })
    );
    assert_eq!(reply["usage"]["total_tokens"], 23);
    assert_eq!(rig.fake.request(0)["stream"], true);
}

#[tokio::test]
async fn chat_reports_pending_tool_calls_and_runs_executors() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "lookup"})).await;
    rig.tool(json!({"name": "echo", "executor": {"type": "echo"}})).await;
    rig.fake.push_stream(frames(function_call_events("resp_c1", &[("call_l", "lookup", "{\"id\":7}")])));
    rig.fake.push_stream(frames(function_call_events("resp_c2", &[("call_e", "echo", "{\"say\":\"hi\"}")])));
    rig.fake.push_stream(frames(text_events("resp_c3", &["hi"])));

    let (_, manual) = rig.app.post("/api/agent/chat/", json!({"message": "look it up"})).await;
    assert_eq!(
        (manual["status"].as_str(), manual["pending_tool_calls"].clone()),
        (Some("requires_tool_output"), json!(["call_l"]))
    );

    let session = manual["session_id"].clone();
    let tool_output = rig
        .app
        .stream(
            "/api/agent/tool-output/",
            json!({"session_id": session, "call_id": "call_l", "output": "{}", "auto_execute_tools": true}),
        )
        .await;
    assert_eq!(tool_output.events("tool_result"), [json!({"call_id": "call_e", "output": "{\"say\":\"hi\"}"})]);
    assert_eq!(tool_output.done()["status"], "completed");
}

#[tokio::test]
async fn chat_runs_two_auto_rounds_and_answers_with_the_final_text() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "echo", "executor": {"type": "echo"}})).await;
    rig.fake.push_stream(frames(function_call_events("resp_1", &[("c1", "echo", "1")])));
    rig.fake.push_stream(frames(function_call_events("resp_2", &[("c2", "echo", "2")])));
    rig.fake.push_stream(frames(text_events("resp_3", &["one, ", "two"])));

    let (status, reply) = rig.app.post("/api/agent/chat/", json!({"message": "go", "auto_execute_tools": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((reply["output_text"].as_str(), reply["response_id"].as_str()), (Some("one, two"), Some("resp_3")));
    assert_eq!(rig.fake.requests().len(), 3);
}

#[tokio::test]
async fn chat_answers_502_when_the_upstream_fails_and_keeps_the_message() {
    let rig = Rig::new().await;
    for _ in 0..4 {
        rig.fake.push(Reply::Status { status: 502, body: "bad gateway".into(), retry_after: Some("0") });
    }
    let (status, reply) = rig.app.post("/api/agent/chat/", json!({"message": "are you there?"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply["error"]["code"], "upstream_unavailable");
    assert_eq!(reply["detail"], reply["error"]["message"]);
    assert_eq!(reply["status"], "failed");
    let session = reply["session_id"].clone();
    let stored = rig.messages(&session).await;
    assert_eq!(stored[0]["content"], "are you there?");
    assert_eq!(stored[1]["status"], "failed");
}
