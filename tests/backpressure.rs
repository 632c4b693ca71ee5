//! A database that pushes back (issue 24): sqld answers 429 "Timed out while opening database connection"
//! when it cannot take a request, and nothing of it ran. A proxy in front of a real sqld answers so in its
//! place ([`Proxy::refuse`]); the store retries, and a turn either completes with its answer stored once or is
//! refused (503) before anything is stored. Outcomes and counts are asserted, never times.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::remote::{remote_app, remote_state};
use lambent::telemetry::Metrics;
use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};
use lambent_testkit::{Proxy, ProxyOptions, Sqld, SqldOptions};

/// An app over sqld behind a proxy that can refuse requests, with a default agent; its metric lines kept.
async fn pushed_back_app() -> (TestApp, Proxy, FakeOpenAi, Metrics, Sqld) {
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    let fake = FakeOpenAi::start().await;
    let metrics = Metrics::capture("test-stack");
    let state = remote_state(&proxy.url, &sqld.token(), &fake).await.with_metrics(metrics.clone());
    let app = TestApp::serve(state, tempfile::tempdir().unwrap()).await;
    app.create("/api/agents/", json!({"name": "Steady", "is_default": true})).await;
    (app, proxy, fake, metrics, sqld)
}

/// The sum of a per-request metric over the lines written so far.
fn total(metrics: &Metrics, name: &str) -> u64 {
    metrics.lines().iter().filter_map(|line| line.get(name)?.as_u64()).sum()
}

