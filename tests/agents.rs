use reqwest::StatusCode;
use serde_json::json;

use lambent::domain::{Role, SessionId};

use crate::helpers::TestApp;

#[tokio::test]
async fn creating_an_agent_fills_the_seed_defaults() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "Default Agent"})).await;
    assert_eq!(agent["name"], "Default Agent");
    assert_eq!(agent["model"], "gpt-4.1");
    assert_eq!(agent["system_prompt"], "");
    assert_eq!(agent["is_default"], false);
    let alice = app.rows("SELECT id FROM users WHERE username = 'alice'").await[0]["id"].clone();
    assert_eq!(agent["owner"], alice, "the caller owns what it creates");
    assert!(agent["id"].as_i64().is_some_and(|id| id > 0), "{agent}");
    let created = agent["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.len() == 27, "DRF timestamp shape: {created}");
    assert_eq!(agent["created_at"], agent["updated_at"]);

    let (status, listed) = app.get("/api/agents/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["results"], json!([agent]));
}

#[tokio::test]
async fn an_agent_can_be_read_replaced_patched_and_deleted() {
    let app = TestApp::spawn().await;
    let agent = app
        .create(
            "/api/agents/",
            json!({"name": "A", "model": "gpt-5", "system_prompt": "Be brief.", "is_default": true}),
        )
        .await;
    let path = format!("/api/agents/{}/", agent["id"]);

    let (status, read) = app.get(&path).await;
    assert_eq!((status, &read), (StatusCode::OK, &agent));

    let (status, replaced) = app.put(&path, json!({"name": "B", "system_prompt": "Be kind."})).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["name"], "B");
    assert_eq!(replaced["system_prompt"], "Be kind.");
    assert_eq!(replaced["model"], "gpt-5", "PUT leaves omitted optional fields as they were, like DRF");
    assert_eq!(replaced["created_at"], agent["created_at"]);
    assert!(replaced["updated_at"].as_str() >= agent["updated_at"].as_str());

    let (status, patched) = app.patch(&path, json!({"model": "gpt-4.1-mini"})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((patched["name"].as_str(), patched["model"].as_str()), (Some("B"), Some("gpt-4.1-mini")));

    let (status, body) = app.delete(&path).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, serde_json::Value::Null));
    assert_eq!(app.get(&path).await, (StatusCode::NOT_FOUND, json!({"detail": "Not found."})));
    assert_eq!(app.delete(&path).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.count("agent_profiles").await, 0);
}

#[tokio::test]
async fn put_requires_the_name_but_patch_does_not() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "A"})).await;
    let path = format!("/api/agents/{}/", agent["id"]);
    assert_eq!(
        app.put(&path, json!({"model": "gpt-5"})).await,
        (StatusCode::BAD_REQUEST, json!({"name": ["This field is required."]}))
    );
    assert_eq!(app.patch(&path, json!({"model": "gpt-5"})).await.1["name"], "A");
}

