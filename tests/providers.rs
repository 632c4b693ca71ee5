//! Named model providers: two upstreams at once, each agent's requests at its own server with its own key;
//! agents naming providers; the providers list, which never shows a key.

use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::TestApp;
use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};

const FIRST_KEY: &str = "sk-first-provider-key";
const SECOND_KEY: &str = "sk-second-provider-key-0123456789";

/// An app whose `openai` provider is `first` and whose `second` provider is `second`, each with its own key.
async fn two_providers(first: &FakeOpenAi, second: &FakeOpenAi) -> TestApp {
    TestApp::spawn_with(&[
        ("OPENAI_API_KEY", FIRST_KEY.to_owned()),
        ("OPENAI_BASE_URL", first.base_url.clone()),
        ("OPENAI_READ_TIMEOUT", "5".to_owned()),
        ("LAMBENT_PROVIDER_SECOND_BASE_URL", second.base_url.clone()),
        ("LAMBENT_PROVIDER_SECOND_API_KEY", SECOND_KEY.to_owned()),
        ("LAMBENT_PROVIDER_SECOND_DEFAULT_MODEL", "llama-3.3-70b".to_owned()),
    ])
    .await
}

/// A text answer the fake holds at a gate after its first delta.
fn gated(id: &str, deltas: &[&str]) -> (Vec<Step>, Arc<Notify>) {
    let gate = Arc::new(Notify::new());
    let mut steps = frames(text_events(id, deltas));
    steps.insert(5, Step::Gate(gate.clone()));
    (steps, gate)
}

#[tokio::test]
async fn two_providers_at_once_each_get_their_own_agents_requests_with_their_own_key_while_streams_interleave() {
    let (first, second) = (FakeOpenAi::start().await, FakeOpenAi::start().await);
    let app = two_providers(&first, &second).await;
    let on_first = app.create("/api/agents/", json!({"name": "First", "model": "gpt-4.1"})).await;
    let on_second = app.create("/api/agents/", json!({"name": "Second", "provider": "second"})).await;
    assert_eq!((on_first["provider"].as_str(), on_second["provider"].as_str()), (Some("openai"), Some("second")));
    assert_eq!(on_second["model"], "llama-3.3-70b", "an agent without a model gets its provider's default");

    let (steps, first_gate) = gated("resp_first", &["From ", "the first."]);
    first.push_stream(steps);
    let (steps, second_gate) = gated("resp_second", &["From ", "the second."]);
    second.push_stream(steps);
    let turn = |agent: &Value| {
        let (app, body) = (app.clone(), json!({"message": "hello", "agent_id": agent["id"]}));
        tokio::spawn(async move { app.stream("/api/agent/stream/", body).await })
    };
    let (a, b) = (turn(&on_first), turn(&on_second));
    // Both turns are open upstream at once; the second provider's finishes first.
    while first.requests().is_empty() || second.requests().is_empty() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    second_gate.notify_one();
    let b = b.await.unwrap();
    first_gate.notify_one();
    let a = a.await.unwrap();

    assert_eq!((a.text().as_str(), b.text().as_str()), ("From the first.", "From the second."));
    assert_eq!(
        (a.done()["response_id"].as_str(), b.done()["response_id"].as_str()),
        (Some("resp_first"), Some("resp_second"))
    );
    let (to_first, to_second) = (first.requests(), second.requests());
    assert_eq!((to_first.len(), to_second.len()), (1, 1), "each request reached its own server, once");
    assert_eq!(to_first[0].authorization.as_deref(), Some(format!("Bearer {FIRST_KEY}").as_str()));
    assert_eq!(to_second[0].authorization.as_deref(), Some(format!("Bearer {SECOND_KEY}").as_str()));
    assert_eq!(
        (to_first[0].body["model"].as_str(), to_second[0].body["model"].as_str()),
        (Some("gpt-4.1"), Some("llama-3.3-70b"))
    );

    // The second turn on each session goes back to the same provider, chained there.
    second.push_stream(frames(text_events("resp_second_2", &["Again."])));
    let again =
        app.stream("/api/agent/stream/", json!({"message": "more", "session_id": b.done()["session_id"]})).await;
    assert_eq!(again.text(), "Again.");
    assert_eq!(second.request(1)["previous_response_id"], "resp_second");
    assert_eq!(first.requests().len(), 1);
}

