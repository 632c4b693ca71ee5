//! Through a real third-party Responses server: LiteLLM's proxy, routing each model to a chat-completions
//! fake (started once per test binary: see `lambent_testkit::litellm`). In `provider` mode its ~460-character
//! response ids are stored whole and chained; in `local` mode every request carries the whole conversation,
//! which LiteLLM turns into the chat-completions `messages` the upstream receives.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use lambent_testkit::chat::ChatReply;
use lambent_testkit::litellm::LiteLlm;

/// An app whose `litellm` provider is the shared proxy in `state` mode, and a default agent on model `n`.
async fn through_litellm(state: &str, n: usize) -> (TestApp, &'static LiteLlm, String) {
    let proxy = LiteLlm::shared();
    let app = TestApp::spawn_with(&[
        ("LAMBENT_PROVIDER_LITELLM_BASE_URL", proxy.base_url.clone()),
        ("LAMBENT_PROVIDER_LITELLM_API_KEY", proxy.master_key.clone()),
        ("LAMBENT_PROVIDER_LITELLM_STATE", state.to_owned()),
        ("OPENAI_READ_TIMEOUT", "30".to_owned()),
    ])
    .await;
    let (model, upstream) = LiteLlm::model(n);
    app.create(
        "/api/agents/",
        json!({"name": "Bridged", "provider": "litellm", "model": model, "system_prompt": "Be brief.", "is_default": true}),
    )
    .await;
    (app, proxy, upstream)
}

fn text(reply: &str) -> ChatReply {
    ChatReply::Text(reply.to_owned())
}

fn calls(list: &[(&str, &str)]) -> ChatReply {
    ChatReply::Calls(
        list.iter().map(|(id, args)| ((*id).to_owned(), "lookup".to_owned(), (*args).to_owned())).collect(),
    )
}

/// A chat-completions request's messages as a flat sequence: `user:…`, `assistant:…`, `call:<id>`,
/// `tool:<id>=<output>` (the system message left out), whatever way LiteLLM groups calls into messages.
fn conversation(request: &Value) -> Vec<String> {
    let mut flat = Vec::new();
    for message in request["messages"].as_array().unwrap() {
        let content = match &message["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        };
        match message["role"].as_str().unwrap() {
            "user" => flat.push(format!("user:{content}")),
            "assistant" => {
                if !content.is_empty() {
                    flat.push(format!("assistant:{content}"));
                }
                for call in message["tool_calls"].as_array().into_iter().flatten() {
                    flat.push(format!("call:{}", call["id"].as_str().unwrap()));
                }
            }
            "tool" => flat.push(format!("tool:{}={content}", message["tool_call_id"].as_str().unwrap())),
            _ => {}
        }
    }
    flat
}

async fn lookup_tool(app: &TestApp) {
    let tool = app
        .create(
            "/api/tools/",
            json!({"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}),
        )
        .await;
    let agent = app.rows("SELECT id FROM agent_profiles").await[0]["id"].clone();
    app.create("/api/agent-tools/", json!({"agent": agent, "tool": tool["id"]})).await;
}

#[tokio::test]
async fn through_litellm_in_provider_mode_its_long_response_ids_are_stored_whole_and_chained_over_three_turns() {
    let (app, proxy, upstream) = through_litellm("provider", 0).await;
    let mut session = Value::Null;
    let mut ids = Vec::new();
    for (turn, reply) in ["One.", "Two.", "Three."].into_iter().enumerate() {
        proxy.upstream.push(&upstream, text(reply));
        let mut body = json!({"message": format!("turn {turn}")});
        if !session.is_null() {
            body["session_id"] = session.clone();
        }
        let streamed = app.stream("/api/agent/stream/", body).await;
        assert_eq!(streamed.text(), reply, "{}", streamed.raw);
        let done = streamed.done();
        assert!(streamed.events("error").is_empty(), "{}", streamed.raw);
        session = done["session_id"].clone();
        let id = done["response_id"].as_str().unwrap().to_owned();
        assert!(id.len() > 200, "LiteLLM's ids encode the route: {} characters", id.len());
        // What the next turn sends as previous_response_id: the whole id of this one.
        assert_eq!(app.get(&format!("/api/sessions/{session}/")).await.1["previous_response_id"], json!(id));
        ids.push(id);
    }
    let stored = app
        .rows(&format!(
            "SELECT response_id FROM agent_messages WHERE session_id = {session} AND role = 'assistant' ORDER BY id"
        ))
        .await;
    let stored: Vec<&str> = stored.iter().map(|r| r["response_id"].as_str().unwrap()).collect();
    assert_eq!(stored, ids, "every id stored whole");
    assert_eq!(proxy.upstream.requests(&upstream).len(), 3);
}

#[tokio::test]
async fn through_litellm_in_local_mode_the_upstream_gets_the_whole_conversation_in_order() {
    let (app, proxy, upstream) = through_litellm("local", 1).await;
    lookup_tool(&app).await;
    let chat = &proxy.upstream;

    // A two-round function-tool conversation.
    chat.push(&upstream, calls(&[("call_a", "{\"q\":\"a\"}")]));
    let first = app.stream("/api/agent/stream/", json!({"message": "find a then b"})).await;
    assert_eq!(first.done()["pending_tool_calls"], json!(["call_a"]), "{}", first.raw);
    let session = first.done()["session_id"].clone();
    chat.push(&upstream, calls(&[("call_b", "{\"q\":\"b\"}")]));
    let second =
        app.stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_a", "output": "A"})).await;
    assert_eq!(second.done()["pending_tool_calls"], json!(["call_b"]), "{}", second.raw);
    chat.push(&upstream, text("Found a and b."));
    let third =
        app.stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_b", "output": "B"})).await;
    assert_eq!(third.text(), "Found a and b.", "{}", third.raw);

    // A parallel-tool turn.
    chat.push(&upstream, calls(&[("call_c", "{\"q\":\"c\"}"), ("call_d", "{\"q\":\"d\"}")]));
    let parallel = app.stream("/api/agent/stream/", json!({"message": "c and d at once", "session_id": session})).await;
    assert_eq!(parallel.done()["pending_tool_calls"], json!(["call_c", "call_d"]), "{}", parallel.raw);
    chat.push(&upstream, text("Both."));
    let outputs = json!({"session_id": session, "outputs": [{"call_id": "call_c", "output": "C"}, {"call_id": "call_d", "output": "D"}]});
    let both = app.stream("/api/agent/tool-output/", outputs).await;
    assert_eq!(both.text(), "Both.", "{}", both.raw);

    // A third, plain turn: its request holds everything, in order.
    chat.push(&upstream, text("Bye."));
    let last = app.stream("/api/agent/stream/", json!({"message": "thanks", "session_id": session})).await;
    assert_eq!(last.text(), "Bye.", "{}", last.raw);

    let requests = chat.requests(&upstream);
    assert_eq!(requests.len(), 6);
    assert_eq!(
        conversation(&requests[5]),
        [
            "user:find a then b",
            "call:call_a",
            "tool:call_a=A",
            "call:call_b",
            "tool:call_b=B",
            "assistant:Found a and b.",
            "user:c and d at once",
            "call:call_c",
            "call:call_d",
            "tool:call_c=C",
            "tool:call_d=D",
            "assistant:Both.",
            "user:thanks",
        ]
    );
    assert_eq!(conversation(&requests[1])[..3], ["user:find a then b", "call:call_a", "tool:call_a=A"]);
}
