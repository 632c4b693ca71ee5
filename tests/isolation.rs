//! Per-owner isolation: another owner's objects answer 404 and stay as they were; global objects are
//! readable but not writable by non-staff; staff can do everything.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::TestApp;
use lambent_testkit::openai::{FakeOpenAi, frames, function_call_events};

/// Everything that can be changed, as rows, to prove a refused request changed nothing.
async fn snapshot(app: &TestApp) -> Value {
    let mut all = serde_json::Map::new();
    for table in [
        "agent_profiles",
        "agent_tools",
        "agent_profile_tools",
        "mcp_servers",
        "agent_mcp_servers",
        "agent_prompt_templates",
        "agent_sessions",
        "agent_messages",
        "agent_tool_calls",
        "users",
        "api_tokens",
    ] {
        let rows = app.rows(&format!("SELECT * FROM {table} ORDER BY id")).await;
        // last_used_at moves whenever a token is used; it is not the object's content.
        let rows: Vec<Value> = rows
            .into_iter()
            .map(|mut r| {
                r.as_object_mut().unwrap().remove("last_used_at");
                r
            })
            .collect();
        all.insert(table.to_owned(), Value::Array(rows));
    }
    Value::Object(all)
}

struct World {
    fake: FakeOpenAi,
    alice: TestApp,
    bob: TestApp,
    root: TestApp,
    bobs: Value,
    globals: Value,
}

/// Bob owns a full set of objects (including a session with a pending tool call); staff made global ones.
async fn world() -> World {
    let fake = FakeOpenAi::start().await;
    let alice = TestApp::spawn_with(&fake.env()).await;
    let bob = alice.as_user(Some(&alice.account("bob", false).await.token));
    let root = alice.as_user(Some(&alice.account("root", true).await.token));

    let agent = bob.create("/api/agents/", json!({"name": "bob's", "is_default": true})).await;
    let tool = bob.create("/api/tools/", json!({"name": "bobs_tool"})).await;
    let link = bob.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"]})).await;
    let mcp = bob.create("/api/mcp-servers/", json!({"name": "bob's mcp", "url": "https://mcp.example.com/mcp"})).await;
    let mcp_link = bob.create("/api/agent-mcp-servers/", json!({"agent": agent["id"], "mcp_server": mcp["id"]})).await;
    let template = bob.create("/api/templates/", json!({"name": "t", "template": "x", "agent": agent["id"]})).await;
    fake.push_stream(frames(function_call_events("resp_bob", &[("call_bob", "bobs_tool", "{}")])));
    let streamed = bob.stream("/api/agent/stream/", json!({"message": "bob's secret", "agent_id": agent["id"]})).await;
    let session = streamed.done()["session_id"].clone();

    let g_agent = root.create("/api/agents/", json!({"name": "global", "owner": null, "is_default": true})).await;
    assert_eq!(g_agent["owner"], Value::Null, "staff can create global objects");
    let g_tool = root.create("/api/tools/", json!({"name": "global_tool", "owner": null})).await;
    let g_template = root.create("/api/templates/", json!({"name": "g", "template": "global", "owner": null})).await;

    World {
        fake,
        alice,
        bob,
        root,
        bobs: json!({"agent": agent, "tool": tool, "link": link, "template": template, "session": session,
            "mcp": mcp, "mcp_link": mcp_link}),
        globals: json!({"agent": g_agent, "tool": g_tool, "template": g_template}),
    }
}

