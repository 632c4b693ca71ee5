//! Housekeeping (`Store::prune`, `lambent prune`, the scheduled `prune` function): recorded frames of old
//! turns, expired idempotency keys and expired login tokens go, in bounded batches, while turns run; messages
//! and everything live stay. Old data is made by running the real API on a clock set back, plus 100k frames
//! inserted by two `INSERT … SELECT`s over recursive CTEs.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use lambent::clock::{Clock, format_timestamp};
use lambent::domain::{SessionId, TurnId};
use lambent::store::{PrunePlan, Pruned};
use lambent::{AppState, Config, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::helpers::{Streamed, TestApp, config_in};
use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};
use lambent_testkit::{Proxy, Sqld};

const DAY: i64 = 24 * 3600;
/// Turns of the bulk history, and frames each: 100k frames.
const BULK_TURNS: u32 = 1000;
const FRAMES_PER_TURN: u32 = 100;
/// Streamed turns running while a prune runs.
const RUNNING: usize = 4;

/// The system clock shifted by a settable number of seconds: the app writes "days ago" when told to.
#[derive(Debug, Default)]
struct Shifted(AtomicI64);

impl Shifted {
    fn set(&self, seconds: i64) {
        self.0.store(seconds, Ordering::SeqCst);
    }
}

impl Clock for Shifted {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + time::Duration::seconds(self.0.load(Ordering::SeqCst))
    }
}

/// A clock that moves on a minute each time it is read.
#[derive(Debug)]
struct Stepping {
    start: OffsetDateTime,
    reads: AtomicI64,
}

impl Clock for Stepping {
    fn now(&self) -> OffsetDateTime {
        self.start + time::Duration::minutes(self.reads.fetch_add(1, Ordering::SeqCst))
    }
}

/// The app on a shifted clock with the fake upstream, over a fresh file or over `sqld`.
struct Rig {
    app: TestApp,
    fake: FakeOpenAi,
    clock: Arc<Shifted>,
}

impl Rig {
    async fn new(sqld: Option<&Sqld>) -> Self {
        let fake = FakeOpenAi::start().await;
        let clock = Arc::new(Shifted::default());
        let dir = tempfile::tempdir().unwrap();
        let mut env = fake.env();
        // The turns held at the upstream's gate wait for each other and for the prune: longer than the fake's
        // usual 2 s of silence on a loaded machine.
        env.retain(|(key, _)| *key != "OPENAI_READ_TIMEOUT");
        env.push(("OPENAI_READ_TIMEOUT", "60".to_owned()));
        if let Some(sqld) = sqld {
            env.push(("DATABASE_URL", sqld.url.clone()));
            env.push(("DATABASE_AUTH_TOKEN", sqld.token()));
        }
        let config = match sqld {
            Some(_) => Config::from_lookup(|key| env.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())).unwrap(),
            None => config_in(&dir, &env),
        };
        let store = Store::open(&config).await.unwrap().with_clock(clock.clone());
        store.migrate().await.unwrap();
        let app = TestApp::serve(AppState::new(config, store), dir).await;
        app.create("/api/agents/", json!({"name": "Keeper", "is_default": true})).await;
        Self { app, fake, clock }
    }

    /// A finished streamed turn (a new session unless one is given).
    async fn turn(&self, id: &str, session: Option<&Value>) -> Value {
        self.fake.push_stream(frames(text_events(id, &["kept ", "words"])));
        let body = match session {
            Some(session) => json!({"message": id, "session_id": session}),
            None => json!({"message": id}),
        };
        let done = self.app.stream("/api/agent/stream/", body).await.done();
        assert_eq!(done["status"], "completed", "{done}");
        done["session_id"].clone()
    }

    async fn number(&self, sql: &str) -> i64 {
        self.app.rows(sql).await[0]["n"].as_i64().unwrap_or_else(|| panic!("{sql}: no n"))
    }
}

