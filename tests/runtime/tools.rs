use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::Rig;
use crate::helpers::transcript;
use lambent_testkit::openai::{frames, function_call_events, text_events};

const WEATHER_CALL: &str = "call_q0BEm3hVhQk6Pb3WdZ8rLx1T";
const WEATHER_RESPONSE: &str = "resp_0a1b2c3d4e5f60718293a4b5c6d7e8f90000000000000002";

async fn weather_tool(rig: &Rig) -> Value {
    rig.tool(json!({
        "name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                       "required": ["city", "unit"], "additionalProperties": false}
    }))
    .await
}

#[tokio::test]
async fn a_function_call_waits_for_its_output_then_the_answer_streams() {
    let rig = Rig::new().await;
    let tool = weather_tool(&rig).await;
    rig.fake.push_stream(transcript("function_call.sse"));
    rig.fake.push_stream(frames(text_events("resp_after", &["It is ", "21°C in Paris."])));

    let first = rig.app.stream("/api/agent/stream/", json!({"message": "Weather in Paris?"})).await;

    assert_eq!(
        first.events("tool_call"),
        [
            json!({"call_id": WEATHER_CALL, "name": "get_weather", "type": "function", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"})
        ]
    );
    let done = first.done();
    let session = done["session_id"].clone();
    assert_eq!(
        done,
        json!({"session_id": session, "response_id": WEATHER_RESPONSE, "status": "requires_tool_output",
               "pending_tool_calls": [WEATHER_CALL]})
    );
    assert_eq!(
        rig.fake.request(0)["tools"],
        json!([{"type": "function", "name": "get_weather", "description": tool["description"], "parameters": tool["parameters"]}])
    );
    assert_eq!(rig.ledger(&session).await[0]["status"], "pending");
    let (_, pending) = rig.app.get(&format!("/api/sessions/{session}/tool-calls/")).await;
    assert_eq!(
        (pending["results"][0]["call_id"].as_str(), pending["results"][0]["type"].as_str()),
        (Some(WEATHER_CALL), Some("function"))
    );

    let second = rig
        .app
        .stream(
            "/api/agent/tool-output/",
            json!({"session_id": session, "call_id": WEATHER_CALL, "output": "{\"temp\": 21}"}),
        )
        .await;

    assert_eq!(second.status, StatusCode::OK, "{}", second.raw);
    assert_eq!(second.text(), "It is 21°C in Paris.");
    assert_eq!(second.done()["status"], "completed");
    let continuation = rig.fake.request(1);
    assert_eq!(continuation["previous_response_id"], WEATHER_RESPONSE);
    assert_eq!(
        continuation["input"],
        json!([{"type": "function_call_output", "call_id": WEATHER_CALL, "output": "{\"temp\": 21}"}])
    );
    assert_eq!(continuation["instructions"], "You are helpful.", "the continuation repeats the instructions");
    assert_eq!(
        rig.ledger(&session).await,
        [
            json!({"response_id": WEATHER_RESPONSE, "call_id": WEATHER_CALL, "name": "get_weather", "call_type": "function",
                "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}", "status": "submitted", "output": "{\"temp\": 21}"})
        ]
    );
    let statuses: Vec<Value> = rig.messages(&session).await.iter().map(|m| m["status"].clone()).collect();
    assert_eq!(statuses, [Value::Null, json!("requires_tool_output"), json!("completed")]);
    assert_eq!(rig.session(&session).await["previous_response_id"], "resp_after");

    // The same call cannot be answered twice; an unknown one is not found.
    let again = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": WEATHER_CALL, "output": "x"}))
        .await;
    assert_eq!(
        (again.status, again.body()),
        (
            StatusCode::CONFLICT,
            json!({"detail": format!("Tool call \"{WEATHER_CALL}\" is not pending: it is submitted.")})
        )
    );
    let unknown = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_nope", "output": "x"}))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let no_session =
        rig.app.stream("/api/agent/tool-output/", json!({"session_id": 999, "call_id": "c", "output": "x"})).await;
    assert_eq!((no_session.status, no_session.body()), (StatusCode::NOT_FOUND, json!({"detail": "Not found."})));
    assert_eq!(rig.fake.requests().len(), 2);
}

#[tokio::test]
async fn a_custom_tool_call_carries_input_and_gets_a_custom_output() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "code_exec", "tool_type": "custom", "description": "Executes arbitrary Python code and returns stdout.",
                    "format": {"type": "text"}}))
        .await;
    rig.fake.push_stream(transcript("custom_tool.sse"));
    rig.fake.push_stream(frames(text_events("resp_fact", &["10! = 3628800"])));

    let first = rig.app.stream("/api/agent/stream/", json!({"message": "What is 10!?"})).await;
    let call = json!({"call_id": "call_aGiFQkRWSWAIsMQ19fKqxUgb", "name": "code_exec", "type": "custom",
                      "input": "import math\nprint(math.factorial(10))"});
    assert_eq!(first.events("tool_call"), [call]);
    assert_eq!(
        rig.fake.request(0)["tools"],
        json!([{"type": "custom", "name": "code_exec", "description": "Executes arbitrary Python code and returns stdout.",
                "format": {"type": "text"}}])
    );
    let session = first.done()["session_id"].clone();

    let second = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "outputs": [{"call_id": "call_aGiFQkRWSWAIsMQ19fKqxUgb", "output": "3628800"}]}))
        .await;
    assert_eq!(second.text(), "10! = 3628800");
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([{"type": "custom_tool_call_output", "call_id": "call_aGiFQkRWSWAIsMQ19fKqxUgb", "output": "3628800"}])
    );
    assert_eq!(rig.ledger(&session).await[0]["call_type"], "custom");
}