#[tokio::test]
async fn another_owners_objects_are_not_found_by_any_method_and_stay_unchanged() {
    let w = world().await;
    let b = &w.bobs;
    let before = snapshot(&w.alice).await;
    let not_found = (StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    let items = [
        format!("/api/agents/{}/", b["agent"]["id"]),
        format!("/api/tools/{}/", b["tool"]["id"]),
        format!("/api/agent-tools/{}/", b["link"]["id"]),
        format!("/api/templates/{}/", b["template"]["id"]),
        format!("/api/mcp-servers/{}/", b["mcp"]["id"]),
        format!("/api/agent-mcp-servers/{}/", b["mcp_link"]["id"]),
    ];
    let bodies = [
        json!({"name": "mine now"}),
        json!({"name": "mine_now"}),
        json!({"agent": b["agent"]["id"], "tool": b["tool"]["id"], "enabled": false}),
        json!({"name": "mine", "template": "mine"}),
        json!({"name": "mine", "url": "https://evil.example.com/mcp"}),
        json!({"agent": b["agent"]["id"], "mcp_server": b["mcp"]["id"], "require_approval": false}),
    ];
    for (path, body) in items.iter().zip(bodies) {
        assert_eq!(w.alice.get(path).await, not_found, "GET {path}");
        assert_eq!(w.alice.put(path, body.clone()).await, not_found, "PUT {path}");
        assert_eq!(w.alice.patch(path, body).await, not_found, "PATCH {path}");
        assert_eq!(w.alice.delete(path).await, not_found, "DELETE {path}");
    }
    let session = &b["session"];
    for path in [
        format!("/api/sessions/{session}/"),
        format!("/api/sessions/{session}/messages/"),
        format!("/api/sessions/{session}/tool-calls/"),
    ] {
        assert_eq!(w.alice.get(&path).await, not_found, "GET {path}");
    }
    assert_eq!(w.alice.delete(&format!("/api/sessions/{session}/")).await, not_found);
    // Forking Bob's session, at its start or at one of its messages, is not Alice's either.
    let bobs_message = w.bob.get(&format!("/api/sessions/{session}/messages/")).await.1["results"][0]["id"].clone();
    for body in [json!({}), json!({"message": bobs_message})] {
        assert_eq!(w.alice.post(&format!("/api/sessions/{session}/fork/"), body).await, not_found, "fork");
    }

    // The conversation endpoints: Bob's agent, session and pending call are not Alice's to use.
    for (path, body) in [
        ("/api/agent/stream/", json!({"message": "hi", "agent_id": b["agent"]["id"]})),
        ("/api/agent/chat/", json!({"message": "hi", "agent_id": b["agent"]["id"]})),
        ("/api/agent/stream/", json!({"message": "hi", "session_id": session})),
        ("/api/agent/chat/", json!({"message": "hi", "session_id": session})),
        ("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_bob", "output": "stolen"})),
    ] {
        let reply = w.alice.stream(path, body.clone()).await;
        assert_eq!((reply.status, reply.body()), not_found.clone(), "{path} {body}");
    }
    // Nor can Alice build on them.
    for (path, body, field) in [
        ("/api/sessions/", json!({"agent": b["agent"]["id"]}), "agent"),
        ("/api/templates/", json!({"name": "t", "template": "x", "agent": b["agent"]["id"]}), "agent"),
        ("/api/agent-tools/", json!({"agent": b["agent"]["id"], "tool": w.globals["tool"]["id"]}), "agent"),
        ("/api/agent-mcp-servers/", json!({"agent": b["agent"]["id"], "mcp_server": b["mcp"]["id"]}), "agent"),
    ] {
        let (status, errors) = w.alice.post(path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(errors[field][0].as_str().unwrap().starts_with("Invalid pk"), "{path}: {errors}");
    }
    let mine = w.alice.create("/api/agents/", json!({"name": "alice's"})).await;
    let (status, errors) =
        w.alice.post("/api/agent-tools/", json!({"agent": mine["id"], "tool": b["tool"]["id"]})).await;
    assert_eq!(
        (status, errors["tool"][0].as_str().map(|m| m.starts_with("Invalid pk"))),
        (StatusCode::BAD_REQUEST, Some(true))
    );
    // Nor link Bob's MCP server to her own agent (and so use it).
    let (status, errors) =
        w.alice.post("/api/agent-mcp-servers/", json!({"agent": mine["id"], "mcp_server": b["mcp"]["id"]})).await;
    assert_eq!(
        (status, errors["mcp_server"][0].as_str().map(|m| m.starts_with("Invalid pk"))),
        (StatusCode::BAD_REQUEST, Some(true))
    );
    // Nor continue one of her own sessions on Bob's agent through a fork.
    w.fake.push_stream(frames(lambent_testkit::openai::text_events("resp_alice", &["hi"])));
    let own = w.alice.stream("/api/agent/stream/", json!({"message": "mine", "agent_id": mine["id"]})).await.done();
    let fork = format!("/api/sessions/{}/fork/", own["session_id"]);
    let (status, errors) = w.alice.post(&fork, json!({"agent": b["agent"]["id"]})).await;
    assert_eq!(
        (status, errors["agent"][0].as_str().map(|m| m.starts_with("Invalid pk"))),
        (StatusCode::BAD_REQUEST, Some(true))
    );
    w.alice.delete(&format!("/api/agents/{}/", mine["id"])).await;

    assert_eq!(snapshot(&w.alice).await, before, "nothing of Bob's changed");
    assert_eq!(w.fake.requests().len(), 2, "only Bob's own turn and Alice's own went upstream");
}

