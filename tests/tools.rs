use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_function_tool_keeps_its_json_schema() {
    let app = TestApp::spawn().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let tool = app
        .create("/api/tools/", json!({"name": "get_weather", "description": "Weather.", "parameters": schema}))
        .await;
    assert_eq!(tool["tool_type"], "function");
    assert_eq!(tool["parameters"], schema);
    assert_eq!(tool["format"], serde_json::Value::Null);
    assert_eq!(tool["is_active"], true);
    assert_eq!(tool["description"], "Weather.");
    assert_eq!(app.get(&format!("/api/tools/{}/", tool["id"])).await.1, tool);
}

#[tokio::test]
async fn a_function_tool_without_parameters_gets_an_empty_object_schema() {
    let app = TestApp::spawn().await;
    let tool = app.create("/api/tools/", json!({"name": "now"})).await;
    assert_eq!(tool["parameters"], json!({"type": "object", "properties": {}}));
}

#[tokio::test]
async fn a_custom_tool_may_carry_a_grammar_format() {
    let app = TestApp::spawn().await;
    let format = json!({"type": "grammar", "syntax": "regex", "definition": "^[0-9]+$"});
    let tool = app.create("/api/tools/", json!({"name": "code_exec", "tool_type": "custom", "format": format})).await;
    assert_eq!((tool["tool_type"].clone(), tool["format"].clone()), (json!("custom"), format));

    let (status, errors) = app
        .post("/api/tools/", json!({"name": "bad_format", "tool_type": "custom", "format": {"type": "grammar"}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(errors, json!({"format": ["A grammar format needs \"syntax\": \"lark\" or \"regex\"."]}));
}

#[tokio::test]
async fn tool_names_are_unique_on_create_and_on_update() {
    let app = TestApp::spawn().await;
    app.create("/api/tools/", json!({"name": "echo"})).await;
    let expected = (StatusCode::BAD_REQUEST, json!({"name": ["A tool named \"echo\" already exists."]}));
    assert_eq!(app.post("/api/tools/", json!({"name": "echo"})).await, expected);
    let other = app.create("/api/tools/", json!({"name": "other"})).await;
    assert_eq!(app.patch(&format!("/api/tools/{}/", other["id"]), json!({"name": "echo"})).await, expected);
    assert_eq!(app.count("agent_tools").await, 2);
}

#[tokio::test]
async fn tool_names_follow_openai_rules_and_types_are_checked() {
    let app = TestApp::spawn().await;
    let (status, errors) = app.post("/api/tools/", json!({"name": "get weather!", "tool_type": "plugin"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors,
        json!({
            "name": ["Tool names are 1 to 64 characters: letters, digits, '_' and '-'."],
            "tool_type": ["\"plugin\" is not a valid choice."],
        })
    );
}

#[tokio::test]
async fn function_parameters_must_be_an_object_schema() {
    let app = TestApp::spawn().await;
    for (parameters, message) in [
        (json!("x"), "Must be a JSON Schema object, e.g. {\"type\": \"object\", \"properties\": {}}."),
        (json!({"type": "array"}), "A function tool's schema must have \"type\": \"object\"."),
        (
            json!({"type": "object", "properties": {}, "required": ["city"]}),
            "\"required\" names \"city\", which is not in \"properties\".",
        ),
    ] {
        assert_eq!(
            app.post("/api/tools/", json!({"name": "t", "parameters": parameters})).await,
            (StatusCode::BAD_REQUEST, json!({"parameters": [message]}))
        );
    }
    let (status, errors) = app.post("/api/tools/", json!({"name": "t", "parameters": null})).await;
    assert_eq!((status, errors), (StatusCode::BAD_REQUEST, json!({"parameters": ["This field may not be null."]})));
    assert_eq!(app.count("agent_tools").await, 0);
}

#[tokio::test]
async fn switching_a_tool_to_custom_is_checked_against_its_stored_fields() {
    let app = TestApp::spawn().await;
    let tool = app.create("/api/tools/", json!({"name": "t", "tool_type": "custom"})).await;
    let path = format!("/api/tools/{}/", tool["id"]);
    let (status, patched) = app.patch(&path, json!({"format": {"type": "text"}})).await;
    assert_eq!((status, &patched["format"]), (StatusCode::OK, &json!({"type": "text"})));
    let (status, errors) = app.patch(&path, json!({"tool_type": "function"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(errors["format"].is_array(), "a function tool cannot keep a format: {errors}");
    let (status, patched) = app.patch(&path, json!({"tool_type": "function", "format": null})).await;
    assert_eq!((status, &patched["tool_type"]), (StatusCode::OK, &json!("function")));
}

#[tokio::test]
async fn deleting_a_tool_removes_its_links() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let tool = app.create("/api/tools/", json!({"name": "t"})).await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    assert_eq!(app.delete(&format!("/api/tools/{}/", tool["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.count("agent_profile_tools").await, 0);
    assert_eq!(app.count("agent_profiles").await, 1);
}

#[tokio::test]
async fn an_executor_is_parsed_when_written_and_answered_as_parsed() {
    let app = TestApp::spawn().await;
    let given = json!({"type": "http", "url": "https://tools.example.com/run", "timeout_ms": 2500, "retries": 3});
    let tool = app.create("/api/tools/", json!({"name": "lookup", "executor": given})).await;
    let parsed = json!({"type": "http", "url": "https://tools.example.com/run", "timeout_ms": 2500});
    assert_eq!(tool["executor"], parsed);
    assert_eq!(app.get(&format!("/api/tools/{}/", tool["id"])).await.1["executor"], parsed);
    let stored = app.state.store.query_json("SELECT executor FROM agent_tools").await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(stored[0]["executor"].as_str().unwrap()).unwrap(), parsed);
    let (status, body) =
        app.patch(&format!("/api/tools/{}/", tool["id"]), json!({"executor": {"type": "http", "url": "/run"}})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"executor": ["An http executor needs an absolute \"url\"."]}));
}
