//! The local server as `cargo run` starts it: migrations on a fresh file, every router, the fake upstream
//! through `OPENAI_BASE_URL`, and a graceful stop.

use serde_json::json;

use crate::helpers::{config_in, http_client};
use lambent_testkit::openai::{FakeOpenAi, frames, function_call_events, text_events};

#[tokio::test]
async fn the_local_server_holds_a_two_round_tool_conversation_end_to_end() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir, &fake.env());
    // A user and token in the database before the server starts (so no first-run admin is made).
    let store = lambent::Store::open(&config).await.unwrap();
    store.migrate().await.unwrap();
    let user = store.create_user("local", None, false).await.unwrap();
    let token = lambent::auth::new_token();
    store.create_token(user.id, "test", "api", None, &token).await.unwrap();
    drop(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lambent_local::serve(config, listener, async {
        let _ = stopped.await;
    }));
    let client = http_client();
    let secret = token.secret.clone();
    let post = |path: &str, body: serde_json::Value| {
        client.post(format!("{base}{path}")).bearer_auth(&secret).json(&body).send()
    };

    let agent: serde_json::Value =
        post("/api/agents/", json!({"name": "Local", "is_default": true})).await.unwrap().json().await.unwrap();
    let tool: serde_json::Value = post("/api/tools/", json!({"name": "lookup"})).await.unwrap().json().await.unwrap();
    post("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await.unwrap();

    // Round one, streamed: the model calls the tool.
    fake.push_stream(frames(function_call_events("resp_1", &[("call_1", "lookup", "{\"q\":\"a\"}")])));
    let first = post("/api/agent/stream/", json!({"message": "Find a"})).await.unwrap().text().await.unwrap();
    assert!(first.contains("event: tool_call"), "{first}");
    assert!(first.contains("\"status\":\"requires_tool_output\""), "{first}");
    let session = 1;

    // Round two: the output streams the continuation, which calls the tool again.
    fake.push_stream(frames(function_call_events("resp_2", &[("call_2", "lookup", "{\"q\":\"b\"}")])));
    let second = post("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_1", "output": "A"}))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(second.contains("\"pending_tool_calls\":[\"call_2\"]"), "{second}");

    // And the chat endpoint finishes the conversation in the same session.
    fake.push_stream(frames(text_events("resp_3", &["Found ", "both."])));
    let continuation =
        post("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_2", "output": "B"}))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert!(continuation.contains("\"status\":\"completed\""), "{continuation}");
    fake.push_stream(frames(text_events("resp_4", &["You're welcome."])));
    let chat: serde_json::Value = post("/api/agent/chat/", json!({"message": "Thanks", "session_id": session}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((chat["output_text"].as_str(), chat["status"].as_str()), (Some("You're welcome."), Some("completed")));
    assert_eq!(fake.request(3)["previous_response_id"], "resp_3");

    let messages: serde_json::Value = client
        .get(format!("{base}/api/sessions/{session}/messages/"))
        .bearer_auth(&token.secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(messages["count"], 6, "two user messages and four assistant responses");

    stop.send(()).unwrap();
    server.await.unwrap().expect("the server stops cleanly");
}