#[tokio::test]
async fn parallel_calls_collect_outputs_and_continue_once_with_all_of_them() {
    let rig = Rig::new().await;
    weather_tool(&rig).await;
    rig.fake.push_stream(frames(function_call_events(
        "resp_par",
        &[
            ("call_a", "get_weather", "{\"city\":\"Paris\",\"unit\":\"c\"}"),
            ("call_b", "get_weather", "{\"city\":\"Oslo\",\"unit\":\"c\"}"),
        ],
    )));
    rig.fake.push_stream(frames(text_events("resp_both", &["Paris 21, Oslo 3."])));

    let first = rig.app.stream("/api/agent/stream/", json!({"message": "Paris and Oslo?"})).await;
    assert_eq!(first.events("tool_call").len(), 2);
    let done = first.done();
    assert_eq!(done["pending_tool_calls"], json!(["call_a", "call_b"]));
    let session = done["session_id"].clone();

    let early = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_b", "output": "3"}))
        .await;
    assert_eq!((early.status, early.body()), (StatusCode::ACCEPTED, json!({"pending_tool_calls": ["call_a"]})));
    assert_eq!(rig.fake.requests().len(), 1, "nothing goes upstream before every output is in");

    let last = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_a", "output": "21"}))
        .await;
    assert_eq!(last.text(), "Paris 21, Oslo 3.");
    assert_eq!(rig.fake.requests().len(), 2);
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([{"type": "function_call_output", "call_id": "call_a", "output": "21"},
               {"type": "function_call_output", "call_id": "call_b", "output": "3"}])
    );
}

#[tokio::test]
async fn echo_runs_on_the_server_for_two_rounds_in_one_stream() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "echo", "executor": {"type": "echo"},
                    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}))
        .await;
    rig.fake.push_stream(frames(function_call_events("resp_r1", &[("call_1", "echo", "{\"text\":\"one\"}")])));
    rig.fake.push_stream(frames(function_call_events("resp_r2", &[("call_2", "echo", "{\"text\":\"two\"}")])));
    rig.fake.push_stream(frames(text_events("resp_r3", &["Echoed one and two."])));

    let reply =
        rig.app.stream("/api/agent/stream/", json!({"message": "Echo twice", "auto_execute_tools": true})).await;

    assert_eq!(
        reply.events("tool_result"),
        [
            json!({"call_id": "call_1", "output": "{\"text\":\"one\"}"}),
            json!({"call_id": "call_2", "output": "{\"text\":\"two\"}"})
        ]
    );
    let names: Vec<&str> = reply.names().into_iter().filter(|n| *n != "openai_event").collect();
    assert_eq!(names, ["tool_call", "tool_result", "tool_call", "tool_result", "text_delta", "done"]);
    let done = reply.done();
    assert_eq!((done["status"].as_str(), done["response_id"].as_str()), (Some("completed"), Some("resp_r3")));
    assert_eq!(rig.fake.requests().len(), 3);
    assert_eq!(rig.fake.request(1)["previous_response_id"], "resp_r1");
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([{"type": "function_call_output", "call_id": "call_1", "output": "{\"text\":\"one\"}"}])
    );
    assert_eq!(rig.fake.request(2)["previous_response_id"], "resp_r2");
    let session = done["session_id"].clone();
    let statuses: Vec<Value> = rig.ledger(&session).await.iter().map(|c| c["status"].clone()).collect();
    assert_eq!(statuses, [json!("executed"), json!("executed")]);
    assert_eq!(rig.session(&session).await["previous_response_id"], "resp_r3");
}

