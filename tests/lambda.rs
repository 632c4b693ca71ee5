//! The Lambda path: a real API Gateway REST proxy event through the same service `lambda_http::run` drives.

use lambda_http::lambda_runtime::{Context, LambdaEvent};
use lambda_http::request::LambdaRequest;
use lambda_http::tower::ServiceExt;
use serde_json::{Value, json};
use std::sync::Arc;

/// The token the fixtures carry in their Authorization header.
const FIXTURE_TOKEN: &str = "lam_f1x7ure0000000000000000000000000000000000000000000000000000000000";

/// A fresh state with a user whose token is the fixtures'.
async fn state_with_fixture_user() -> (lambent::AppState, tempfile::TempDir) {
    let (state, dir, _) = state_with_fixture_user_and(&[]).await;
    (state, dir)
}

/// The same, with settings; also returns the user's id.
async fn state_with_fixture_user_and(
    env: &[(&str, String)],
) -> (lambent::AppState, tempfile::TempDir, lambent::domain::UserId) {
    let (state, dir) = crate::helpers::fresh_state_with(env).await;
    let user = fixture_user(&state).await;
    (state, dir, user)
}

/// The user whose token is the fixtures', in `state`'s database; its id.
async fn fixture_user(state: &lambent::AppState) -> lambent::domain::UserId {
    let user = state.store.create_user("lambda", None, false).await.unwrap();
    let token = lambent::domain::NewToken {
        secret: FIXTURE_TOKEN.into(),
        prefix: FIXTURE_TOKEN[..12].into(),
        hash: lambent::auth::token_hash(FIXTURE_TOKEN),
    };
    state.store.create_token(user.id, "fixture", "api", None, &token).await.unwrap();
    user.id
}

async fn invoke(function: lambent::http::Function, state: lambent::AppState, fixture: &str) -> Value {
    invoke_with(function, state, fixture, Context::default()).await
}

/// The same with an invocation context (a deadline, say).
async fn invoke_with(
    function: lambent::http::Function,
    state: lambent::AppState,
    fixture: &str,
    context: Context,
) -> Value {
    let payload: LambdaRequest = serde_json::from_str(fixture).expect("a REST proxy event");
    let adapter = lambda_http::Adapter::from(lambent_functions::service(function.router(state.clone()), &state));
    let response = adapter.oneshot(LambdaEvent::new(payload, context)).await.expect("response");
    serde_json::to_value(response).expect("serialisable response")
}

/// A REST proxy event with a header set (in both of the event's header maps).
fn with_header(mut event: Value, name: &str, value: &str) -> Value {
    event["headers"][name] = json!(value);
    event["multiValueHeaders"][name] = json!([value]);
    event
}

/// The fixture's POST to the stream endpoint, sent to the chat endpoint with this body.
fn chat_event(body: Value) -> String {
    let mut event: Value = serde_json::from_str(include_str!("fixtures/apigw_rest_post_stream.json")).unwrap();
    event["path"] = json!("/api/agent/chat/");
    event["resource"] = json!("/api/agent/chat");
    event["requestContext"]["path"] = json!("/prod/api/agent/chat/");
    event["requestContext"]["resourcePath"] = json!("/api/agent/chat");
    event["body"] = json!(body.to_string());
    event.to_string()
}

/// An invocation context whose function is stopped `in` from now.
fn deadline_in(within: std::time::Duration) -> Context {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut context = Context::default();
    context.request_id = "deadline".into();
    context.deadline = u64::try_from((now + within).as_millis()).unwrap();
    context
}

fn body_of(response: &Value) -> Value {
    serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or_else(|_| panic!("{response}"))
}

#[tokio::test]
async fn an_api_gateway_rest_event_routes_like_a_local_request() {
    let (state, _dir) = state_with_fixture_user().await;
    let fields = |name: &str| lambent::domain::AgentFields { name: name.into(), ..Default::default() };
    let first = state.store.create_agent(None, fields("one")).await.unwrap();
    state.store.create_agent(None, fields("two")).await.unwrap();

    let response =
        invoke(lambent::http::Function::Agents, state, include_str!("fixtures/apigw_rest_get_agents.json")).await;

    assert_eq!(response["statusCode"], 200, "{response}");
    assert_eq!(response["multiValueHeaders"]["content-type"], serde_json::json!(["application/json"]), "{response}");
    assert_eq!(
        response["multiValueHeaders"]["x-request-id"],
        json!(["c6af9ac6-7b61-11e6-9a41-93e8deadbeef"]),
        "the request id is API Gateway's: {response}"
    );
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "count": 2,
            "next": "https://abc123defg.execute-api.eu-west-1.amazonaws.com/prod/api/agents/?page_size=1&page=2",
            "previous": null,
            "results": [serde_json::to_value(&first).unwrap()],
        })
    );
}