#[tokio::test]
async fn agent_validation_names_every_bad_field() {
    let app = TestApp::spawn().await;
    let (status, errors) =
        app.post("/api/agents/", json!({"model": "", "is_default": "maybe", "system_prompt": ["x"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors,
        json!({
            "name": ["This field is required."],
            "model": ["This field may not be blank."],
            "is_default": ["Must be a valid boolean."],
            "system_prompt": ["Not a valid string."],
        })
    );
    let (status, errors) = app.post("/api/agents/", json!({"name": "x".repeat(201), "model": "m".repeat(101)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors,
        json!({
            "name": ["Ensure this field has no more than 200 characters."],
            "model": ["Ensure this field has no more than 100 characters."],
        })
    );
    assert_eq!(app.count("agent_profiles").await, 0);
}

#[tokio::test]
async fn making_an_agent_the_default_clears_the_previous_default() {
    let app = TestApp::spawn().await;
    let first = app.create("/api/agents/", json!({"name": "first", "is_default": true})).await;
    let second = app.create("/api/agents/", json!({"name": "second", "is_default": true})).await;
    let first_path = format!("/api/agents/{}/", first["id"]);
    let second_path = format!("/api/agents/{}/", second["id"]);
    assert_eq!(app.get(&first_path).await.1["is_default"], false);
    assert_eq!(app.get(&second_path).await.1["is_default"], true);

    app.patch(&first_path, json!({"is_default": true})).await;
    assert_eq!(app.get(&first_path).await.1["is_default"], true);
    assert_eq!(app.get(&second_path).await.1["is_default"], false);
    let defaults = app.store().query_json("SELECT id FROM agent_profiles WHERE is_default = 1").await.unwrap();
    assert_eq!(defaults, vec![json!({"id": first["id"]})]);
}

#[tokio::test]
async fn deleting_an_agent_takes_its_links_sessions_messages_and_scoped_templates() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "doomed"})).await;
    let other = app.create("/api/agents/", json!({"name": "kept"})).await;
    let tool = app.create("/api/tools/", json!({"name": "echo"})).await;
    app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    app.create("/api/agent-tools/", json!({"agent": other["id"], "tool": tool["id"]})).await;
    app.create("/api/templates/", json!({"name": "scoped", "template": "t", "agent": agent["id"]})).await;
    app.create("/api/templates/", json!({"name": "global", "template": "g"})).await;
    let session = app.create("/api/sessions/", json!({"agent": agent["id"]})).await;
    app.store().add_message(SessionId(session["id"].as_i64().unwrap()), Role::User, "hello").await.unwrap();

    assert_eq!(app.delete(&format!("/api/agents/{}/", agent["id"])).await.0, StatusCode::NO_CONTENT);

    assert_eq!(app.count("agent_profiles").await, 1);
    assert_eq!(app.count("agent_profile_tools").await, 1, "the other agent's link stays");
    assert_eq!(app.count("agent_tools").await, 1, "tools outlive their links");
    assert_eq!(app.count("agent_sessions").await, 0);
    assert_eq!(app.count("agent_messages").await, 0);
    let templates = app.store().query_json("SELECT name FROM agent_prompt_templates").await.unwrap();
    assert_eq!(templates, vec![json!({"name": "global"})]);
}

#[tokio::test]
async fn deleting_a_user_deletes_everything_it_owns() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let owner = store.create_user("carol", None, false).await.unwrap().id;
    let bystander = store.create_user("bob", None, false).await.unwrap().id;
    let fields = lambent::domain::AgentFields { name: "mine".into(), ..Default::default() };
    let agent = store.create_agent(Some(owner), fields.clone()).await.unwrap();
    let kept = store.create_agent(None, fields).await.unwrap();
    let bystanders = store
        .create_agent(Some(bystander), lambent::domain::AgentFields { name: "theirs".into(), ..Default::default() })
        .await
        .unwrap();
    let tool_changes = lambent::domain::ToolChanges { name: Some("owned_tool".into()), ..Default::default() };
    store.create_tool(Some(owner), tool_changes).await.unwrap();
    let template =
        lambent::domain::TemplateChanges { name: Some("t".into()), template: Some("x".into()), ..Default::default() };
    store.create_template(&lambent::domain::Caller::system(), Some(owner), template).await.unwrap();
    let as_owner = lambent::domain::Caller { id: owner, username: "carol".into(), is_staff: false, token_id: None };
    store.create_session(&as_owner, kept.id).await.unwrap();

    store.delete_user(owner).await.unwrap();

    assert_eq!(app.get(&format!("/api/agents/{}/", agent.id)).await.0, StatusCode::NOT_FOUND);
    let staff = app.account("root", true).await;
    let staff = app.as_user(Some(&staff.token));
    assert_eq!(staff.get(&format!("/api/agents/{}/", kept.id)).await.0, StatusCode::OK);
    assert_eq!(staff.get(&format!("/api/agents/{}/", bystanders.id)).await.0, StatusCode::OK);
    assert_eq!(app.count("agent_tools").await, 0);
    assert_eq!(app.count("agent_prompt_templates").await, 0);
    assert_eq!(app.count("agent_sessions").await, 0, "sessions the user owned go, even with a global agent");
    assert_eq!(app.count("users").await, 3, "alice, bob and root remain");
}
