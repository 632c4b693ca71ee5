//! `/api/usage/` (issue 27): the hourly aggregate the end of every turn adds to, against the usage stored with
//! each response, through the fake upstream; who sees whose usage; the query's bounds.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::TestApp;
use lambent::domain::{SessionId, TurnId};
use lambent::store::TurnEnding;
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
async fn stored(app: &TestApp, owner: Option<lambent::domain::UserId>) -> [i64; 4] {
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

    let (_, by_provider) = alice.get("/api/usage/?by=provider").await;
    let providers: Vec<(Value, [i64; 4])> =
        by_provider["rows"].as_array().unwrap().iter().map(|r| (r["provider"].clone(), tokens(r))).collect();
    assert_eq!(providers, [(json!("openai"), expected)], "both agents use the default provider: {by_provider}");
    assert!(by_provider["rows"][0].get("agent_id").is_none(), "{by_provider}");

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
    assert_eq!((turns(&bobs), bobs["owner"].as_i64()), (2, Some(bob_account.id.0)));
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

/// The time from now to the next period boundary, plus a second.
fn until(boundary: time::OffsetDateTime, now: time::OffsetDateTime) -> Duration {
    Duration::from_secs(u64::try_from((boundary - now).whole_seconds()).unwrap() + 1)
}

#[tokio::test]
async fn staff_set_budgets_on_users_and_no_one_else_does() {
    let app = TestApp::spawn().await;
    let root = app.as_user(Some(&app.account("root", true).await.token));
    let me = app.get("/api/auth/me/").await.1["id"].clone();
    let path = format!("/api/users/{me}/");
    let (status, user) = root.patch(&path, json!({"daily_token_budget": 1000, "monthly_token_budget": null})).await;
    assert_eq!(status, StatusCode::OK, "{user}");
    assert_eq!((user["daily_token_budget"].as_i64(), user["monthly_token_budget"].clone()), (Some(1000), Value::Null));
    assert_eq!(app.get("/api/auth/me/").await.1["daily_token_budget"], 1000, "everyone sees their own budget");
    let (_, user) = root.patch(&path, json!({"monthly_token_budget": 50000})).await;
    assert_eq!((user["daily_token_budget"].as_i64(), user["monthly_token_budget"].as_i64()), (Some(1000), Some(50000)));
    for (value, message) in [
        (json!(-1), "Ensure this value is greater than or equal to 0."),
        (json!("many"), "A valid integer is required."),
        (json!(1.5), "A valid integer is required."),
    ] {
        let answer = root.patch(&path, json!({"daily_token_budget": value})).await;
        assert_eq!(answer, (StatusCode::BAD_REQUEST, json!({"daily_token_budget": [message]})), "{value}");
    }
    assert_eq!(app.patch(&path, json!({"daily_token_budget": null})).await.0, StatusCode::FORBIDDEN);
    let created = root
        .create("/api/users/", json!({"username": "carol", "password": "a-long-passphrase", "daily_token_budget": 5}))
        .await;
    assert_eq!(
        (created["daily_token_budget"].as_i64(), created["monthly_token_budget"].clone()),
        (Some(5), Value::Null)
    );
}

#[tokio::test]
async fn a_budget_refuses_exactly_at_its_limit_and_resets_at_the_period_boundary() {
    let fake = FakeOpenAi::start().await;
    let clock = Arc::new(crate::helpers::ShiftedClock::default());
    let (state, dir) = crate::helpers::fresh_state_on(&fake.env(), clock.clone()).await;
    let app = TestApp::serve(state, dir).await;
    let root = app.as_user(Some(&app.account("root", true).await.token));
    let me = app.get("/api/auth/me/").await.1["id"].clone();
    let agent = app.create("/api/agents/", json!({"name": "A"})).await;
    let set = |budgets: Value| {
        let root = root.clone();
        let path = format!("/api/users/{me}/");
        async move { assert_eq!(root.patch(&path, budgets).await.0, StatusCode::OK) }
    };
    let refused = || async {
        let seen = fake.requests().len();
        let messages = app.count("agent_messages").await;
        let streamed = app.stream("/api/agent/stream/", json!({"message": "more?", "agent_id": agent["id"]})).await;
        assert_eq!(streamed.status, StatusCode::TOO_MANY_REQUESTS, "{}", streamed.raw);
        assert_eq!(
            (fake.requests().len(), app.count("agent_messages").await),
            (seen, messages),
            "nothing sent or stored"
        );
        streamed.body()
    };

    // Each turn spends 12 + 9 = 21 tokens. A budget of 22 admits a second turn (21 < 22); 42 is then spent.
    set(json!({"daily_token_budget": 22})).await;
    fake.push_stream(frames(text_events("resp_1", &["One."])));
    turn(&app, &agent, "completed").await;
    fake.push_stream(frames(text_events("resp_2", &["Two."])));
    turn(&app, &agent, "completed").await;
    set(json!({"daily_token_budget": 42})).await;
    let now = lambent::clock::Clock::now(&*clock);
    let midnight = now.date().next_day().unwrap().midnight().assume_utc();
    let body = refused().await;
    assert_eq!(
        body,
        json!({"detail": "Your daily token budget is spent.", "code": "budget_exceeded",
               "resets_at": lambent::clock::format_timestamp(midnight)})
    );
    set(json!({"daily_token_budget": 43})).await;
    fake.push_stream(frames(text_events("resp_3", &["Three."])));
    turn(&app, &agent, "completed").await;

    // A turn running when the budget runs out finishes.
    set(json!({"daily_token_budget": 0})).await;
    let _ = refused().await;
    set(json!({"daily_token_budget": 64})).await;
    let gate = Arc::new(Notify::new());
    let mut steps = frames(text_events("resp_4", &["Four."]));
    steps.insert(3, Step::Gate(gate.clone()));
    fake.push_stream(steps);
    let running = tokio::spawn({
        let app = app.clone();
        let body = json!({"message": "long", "agent_id": agent["id"]});
        async move { app.stream("/api/agent/stream/", body).await }
    });
    while fake.requests().len() < 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    set(json!({"daily_token_budget": 0})).await;
    gate.notify_one();
    assert_eq!(running.await.unwrap().done()["status"], "completed");

    // The next UTC day starts afresh; the month is the month's.
    clock.advance(until(midnight, lambent::clock::Clock::now(&*clock)));
    set(json!({"daily_token_budget": 21})).await;
    fake.push_stream(frames(text_events("resp_5", &["Five."])));
    turn(&app, &agent, "completed").await;
    let _ = refused().await;

    let now = lambent::clock::Clock::now(&*clock);
    let month_spent = 21 * 5;
    let first_of_next = {
        let (year, month) = if now.month() == time::Month::December {
            (now.year() + 1, time::Month::January)
        } else {
            (now.year(), now.month().next())
        };
        time::Date::from_calendar_date(year, month, 1).unwrap().midnight().assume_utc()
    };
    // Spent this month: 105 tokens if the day did not start a new month, else the one turn of today.
    let this_month = if now.day() == 1 { 21 } else { month_spent };
    set(json!({"daily_token_budget": null, "monthly_token_budget": this_month})).await;
    let body = refused().await;
    assert_eq!(body["resets_at"], lambent::clock::format_timestamp(first_of_next), "{body}");
    set(json!({"monthly_token_budget": this_month + 1})).await;
    fake.push_stream(frames(text_events("resp_6", &["Six."])));
    turn(&app, &agent, "completed").await;
    let _ = refused().await;
    clock.advance(until(first_of_next, lambent::clock::Clock::now(&*clock)));
    fake.push_stream(frames(text_events("resp_7", &["Seven."])));
    turn(&app, &agent, "completed").await;
}

#[tokio::test]
async fn a_turns_end_recorded_twice_counts_its_usage_once() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await;
    let agent = app.create("/api/agents/", json!({"name": "A"})).await;
    fake.push_stream(frames(text_events("resp_once", &["Once."])));
    let session = SessionId(turn(&app, &agent, "completed").await.as_i64().unwrap());
    let turn_id = TurnId::from(app.rows("SELECT id FROM agent_turns").await[0]["id"].as_str().unwrap());
    // What a retry of the end's batch does when the first run's answer was lost.
    let mut again = lambent::domain::TurnUsage::default();
    again.add(&lambent_testkit::openai::usage(12, 9));
    let ending = TurnEnding { session, turn_id: &turn_id, frames: &[], reply: None, usage: &again, failed: false };
    app.store().end_turn(&ending).await.unwrap();
    let totals = app.get("/api/usage/").await.1["totals"].clone();
    assert_eq!((totals["turns"].as_i64(), totals["total_tokens"].as_i64()), (Some(1), Some(21)), "{totals}");
}