#[tokio::test]
async fn lists_show_only_ones_own_objects_and_the_global_ones() {
    let w = world().await;
    let names = |page: &Value, key: &str| -> Vec<String> {
        page["results"].as_array().unwrap().iter().map(|o| o[key].to_string()).collect()
    };
    assert_eq!(names(&w.alice.get("/api/agents/").await.1, "name"), ["\"global\""]);
    assert_eq!(names(&w.alice.get("/api/tools/").await.1, "name"), ["\"global_tool\""]);
    assert_eq!(names(&w.alice.get("/api/templates/").await.1, "name"), ["\"g\""]);
    assert_eq!(w.alice.get("/api/agent-tools/").await.1["count"], 0);
    assert_eq!(w.alice.get("/api/mcp-servers/").await.1["count"], 0);
    assert_eq!(w.alice.get("/api/agent-mcp-servers/").await.1["count"], 0);
    assert_eq!(w.bob.get("/api/mcp-servers/").await.1["count"], 1);
    assert_eq!(w.alice.get("/api/sessions/").await.1["count"], 0);
    assert_eq!(w.alice.get(&format!("/api/sessions/?agent={}", w.bobs["agent"]["id"])).await.1["count"], 0);

    assert_eq!(w.bob.get("/api/agents/").await.1["count"], 2, "Bob sees his and the global one");
    assert_eq!(w.bob.get("/api/sessions/").await.1["count"], 1);
    assert_eq!(w.root.get("/api/sessions/").await.1["count"], 1, "staff see every session");
    assert_eq!(w.root.get("/api/agents/").await.1["count"], 2);

    // Providers are the deployment's, the same list for everyone (and never a key).
    let providers = w.alice.get("/api/providers/").await;
    assert_eq!(providers, w.bob.get("/api/providers/").await);
    assert_eq!(providers.1[0]["name"], "openai");
    // A fork belongs to whoever forked: staff forking Bob's session get a session of their own.
    let (status, fork) = w.root.post(&format!("/api/sessions/{}/fork/", w.bobs["session"]), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "Bob's session ends waiting for a tool output: {fork}");
    let first =
        w.bob.get(&format!("/api/sessions/{}/messages/", w.bobs["session"])).await.1["results"][0]["id"].clone();
    let fork = w.root.create(&format!("/api/sessions/{}/fork/", w.bobs["session"]), json!({"message": first})).await;
    assert_ne!(fork["owner"], w.bobs["agent"]["owner"]);
    assert_eq!(w.bob.get("/api/sessions/").await.1["count"], 1, "Bob does not see the staff's fork");
    assert_eq!(w.root.get("/api/sessions/").await.1["count"], 2);
}

#[tokio::test]
async fn global_objects_are_readable_but_not_writable_by_non_staff() {
    let w = world().await;
    let forbidden = (StatusCode::FORBIDDEN, json!({"detail": "You do not have permission to perform this action."}));
    let before = snapshot(&w.alice).await;
    for (kind, body) in [
        ("agents", json!({"name": "x"})),
        ("tools", json!({"name": "x"})),
        ("templates", json!({"name": "x", "template": "y"})),
    ] {
        let key = &kind[..kind.len() - 1];
        let path = format!("/api/{kind}/{}/", w.globals[key]["id"]);
        let (status, read) = w.alice.get(&path).await;
        assert_eq!((status, &read), (StatusCode::OK, &w.globals[key]), "GET {path}");
        assert_eq!(w.alice.put(&path, body.clone()).await, forbidden, "PUT {path}");
        assert_eq!(w.alice.patch(&path, body).await, forbidden, "PATCH {path}");
        assert_eq!(w.alice.delete(&path).await, forbidden, "DELETE {path}");
    }
    let (status, errors) = w
        .alice
        .post("/api/agent-tools/", json!({"agent": w.globals["agent"]["id"], "tool": w.globals["tool"]["id"]}))
        .await;
    assert_eq!(
        (status, errors),
        (StatusCode::BAD_REQUEST, json!({"agent": ["Tools can only be linked to your own agents."]}))
    );
    let (status, errors) =
        w.alice.post("/api/templates/", json!({"name": "t", "template": "x", "agent": w.globals["agent"]["id"]})).await;
    assert_eq!(
        (status, errors),
        (StatusCode::BAD_REQUEST, json!({"agent": ["Templates can only be scoped to your own agents."]}))
    );
    // "owner" is staff-only: Alice's attempt to create a global object makes it hers.
    let agent = w.alice.create("/api/agents/", json!({"name": "sneaky", "owner": null})).await;
    assert_ne!(agent["owner"], Value::Null);
    w.alice.delete(&format!("/api/agents/{}/", agent["id"])).await;
    assert_eq!(snapshot(&w.alice).await, before);
}

