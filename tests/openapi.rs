use std::collections::{BTreeSet, HashSet};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

/// Every operation the seed and the foundation issue promise.
const OPERATIONS: &[(&str, &str)] = &[
    ("/api/agents/", "get"),
    ("/api/agents/", "post"),
    ("/api/agents/{id}/", "get"),
    ("/api/agents/{id}/", "put"),
    ("/api/agents/{id}/", "patch"),
    ("/api/agents/{id}/", "delete"),
    ("/api/tools/", "get"),
    ("/api/tools/", "post"),
    ("/api/tools/{id}/", "get"),
    ("/api/tools/{id}/", "put"),
    ("/api/tools/{id}/", "patch"),
    ("/api/tools/{id}/", "delete"),
    ("/api/agent-tools/", "get"),
    ("/api/agent-tools/", "post"),
    ("/api/agent-tools/{id}/", "get"),
    ("/api/agent-tools/{id}/", "put"),
    ("/api/agent-tools/{id}/", "patch"),
    ("/api/agent-tools/{id}/", "delete"),
    ("/api/templates/", "get"),
    ("/api/templates/", "post"),
    ("/api/templates/{id}/", "get"),
    ("/api/templates/{id}/", "put"),
    ("/api/templates/{id}/", "patch"),
    ("/api/templates/{id}/", "delete"),
    ("/api/sessions/", "get"),
    ("/api/sessions/", "post"),
    ("/api/sessions/{id}/", "get"),
    ("/api/sessions/{id}/", "delete"),
    ("/api/sessions/{id}/messages/", "get"),
    ("/api/sessions/{id}/tool-calls/", "get"),
    ("/api/sessions/{id}/events/", "get"),
    ("/api/sessions/{id}/cancel/", "post"),
    ("/api/agent/stream/", "post"),
    ("/api/agent/tool-output/", "post"),
    ("/api/agent/chat/", "post"),
    ("/api/auth/login/", "post"),
    ("/api/auth/logout/", "post"),
    ("/api/auth/me/", "get"),
    ("/api/tokens/", "get"),
    ("/api/tokens/", "post"),
    ("/api/tokens/{id}/", "delete"),
    ("/api/users/", "get"),
    ("/api/users/", "post"),
    ("/api/users/{id}/", "get"),
    ("/api/users/{id}/", "patch"),
    ("/api/users/{id}/", "delete"),
    ("/api/health/", "get"),
];

#[tokio::test]
async fn the_openapi_document_describes_every_operation_once() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    let mut operation_ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((path.clone(), method.clone()));
            let id = operation["operationId"].as_str().unwrap();
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is unique");
            assert!(!operation["responses"].as_object().unwrap().is_empty(), "{method} {path} documents responses");
        }
    }
    let expected: BTreeSet<_> = OPERATIONS.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(documented, expected);
}

#[tokio::test]
async fn documented_schemas_match_what_the_api_returns() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/api/openapi.json").await;
    let agent_schema = &doc["components"]["schemas"]["Agent"];
    let mut documented: Vec<&str> =
        agent_schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    documented.sort_unstable();
    let agent = app.create("/api/agents/", serde_json::json!({"name": "a"})).await;
    let mut returned: Vec<&str> = agent.as_object().unwrap().keys().map(String::as_str).collect();
    returned.sort_unstable();
    assert_eq!(documented, returned);
    let page = &doc["components"]["schemas"]["Page_Agent"]["properties"];
    for key in ["count", "next", "previous", "results"] {
        assert!(page.get(key).is_some_and(Value::is_object), "Page_Agent has {key}");
    }
    assert!(doc["components"]["schemas"]["ValidationErrors"]["example"].is_object());
}