#[tokio::test]
async fn pagination_links_through_cloudfront_point_at_the_distribution_without_the_stage() {
    let (state, _dir) = state_with_fixture_user().await;
    let fields = |name: &str| lambent::domain::AgentFields { name: name.into(), ..Default::default() };
    state.store.create_agent(None, fields("one")).await.unwrap();
    state.store.create_agent(None, fields("two")).await.unwrap();
    // What API Gateway receives from the template's distribution: its own host, the viewer's in
    // X-Forwarded-Host (the distribution's /api/* function), the viewer's protocol from CloudFront.
    let event: Value = serde_json::from_str(include_str!("fixtures/apigw_rest_get_agents.json")).unwrap();
    let event = with_header(event, "X-Forwarded-Host", "d111111abcdef8.cloudfront.net");
    let event = with_header(event, "CloudFront-Forwarded-Proto", "https");
    let event = with_header(event, "Via", "2.0 a1b2c3d4e5f6.cloudfront.net (CloudFront)");
    let mut event = event;
    event["queryStringParameters"] = json!({"page_size": "1", "page": "2"});
    event["multiValueQueryStringParameters"] = json!({"page_size": ["1"], "page": ["2"]});

    let response = invoke(lambent::http::Function::Agents, state, &event.to_string()).await;

    assert_eq!(response["statusCode"], 200, "{response}");
    let body = body_of(&response);
    assert_eq!(
        (body["next"].clone(), body["previous"].clone()),
        (json!(null), json!("https://d111111abcdef8.cloudfront.net/api/agents/?page_size=1")),
        "{body}"
    );
}

/// agent-chat stops at 29 s; a turn it was running must not hold its session for the 900 s of
/// `LAMBENT_TURN_LEASE`. The first chat here is still waiting on the upstream when its function's deadline
/// passes (as a function stopped at its timeout would be, for ever): the session is held until the deadline
/// plus the margin, then the next message is accepted.
#[tokio::test]
async fn a_chat_stopped_at_its_deadline_leaves_the_session_free_for_the_next_message_seconds_later() {
    use crate::helpers::ShiftedClock;
    use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};
    use std::time::Duration;

    let fake = FakeOpenAi::start().await;
    // The upstream stays silent until the test ends: no read timeout ends the first turn meanwhile.
    let mut env: Vec<(&str, String)> = fake.env().into_iter().filter(|(k, _)| *k != "OPENAI_READ_TIMEOUT").collect();
    env.push(("OPENAI_READ_TIMEOUT", "600".into()));
    let clock = Arc::new(ShiftedClock::default());
    let (state, _dir) = crate::helpers::fresh_state_on(&env, clock.clone()).await;
    let user_id = fixture_user(&state).await;
    let default = lambent::domain::AgentFields { name: "a".into(), is_default: true, ..Default::default() };
    state.store.create_agent(Some(user_id), default).await.unwrap();
    let chat = lambent::http::Function::AgentChat;

    let gate = Arc::new(tokio::sync::Notify::new());
    let mut stuck = vec![Step::Gate(gate.clone())];
    stuck.extend(frames(text_events("resp_stuck", &["never"])));
    fake.push_stream(stuck);
    let first_event = chat_event(json!({"message": "first"}));
    let first = invoke_with(chat, state.clone(), &first_event, deadline_in(Duration::from_secs(1)));
    let rest = async {
        while fake.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let sessions = state.store.query_json("SELECT id, turn_expires_at FROM agent_sessions").await.unwrap();
        let session = sessions[0]["id"].as_i64().unwrap();
        let expires = lambent::clock::parse_timestamp(sessions[0]["turn_expires_at"].as_str().unwrap()).unwrap();
        let held_for = expires - lambent::clock::Clock::now(&*clock);
        assert!(
            held_for <= time::Duration::seconds(1) + lambent::http::extract::LEASE_MARGIN,
            "the lease outlives the function's deadline: {held_for}"
        );

        let next = chat_event(json!({"message": "second", "session_id": session}));
        let refused = invoke_with(chat, state.clone(), &next, deadline_in(Duration::from_secs(29))).await;
        assert_eq!(refused["statusCode"], 409, "the first chat's function is still running: {refused}");

        // The first function's deadline and the margin pass (its turn never ends: the upstream still holds it).
        clock.advance(Duration::from_secs(1) + lambent::http::extract::LEASE_MARGIN + Duration::from_millis(100));
        fake.push_stream(frames(text_events("resp_after", &["Back", " again"])));
        let accepted = invoke_with(chat, state.clone(), &next, deadline_in(Duration::from_secs(29))).await;

        assert_eq!(accepted["statusCode"], 200, "{accepted}");
        let reply = body_of(&accepted);
        assert_eq!((reply["session_id"].as_i64(), reply["output_text"].as_str()), (Some(session), Some("Back again")));
    };
    // The first chat runs alongside (a Lambda adapter's future is not Send, so not in a task of its own).
    tokio::select! {
        answered = first => panic!("the first chat answered while its upstream was held: {answered}"),
        () = rest => {}
    }
}

