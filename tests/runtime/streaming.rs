use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Rig;
use crate::helpers::http_client;
use crate::helpers::transcript;
use lambent_testkit::openai::{Step, frames, text_events};

const TEXT_RESPONSE: &str = "resp_0a1b2c3d4e5f60718293a4b5c6d7e8f90000000000000001";

#[tokio::test]
async fn a_text_answer_streams_every_event_and_is_stored() {
    let rig = Rig::new().await;
    rig.fake.push_stream(transcript("text.sse"));

    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Hello"})).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    assert!(reply.content_type.starts_with("text/event-stream"), "{}", reply.content_type);
    // Every upstream frame is relayed byte for byte, in order.
    let upstream: Vec<String> = transcript("text.sse")
        .into_iter()
        .map(|s| match s {
            Step::Frame(f) => f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap().to_owned(),
            other => panic!("{other:?}"),
        })
        .collect();
    let relayed: Vec<String> =
        reply.frames.iter().filter(|f| f.event == "openai_event").map(|f| f.data.clone()).collect();
    assert_eq!(relayed, upstream);
    assert_eq!(reply.text(), "Hello! How can I help you today?");
    assert_eq!(reply.events("text_delta")[0], json!({"delta": "Hello"}));
    let ids: Vec<(&str, u64)> = reply
        .frames
        .iter()
        .map(|f| f.id.as_deref().unwrap().rsplit_once(':').map(|(turn, seq)| (turn, seq.parse().unwrap())).unwrap())
        .collect();
    assert!(ids[0].0.starts_with("turn_") && ids.iter().all(|(turn, _)| *turn == ids[0].0), "one turn: {ids:?}");
    assert!(ids.windows(2).all(|w| w[1].1 == w[0].1 + 1) && ids[0].1 == 1, "seq increases within the turn: {ids:?}");
    // The headers name the session and the turn before any frame arrives.
    assert_eq!(reply.header("lambent-turn-id"), Some(ids[0].0));
    assert_eq!(reply.header("lambent-session-id").map(str::to_owned), Some(reply.done()["session_id"].to_string()));
    let done = reply.done();
    let session = done["session_id"].clone();
    assert_eq!(
        done,
        json!({"session_id": session, "response_id": TEXT_RESPONSE, "status": "completed", "pending_tool_calls": []})
    );

    // What went upstream.
    let requests = rig.fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].authorization.as_deref(), Some("Bearer sk-test-fake-key"));
    assert_eq!(
        requests[0].body,
        json!({
            "model": "gpt-4.1",
            "instructions": "You are helpful.",
            "input": [{"type": "message", "role": "user", "content": "Hello"}],
            "store": true,
            "stream": true,
        })
    );

    // What was stored.
    let messages = rig.messages(&session).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0],
        json!({"role": "user", "content": "Hello", "status": null, "response_id": null, "usage": null})
    );
    assert_eq!(
        (messages[1]["role"].as_str(), messages[1]["content"].as_str()),
        (Some("assistant"), Some("Hello! How can I help you today?"))
    );
    assert_eq!(
        (messages[1]["status"].as_str(), messages[1]["response_id"].as_str()),
        (Some("completed"), Some(TEXT_RESPONSE))
    );
    let usage: Value = serde_json::from_str(messages[1]["usage"].as_str().unwrap()).unwrap();
    assert_eq!(usage["total_tokens"], 23);
    let stored = rig.session(&session).await;
    assert_eq!(stored["previous_response_id"], TEXT_RESPONSE);
    assert_eq!(stored["last_output"][0]["type"], "message");
}

#[tokio::test]
async fn a_second_turn_chains_on_the_previous_response() {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_one", &["Hi", "!"])));
    rig.fake.push_stream(frames(text_events("resp_two", &["Again"])));

    let first = rig.app.stream("/api/agent/stream/", json!({"message": "Hello"})).await.done();
    let session = first["session_id"].clone();
    let second = rig
        .app
        .stream(
            "/api/agent/stream/",
            json!({"message": "Once more", "session_id": session, "agent_id": rig.agent["id"]}),
        )
        .await
        .done();

    assert_eq!(second["session_id"], session);
    assert_eq!(rig.fake.request(0).get("previous_response_id"), None);
    assert_eq!(rig.fake.request(1)["previous_response_id"], "resp_one");
    assert_eq!(rig.session(&session).await["previous_response_id"], "resp_two");
    let contents: Vec<Value> = rig.messages(&session).await.iter().map(|m| m["content"].clone()).collect();
    assert_eq!(contents, [json!("Hello"), json!("Hi!"), json!("Once more"), json!("Again")]);
    // The API lists them too, oldest first.
    let (_, page) = rig.app.get(&format!("/api/sessions/{session}/messages/")).await;
    assert_eq!(page["count"], 4);
    assert_eq!(page["results"][3]["status"], "completed");
}

