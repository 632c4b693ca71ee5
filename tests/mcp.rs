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

// Turns that use MCP servers: the fake Responses upstream asks for the calls, the servers run them.

use lambent_testkit::mcp::McpServers;
use lambent_testkit::openai::{FakeOpenAi, frames, function_call_events, text_events};

use crate::helpers::Streamed;

/// A server linked to a fresh agent, as an app over the fake upstream sees it.
struct Rig {
    fake: FakeOpenAi,
    app: TestApp,
    agent: Value,
    server: i64,
}

impl Rig {
    /// An agent linked to the server at `url`; `env` adds settings to the fake's, the secrets key and the
    /// allowlist of 127.0.0.1.
    async fn new(url: &str, link: Value, env: &[(&'static str, String)]) -> Self {
        Self::with(FakeOpenAi::start().await, url, link, env).await
    }

    async fn with(fake: FakeOpenAi, url: &str, link: Value, env: &[(&'static str, String)]) -> Self {
        let mut all = fake.env();
        all.extend(keyed());
        all.push(("LAMBENT_TOOL_HOSTS", "127.0.0.1".to_owned()));
        all.extend(env.iter().cloned());
        let app = TestApp::spawn_with(&all).await;
        let agent = app.create("/api/agents/", json!({"name": "mcp user"})).await;
        let mut server = json!({"name": "the server", "url": url});
        let mut link = link;
        for field in ["headers", "allowed_tools"] {
            if let Some(value) = link.as_object_mut().unwrap().remove(field) {
                server[field] = value;
            }
        }
        let server = app.create("/api/mcp-servers/", server).await["id"].as_i64().unwrap();
        let mut body = json!({"agent": agent["id"], "mcp_server": server});
        body.as_object_mut().unwrap().extend(link.as_object().unwrap().clone());
        app.create("/api/agent-mcp-servers/", body).await;
        Self { fake, app, agent, server }
    }

    fn tool(&self, name: &str) -> String {
        format!("mcp__{}__{name}", self.server)
    }

    async fn say(&self, message: &str) -> Streamed {
        self.app.stream("/api/agent/stream/", json!({"message": message, "agent_id": self.agent["id"]})).await
    }

    /// The names of the tools a request upstream offered.
    fn offered(&self, request: usize) -> Vec<String> {
        let tools = self.fake.request(request)["tools"].clone();
        tools.as_array().into_iter().flatten().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    }

    async fn ledger(&self, session: &Value) -> Vec<Value> {
        self.app
            .rows(&format!(
                "SELECT call_id, name, status, output, approval FROM agent_tool_calls WHERE session_id = {session} ORDER BY id"
            ))
            .await
    }
}

fn output(call_id: &str, output: &str) -> Value {
    json!({"type": "function_call_output", "call_id": call_id, "output": output})
}

#[tokio::test]
async fn an_agent_calls_the_reference_servers_echo_tool_and_the_continuation_carries_its_real_result() {
    let servers = McpServers::shared();
    let rig = Rig::new(&servers.everything, json!({"allowed_tools": ["echo", "get-sum"]}), &[]).await;
    let echo = rig.tool("echo");
    rig.fake.push_stream(frames(function_call_events("resp_1", &[("call_1", &echo, "{\"message\":\"hi there\"}")])));
    rig.fake.push_stream(frames(text_events("resp_2", &["It said hi."])));

    // MCP tools run on their server whether or not the request asked for auto_execute_tools.
    let turn = rig.say("Echo something").await;

    assert_eq!(turn.status, StatusCode::OK, "{}", turn.raw);
    assert_eq!(rig.offered(0), [rig.tool("echo"), rig.tool("get-sum")], "only the allowed tools are offered");
    let offered = &rig.fake.request(0)["tools"][0];
    assert_eq!(offered["type"], "function");
    assert_eq!(offered["parameters"]["properties"]["message"]["type"], "string", "{offered}");
    assert_eq!(turn.events("tool_call")[0]["name"], echo);
    assert_eq!(turn.events("tool_result"), [json!({"call_id": "call_1", "output": "Echo: hi there"})]);
    let continuation = rig.fake.request(1);
    assert_eq!(continuation["previous_response_id"], "resp_1");
    assert_eq!(continuation["input"], json!([output("call_1", "Echo: hi there")]));
    let done = turn.done();
    assert_eq!((done["status"].as_str(), turn.text()), (Some("completed"), "It said hi.".to_owned()));
    assert_eq!(
        rig.ledger(&done["session_id"]).await,
        [
            json!({"call_id": "call_1", "name": echo, "status": "executed", "output": "Echo: hi there", "approval": null})
        ]
    );
}

#[tokio::test]
async fn when_lambent_keeps_the_conversation_the_continuation_replays_the_call_and_its_real_result() {
    let servers = McpServers::shared();
    let fake = FakeOpenAi::start_stateless().await;
    let rig =
        Rig::with(fake, &servers.everything, json!({}), &[("LAMBENT_PROVIDER_OPENAI_STATE", "local".to_owned())]).await;
    let echo = rig.tool("echo");
    rig.fake.push_stream(frames(function_call_events("resp_1", &[("call_1", &echo, "{\"message\":\"stateless\"}")])));
    rig.fake.push_stream(frames(text_events("resp_2", &["ok"])));

    let turn = rig.say("Echo").await;

    assert_eq!(turn.done()["status"], "completed", "{}", turn.raw);
    let continuation = rig.fake.request(1);
    assert_eq!(continuation["previous_response_id"], Value::Null);
    assert_eq!(continuation["store"], false);
    let input = continuation["input"].as_array().unwrap();
    assert_eq!(input[0]["content"], "Echo");
    assert!(input.iter().any(|i| i["type"] == "function_call" && i["call_id"] == "call_1"), "{continuation}");
    assert_eq!(input.last().unwrap(), &output("call_1", "Echo: stateless"));
}

#[tokio::test]
async fn a_call_that_needs_approval_waits_and_runs_once_approved_through_the_api() {
    let servers = McpServers::shared();
    let rig = Rig::new(&servers.everything, json!({"require_approval": true}), &[]).await;
    let echo = rig.tool("echo");
    rig.fake.push_stream(frames(function_call_events("resp_1", &[("call_1", &echo, "{\"message\":\"approve me\"}")])));
    rig.fake.push_stream(frames(text_events("resp_2", &["Approved and done."])));

    let turn = rig.say("Echo, carefully").await;

    let done = turn.done();
    let session = done["session_id"].clone();
    assert_eq!(
        done,
        json!({"session_id": session, "response_id": "resp_1", "status": "requires_approval",
            "pending_tool_calls": ["call_1"],
            "approval_requests": [{"call_id": "call_1", "name": echo, "arguments": "{\"message\":\"approve me\"}"}]})
    );
    assert!(turn.events("tool_result").is_empty(), "nothing ran");
    assert_eq!(rig.fake.requests().len(), 1);
    assert_eq!(rig.ledger(&session).await[0]["approval"], "required");
    // Neither a client's output nor a decision for a call that does not exist gets past.
    let sneaky = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_1", "output": "x"}))
        .await;
    assert_eq!(
        (sneaky.status, sneaky.body()["detail"].as_str()),
        (StatusCode::CONFLICT, Some("Tool call \"call_1\" waits for a person's decision: POST /api/agent/approvals/."))
    );
    let unknown = rig
        .app
        .stream(
            "/api/agent/approvals/",
            json!({"session_id": session, "decisions": [{"call_id": "call_9", "approve": true}]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.raw);

    // Two people approve at once: exactly one decision wins and streams the continuation.
    let approve = json!({"session_id": session, "decisions": [{"call_id": "call_1", "approve": true}]});
    let (a, b) = tokio::join!(
        rig.app.stream("/api/agent/approvals/", approve.clone()),
        rig.app.stream("/api/agent/approvals/", approve.clone())
    );
    let statuses = [a.status, b.status];
    assert!(
        statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::CONFLICT),
        "{statuses:?}: {} {}",
        a.raw,
        b.raw
    );
    let won = if a.status == StatusCode::OK { a } else { b };
    assert_eq!(won.events("tool_result"), [json!({"call_id": "call_1", "output": "Echo: approve me"})]);
    assert_eq!(won.done()["status"], "completed");
    assert_eq!(rig.fake.request(1)["input"], json!([output("call_1", "Echo: approve me")]));
    assert_eq!(rig.fake.request(1)["previous_response_id"], "resp_1");
    // Decided already: 409.
    let again = rig.app.stream("/api/agent/approvals/", approve).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.raw);
    assert_eq!(rig.fake.requests().len(), 2);
    assert_eq!(
        rig.ledger(&session).await,
        [
            json!({"call_id": "call_1", "name": echo, "status": "executed", "output": "Echo: approve me", "approval": "approved"})
        ]
    );
}

#[tokio::test]
async fn of_two_parallel_calls_one_approved_and_one_denied_the_model_gets_a_result_and_the_reason() {
    let servers = McpServers::shared();
    let rig = Rig::new(&servers.everything, json!({"require_approval": true}), &[]).await;
    let (echo, sum) = (rig.tool("echo"), rig.tool("get-sum"));
    rig.fake.push_stream(frames(function_call_events(
        "resp_1",
        &[("call_a", &echo, "{\"message\":\"yes\"}"), ("call_b", &sum, "{\"a\":1,\"b\":2}")],
    )));
    rig.fake.push_stream(frames(text_events("resp_2", &["One ran, one was denied."])));
    let turn = rig.say("Do both").await;
    let session = turn.done()["session_id"].clone();
    assert_eq!(turn.done()["approval_requests"].as_array().unwrap().len(), 2);

    let first = rig
        .app
        .stream(
            "/api/agent/approvals/",
            json!({"session_id": session, "decisions": [{"call_id": "call_a", "approve": true}]}),
        )
        .await;
    assert_eq!((first.status, first.body()), (StatusCode::ACCEPTED, json!({"pending_tool_calls": ["call_b"]})));
    let deny =
        json!({"session_id": session, "decisions": [{"call_id": "call_b", "approve": false, "reason": "Not today."}]});
    let second = rig.app.stream("/api/agent/approvals/", deny).await;

    assert_eq!(second.status, StatusCode::OK, "{}", second.raw);
    assert_eq!(second.events("tool_result"), [json!({"call_id": "call_a", "output": "Echo: yes"})]);
    let denied = "{\"error\":\"A person denied this tool call.\",\"reason\":\"Not today.\"}";
    assert_eq!(rig.fake.request(1)["input"], json!([output("call_a", "Echo: yes"), output("call_b", denied)]));
    assert_eq!(second.done()["status"], "completed");
    let ledger = rig.ledger(&session).await;
    assert_eq!((&ledger[0]["status"], &ledger[0]["approval"]), (&json!("executed"), &json!("approved")));
    assert_eq!((&ledger[1]["status"], &ledger[1]["approval"]), (&json!("submitted"), &json!("denied")));
}

#[tokio::test]
async fn a_server_that_cannot_be_reached_leaves_its_tools_out_with_a_notice_and_the_turn_goes_on() {
    let down = format!("http://127.0.0.1:{}/mcp", lambent_testkit::free_port().unwrap());
    let rig = Rig::new(&down, json!({}), &[]).await;
    rig.fake.push_stream(frames(text_events("resp_1", &["Fine without it."])));

    let turn = rig.say("Hello").await;

    assert_eq!(turn.done()["status"], "completed", "{}", turn.raw);
    let notices = turn.events("notice");
    assert_eq!(notices.len(), 1, "{}", turn.raw);
    let message = notices[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("The MCP server \"the server\" is left out of this turn: could not connect"),
        "{message}"
    );
    assert_eq!(rig.fake.request(0).get("tools"), None, "nothing offered");
    assert_eq!(turn.text(), "Fine without it.");
}

#[tokio::test]
async fn a_private_server_is_refused_unless_its_host_is_allowlisted() {
    let servers = McpServers::shared();
    let fake = FakeOpenAi::start().await;
    let mut env = fake.env();
    env.extend(keyed());
    let app = TestApp::spawn_with(&env).await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    let server = app.create("/api/mcp-servers/", json!({"name": "local", "url": servers.everything})).await;
    app.create("/api/agent-mcp-servers/", json!({"agent": agent["id"], "mcp_server": server["id"]})).await;
    fake.push_stream(frames(text_events("resp_1", &["ok"])));

    let turn = app.stream("/api/agent/stream/", json!({"message": "hi", "agent_id": agent["id"]})).await;

    let message = turn.events("notice")[0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("is a private, loopback or link-local address not in LAMBENT_TOOL_HOSTS"), "{message}");
    assert_eq!(fake.request(0).get("tools"), None);
}

#[tokio::test]
async fn a_slow_tool_times_out_and_an_mcp_error_becomes_an_error_output() {
    let servers = McpServers::shared();
    let rig = Rig::new(&servers.ours, json!({}), &[("LAMBENT_MCP_CALL_TIMEOUT", "1".to_owned())]).await;
    let (slow, fail) = (rig.tool("slow"), rig.tool("fail"));
    rig.fake.push_stream(frames(function_call_events(
        "resp_1",
        &[("call_slow", &slow, "{\"seconds\":5}"), ("call_fail", &fail, "{\"reason\":\"no way\"}")],
    )));
    rig.fake.push_stream(frames(text_events("resp_2", &["Both failed."])));

    let turn = rig.say("Try").await;

    assert_eq!(turn.done()["status"], "completed", "{}", turn.raw);
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([
            output("call_slow", "{\"error\":\"the MCP server did not answer within 1000 ms\"}"),
            output("call_fail", "{\"error\":\"the MCP server answered an error: refused: no way\"}"),
        ])
    );
}

#[tokio::test]
async fn a_servers_header_values_reach_it_and_a_changed_tool_list_is_offered_in_the_next_turn() {
    let servers = McpServers::shared();
    let rig = Rig::new(&servers.ours, json!({"headers": {"X-Test-Key": "k-123"}}), &[]).await;
    let (whoami, grow, grown) = (rig.tool("whoami"), rig.tool("grow"), rig.tool("grown"));
    rig.fake.push_stream(frames(function_call_events("resp_1", &[("call_1", &whoami, "{}"), ("call_2", &grow, "{}")])));
    rig.fake.push_stream(frames(text_events("resp_2", &["Grew."])));
    let first = rig.say("Who am I? Then grow.").await;
    assert_eq!(
        first.events("tool_result"),
        [json!({"call_id": "call_1", "output": "k-123"}), json!({"call_id": "call_2", "output": "grew"})]
    );
    assert!(!rig.offered(0).contains(&grown), "{:?}", rig.offered(0));
    let session = first.done()["session_id"].clone();

    rig.fake.push_stream(frames(text_events("resp_3", &["New tool seen."])));
    let second = rig.app.stream("/api/agent/stream/", json!({"message": "And now?", "session_id": session})).await;

    assert_eq!(second.done()["status"], "completed", "{}", second.raw);
    assert!(rig.offered(2).contains(&grown), "the list changed: {:?}", rig.offered(2));
}

#[tokio::test]
async fn an_mcp_tool_and_an_agent_tool_of_the_same_name_stay_apart() {
    let servers = McpServers::shared();
    let rig = Rig::new(&servers.everything, json!({"allowed_tools": ["echo"]}), &[]).await;
    let own = rig.app.create("/api/tools/", json!({"name": "echo", "executor": {"type": "echo"}})).await;
    rig.app.create("/api/agent-tools/", json!({"agent": rig.agent["id"], "tool": own["id"]})).await;
    let echo = rig.tool("echo");
    rig.fake.push_stream(frames(function_call_events(
        "resp_1",
        &[("call_own", "echo", "{\"message\":\"mine\"}"), ("call_mcp", &echo, "{\"message\":\"theirs\"}")],
    )));
    rig.fake.push_stream(frames(text_events("resp_2", &["Both."])));

    let turn = rig
        .app
        .stream(
            "/api/agent/stream/",
            json!({"message": "Both", "agent_id": rig.agent["id"], "auto_execute_tools": true}),
        )
        .await;

    assert_eq!(rig.offered(0), ["echo".to_owned(), echo]);
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([output("call_own", "{\"message\":\"mine\"}"), output("call_mcp", "Echo: theirs")])
    );
    assert_eq!(turn.done()["status"], "completed");
}

#[tokio::test]
async fn an_agent_tool_that_needs_approval_runs_its_executor_once_approved_and_a_client_tool_ignores_the_flag() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await;
    let agent = app.create("/api/agents/", json!({"name": "a"})).await;
    for (name, executor) in [("stamp", json!({"type": "echo"})), ("ask_user", Value::Null)] {
        let tool = app.create("/api/tools/", json!({"name": name, "executor": executor})).await;
        app.create("/api/agent-tools/", json!({"agent": agent["id"], "tool": tool["id"], "require_approval": true}))
            .await;
    }
    fake.push_stream(frames(function_call_events(
        "resp_1",
        &[("call_s", "stamp", "{\"x\":1}"), ("call_c", "ask_user", "{}")],
    )));
    let body = json!({"message": "go", "agent_id": agent["id"], "auto_execute_tools": true});
    let turn = app.stream("/api/agent/stream/", body).await;
    let done = turn.done();
    assert_eq!(
        (done["status"].as_str(), &done["pending_tool_calls"]),
        (Some("requires_approval"), &json!(["call_s", "call_c"]))
    );
    assert_eq!(done["approval_requests"], json!([{"call_id": "call_s", "name": "stamp", "arguments": "{\"x\":1}"}]));
    let session = done["session_id"].clone();

    let approve = json!({"session_id": session, "decisions": [{"call_id": "call_s", "approve": true}]});
    let first = app.stream("/api/agent/approvals/", approve).await;
    assert_eq!((first.status, first.body()), (StatusCode::ACCEPTED, json!({"pending_tool_calls": ["call_c"]})));
    // The client's own tool was never held back: deciding it is refused, its output is what it needs.
    let wrong = json!({"session_id": session, "decisions": [{"call_id": "call_c", "approve": true}]});
    let refused = app.stream("/api/agent/approvals/", wrong).await;
    assert_eq!(
        (refused.status, refused.body()["detail"].as_str()),
        (StatusCode::CONFLICT, Some("Tool call \"call_c\" needs no approval: send its output."))
    );
    fake.push_stream(frames(text_events("resp_2", &["done"])));
    let answer = json!({"session_id": session, "call_id": "call_c", "output": "the user said yes"});
    let last = app.stream("/api/agent/tool-output/", answer).await;
    assert_eq!(last.events("tool_result"), [json!({"call_id": "call_s", "output": "{\"x\":1}"})], "{}", last.raw);
    assert_eq!(fake.request(1)["input"], json!([output("call_s", "{\"x\":1}"), output("call_c", "the user said yes")]));
}

#[tokio::test]
async fn an_approval_in_a_conversation_lambent_keeps_is_replayed_for_its_key_and_chat_lists_what_waits() {
    let servers = McpServers::shared();
    let fake = FakeOpenAi::start_stateless().await;
    let local = [("LAMBENT_PROVIDER_OPENAI_STATE", "local".to_owned())];
    let rig = Rig::with(fake, &servers.everything, json!({"require_approval": true}), &local).await;
    let echo = rig.tool("echo");
    rig.fake.push_stream(frames(function_call_events("resp_1", &[("call_1", &echo, "{\"message\":\"kept\"}")])));
    let (status, reply) =
        rig.app.post("/api/agent/chat/", json!({"message": "Echo it", "agent_id": rig.agent["id"]})).await;
    assert_eq!((status, &reply["status"]), (StatusCode::OK, &json!("requires_approval")), "{reply}");
    assert_eq!(
        reply["approval_requests"],
        json!([{"call_id": "call_1", "name": echo, "arguments": "{\"message\":\"kept\"}"}])
    );

    rig.fake.push_stream(frames(text_events("resp_2", &["Kept and echoed."])));
    let decision = json!({"session_id": reply["session_id"], "decisions": [{"call_id": "call_1", "approve": true}]});
    let key = [("Idempotency-Key", "approve-once")];
    let path = "/api/agent/approvals/";
    let first = rig.app.stream_with(reqwest::Method::POST, path, Some(decision.clone()), &key).await;
    assert_eq!(first.text(), "Kept and echoed.", "{}", first.raw);
    let continuation = rig.fake.request(1);
    assert_eq!(
        (continuation["store"].clone(), continuation["previous_response_id"].clone()),
        (json!(false), Value::Null)
    );
    let input = continuation["input"].as_array().unwrap();
    assert!(input.iter().any(|i| i["type"] == "function_call" && i["call_id"] == "call_1"), "{continuation}");
    assert_eq!(input.last().unwrap(), &output("call_1", "Echo: kept"));

    // The same request again: the recorded frames, without running the call or asking upstream again.
    let again = rig.app.stream_with(reqwest::Method::POST, path, Some(decision), &key).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        again.frames.iter().map(|f| &f.data).collect::<Vec<_>>(),
        first.frames.iter().map(|f| &f.data).collect::<Vec<_>>()
    );
    assert_eq!(rig.fake.requests().len(), 2);
}