/// How many rows of `agent_messages` hold each content of `role`.
async fn stored(app: &TestApp, role: &str) -> HashMap<String, i64> {
    let rows = app.rows(&format!("SELECT content FROM agent_messages WHERE role = '{role}'")).await;
    let mut counts = HashMap::new();
    for row in rows {
        *counts.entry(row["content"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_through_a_database_refusing_a_fifth_of_requests_complete_or_are_refused_before_anything_is_stored() {
    let (app, proxy, fake, metrics, _sqld) = pushed_back_app().await;
    const TURNS: usize = 60;
    for i in 0..TURNS {
        fake.push_stream(frames(text_events(&format!("resp_{i}"), &["answer ", &i.to_string()])));
    }

    proxy.refuse(0.2);
    let outcomes = futures::future::join_all((0..TURNS).map(|i| {
        let app = &app;
        async move { (i, app.stream("/api/agent/stream/", json!({"message": format!("question {i}")})).await) }
    }))
    .await;
    proxy.refuse(0.0);
    assert!(proxy.refused() > 50, "the proxy refused {} requests", proxy.refused());

    let (users, answers) = (stored(&app, "user").await, stored(&app, "assistant").await);
    let mut completed = 0;
    for (i, turn) in &outcomes {
        let question = format!("question {i}");
        match turn.status {
            StatusCode::OK => {
                let done = turn.done();
                assert_eq!(done["status"], "completed", "turn {i}: {:?}", turn.names());
                assert!(turn.events("error").is_empty(), "turn {i}: {}", turn.raw);
                assert_eq!(users.get(&question), Some(&1), "turn {i}'s message, stored once");
                assert_eq!(answers.get(&turn.text()), Some(&1), "turn {i}'s answer {:?}, stored once", turn.text());
                completed += 1;
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(turn.header("retry-after").is_some(), "turn {i}: {:?}", turn.headers);
                assert_eq!(users.get(&question), None, "refused turn {i} stored nothing");
            }
            other => panic!("turn {i}: {other}: {}", turn.raw),
        }
    }
    let refused: Vec<&str> =
        outcomes.iter().filter(|(_, t)| t.status != StatusCode::OK).map(|(_, t)| t.raw.as_str()).collect();
    assert!(completed * 100 >= TURNS * 97, "{completed} of {TURNS} turns completed; refused: {refused:?}");
    assert_eq!(answers.values().sum::<i64>(), completed as i64, "no answer but the completed turns'");
    let running: Vec<Value> = app.rows("SELECT id FROM agent_sessions WHERE turn_id IS NOT NULL").await;
    assert!(running.is_empty(), "every session was released: {running:?}");
    // Every refusal was either tried again or given up on, and each is counted in its request's metric line
    // (with sqld's own refusals: a batch that met a busy database at its BEGIN is tried again too). A request's
    // line is written when its last task ends: the turn's recorder may still be finishing.
    let counted = || total(&metrics, "DbRetries") + total(&metrics, "DbGiveUps");
    for _ in 0..100 {
        if counted() >= proxy.refused() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(counted() >= proxy.refused(), "{} counted, {} refused", counted(), proxy.refused());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_whose_end_meets_a_storm_of_refusals_lasting_seconds_still_records_its_answer() {
    let (app, proxy, fake, metrics, _sqld) = pushed_back_app().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let events = text_events("resp_storm", &["still ", "here"]);
    let mut steps = frames(events[..2].to_vec());
    steps.push(Step::Gate(gate.clone()));
    steps.extend(frames(events[2..].to_vec()));
    fake.push_stream(steps);

    let turn = tokio::spawn({
        let app = app.clone();
        async move { app.stream("/api/agent/stream/", json!({"message": "through the storm"})).await }
    });
    // The turn has started (its message is stored) and waits for the model: now nothing gets through, and
    // the model's answer arrives into that.
    while stored(&app, "user").await.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.storm(true);
    gate.notify_one();
    let refused_at_start = proxy.refused();
    tokio::time::sleep(Duration::from_secs(4)).await;
    proxy.storm(false);
    assert!(proxy.refused() > refused_at_start + 3, "the storm refused the turn's writes");

    let turn = turn.await.unwrap();
    assert_eq!(turn.status, StatusCode::OK);
    assert_eq!(turn.done()["status"], "completed", "{}", turn.raw);
    assert_eq!(turn.text(), "still here");
    assert_eq!(stored(&app, "assistant").await.get("still here"), Some(&1));
    let frames = app.rows("SELECT event FROM agent_turn_events ORDER BY seq").await;
    assert_eq!(frames.last().map(|f| f["event"].clone()), Some(json!("done")), "{frames:?}");
    assert_eq!(total(&metrics, "DbGiveUps"), 0);
    assert!(total(&metrics, "DbRetries") >= proxy.refused() - refused_at_start, "the storm's retries are counted");
}

#[tokio::test]
async fn lambent_migrate_passes_through_refusals() {
    let sqld = Sqld::start().await;
    let proxy = Proxy::start(&sqld.url).await;
    proxy.refuse(0.3);
    let migrate = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambent-under-test"))
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", &proxy.url)
        .env("DATABASE_AUTH_TOKEN", sqld.token())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(migrate.status.success(), "{migrate:?}");
    assert!(proxy.refused() > 0, "the proxy refused none of {} requests", proxy.count());
    proxy.refuse(0.0);
    let store = lambent::Store::open_url(&proxy.url, Some(&sqld.token())).await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), Vec::<&str>::new(), "every migration was applied, once");
}

/// Issue 24's load run, smaller (the full one, 4 × 64 clients, is `scripts/bench --only remote-load`): four
/// instances, sixteen clients each, at 10 ms to a sqld that checkpoints every 5 s (PLATFORM.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_of_sixteen_clients_at_ten_ms_end_every_turn_without_storage_error_or_500() {
    let sqld =
        Sqld::start_with(SqldOptions { checkpoint_interval: Some(Duration::from_secs(5)), ..SqldOptions::from_env() })
            .await
            .unwrap();
    let proxy = Proxy::start_with(&sqld.url, ProxyOptions { rtt: Duration::from_millis(10) }).await;
    let fake = FakeOpenAi::start().await;
    let first = remote_app(&proxy.url, &sqld.token(), &fake).await;
    first.create("/api/agents/", json!({"name": "Loaded", "is_default": true})).await;
    let mut instances = vec![first.clone()];
    for _ in 1..4 {
        instances.push(first.twin().await);
    }
    const CLIENTS: usize = 16;
    for i in 0..4 * CLIENTS {
        fake.push_stream(frames(text_events(&format!("resp_load_{i}"), &["loaded ", &i.to_string()])));
    }

    let turns = futures::future::join_all((0..4 * CLIENTS).map(|i| {
        let app = &instances[i % 4];
        async move { app.stream("/api/agent/stream/", json!({"message": format!("load {i}")})).await }
    }))
    .await;

    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for turn in &turns {
        let outcome = match turn.status {
            StatusCode::OK => {
                let codes: Vec<String> = turn.events("error").iter().map(|e| e["code"].to_string()).collect();
                format!("{} {}", turn.done()["status"], codes.join(","))
            }
            status => status.to_string(),
        };
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert_eq!(outcomes.get("\"completed\" "), Some(&(4 * CLIENTS)), "{outcomes:?}");
    assert_eq!(stored(&first, "assistant").await.values().sum::<i64>(), 4 * CLIENTS as i64);
}