/// `turns` turns of `session` that started (and finished) at `at`, `per_turn` frames each: one INSERT of the
/// turns and one of the frames, each a SELECT over a recursive CTE. Turn `bulk_0` never finished and holds
/// no lease: a crashed turn, as prunable as the rest.
async fn bulk_history(store: &Store, session: &Value, at: &str, turns: u32, per_turn: u32) {
    store
        .query_json(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {turns} - 1)
             INSERT INTO agent_turns (id, session_id, kind, created_at, finished_at)
             SELECT 'bulk_' || i, {session}, 'message', '{at}', CASE WHEN i > 0 THEN '{at}' END FROM n"
        ))
        .await
        .unwrap();
    let frames = turns * per_turn;
    store
        .query_json(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {frames} - 1)
             INSERT INTO agent_turn_events (turn_id, seq, event, data)
             SELECT 'bulk_' || (i / {per_turn}), i % {per_turn}, 'text_delta', '{{\"delta\":\"old\"}}' FROM n"
        ))
        .await
        .unwrap();
}

/// An old turn that is still running: it holds its session's lease for another hour, with `frames` frames.
async fn old_running_turn(store: &Store, session: &Value, at: &str, frames: u32) {
    let until = format_timestamp(OffsetDateTime::now_utc() + time::Duration::hours(1));
    for sql in [
        format!(
            "INSERT INTO agent_turns (id, session_id, kind, created_at) VALUES ('old_running', {session}, 'message', '{at}')"
        ),
        format!("UPDATE agent_sessions SET turn_id = 'old_running', turn_expires_at = '{until}' WHERE id = {session}"),
        format!(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {frames} - 1)
             INSERT INTO agent_turn_events (turn_id, seq, event, data)
             SELECT 'old_running', i, 'text_delta', '{{\"delta\":\"live\"}}' FROM n"
        ),
    ] {
        store.query_json(&sql).await.unwrap();
    }
}

/// The turn id a stream's frames carry (`<turn_id>:<seq>`).
fn turn_of(streamed: &Streamed) -> String {
    let id = streamed.frames[0].id.as_deref().unwrap_or_else(|| panic!("no frame id: {}", streamed.raw));
    id.rsplit_once(':').unwrap().0.to_owned()
}

fn plan(batch: u32) -> PrunePlan {
    PrunePlan { events_retention: Duration::from_secs(7 * DAY as u64), batch, stop_at: None }
}