#[tokio::test]
async fn staff_read_and_change_everything() {
    let w = world().await;
    let b = &w.bobs;
    for path in [
        format!("/api/agents/{}/", b["agent"]["id"]),
        format!("/api/tools/{}/", b["tool"]["id"]),
        format!("/api/agent-tools/{}/", b["link"]["id"]),
        format!("/api/templates/{}/", b["template"]["id"]),
        format!("/api/mcp-servers/{}/", b["mcp"]["id"]),
        format!("/api/agent-mcp-servers/{}/", b["mcp_link"]["id"]),
        format!("/api/sessions/{}/", b["session"]),
        format!("/api/sessions/{}/messages/", b["session"]),
        format!("/api/sessions/{}/tool-calls/", b["session"]),
    ] {
        assert_eq!(w.root.get(&path).await.0, StatusCode::OK, "GET {path}");
    }
    let (status, patched) =
        w.root.patch(&format!("/api/agents/{}/", b["agent"]["id"]), json!({"name": "renamed by staff"})).await;
    assert_eq!((status, patched["name"].as_str()), (StatusCode::OK, Some("renamed by staff")));
    assert_eq!(
        w.root.patch(&format!("/api/agent-tools/{}/", b["link"]["id"]), json!({"enabled": false})).await.0,
        StatusCode::OK
    );
    assert_eq!(w.root.delete(&format!("/api/templates/{}/", b["template"]["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(w.root.delete(&format!("/api/sessions/{}/", b["session"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(w.root.delete(&format!("/api/tools/{}/", b["tool"]["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(w.root.delete(&format!("/api/agents/{}/", b["agent"]["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(w.bob.get("/api/agents/").await.1["count"], 1, "only the global agent is left for Bob");
    let (status, _) = w.root.call(Method::GET, "/api/users/", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn the_default_agent_is_the_callers_own_else_the_global_one() {
    let w = world().await;
    w.fake.push_stream(frames(lambent_testkit::openai::text_events("resp_a", &["hi"])));
    w.fake.push_stream(frames(lambent_testkit::openai::text_events("resp_b", &["hi"])));
    let alice_turn = w.alice.stream("/api/agent/stream/", json!({"message": "who answers?"})).await.done();
    let session = w.alice.get(&format!("/api/sessions/{}/", alice_turn["session_id"])).await.1;
    assert_eq!(session["agent"], w.globals["agent"]["id"], "Alice has no default: the global one answers");

    let bob_turn = w.bob.stream("/api/agent/stream/", json!({"message": "who answers?"})).await.done();
    let session = w.bob.get(&format!("/api/sessions/{}/", bob_turn["session_id"])).await.1;
    assert_eq!(session["agent"], w.bobs["agent"]["id"], "Bob's own default wins over the global one");
}

#[tokio::test]
async fn usage_is_each_owners_own_and_only_staff_name_another_owner() {
    let w = world().await;
    let bob_id = w.bob.get("/api/auth/me/").await.1["id"].clone();
    let turns = |report: &Value| report["totals"]["turns"].as_i64();
    assert_eq!(turns(&w.bob.get("/api/usage/").await.1), Some(1), "Bob's own turn");
    let (status, alices) = w.alice.get("/api/usage/?by=agent").await;
    assert_eq!((status, turns(&alices), alices["rows"].clone()), (StatusCode::OK, Some(0), json!([])), "none of Bob's");
    let refused = (StatusCode::FORBIDDEN, json!({"detail": "You do not have permission to perform this action."}));
    assert_eq!(w.alice.get(&format!("/api/usage/?owner={bob_id}")).await, refused);
    let (status, bobs) = w.root.get(&format!("/api/usage/?owner={bob_id}&by=agent")).await;
    assert_eq!((status, turns(&bobs)), (StatusCode::OK, Some(1)));
    assert_eq!(bobs["rows"][0]["agent_id"], w.bobs["agent"]["id"]);
    assert_eq!(w.alice.as_user(None).get("/api/usage/").await.0, StatusCode::UNAUTHORIZED);
}