#[tokio::test]
async fn usage_by_provider_splits_two_named_providers_each_with_what_its_responses_reported() {
    let (first, second) = (FakeOpenAi::start().await, FakeOpenAi::start().await);
    let app = TestApp::spawn_with(&[
        ("OPENAI_API_KEY", "sk-first".to_owned()),
        ("OPENAI_BASE_URL", first.base_url.clone()),
        ("LAMBENT_PROVIDER_LOCAL_BASE_URL", second.base_url.clone()),
        ("LAMBENT_PROVIDER_LOCAL_API_KEY", "sk-second".to_owned()),
        ("LAMBENT_PROVIDER_LOCAL_DEFAULT_MODEL", "llama-3.3-70b".to_owned()),
    ])
    .await;
    let on_first = app.create("/api/agents/", json!({"name": "First", "model": "gpt-4.1"})).await;
    let on_second = app.create("/api/agents/", json!({"name": "Second", "provider": "local"})).await;
    first.push_stream(frames(text_events("resp_f1", &["One."])));
    turn(&app, &on_first, "completed").await;
    second.push_stream(detailed("resp_s1"));
    turn(&app, &on_second, "completed").await;
    second.push_stream(ended_early("resp_s2", "failed", lambent_testkit::openai::usage(7, 0)));
    turn(&app, &on_second, "failed").await;

    let (status, report) = app.get("/api/usage/?by=provider").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let rows: Vec<(Value, [i64; 4], i64, i64)> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["provider"].clone(), tokens(r), r["turns"].as_i64().unwrap(), r["failed_turns"].as_i64().unwrap()))
        .collect();
    // The fake's plain answer reports 12 input and 9 output tokens; the detailed one 100/50 with 64 cached
    // and 30 reasoning; the failed one 7 input.
    assert_eq!(
        rows,
        [(json!("openai"), [12, 9, 0, 0], 1, 0), (json!("local"), [107, 50, 64, 30], 2, 1)],
        "one row per provider, in the order their agents were made: {report}"
    );
    assert_eq!(tokens(&report["totals"]), stored(&app, None).await, "{report}");
    assert!(report["rows"][0].get("agent_id").is_none() && report["rows"][0].get("model").is_none(), "{report}");
}