/// Eight days ago the app ran two turns in one session and one session got a turn that still runs; the bulk
/// history adds 100k frames to the first. Then `RUNNING` streamed turns start now and are held by the
/// upstream after their first delta (their frames recorded), and `pruner` prunes while they are let go.
/// With a proxy, the prune runs on a store of its own through it, and the requests it sent are counted.
/// Answers what it pruned, and the requests.
async fn prune_while_turns_run(rig: &Rig, counted: Option<(&Proxy, &str)>) -> (Pruned, Option<u64>) {
    let app = &rig.app;
    rig.clock.set(-8 * DAY);
    let old = rig.turn("resp_old_1", None).await;
    rig.turn("resp_old_2", Some(&old)).await;
    let agent = app.get("/api/agents/").await.1["results"][0]["id"].clone();
    let held = app.create("/api/sessions/", json!({"agent": agent})).await["id"].clone();
    let at = format_timestamp(rig.clock.now());
    bulk_history(app.store(), &old, &at, BULK_TURNS, FRAMES_PER_TURN).await;
    old_running_turn(app.store(), &held, &at, 10).await;
    rig.clock.set(0);
    let old_frames = format!("agent_turn_events e JOIN agent_turns t ON t.id = e.turn_id WHERE t.session_id = {old}");
    let due = rig.number(&format!("SELECT COUNT(*) AS n FROM {old_frames}")).await;
    assert!(due > i64::from(BULK_TURNS * FRAMES_PER_TURN), "the real turns recorded frames too: {due}");

    let mut gates = Vec::new();
    let mut turns = Vec::new();
    for i in 0..RUNNING {
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut steps = frames(text_events(&format!("resp_now_{i}"), &["running ", "now"]));
        steps.insert(5, Step::Gate(gate.clone()));
        rig.fake.push_stream(steps);
        gates.push(gate);
        let app = app.clone();
        turns.push(tokio::spawn(async move { app.stream("/api/agent/stream/", json!({"message": "now"})).await }));
    }
    // Through the turns (and the frames' turn index), not a scan of the 100k frames under the store's lock.
    let recording = "SELECT COUNT(*) AS n FROM agent_turns t WHERE t.finished_at IS NULL AND t.id LIKE 'turn_%'
                     AND EXISTS (SELECT 1 FROM agent_turn_events e WHERE e.turn_id = t.id)";
    for _ in 0..1000 {
        if rig.number(recording).await == RUNNING as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rig.number(recording).await, RUNNING as i64, "every turn is running with frames recorded");

    let release = async {
        for gate in &gates {
            gate.notify_one();
        }
        let mut out = Vec::new();
        for turn in turns {
            out.push(tokio::time::timeout(Duration::from_secs(30), turn).await.expect("a turn hung").unwrap());
        }
        out
    };
    let own = match counted {
        Some((proxy, token)) => Some(Store::open_url(&proxy.url, Some(token)).await.unwrap()),
        None => None,
    };
    let pruner = own.as_ref().unwrap_or(app.store());
    let before = counted.map(|(proxy, _)| proxy.count());
    let plan = plan(1000);
    let (pruned, streamed) = tokio::join!(pruner.prune(&plan), release);
    let pruned = pruned.unwrap();
    let trips = counted.zip(before).map(|((proxy, _), before)| proxy.count() - before);

    for turn in &streamed {
        assert_eq!((turn.status, turn.done()["status"].clone()), (StatusCode::OK, json!("completed")), "{}", turn.raw);
        assert_eq!(turn.text(), "running now");
        let id = turn_of(turn);
        let session = SessionId(turn.done()["session_id"].as_i64().unwrap());
        let kept =
            app.store().frames_after(session, 0, Some(&TurnId::from(id.as_str())), 1000).await.unwrap().frames.len();
        assert_eq!(kept, turn.frames.len(), "every frame of running turn {id} is still recorded");
    }
    assert_eq!(rig.number(&format!("SELECT COUNT(*) AS n FROM {old_frames}")).await, 0, "the old turns' frames went");
    let running = "SELECT COUNT(*) AS n FROM agent_turn_events WHERE turn_id = 'old_running'";
    assert_eq!(rig.number(running).await, 10, "an old turn that still runs keeps its frames");
    let (status, messages) = app.get(&format!("/api/sessions/{old}/messages/")).await;
    assert_eq!((status, messages["count"].clone()), (StatusCode::OK, json!(4)), "the old turns' messages stay");
    let replay = app.stream_with(Method::GET, &format!("/api/sessions/{old}/events/"), None, &[]).await;
    assert_eq!(
        (replay.status, replay.frames.len()),
        (StatusCode::OK, 0),
        "an old session replays nothing: {}",
        replay.raw
    );
    assert_eq!(
        (pruned.frames, pruned.idempotency_keys, pruned.login_tokens, pruned.complete),
        (due as u64, 0, 0, true),
        "{pruned:?}"
    );
    // Batches of 1000 frames: whole ones, then the short one that ends them; one (empty) for keys, one for tokens.
    assert_eq!(pruned.batches, due as u64 / 1000 + 1 + 2, "{pruned:?}");
    (pruned, trips)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_100k_old_frames_in_bounded_batches_while_turns_run_and_keeps_messages_and_live_frames() {
    let rig = Rig::new(None).await;
    prune_while_turns_run(&rig, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqld_a_prune_of_100k_frames_while_turns_run_is_one_round_trip_per_batch_and_one_read() {
    let sqld = Sqld::start().await;
    let rig = Rig::new(Some(&sqld)).await;
    let proxy = Proxy::start(&sqld.url).await;
    let (pruned, trips) = prune_while_turns_run(&rig, Some((&proxy, &sqld.token()))).await;
    assert_eq!(trips, Some(pruned.batches + 1), "one request per batch, and the read of where recent frames start");
}

#[tokio::test]
async fn expired_idempotency_keys_and_login_tokens_are_deleted_and_live_ones_kept() {
    let rig = Rig::new(None).await;
    let app = &rig.app;
    let anonymous = app.as_user(None);
    let login = async || {
        let (status, login) =
            anonymous.post("/api/auth/login/", json!({"username": "alice", "password": "alice-password"})).await;
        assert_eq!(status, StatusCode::OK, "{login}");
        login["token"].as_str().unwrap().to_owned()
    };
    let chat = async |key: &str| {
        app.stream_with(Method::POST, "/api/agent/chat/", Some(json!({"message": key})), &[("Idempotency-Key", key)])
            .await
    };
    // A day and an hour ago: a keyed chat (its key lives 24 h) and a login (its token 12 h).
    rig.clock.set(-25 * 3600);
    rig.fake.push_stream(frames(text_events("resp_key_old", &["old"])));
    assert_eq!(chat("old-key").await.status, StatusCode::OK);
    let expired_login = login().await;
    rig.clock.set(0);
    let alice = app.store().user_by_username("alice").await.unwrap();
    let expired_api = lambent::auth::new_token();
    let yesterday = format_timestamp(OffsetDateTime::now_utc() - time::Duration::days(1));
    app.store().create_token(alice.id, "ci", "api", Some(&yesterday), &expired_api).await.unwrap();
    rig.fake.push_stream(frames(text_events("resp_key_new", &["new"])));
    let live_chat = chat("new-key").await;
    assert_eq!(live_chat.status, StatusCode::OK, "{}", live_chat.raw);
    let live_login = login().await;

    let pruned = app.store().prune(&plan(1000)).await.unwrap();
    assert_eq!((pruned.idempotency_keys, pruned.login_tokens, pruned.frames), (1, 1, 0), "{pruned:?}");

    assert_eq!(app.rows("SELECT key FROM idempotency_keys").await, vec![json!({"key": "new-key"})]);
    let replayed = chat("new-key").await;
    assert_eq!((replayed.status, replayed.body()), (StatusCode::OK, live_chat.body()), "the live key still replays");
    assert_eq!(rig.fake.requests().len(), 2, "and calls no model");
    assert_eq!(app.as_user(Some(&live_login)).get("/api/auth/me/").await.0, StatusCode::OK);
    assert_eq!(app.as_user(Some(&expired_login)).get("/api/auth/me/").await.0, StatusCode::UNAUTHORIZED);
    let tokens = app.rows("SELECT kind, expires_at FROM api_tokens ORDER BY id").await;
    let kinds: Vec<&str> = tokens.iter().map(|t| t["kind"].as_str().unwrap()).collect();
    // alice's test token, the expired API token (listed to her as expired), the live login.
    assert_eq!(kinds, ["api", "api", "login"], "{tokens:?}");
    assert_eq!(tokens[1]["expires_at"], json!(yesterday));
    let (_, listed) = app.get("/api/tokens/").await;
    assert!(listed["results"].as_array().unwrap().iter().any(|t| t["prefix"] == json!(expired_api.prefix)), "{listed}");
}

/// A session whose history is `frames` frames of old turns (100 a turn), eight days old.
async fn old_session(rig: &Rig, frames: u32) {
    rig.clock.set(-8 * DAY);
    let session = rig.turn("resp_history", None).await;
    let at = format_timestamp(rig.clock.now());
    rig.clock.set(0);
    bulk_history(rig.app.store(), &session, &at, frames / 100, 100).await;
    rig.app.store().query_json("DELETE FROM agent_turn_events WHERE turn_id NOT LIKE 'bulk_%'").await.unwrap();
}

#[tokio::test]
async fn a_prune_starts_no_batch_at_its_deadline_and_the_next_run_deletes_the_rest() {
    let rig = Rig::new(None).await;
    old_session(&rig, 10_000).await;
    let url = rig.app.state.config.database_url.clone();
    let start = OffsetDateTime::now_utc();
    // Each reading of this clock is a minute later: the deadline comes after a few batches.
    let stepping = Stepping { start, reads: AtomicI64::new(0) };
    let hurried = Store::open_url(&url, None).await.unwrap().with_clock(Arc::new(stepping));
    let deadline = PrunePlan { stop_at: Some(start + time::Duration::minutes(6)), ..plan(1000) };
    let first = hurried.prune(&deadline).await.unwrap();
    assert!(!first.complete, "{first:?}");
    assert!(first.frames > 0 && first.frames < 10_000 && first.frames % 1000 == 0, "whole batches: {first:?}");
    let left = rig.number("SELECT COUNT(*) AS n FROM agent_turn_events").await;
    assert_eq!(left as u64, 10_000 - first.frames);

    let rest = rig.app.store().prune(&plan(1000)).await.unwrap();
    assert_eq!((rest.frames, rest.complete), (left as u64, true), "{rest:?}");
    assert_eq!(rig.number("SELECT COUNT(*) AS n FROM agent_turn_events").await, 0);
}

/// An expired login token of alice's, straight into the store.
async fn expired_login_token(app: &TestApp) {
    let alice = app.store().user_by_username("alice").await.unwrap();
    let an_hour_ago = format_timestamp(OffsetDateTime::now_utc() - time::Duration::hours(1));
    let token = lambent::auth::new_token();
    app.store().create_token(alice.id, "login", "login", Some(&an_hour_ago), &token).await.unwrap();
}

#[tokio::test]
async fn lambent_prune_prints_what_it_deleted_and_exits_non_zero_when_it_cannot() {
    let rig = Rig::new(None).await;
    old_session(&rig, 2500).await;
    expired_login_token(&rig.app).await;
    let url = rig.app.state.config.database_url.clone();
    let lambent = |retention: &str| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambent-under-test"));
        command
            .args(["prune", "--batch-size", "1000"])
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("LAMBENT_EVENTS_RETENTION_DAYS", retention)
            .stdin(std::process::Stdio::null());
        command
    };

    let refused = lambent("0").output().await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("LAMBENT_EVENTS_RETENTION_DAYS"), "{refused:?}");
    assert_eq!(rig.number("SELECT COUNT(*) AS n FROM agent_turn_events").await, 2500, "nothing deleted");

    let done = lambent("7").output().await.unwrap();
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(done.status.success(), "{done:?}");
    // Keys: one empty batch; tokens: one; frames: 1000, 1000, 500.
    let expected = "Deleted 2500 recorded frame(s), 0 idempotency key(s) and 1 login token(s) in 5 batch(es); ";
    assert!(stdout.starts_with(expected), "{stdout}");
    assert_eq!(rig.number("SELECT COUNT(*) AS n FROM agent_turn_events").await, 0);
}

/// EventBridge's scheduled event, as a rule delivers it.
const SCHEDULED_EVENT: &str = r#"{"version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
  "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
  "time": "2026-12-02T03:00:00Z", "region": "eu-west-1",
  "resources": ["arn:aws:events:eu-west-1:123456789012:rule/lambent-prune"], "detail": {}}"#;

