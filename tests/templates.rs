use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

fn names(page: &Value) -> Vec<&str> {
    page["results"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn templates_filter_by_agent_and_by_global_scope() {
    let app = TestApp::spawn().await;
    let a = app.create("/api/agents/", json!({"name": "a"})).await;
    let b = app.create("/api/agents/", json!({"name": "b"})).await;
    let scoped = app.create("/api/templates/", json!({"name": "for a", "template": "A", "agent": a["id"]})).await;
    app.create("/api/templates/", json!({"name": "for b", "template": "B", "agent": b["id"]})).await;
    app.create("/api/templates/", json!({"name": "global", "template": "G"})).await;
    assert_eq!(scoped["agent"], a["id"]);
    assert_eq!(scoped["is_default"], false);

    assert_eq!(names(&app.get("/api/templates/").await.1), ["for a", "for b", "global"]);
    assert_eq!(names(&app.get(&format!("/api/templates/?agent={}", a["id"])).await.1), ["for a"]);
    assert_eq!(names(&app.get("/api/templates/?scope=global").await.1), ["global"]);
    assert_eq!(
        app.get("/api/templates/?scope=everything").await,
        (StatusCode::BAD_REQUEST, json!({"scope": ["\"everything\" is not a valid choice."]}))
    );
}

#[tokio::test]
async fn a_default_template_is_exclusive_within_its_scope_only() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let g1 = app.create("/api/templates/", json!({"name": "g1", "template": "x", "is_default": true})).await;
    let s1 = app
        .create("/api/templates/", json!({"name": "s1", "template": "x", "agent": agent["id"], "is_default": true}))
        .await;
    // A default in the agent's scope leaves the global default alone.
    assert_eq!(app.get(&format!("/api/templates/{}/", g1["id"])).await.1["is_default"], true);

    let g2 = app.create("/api/templates/", json!({"name": "g2", "template": "x", "is_default": true})).await;
    assert_eq!(app.get(&format!("/api/templates/{}/", g1["id"])).await.1["is_default"], false);
    assert_eq!(app.get(&format!("/api/templates/{}/", s1["id"])).await.1["is_default"], true);

    // Moving a default template into the agent's scope displaces that scope's default.
    let (status, moved) = app.patch(&format!("/api/templates/{}/", g2["id"]), json!({"agent": agent["id"]})).await;
    assert_eq!((status, &moved["agent"], &moved["is_default"]), (StatusCode::OK, &agent["id"], &json!(true)));
    assert_eq!(app.get(&format!("/api/templates/{}/", s1["id"])).await.1["is_default"], false);
}

#[tokio::test]
async fn template_validation_names_fields_and_missing_agents() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post("/api/templates/", json!({"template": ""})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"name": ["This field is required."], "template": ["This field may not be blank."]})
        )
    );
    assert_eq!(
        app.post("/api/templates/", json!({"name": "n", "template": "t", "agent": 9})).await,
        (StatusCode::BAD_REQUEST, json!({"agent": ["Invalid pk \"9\" - object does not exist."]}))
    );
    let t = app.create("/api/templates/", json!({"name": "n", "template": "t"})).await;
    let (status, replaced) =
        app.put(&format!("/api/templates/{}/", t["id"]), json!({"name": "m", "template": "u"})).await;
    assert_eq!((status, &replaced["name"], &replaced["template"]), (StatusCode::OK, &json!("m"), &json!("u")));
    assert_eq!(app.delete(&format!("/api/templates/{}/", t["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.count("agent_prompt_templates").await, 0);
}
