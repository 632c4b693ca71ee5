//! Rate limits per user (issue 27): requests per minute counted in the database in the request's own
//! round trip, turns at once counted from the sessions' leases; both exact when two servers race on one
//! database (an embedded file, and sqld), with the draft's `RateLimit-Policy` / `RateLimit` fields.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::TestApp;
use lambent_testkit::Sqld;
use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};

/// One answer's status and its rate-limit headers.
#[derive(Debug)]
struct Limited {
    status: StatusCode,
    policy: Option<String>,
    state: Option<String>,
    retry_after: Option<u64>,
    body: Value,
}

impl Limited {
    /// The answer's status and rate-limit headers; its body is read by the caller.
    fn head(response: &reqwest::Response) -> Self {
        Limited {
            status: response.status(),
            policy: header(response, "ratelimit-policy"),
            state: header(response, "ratelimit"),
            retry_after: header(response, "retry-after").and_then(|v| v.parse().ok()),
            body: Value::Null,
        }
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Sends one request as `app`'s user and reads its status, rate-limit headers and body.
async fn send(app: &TestApp, method: reqwest::Method, path: &str, body: Option<Value>) -> Limited {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(token) = &app.token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let limited = Limited::head(&response);
    let is_json = header(&response, "content-type").is_some_and(|c| c.starts_with("application/json"));
    let body = if is_json { response.json().await.unwrap_or(Value::Null) } else { Value::Null };
    Limited { body, ..limited }
}

/// `r` and `t` of a `RateLimit` field of one policy.
fn remaining_and_reset(field: &str) -> (i64, u64) {
    let param = |name: &str| {
        field.split(';').find_map(|p| p.trim().strip_prefix(&format!("{name}="))).unwrap_or_else(|| panic!("{field}"))
    };
    (param("r").parse().unwrap(), param("t").parse().unwrap())
}

/// Waits, if needed, until the current UTC minute has at least 25 seconds left: the burst must fall in one
/// window.
async fn early_in_a_minute() {
    let second = time::OffsetDateTime::now_utc().second();
    if second > 35 {
        tokio::time::sleep(Duration::from_secs(u64::from(61 - second))).await;
    }
}

/// Sets limits on `user` as a staff user of `app`.
async fn set_limits(app: &TestApp, user: &Value, limits: Value) {
    let root = app.as_user(Some(&app.account("root", true).await.token));
    let (status, body) = root.patch(&format!("/api/users/{user}/"), limits).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// 200 concurrent `GET /api/agents/` of one user, half to each of two servers over one database, with a
/// limit of 50 a minute: exactly 50 are admitted, each told a different number left (49 down to 0), and
/// every refusal says when the minute ends.
async fn two_servers_admit_exactly_the_limit(one: TestApp) {
    let me = one.get("/api/auth/me/").await.1["id"].clone();
    set_limits(&one, &me, json!({"requests_per_minute": 50})).await;
    let two = one.twin().await;
    early_in_a_minute().await;
    // Nothing of this user counted yet: the request above came before the limit.
    let before = time::OffsetDateTime::now_utc();
    let used = 0_i64;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let app = if i % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move { send(&app, reqwest::Method::GET, "/api/agents/", None).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let after = time::OffsetDateTime::now_utc();
    assert_eq!(before.minute(), after.minute(), "the burst fell in one minute");

    let admitted: Vec<&Limited> = answers.iter().filter(|a| a.status == StatusCode::OK).collect();
    let refused: Vec<&Limited> = answers.iter().filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS).collect();
    // sqld on a loaded machine may answer that it could not open a connection in time: that request ran
    // nothing (503 with Retry-After) and was not counted.
    let unavailable = answers.iter().filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE).count();
    assert_eq!(admitted.len() as i64, 50 - used, "{answers:?}");
    assert_eq!(refused.len() + unavailable, 150 + used as usize, "{answers:?}");
    let left: BTreeSet<i64> = admitted.iter().map(|a| remaining_and_reset(a.state.as_deref().unwrap()).0).collect();
    assert_eq!(left, (0..50 - used).collect(), "each admitted request was counted once, in order");
    let (earliest, latest) = (60 - u64::from(after.second()), 60 - u64::from(before.second()));
    for answer in admitted.iter().chain(&refused) {
        assert_eq!(answer.policy.as_deref(), Some("\"default\";q=50;w=60"), "{answer:?}");
    }
    for answer in refused {
        let (remaining, reset) = remaining_and_reset(answer.state.as_deref().unwrap());
        assert_eq!(remaining, 0);
        assert_eq!(answer.retry_after, Some(reset), "Retry-After is the minute's end: {answer:?}");
        assert!((earliest..=latest).contains(&reset), "{reset} not in {earliest}..={latest}");
        assert_eq!(
            answer.body,
            json!({"detail": format!("Request was throttled. Expected available in {reset} second{}.",
                if reset == 1 { "" } else { "s" }), "code": "rate_limited"})
        );
    }
    let stored = one.rows(&format!("SELECT requests, quota FROM request_windows WHERE user_id = {me}")).await;
    assert_eq!((stored[0]["requests"].as_i64(), stored[0]["quota"].as_i64()), (Some(50), Some(50)), "never past");
}

#[tokio::test]
async fn two_servers_on_one_file_admit_exactly_the_limit_of_200_concurrent_requests() {
    two_servers_admit_exactly_the_limit(TestApp::spawn().await).await;
}

#[tokio::test]
async fn two_servers_on_one_sqld_admit_exactly_the_limit_of_200_concurrent_requests() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    // Requests wait longer for a busy sqld than by default, so that most are answered by the limit itself.
    let retry = [("LAMBENT_DATABASE_RETRY_BUDGET", "30")];
    let app = crate::remote::remote_app_with(&sqld.url, &sqld.token(), &fake, &retry).await;
    two_servers_admit_exactly_the_limit(app).await;
}

#[tokio::test]
async fn the_instance_default_limits_everyone_and_a_new_minute_admits_again() {
    let clock = Arc::new(crate::helpers::ShiftedClock::default());
    let env = [("LAMBENT_REQUESTS_PER_MINUTE", "3".to_owned())];
    let (state, dir) = crate::helpers::fresh_state_on(&env, clock.clone()).await;
    let app = TestApp::serve(state, dir).await;
    let bob = app.as_user(Some(&app.account("bob", false).await.token));
    // Clear of a minute's end, so the three fall in one minute.
    early_in_a_minute().await;
    for left in [2, 1, 0] {
        let answer = send(&app, reqwest::Method::GET, "/api/sessions/", None).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(answer.policy.as_deref(), Some("\"default\";q=3;w=60"));
        assert_eq!(remaining_and_reset(answer.state.as_deref().unwrap()).0, left);
    }
    // Every authenticated request counts, reads with no database work of their own too.
    let refused = send(&app, reqwest::Method::GET, "/api/providers/", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    let refused = send(&app, reqwest::Method::POST, "/api/agents/", Some(json!({"name": "Late"}))).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
    assert_eq!(app.count("agent_profiles").await, 0, "a refused write wrote nothing");
    // Isolation: another user's window is their own.
    assert_eq!(send(&bob, reqwest::Method::GET, "/api/agents/", None).await.status, StatusCode::OK);
    // Unauthenticated requests are not counted (nor refused) by anyone's limit.
    let anonymous = send(&app.as_user(None), reqwest::Method::GET, "/api/health/", None).await;
    assert!(anonymous.status != StatusCode::TOO_MANY_REQUESTS && anonymous.state.is_none(), "{anonymous:?}");

    // Retry-After seconds later it is a new minute.
    clock.advance(Duration::from_secs(refused.retry_after.unwrap()));
    let answer = send(&app, reqwest::Method::GET, "/api/agents/", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(remaining_and_reset(answer.state.as_deref().unwrap()).0, 2);

    // A user staff exempt (0) is not limited, nor told of a limit.
    let me = app.get("/api/auth/me/").await.1["id"].clone();
    set_limits(&app, &me, json!({"requests_per_minute": 0})).await;
    for _ in 0..5 {
        let answer = send(&app, reqwest::Method::GET, "/api/agents/", None).await;
        assert_eq!((answer.status, answer.state), (StatusCode::OK, None));
    }
}

#[tokio::test]
async fn staff_set_rate_limits_on_users_and_no_one_else_does() {
    let app = TestApp::spawn().await;
    let root = app.as_user(Some(&app.account("root", true).await.token));
    let me = app.get("/api/auth/me/").await.1["id"].clone();
    let path = format!("/api/users/{me}/");
    let (status, user) = root.patch(&path, json!({"requests_per_minute": 120, "max_concurrent_turns": 2})).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!((user["requests_per_minute"].as_i64(), user["max_concurrent_turns"].as_i64()), (Some(120), Some(2)));
    let mine = app.get("/api/auth/me/").await.1;
    assert_eq!((mine["requests_per_minute"].as_i64(), mine["max_concurrent_turns"].as_i64()), (Some(120), Some(2)));
    for (field, value, message) in [
        ("requests_per_minute", json!(-1), "Ensure this value is greater than or equal to 0."),
        ("max_concurrent_turns", json!("two"), "A valid integer is required."),
    ] {
        let answer = root.patch(&path, json!({field: value})).await;
        assert_eq!(answer, (StatusCode::BAD_REQUEST, json!({field: [message]})), "{field}");
    }
    assert_eq!(app.patch(&path, json!({"requests_per_minute": null})).await.0, StatusCode::FORBIDDEN);
    let (_, user) = root.patch(&path, json!({"requests_per_minute": null})).await;
    assert_eq!((user["requests_per_minute"].clone(), user["max_concurrent_turns"].as_i64()), (Value::Null, Some(2)));
}

/// Starts a streamed turn as `app`'s user on a new session; answers its status and headers once they come
/// (the body, if it streams, is read by the task the answer is left in).
async fn start_turn(app: &TestApp, agent: &Value) -> (Limited, Option<tokio::task::JoinHandle<()>>) {
    let request = reqwest::Client::new()
        .post(app.url("/api/agent/stream/"))
        .bearer_auth(app.token.clone().unwrap())
        .json(&json!({"message": "hello", "agent_id": agent["id"]}));
    let response = request.send().await.expect("request");
    let limited = Limited::head(&response);
    if limited.status == StatusCode::OK {
        let reading = tokio::spawn(async move {
            let _ = response.text().await;
        });
        return (limited, Some(reading));
    }
    let body = response.json().await.unwrap_or(Value::Null);
    (Limited { body, ..limited }, None)
}

/// Ten turns of one user at once, from two servers, with a limit of 2: exactly 2 run; the rest are refused
/// before anything is stored; when they end, turns start again.
async fn two_servers_run_exactly_the_turn_limit(one: TestApp, fake: &FakeOpenAi) {
    let me = one.get("/api/auth/me/").await.1["id"].clone();
    set_limits(&one, &me, json!({"max_concurrent_turns": 2})).await;
    let agent = one.create("/api/agents/", json!({"name": "A"})).await;
    let two = one.twin().await;
    let gates: Vec<Arc<Notify>> = (0..10).map(|_| Arc::new(Notify::new())).collect();
    for (i, gate) in gates.iter().enumerate() {
        let mut steps = vec![Step::Gate(gate.clone())];
        steps.extend(frames(text_events(&format!("resp_{i}"), &["Hi."])));
        fake.push_stream(steps);
    }
    let messages = one.count("agent_messages").await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let app = if i % 2 == 0 { one.clone() } else { two.clone() };
            let agent = agent.clone();
            tokio::spawn(async move { start_turn(&app, &agent).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let running: Vec<_> = answers.iter().filter(|(a, _)| a.status == StatusCode::OK).collect();
    let refused: Vec<_> = answers.iter().filter(|(a, _)| a.status == StatusCode::TOO_MANY_REQUESTS).collect();
    assert_eq!((running.len(), refused.len()), (2, 8), "{answers:?}");
    for (answer, _) in &refused {
        assert_eq!(
            answer.body,
            json!({"detail": "You have 2 turns running, your limit; wait for one to end.", "code": "too_many_turns"})
        );
        assert_eq!(answer.policy.as_deref(), Some("\"turns\";q=2;qu=\"concurrent-requests\""));
        assert_eq!((answer.state.as_deref(), answer.retry_after), (Some("\"turns\";r=0;t=1"), Some(1)));
    }
    assert_eq!(one.count("agent_messages").await, messages + 2, "the refused turns stored nothing");
    for gate in &gates {
        gate.notify_one();
    }
    for (_, reading) in answers {
        if let Some(reading) = reading {
            tokio::time::timeout(Duration::from_secs(20), reading).await.unwrap().unwrap();
        }
    }
    let (after, reading) = start_turn(&one, &agent).await;
    assert_eq!(after.status, StatusCode::OK, "{after:?}");
    tokio::time::timeout(Duration::from_secs(20), reading.unwrap()).await.unwrap().unwrap();
}

#[tokio::test]
async fn two_servers_on_one_file_run_exactly_a_users_turn_limit() {
    let fake = FakeOpenAi::start().await;
    two_servers_run_exactly_the_turn_limit(TestApp::spawn_with(&fake.env()).await, &fake).await;
}

#[tokio::test]
async fn two_servers_on_one_sqld_run_exactly_a_users_turn_limit() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    let app = crate::remote::remote_app(&sqld.url, &sqld.token(), &fake).await;
    two_servers_run_exactly_the_turn_limit(app, &fake).await;
}
