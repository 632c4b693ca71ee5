//! MCP servers as tool sources (issue 26): the servers and their links as objects, and turns that use them
//! against the protocol's reference server (`@modelcontextprotocol/server-everything`) and small servers of
//! our own (PyPI `mcp`), started by the tests.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// A key for sealing header values (`LAMBENT_SECRETS_KEY`).
pub const SECRETS_KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub fn keyed() -> Vec<(&'static str, String)> {
    vec![("LAMBENT_SECRETS_KEY", SECRETS_KEY.to_owned())]
}

#[tokio::test]
async fn an_mcp_server_keeps_its_header_values_sealed_and_never_shows_them() {
    let app = TestApp::spawn_with(&keyed()).await;
    let body = json!({"name": "everything", "url": "http://127.0.0.1:9/mcp",
        "headers": {"Authorization": "Bearer s3cret-value"}, "allowed_tools": ["echo", "get-sum", "echo"]});
    let (status, created) = app.post("/api/mcp-servers/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        created,
        json!({"id": id, "name": "everything", "owner": created["owner"], "url": "http://127.0.0.1:9/mcp",
            "header_names": ["Authorization"], "allowed_tools": ["echo", "get-sum"], "is_active": true,
            "created_at": created["created_at"]})
    );
    assert!(created["owner"].is_i64());
    let stored = app.rows("SELECT headers_sealed FROM mcp_servers").await;
    let sealed = stored[0]["headers_sealed"].as_str().unwrap();
    assert!(sealed.starts_with("v1:") && !sealed.contains("s3cret"), "{sealed}");
    let (_, read) = app.get(&format!("/api/mcp-servers/{id}/")).await;
    assert_eq!(read, created);
    assert!(!app.get("/api/mcp-servers/").await.1.to_string().contains("s3cret"));

    // A change that does not name the headers keeps them; `{}` clears them.
    let (status, renamed) = app.patch(&format!("/api/mcp-servers/{id}/"), json!({"name": "renamed"})).await;
    assert_eq!((status, &renamed["header_names"]), (StatusCode::OK, &json!(["Authorization"])));
    assert_eq!(app.rows("SELECT headers_sealed FROM mcp_servers").await[0]["headers_sealed"], sealed);
    let (_, cleared) = app.patch(&format!("/api/mcp-servers/{id}/"), json!({"headers": {}})).await;
    assert_eq!(cleared["header_names"], json!([]));
    assert_eq!(app.rows("SELECT headers_sealed FROM mcp_servers").await[0]["headers_sealed"], Value::Null);
    assert_eq!(app.delete(&format!("/api/mcp-servers/{id}/")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/api/mcp-servers/{id}/")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mcp_server_writes_name_each_bad_field() {
    let app = TestApp::spawn().await;
    let (status, errors) = app
        .post(
            "/api/mcp-servers/",
            json!({"name": "", "url": "ftp://example.com/", "allowed_tools": "echo", "headers": {"X-Key": "v\n"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors,
        json!({
            "name": ["This field may not be blank."],
            "url": ["An MCP server's URL must be http:// or https:// with a host."],
            "allowed_tools": ["Expected a list of items but got type \"str\"."],
            "headers": ["The value of \"X-Key\" must be at most 4096 characters, without control characters."],
        })
    );
    // Without LAMBENT_SECRETS_KEY header values are refused, not stored readable.
    let (status, errors) = app
        .post(
            "/api/mcp-servers/",
            json!({"name": "s", "url": "https://mcp.example.com/mcp", "headers": {"X-Key": "v"}}),
        )
        .await;
    assert_eq!(
        (status, errors),
        (
            StatusCode::BAD_REQUEST,
            json!({"headers": ["This server keeps no secrets: set LAMBENT_SECRETS_KEY to store header values."]})
        )
    );
    assert_eq!(app.count("mcp_servers").await, 0);
    // Tool names of Lambent's own may not take the prefix MCP tools are offered under.
    let (status, errors) = app.post("/api/tools/", json!({"name": "mcp__1__echo"})).await;
    assert_eq!(
        (status, errors),
        (
            StatusCode::BAD_REQUEST,
            json!({"name": ["Names starting with \"mcp__\" are reserved for MCP servers' tools."]})
        )
    );
}

#[tokio::test]
async fn agents_link_mcp_servers_once_each_and_links_carry_require_approval() {
    let app = TestApp::spawn().await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let server = app.create("/api/mcp-servers/", json!({"name": "s", "url": "https://mcp.example.com/mcp"})).await;
    let link = app
        .create(
            "/api/agent-mcp-servers/",
            json!({"agent": agent["id"], "mcp_server": server["id"], "require_approval": true}),
        )
        .await;
    assert_eq!(
        link,
        json!({"id": link["id"], "agent": agent["id"], "mcp_server": server["id"], "enabled": true, "require_approval": true})
    );
    let (status, errors) =
        app.post("/api/agent-mcp-servers/", json!({"agent": agent["id"], "mcp_server": server["id"]})).await;
    assert_eq!(
        (status, errors),
        (StatusCode::BAD_REQUEST, json!({"non_field_errors": ["This MCP server is already linked to this agent."]}))
    );
    let (status, errors) = app.post("/api/agent-mcp-servers/", json!({"agent": agent["id"], "mcp_server": 999})).await;
    assert_eq!(
        (status, errors),
        (StatusCode::BAD_REQUEST, json!({"mcp_server": ["Invalid pk \"999\" - object does not exist."]}))
    );
    let path = format!("/api/agent-mcp-servers/{}/", link["id"]);
    let (_, patched) = app.patch(&path, json!({"require_approval": false, "enabled": false})).await;
    assert_eq!((&patched["require_approval"], &patched["enabled"]), (&json!(false), &json!(false)));
    let (_, listed) = app.get(&format!("/api/agent-mcp-servers/?agent={}", agent["id"])).await;
    assert_eq!(listed["results"], json!([patched]));
    // Agent-tool links carry the flag too.
    let tool = app.create("/api/tools/", json!({"name": "lookup"})).await;
    let tool_link = app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    assert_eq!(tool_link["require_approval"], false);
    let (_, patched) =
        app.patch(&format!("/api/agent-tools/{}/", tool_link["id"]), json!({"require_approval": true})).await;
    assert_eq!(patched["require_approval"], true);
    // Deleting the server deletes its links.
    app.delete(&format!("/api/mcp-servers/{}/", server["id"])).await;
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
}