/// LiteLLM encodes its route into its response ids (~460 characters): the provider chooses them, so they are
/// stored and chained whole, however long.
#[tokio::test]
async fn response_ids_of_any_length_are_stored_and_chained_whole() {
    let rig = Rig::new().await;
    let ids: Vec<String> = (1..=3).map(|n| format!("resp_{n}{}", "litellm:route;".repeat(33))).collect();
    for (id, text) in ids.iter().zip(["One", "Two", "Three"]) {
        rig.fake.push_stream(frames(text_events(id, &[text])));
    }

    let mut session = Value::Null;
    for message in ["a", "b", "c"] {
        let mut body = json!({"message": message, "agent_id": rig.agent["id"]});
        if !session.is_null() {
            body["session_id"] = session.clone();
        }
        let done = rig.app.stream("/api/agent/stream/", body).await.done();
        assert_eq!(done["status"], "completed", "{done}");
        session = done["session_id"].clone();
    }

    assert!(ids[0].len() > 460, "{}", ids[0].len());
    assert_eq!(rig.fake.request(1)["previous_response_id"], ids[0].as_str());
    assert_eq!(rig.fake.request(2)["previous_response_id"], ids[1].as_str());
    assert_eq!(rig.session(&session).await["previous_response_id"], ids[2].as_str());
    let stored: Vec<Value> = rig.messages(&session).await.iter().map(|m| m["content"].clone()).collect();
    assert_eq!(stored, [json!("a"), json!("One"), json!("b"), json!("Two"), json!("c"), json!("Three")]);
}

#[tokio::test]
async fn templates_and_variables_make_up_the_instructions() {
    let rig = Rig::new().await;
    let other = rig.app.create("/api/agents/", json!({"name": "Other"})).await;
    rig.app
        .create("/api/templates/", json!({"name": "global", "template": "Global {{tone}}.", "is_default": true}))
        .await;
    rig.app
        .create(
            "/api/templates/",
            json!({"name": "mine", "template": "Answer as {{ company }} support.",
            "agent": rig.agent["id"], "is_default": true}),
        )
        .await;
    rig.app
        .create("/api/templates/", json!({"name": "not default", "template": "Never sent.", "agent": rig.agent["id"]}))
        .await;
    rig.fake.push_stream(frames(text_events("resp_a", &["ok"])));
    rig.fake.push_stream(frames(text_events("resp_b", &["ok"])));

    let done =
        rig.app.stream("/api/agent/stream/", json!({"message": "Hi", "variables": {"company": "Acme"}})).await.done();
    assert_eq!(done["status"], "completed");
    assert_eq!(rig.fake.request(0)["instructions"], "You are helpful.\n\nAnswer as Acme support.");

    // An agent without scoped defaults gets the global ones.
    rig.app
        .stream(
            "/api/agent/stream/",
            json!({"message": "Hi", "agent_id": other["id"], "variables": {"tone": "kindly"}}),
        )
        .await;
    assert_eq!(rig.fake.request(1)["instructions"], "Global kindly.");

    // A missing variable is a 400 that names it, and nothing is stored.
    let sessions_before = rig.app.count("agent_sessions").await;
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Hi"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body(), json!({"variables": ["Missing value for template variable \"company\"."]}));
    assert_eq!(rig.app.count("agent_sessions").await, sessions_before);
    assert_eq!(rig.fake.requests().len(), 2);
}

#[tokio::test]
async fn unknown_upstream_event_types_pass_through_untouched() {
    let rig = Rig::new().await;
    let mut steps = frames(text_events("resp_new", &["fine"]));
    let odd = "{\"type\":\"response.hologram.delta\",\"sequence_number\":99,\"payload\":{\"z\":[1,2.50,\"\\u00e9\"]},\"a\":1}";
    steps.insert(3, Step::Frame(format!("event: response.hologram.delta\ndata: {odd}\n\n")));
    rig.fake.push_stream(steps);

    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Hi"})).await;

    let passed: Vec<&str> =
        reply.frames.iter().filter(|f| f.data.contains("hologram")).map(|f| f.data.as_str()).collect();
    assert_eq!(passed, [odd], "relayed byte for byte, key order and number spelling included");
    assert_eq!(reply.done()["status"], "completed");
}