/// The `prune` function as Lambda runs it: its own process, the real `lambda_runtime` loop, the stub Runtime
/// API handing it EventBridge's event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduled_function_starts_no_batch_past_its_deadline_and_prunes_on_the_next_invocation() {
    use lambent_testkit::runtime_api::{RuntimeApi, Seen};

    let rig = Rig::new(None).await;
    old_session(&rig, 2500).await;
    expired_login_token(&rig.app).await;
    let mut api = RuntimeApi::start().await;
    let mut function = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambent-test-prune-function"));
    function
        .env_clear()
        .env("DATABASE_URL", &rig.app.state.config.database_url)
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "prune")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/12/02/[1]test")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/prune")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let _function = function.spawn().expect("start the function");
    async fn answer(api: &mut RuntimeApi, id: &str) -> Value {
        match api.next_seen(Duration::from_secs(60)).await {
            Seen::Answer(answer) => {
                assert_eq!(answer.request_id, id);
                serde_json::from_str(&answer.body).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
            }
            Seen::Failed(why) => panic!("invocation {id}: {why}"),
        }
    }

    // Due within its margin: it starts nothing.
    let soon = SystemTime::now() + lambent_functions::DEADLINE_MARGIN / 2;
    api.invoke_until("late", SCHEDULED_EVENT.to_owned(), soon);
    let late = answer(&mut api, "late").await;
    assert_eq!((&late["batches"], &late["frames"], &late["complete"]), (&json!(0), &json!(0), &json!(false)), "{late}");
    assert_eq!(rig.number("SELECT COUNT(*) AS n FROM agent_turn_events").await, 2500);

    api.invoke("daily", SCHEDULED_EVENT.to_owned());
    let daily = answer(&mut api, "daily").await;
    let counts = ["frames", "idempotency_keys", "login_tokens", "batches", "complete"].map(|k| daily[k].clone());
    assert_eq!(counts, [json!(2500), json!(0), json!(1), json!(5), json!(true)], "{daily}");
    assert_eq!(rig.number("SELECT COUNT(*) AS n FROM agent_turn_events").await, 0);
}
