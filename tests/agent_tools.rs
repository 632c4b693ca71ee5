use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn links_are_created_toggled_and_filtered_by_agent() {
    let app = TestApp::spawn().await;
    let a = app.create("/api/agents/", json!({"name": "a"})).await;
    let b = app.create("/api/agents/", json!({"name": "b"})).await;
    let tool = app.create("/api/tools/", json!({"name": "t"})).await;
    let link = app.create("/api/agent-tools/", json!({"agent": a["id"], "tool": tool["id"]})).await;
    assert_eq!(
        link,
        json!({"id": link["id"], "agent": a["id"], "tool": tool["id"], "enabled": true, "require_approval": false})
    );
    let other = app.create("/api/agent-tools/", json!({"agent": b["id"], "tool": tool["id"], "enabled": false})).await;

    let (_, listed) = app.get(&format!("/api/agent-tools/?agent={}", a["id"])).await;
    assert_eq!((listed["count"].clone(), listed["results"].clone()), (json!(1), json!([link])));
    assert_eq!(app.get("/api/agent-tools/").await.1["results"], json!([link, other]));

    let (status, toggled) = app.patch(&format!("/api/agent-tools/{}/", link["id"]), json!({"enabled": false})).await;
    assert_eq!((status, &toggled["enabled"]), (StatusCode::OK, &json!(false)));
    assert_eq!(app.get(&format!("/api/agent-tools/{}/", link["id"])).await.1["enabled"], false);
}

#[tokio::test]
async fn an_agent_and_tool_pair_links_only_once() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let tool = app.create("/api/tools/", json!({"name": "t"})).await;
    let tool2 = app.create("/api/tools/", json!({"name": "t2"})).await;
    let pair = json!({"agent": agent["id"], "tool": tool["id"]});
    app.create("/api/agent-tools/", pair.clone()).await;
    let duplicate =
        (StatusCode::BAD_REQUEST, json!({"non_field_errors": ["This tool is already linked to this agent."]}));
    assert_eq!(app.post("/api/agent-tools/", pair).await, duplicate);
    let second = app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool2["id"]})).await;
    assert_eq!(app.patch(&format!("/api/agent-tools/{}/", second["id"]), json!({"tool": tool["id"]})).await, duplicate);
    assert_eq!(app.count("agent_profile_tools").await, 2);
}

#[tokio::test]
async fn links_to_missing_objects_name_the_field() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post("/api/agent-tools/", json!({"agent": 41, "tool": 42})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"agent": ["Invalid pk \"41\" - object does not exist."], "tool": ["Invalid pk \"42\" - object does not exist."]})
        )
    );
    assert_eq!(
        app.post("/api/agent-tools/", json!({"agent": "x"})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"agent": ["Incorrect type. Expected pk value, received str."], "tool": ["This field is required."]})
        )
    );
}