#[tokio::test]
async fn server_side_rounds_stop_at_the_limit_with_an_error_then_done() {
    let rig = Rig::new().await;
    rig.tool(json!({"name": "now", "executor": {"type": "now"}})).await;
    for round in 0..=lambent::turn::MAX_TOOL_ROUNDS {
        rig.fake.push_stream(frames(function_call_events(
            &format!("resp_{round}"),
            &[(&format!("call_{round}"), "now", "{}")],
        )));
    }

    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Loop", "auto_execute_tools": true})).await;

    assert_eq!(rig.fake.requests().len(), lambent::turn::MAX_TOOL_ROUNDS + 1);
    assert_eq!(reply.events("tool_result").len(), lambent::turn::MAX_TOOL_ROUNDS);
    let output = reply.events("tool_result")[0]["output"].as_str().unwrap().to_owned();
    assert!(output.ends_with('Z') && output.contains('T'), "now answers a UTC timestamp: {output}");
    let tail: Vec<&str> = reply.names().into_iter().rev().take(2).collect();
    assert_eq!(tail, ["done", "error"]);
    assert_eq!(reply.events("error")[0]["code"], "tool_round_limit");
    let done = reply.done();
    assert_eq!(
        (done["status"].as_str(), done["pending_tool_calls"].clone()),
        (Some("requires_tool_output"), json!(["call_8"]))
    );
}

#[tokio::test]
async fn calls_without_an_executor_are_left_to_the_client_even_in_auto_mode() {
    let rig = Rig::new().await;
    weather_tool(&rig).await;
    rig.tool(json!({"name": "echo", "executor": {"type": "echo"}})).await;
    rig.fake.push_stream(frames(function_call_events(
        "resp_mix",
        &[("call_e", "echo", "{\"x\":1}"), ("call_w", "get_weather", "{\"city\":\"Rome\",\"unit\":\"c\"}")],
    )));
    rig.fake.push_stream(frames(text_events("resp_end", &["Done."])));

    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Both", "auto_execute_tools": true})).await;
    assert_eq!(reply.events("tool_result"), [json!({"call_id": "call_e", "output": "{\"x\":1}"})]);
    let done = reply.done();
    assert_eq!(
        (done["status"].as_str(), done["pending_tool_calls"].clone()),
        (Some("requires_tool_output"), json!(["call_w"]))
    );

    let session = done["session_id"].clone();
    let next = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_w", "output": "sunny"}))
        .await;
    assert_eq!(next.text(), "Done.");
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([{"type": "function_call_output", "call_id": "call_e", "output": "{\"x\":1}"},
               {"type": "function_call_output", "call_id": "call_w", "output": "sunny"}])
    );
}

#[tokio::test]
async fn a_new_message_expires_pending_calls_and_closes_them_upstream() {
    let rig = Rig::new().await;
    weather_tool(&rig).await;
    rig.fake.push_stream(frames(function_call_events(
        "resp_q",
        &[("call_x", "get_weather", "{\"city\":\"Lima\",\"unit\":\"c\"}")],
    )));
    rig.fake.push_stream(frames(text_events("resp_moved_on", &["Sure, never mind."])));

    let session = rig.app.stream("/api/agent/stream/", json!({"message": "Lima?"})).await.done()["session_id"].clone();
    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "Forget it", "session_id": session})).await;

    assert_eq!(reply.done()["status"], "completed");
    assert_eq!(rig.fake.request(1)["previous_response_id"], "resp_q");
    assert_eq!(
        rig.fake.request(1)["input"],
        json!([{"type": "function_call_output", "call_id": "call_x", "output": lambent::llm::EXPIRED_OUTPUT},
               {"type": "message", "role": "user", "content": "Forget it"}])
    );
    assert_eq!(rig.ledger(&session).await[0]["status"], "expired");
    let late = rig
        .app
        .stream("/api/agent/tool-output/", json!({"session_id": session, "call_id": "call_x", "output": "x"}))
        .await;
    assert_eq!(late.status, StatusCode::CONFLICT);
}

