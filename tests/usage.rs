//! `/api/usage/` (issue 27): the hourly aggregate the end of every turn adds to, against the usage stored with
//! each response, through the fake upstream; who sees whose usage; the query's bounds.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::TestApp;
use lambent_testkit::openai::{FakeOpenAi, Step, failing_events, frames, response_object, text_events};

/// A response that ends `response.incomplete` or `response.failed`, having spent `usage`.
fn ended_early(id: &str, kind: &str, usage: Value) -> Vec<Step> {
    let mut response = response_object(id, kind, json!([]), usage);
    if kind == "incomplete" {
        response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    } else {
        response["error"] = json!({"code": "server_error", "message": "the model broke"});
    }
    frames(failing_events(id, &["Part"], json!({"type": format!("response.{kind}"), "response": response})))
}

/// A completed answer that reports cached and reasoning tokens too.
fn detailed(id: &str) -> Vec<Step> {
    let mut events = text_events(id, &["Thought through."]);
    let last = events.last_mut().unwrap();
    last["response"]["usage"] = json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 64},
        "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 150});
    frames(events)
}

/// Sums the usage stored with the assistant messages of `owner`'s sessions (all of them: `None`).
async fn stored(app: &TestApp, owner: Option<i64>) -> [i64; 4] {
    let filter = owner.map_or_else(String::new, |id| format!("AND s.owner_id = {id}"));
    let rows = app
        .rows(&format!(
            "SELECT coalesce(sum(json_extract(m.usage, '$.input_tokens')), 0) AS i,
                    coalesce(sum(json_extract(m.usage, '$.output_tokens')), 0) AS o,
                    coalesce(sum(json_extract(m.usage, '$.input_tokens_details.cached_tokens')), 0) AS c,
                    coalesce(sum(json_extract(m.usage, '$.output_tokens_details.reasoning_tokens')), 0) AS r
             FROM agent_messages m JOIN agent_sessions s ON s.id = m.session_id WHERE m.role = 'assistant' {filter}"
        ))
        .await;
    ["i", "o", "c", "r"].map(|k| rows[0][k].as_i64().unwrap())
}

fn tokens(row: &Value) -> [i64; 4] {
    ["input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens"].map(|k| row[k].as_i64().unwrap())
}

/// Streams one message to `agent` and checks the turn ended with `status`.
async fn turn(app: &TestApp, agent: &Value, status: &str) -> Value {
    let streamed = app.stream("/api/agent/stream/", json!({"message": "hello", "agent_id": agent["id"]})).await;
    assert_eq!(streamed.done()["status"], status, "{}", streamed.raw);
    streamed.done()["session_id"].clone()
}

/// A turn cancelled while its upstream holds the rest of its answer back: it reported no usage.
async fn cancelled_turn(app: &TestApp, fake: &FakeOpenAi, agent: &Value) {
    let session = app.create("/api/sessions/", json!({"agent": agent["id"]})).await;
    let gate = Arc::new(Notify::new());
    let mut steps = frames(text_events("resp_cancelled", &["Never", " finished"]));
    steps.insert(5, Step::Gate(gate));
    fake.push_stream(steps);
    let streaming = app.clone();
    let body = json!({"message": "stop me", "session_id": session["id"]});
    let running = tokio::spawn(async move { streaming.stream("/api/agent/stream/", body).await });
    let cancel = format!("/api/sessions/{}/cancel/", session["id"]);
    let mut answered = (StatusCode::CONFLICT, Value::Null);
    for _ in 0..200 {
        answered = app.post(&cancel, json!({})).await;
        if answered.0 != StatusCode::CONFLICT {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(answered.0, StatusCode::ACCEPTED, "{answered:?}");
    let streamed = tokio::time::timeout(Duration::from_secs(20), running).await.unwrap().unwrap();
    assert!(streamed.raw.contains("\"code\":\"cancelled\""), "{}", streamed.raw);
}

#[tokio::test]
async fn usage_totals_equal_the_stored_usage_of_every_turn_however_it_ended() {
    let fake = FakeOpenAi::start().await;
    let alice =
        TestApp::spawn_with(&[fake.env(), vec![("LAMBENT_PRICES", "gpt-4o-mini=1/2".to_owned())]].concat()).await;
    let a = alice.create("/api/agents/", json!({"name": "A", "model": "gpt-4.1"})).await;
    let b = alice.create("/api/agents/", json!({"name": "B", "model": "gpt-4o-mini"})).await;

    fake.push_stream(frames(text_events("resp_1", &["Hello."])));
    turn(&alice, &a, "completed").await;
    fake.push_stream(detailed("resp_2"));
    turn(&alice, &b, "completed").await;
    fake.push_stream(ended_early("resp_3", "incomplete", lambent_testkit::openai::usage(30, 7)));
    turn(&alice, &a, "incomplete").await;
    fake.push_stream(ended_early("resp_4", "failed", lambent_testkit::openai::usage(5, 0)));
    turn(&alice, &b, "failed").await;
    cancelled_turn(&alice, &fake, &a).await;

    let (status, report) = alice.get("/api/usage/").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let totals = &report["totals"];
    let expected = stored(&alice, None).await;
    assert_eq!(expected, [12 + 100 + 30 + 5, 9 + 50 + 7, 64, 30], "the provider's reports, as stored");
    assert_eq!(tokens(totals), expected, "{report}");
    assert_eq!(totals["total_tokens"], expected[0] + expected[1]);
    // Five turns; the incomplete and the failed one failed, a cancel is not a failure.
    assert_eq!((totals["turns"].as_i64(), totals["failed_turns"].as_i64()), (Some(5), Some(2)), "{report}");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one day: {report}");
    assert_eq!(rows[0]["period"], alice.state.clock().now().date().to_string());
    // Only gpt-4.1 is unpriced: the day mixes both, so it has no cost.
    assert!(totals.get("cost").is_none(), "{report}");

    let (_, by_agent) = alice.get("/api/usage/?by=agent").await;
    let agents: Vec<(Value, [i64; 4], i64)> = by_agent["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agent_id"].clone(), tokens(r), r["turns"].as_i64().unwrap()))
        .collect();
    assert_eq!(agents, [(a["id"].clone(), [42, 16, 0, 0], 3), (b["id"].clone(), [105, 50, 64, 30], 2)], "{by_agent}");

    let (_, by_model) = alice.get("/api/usage/?by=model&group_by=hour").await;
    let priced = by_model["rows"].as_array().unwrap().iter().find(|r| r["model"] == "gpt-4o-mini").unwrap().clone();
    // 105 input and 50 output tokens at 1 and 2 dollars per million.
    assert!((priced["cost"].as_f64().unwrap() - 205.0 / 1e6).abs() < 1e-12, "{by_model}");
    assert!(priced["period"].as_str().unwrap().ends_with(":00:00Z"), "{priced}");
    let unpriced = by_model["rows"].as_array().unwrap().iter().find(|r| r["model"] == "gpt-4.1").unwrap().clone();
    assert!(unpriced.get("cost").is_none(), "{unpriced}");
}