#[tokio::test]
async fn silence_is_filled_with_ping_comments() {
    let rig = Rig::with(&[("LAMBENT_SSE_KEEPALIVE", "0.1")]).await;
    let mut steps = frames(text_events("resp_slow", &["a", "b"]));
    steps.insert(4, Step::Pause(std::time::Duration::from_millis(450)));
    rig.fake.push_stream(steps);

    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Hi"})).await;

    assert!(reply.raw.contains("\n: ping\n") || reply.raw.starts_with(": ping\n"), "{}", reply.raw);
    assert_eq!(reply.done()["status"], "completed");
    assert_eq!(reply.text(), "ab");
}

#[tokio::test]
async fn requests_are_checked_before_anything_is_stored() {
    let rig = Rig::new().await;
    let other = rig.app.create("/api/agents/", json!({"name": "Other"})).await;
    let session = rig.app.create("/api/sessions/", json!({"agent": other["id"]})).await;
    let cases = [
        (json!({}), StatusCode::BAD_REQUEST, json!({"message": ["This field is required."]})),
        (json!({"message": "  "}), StatusCode::BAD_REQUEST, json!({"message": ["This field may not be blank."]})),
        (
            json!({"message": "x".repeat(32_001)}),
            StatusCode::BAD_REQUEST,
            json!({"message": ["Ensure this field has no more than 32000 characters."]}),
        ),
        (json!({"message": "Hi", "session_id": 999}), StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
        (json!({"message": "Hi", "agent_id": 999}), StatusCode::NOT_FOUND, json!({"detail": "Not found."})),
        (
            json!({"message": "Hi", "session_id": session["id"], "agent_id": rig.agent["id"]}),
            StatusCode::BAD_REQUEST,
            json!({"session_id": [format!("Session {} belongs to agent {}, not agent {}.", session["id"], other["id"], rig.agent["id"])]}),
        ),
        (
            json!({"message": "Hi", "variables": ["x"]}),
            StatusCode::BAD_REQUEST,
            json!({"variables": ["Must be an object mapping template variable names to values."]}),
        ),
    ];
    for (body, status, expected) in cases {
        for path in ["/api/agent/stream/", "/api/agent/chat/"] {
            let reply = rig.app.stream(path, body.clone()).await;
            assert_eq!((reply.status, reply.body()), (status, expected.clone()), "{path} {body}");
        }
    }
    assert_eq!(rig.app.count("agent_messages").await, 0);
    assert_eq!(rig.app.count("agent_sessions").await, 1);
    assert!(rig.fake.requests().is_empty());

    // Without a default agent and without agent_id, the answer names the problem.
    rig.app.patch(&format!("/api/agents/{}/", rig.agent["id"]), json!({"is_default": false})).await;
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Hi"})).await;
    assert_eq!(
        (reply.status, reply.body()),
        (StatusCode::BAD_REQUEST, json!({"agent_id": ["No agent_id was given and no agent is marked is_default."]}))
    );
}

#[tokio::test]
async fn without_an_api_key_the_agent_endpoints_answer_503_and_store_nothing() {
    let app = crate::helpers::TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a", "is_default": true})).await;
    for (path, body) in [
        ("/api/agent/stream/", json!({"message": "Hi"})),
        ("/api/agent/chat/", json!({"message": "Hi", "agent_id": agent["id"]})),
        ("/api/agent/tool-output/", json!({"session_id": 1, "call_id": "c", "output": "o"})),
    ] {
        let reply = app.stream(path, body).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
        let detail = reply.body()["detail"].as_str().unwrap().to_owned();
        assert!(detail.contains("OPENAI_API_KEY"), "{detail}");
    }
    assert_eq!(app.count("agent_sessions").await, 0);
    assert_eq!(app.count("agent_messages").await, 0);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_does_not_cut_the_turn_short() {
    use futures::StreamExt;

    let rig = Rig::new().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut steps = frames(text_events("resp_left", &["Half", " and the rest"]));
    steps.insert(5, Step::Gate(gate.clone()));
    rig.fake.push_stream(steps);

    let response = http_client()
        .post(rig.app.url("/api/agent/stream/"))
        .bearer_auth(rig.app.token.clone().unwrap())
        .json(&json!({"message": "Tell me, then I leave"}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: text_delta") {
        seen.push_str(&String::from_utf8_lossy(&body.next().await.unwrap().unwrap()));
    }
    drop(body);
    gate.notify_one();

    // The turn finishes on its own and is stored as if the client had stayed.
    let mut stored = Vec::new();
    for _ in 0..100 {
        stored = rig.app.rows("SELECT content, status FROM agent_messages WHERE role = 'assistant'").await;
        if !stored.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stored, [json!({"content": "Half and the rest", "status": "completed"})]);
    let session = rig.app.rows("SELECT previous_response_id FROM agent_sessions").await;
    assert_eq!(session, [json!({"previous_response_id": "resp_left"})]);
}