#[tokio::test]
async fn login_counts_api_gateways_source_ip_not_a_forwarded_for_header() {
    let (state, _dir) =
        crate::helpers::fresh_state_with(&[("LAMBENT_LOGIN_ATTEMPTS_PER_ADDRESS", "2".to_owned())]).await;
    let auth = lambent::http::Function::Auth;
    let login = |source_ip: &str, forwarded_for: &str| {
        let mut event: Value =
            serde_json::from_str(include_str!("fixtures/apigw_rest_post_agent.json")).expect("a REST event");
        event["path"] = json!("/api/auth/login/");
        event["resource"] = json!("/api/auth/login");
        event["requestContext"]["path"] = json!("/prod/api/auth/login/");
        event["requestContext"]["identity"]["sourceIp"] = json!(source_ip);
        event["body"] = json!(json!({"username": "nobody", "password": "wrong"}).to_string());
        with_header(event, "X-Forwarded-For", forwarded_for).to_string()
    };
    for forwarded_for in ["198.51.100.1", "198.51.100.2"] {
        let response = invoke(auth, state.clone(), &login("203.0.113.7", forwarded_for)).await;
        assert_eq!(response["statusCode"], 400, "{response}");
    }

    let throttled = invoke(auth, state.clone(), &login("203.0.113.7", "198.51.100.3")).await;
    let elsewhere = invoke(auth, state.clone(), &login("203.0.113.8", "198.51.100.3")).await;

    assert_eq!(throttled["statusCode"], 429, "{throttled}");
    assert_eq!(elsewhere["statusCode"], 400, "another source address is not throttled: {elsewhere}");
    let addresses = state.store.query_json("SELECT DISTINCT address FROM login_attempts ORDER BY 1").await.unwrap();
    assert_eq!(addresses, [json!({"address": "203.0.113.7"}), json!({"address": "203.0.113.8"})]);
}

#[tokio::test]
async fn a_post_event_creates_through_the_lambda_path() {
    let (state, _dir) = state_with_fixture_user().await;
    let store = state.store.clone();
    let response =
        invoke(lambent::http::Function::Agents, state, include_str!("fixtures/apigw_rest_post_agent.json")).await;
    assert_eq!(response["statusCode"], 201, "{response}");
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    assert_eq!((body["name"].as_str(), body["is_default"].as_bool()), (Some("From Lambda"), Some(true)));
    let id = lambent::domain::AgentId(body["id"].as_i64().unwrap());
    let stored = store.get_agent(&lambent::domain::Caller::system(), id).await.unwrap();
    assert_eq!(serde_json::to_value(stored).unwrap(), body);
}

#[tokio::test]
async fn a_function_answers_only_its_own_group() {
    let (state, _dir) = state_with_fixture_user().await;
    let response =
        invoke(lambent::http::Function::Tools, state, include_str!("fixtures/apigw_rest_get_agents.json")).await;
    assert_eq!(response["statusCode"], 404);
    assert_eq!(
        serde_json::from_str::<Value>(response["body"].as_str().unwrap()).unwrap(),
        json!({"detail": "Not found."})
    );
}