/// A tool endpoint on 127.0.0.1 that answers with the arguments it received (`/run`) or a redirect to `/run`
/// (`/moved`), and counts the calls that reach it.
async fn tool_endpoint() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let tool_server = axum::Router::new()
        .route(
            "/run",
            axum::routing::post(
                |axum::Json(body): axum::Json<Value>| async move { format!("got {}", body["arguments"]) },
            ),
        )
        .route("/moved", axum::routing::post(|| async { axum::response::Redirect::temporary("/run") }))
        .layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            counted.fetch_add(1, Ordering::SeqCst);
            next.run(request)
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, tool_server).await.unwrap() });
    (addr, hits)
}

/// Runs one auto-executed turn in which the model calls each `(name, url)` http tool once; their outputs, in order.
async fn http_tool_outputs(rig: &Rig, tools: &[(&str, String)]) -> Vec<String> {
    let mut calls = Vec::new();
    for (i, (name, url)) in tools.iter().enumerate() {
        rig.tool(json!({"name": name, "executor": {"type": "http", "url": url, "timeout_ms": 2000}})).await;
        calls.push((format!("call_{i}"), *name, "{\"q\":1}"));
    }
    let calls: Vec<(&str, &str, &str)> = calls.iter().map(|(id, name, args)| (id.as_str(), *name, *args)).collect();
    rig.fake.push_stream(frames(function_call_events("resp_h", &calls)));
    rig.fake.push_stream(frames(text_events("resp_h2", &["ok"])));

    let reply = rig.app.stream("/api/agent/stream/", json!({"message": "go", "auto_execute_tools": true})).await;

    assert_eq!(reply.done()["status"], "completed", "a refused call does not fail the turn");
    reply.events("tool_result").iter().map(|result| result["output"].as_str().unwrap().to_owned()).collect()
}

fn refused(host: &str) -> String {
    json!({"error": format!("the tool's host {host} is a private, loopback or link-local address not in LAMBENT_TOOL_HOSTS")})
        .to_string()
}

#[tokio::test]
async fn an_http_executor_posts_the_call_to_an_allowlisted_host() {
    let (addr, hits) = tool_endpoint().await;
    let rig = Rig::with(&[("LAMBENT_TOOL_HOSTS", &addr.to_string())]).await;

    let outputs = http_tool_outputs(
        &rig,
        &[("remote", format!("http://{addr}/run")), ("other_port", "http://127.0.0.1:9/run".to_owned())],
    )
    .await;

    assert_eq!(outputs, ["got \"{\\\"q\\\":1}\"".to_owned(), refused("127.0.0.1")]);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn loopback_and_metadata_addresses_are_refused_without_reaching_them() {
    let (addr, hits) = tool_endpoint().await;
    let rig = Rig::new().await;

    let outputs = http_tool_outputs(
        &rig,
        &[
            ("loopback", format!("http://{addr}/run")),
            ("mapped", format!("http://[::ffff:127.0.0.1]:{}/run", addr.port())),
            ("metadata", "http://169.254.169.254/latest/meta-data/".to_owned()),
        ],
    )
    .await;

    assert_eq!(outputs, [refused("127.0.0.1"), refused("[::ffff:7f00:1]"), refused("169.254.169.254")]);
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the local endpoint is never called");
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_refused_unless_allowlisted() {
    let (addr, hits) = tool_endpoint().await;
    let url = format!("http://localhost:{}/run", addr.port());

    let outputs = http_tool_outputs(&Rig::new().await, &[("local", url.clone())]).await;
    assert_eq!(
        outputs,
        [json!({"error": "the tool's host localhost resolves only to private, loopback or link-local addresses and is \
                          not in LAMBENT_TOOL_HOSTS"})
        .to_string()]
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    let allowed = Rig::with(&[("LAMBENT_TOOL_HOSTS", &format!("localhost:{}", addr.port()))]).await;
    assert_eq!(http_tool_outputs(&allowed, &[("local", url)]).await, ["got \"{\\\"q\\\":1}\""]);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_http_executor_does_not_follow_redirects() {
    let (addr, hits) = tool_endpoint().await;
    let rig = Rig::with(&[("LAMBENT_TOOL_HOSTS", &addr.to_string())]).await;

    let outputs = http_tool_outputs(&rig, &[("moved", format!("http://{addr}/moved"))]).await;

    assert_eq!(outputs, [json!({"error": "tool endpoint answered HTTP 307 Temporary Redirect: "}).to_string()]);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the redirect's target is not called");
}