#[tokio::test]
async fn an_agent_naming_a_provider_that_is_not_configured_is_refused_naming_the_field() {
    let (first, second) = (FakeOpenAi::start().await, FakeOpenAi::start().await);
    let app = two_providers(&first, &second).await;

    let (status, body) = app.post("/api/agents/", json!({"name": "Lost", "provider": "ollama"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"provider": ["\"ollama\" is not a configured provider: openai, second."]}));
    let agent = app.create("/api/agents/", json!({"name": "Kept"})).await;
    assert_eq!((agent["provider"].as_str(), agent["input_budget"].clone()), (Some("openai"), Value::Null));
    let path = format!("/api/agents/{}/", agent["id"]);
    let (status, body) = app.patch(&path, json!({"provider": ""})).await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, json!({"provider": ["This field may not be blank."]})));
    let (status, body) = app.patch(&path, json!({"input_budget": 0})).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, json!({"input_budget": ["Ensure this value is greater than or equal to 1."]}))
    );
    let (status, body) = app.patch(&path, json!({"provider": "second", "input_budget": 8000})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["provider"].as_str(), body["input_budget"].as_i64()), (Some("second"), Some(8000)));
    assert_eq!(body["model"], "gpt-4.1", "changing the provider keeps the model the agent has");
}

#[tokio::test]
async fn the_providers_list_shows_each_name_state_url_and_default_model_and_never_a_key() {
    let (first, second) = (FakeOpenAi::start().await, FakeOpenAi::start().await);
    let app = two_providers(&first, &second).await;

    let response = reqwest::Client::new()
        .get(app.url("/api/providers/"))
        .bearer_auth(app.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let raw = response.text().await.unwrap();
    assert!(!raw.contains(FIRST_KEY) && !raw.contains(SECOND_KEY), "no key in {raw}");
    assert_eq!(
        serde_json::from_str::<Value>(&raw).unwrap(),
        json!([
            {"name": "openai", "state": "provider", "base_url": first.base_url, "default_model": null},
            {"name": "second", "state": "provider", "base_url": second.base_url, "default_model": "llama-3.3-70b"},
        ])
    );
    let (status, _) = app.as_user(None).get("/api/providers/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "only a caller with a token sees the deployment's providers");
}

#[tokio::test]
async fn a_provider_without_a_key_answers_503_naming_its_variable_and_stores_nothing() {
    let first = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&[
        ("OPENAI_API_KEY", FIRST_KEY.to_owned()),
        ("OPENAI_BASE_URL", first.base_url.clone()),
        ("LAMBENT_PROVIDER_KEYLESS_BASE_URL", first.base_url.clone()),
    ])
    .await;
    let agent = app.create("/api/agents/", json!({"name": "Keyless", "provider": "keyless"})).await;

    let (status, body) = app.post("/api/agent/chat/", json!({"message": "hi", "agent_id": agent["id"]})).await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["detail"].as_str().unwrap().contains("LAMBENT_PROVIDER_KEYLESS_API_KEY"), "{body}");
    assert_eq!(app.count("agent_messages").await, 0);
    assert!(first.requests().is_empty());
}

#[tokio::test]
async fn a_deployment_on_named_providers_only_is_ready_without_an_openai_key() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&[
        ("LAMBENT_PROVIDER_OLLAMA_BASE_URL", fake.base_url.clone()),
        ("LAMBENT_PROVIDER_OLLAMA_API_KEY", "ollama".to_owned()),
    ])
    .await;

    let (status, health) = app.get("/api/health/").await;

    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["checks"]["model_provider"]["api_key"], false, "OpenAI's own key is still reported as absent");
}