#[tokio::test]
async fn a_streaming_function_sends_frames_before_the_upstream_has_finished() {
    use futures::StreamExt;
    use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};

    let fake = FakeOpenAi::start().await;
    let (state, _dir, user) = state_with_fixture_user_and(&fake.env()).await;
    state
        .store
        .create_agent(
            Some(user),
            lambent::domain::AgentFields { name: "a".into(), is_default: true, ..Default::default() },
        )
        .await
        .unwrap();
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut steps = frames(text_events("resp_stream", &["first", " second"]));
    steps.insert(5, Step::Gate(gate.clone()));
    fake.push_stream(steps);

    let payload: LambdaRequest = serde_json::from_str(include_str!("fixtures/apigw_rest_post_stream.json")).unwrap();
    let adapter = lambda_http::StreamAdapter::from(lambent_functions::service(
        lambent::http::Function::AgentStream.router(state.clone()),
        &state,
    ));
    let response = adapter.oneshot(LambdaEvent::new(payload, Context::default())).await.expect("response");
    assert_eq!(response.metadata_prelude.status_code, 200);
    assert_eq!(response.metadata_prelude.headers["content-type"], "text/event-stream");
    let mut body = response.stream;
    let mut seen = String::new();
    // The upstream is held at its gate: whatever arrives now was streamed, not buffered.
    while !seen.contains("text_delta") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("a frame arrives while the upstream is still open")
            .expect("the stream is not over")
            .expect("a chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"delta\":\"first\""), "{seen}");
    assert!(!seen.contains("event: done"), "{seen}");
    gate.notify_one();
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(seen.contains("event: done") && seen.contains("\"status\":\"completed\""), "{seen}");
}

/// The `agent-stream` function as Lambda runs it: its own process, the real `lambda_runtime` loop, a Runtime
/// API (a stub) on loopback. Invocations reuse one pooled connection to that API, which by then delays its
/// ACKs (as the real one, on the same kernel, does); without `TCP_NODELAY` on the function's socket, the
/// first frame after the head of the streamed `/response` waits for that ACK (~40 ms), every invocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_streaming_function_posts_its_frames_without_a_nagle_stall() {
    use crate::runtime::stalls::{ATTEMPTS, FIRST_EVENT_BUDGET, shown};
    use lambent_testkit::openai::{FakeOpenAi, frames, text_events};
    use lambent_testkit::runtime_api::{RuntimeApi, Seen};
    use std::time::Duration;

    let fake = FakeOpenAi::start().await;
    let (state, dir, user) = state_with_fixture_user_and(&fake.env()).await;
    let default = lambent::domain::AgentFields { name: "a".into(), is_default: true, ..Default::default() };
    state.store.create_agent(Some(user), default).await.unwrap();
    let mut api = RuntimeApi::start().await;
    let mut function = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambent-test-stream-function"));
    function
        .env_clear()
        .env("DATABASE_URL", format!("file:{}", dir.path().join("lambent.db").display()))
        .envs(fake.env())
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "agent-stream")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[1]test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/agent-stream")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let _function = function.spawn().expect("start the function");

    let fixture: Value = serde_json::from_str(include_str!("fixtures/apigw_rest_post_stream.json")).unwrap();
    let mut invoke = async |name: String| {
        fake.push_stream(frames(text_events(&format!("resp_{name}"), &["Hello", " again"])));
        let mut event = fixture.clone();
        event["requestContext"]["requestId"] = json!(name);
        api.invoke(&name, event.to_string());
        let answer = match api.next_seen(Duration::from_secs(30)).await {
            Seen::Answer(answer) => answer,
            Seen::Failed(why) => panic!("invocation {name}: {why}"),
        };
        assert_eq!(answer.request_id, name);
        assert!(answer.streaming, "a streamed answer");
        assert!(answer.prelude.contains("\"statusCode\":200"), "{}", answer.prelude);
        let done = answer.body.contains("event: done") && answer.body.contains("\"status\":\"completed\"");
        assert!(done, "{}", answer.body);
        let first_event = answer.first_event_at.unwrap_or_else(|| panic!("no event: {}", answer.body));
        (answer.first_byte_at.map(|at| at - answer.head_at), first_event - answer.head_at)
    };
    // The cold start's first turn also opens the function's connection to the upstream: a one-off cost.
    invoke("cold".to_owned()).await;
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let (mut first_bytes, mut first_events) = (Vec::new(), Vec::new());
        for invocation in 0..6 {
            let (first_byte, first_event) = invoke(format!("warm_{attempt}_{invocation}")).await;
            first_bytes.push(first_byte.unwrap_or_default());
            first_events.push(first_event);
        }
        if first_events.iter().all(|d| *d <= FIRST_EVENT_BUDGET) {
            return;
        }
        seen.push(format!("first byte {}, first event {}", shown(&first_bytes), shown(&first_events)));
    }
    let seen = seen.join("; then ");
    panic!("after the head of /response, invocation by invocation: {seen} (budget {FIRST_EVENT_BUDGET:?})");
}