#[tokio::test]
async fn each_user_sees_their_own_usage_and_staff_see_anyones() {
    let fake = FakeOpenAi::start().await;
    let alice = TestApp::spawn_with(&fake.env()).await;
    let bob_account = alice.account("bob", false).await;
    let bob = alice.as_user(Some(&bob_account.token));
    let root = alice.as_user(Some(&alice.account("root", true).await.token));
    let a = alice.create("/api/agents/", json!({"name": "A"})).await;
    let b = bob.create("/api/agents/", json!({"name": "B"})).await;
    fake.push_stream(frames(text_events("resp_a", &["Hi."])));
    turn(&alice, &a, "completed").await;
    fake.push_stream(frames(text_events("resp_b1", &["Hi."])));
    turn(&bob, &b, "completed").await;
    fake.push_stream(frames(text_events("resp_b2", &["Hi."])));
    turn(&bob, &b, "completed").await;

    let turns = |report: &Value| report["totals"]["turns"].as_i64().unwrap();
    assert_eq!(turns(&alice.get("/api/usage/").await.1), 1);
    assert_eq!(turns(&bob.get("/api/usage/").await.1), 2);
    assert_eq!(bob.get("/api/usage/?by=agent").await.1["rows"][0]["agent_id"], b["id"], "no one else's agents");
    let refused = (StatusCode::FORBIDDEN, json!({"detail": "You do not have permission to perform this action."}));
    assert_eq!(alice.get(&format!("/api/usage/?owner={}", bob_account.id)).await, refused);
    let everyone = root.get("/api/usage/").await.1;
    assert_eq!((turns(&everyone), everyone["owner"].clone()), (3, Value::Null));
    let bobs = root.get(&format!("/api/usage/?owner={}", bob_account.id)).await.1;
    assert_eq!((turns(&bobs), bobs["owner"].as_i64()), (2, Some(bob_account.id)));
    assert_eq!(tokens(&bobs["totals"]), stored(&alice, Some(bob_account.id)).await);
}

#[tokio::test]
async fn a_usage_query_is_validated_and_its_range_bounded() {
    let app = TestApp::spawn().await;
    let cases = [
        ("?from=2026-13-01", json!({"from": ["Date has wrong format. Use YYYY-MM-DD."]})),
        ("?from=2026-12-02&to=2026-12-01", json!({"from": ["Must not be after `to`."]})),
        ("?from=2025-01-01&to=2026-01-02", json!({"from": ["A range grouped by day covers at most 366 days."]})),
        (
            "?from=2026-01-01&to=2026-02-01&group_by=hour",
            json!({"from": ["A range grouped by hour covers at most 31 days."]}),
        ),
        ("?group_by=week", json!({"group_by": ["\"week\" is not a valid choice."]})),
        ("?by=user", json!({"by": ["\"user\" is not a valid choice."]})),
    ];
    for (query, body) in cases {
        assert_eq!(app.get(&format!("/api/usage/{query}")).await, (StatusCode::BAD_REQUEST, body), "{query}");
    }
    let (status, empty) = app.get("/api/usage/?from=2025-01-01&to=2026-01-01").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (empty["from"].as_str(), empty["to"].as_str(), empty["rows"].clone()),
        (Some("2025-01-01"), Some("2026-01-01"), json!([]))
    );
    assert_eq!(empty["totals"]["turns"], 0);
    assert_eq!(app.as_user(None).get("/api/usage/").await.0, StatusCode::UNAUTHORIZED);
}
