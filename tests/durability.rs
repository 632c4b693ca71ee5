//! The local server killed (SIGKILL) in the middle of a streamed turn, then started again on the same file;
//! and 200 concurrent streamed turns through the local server.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

use crate::helpers::{config_in, http_client};
use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};

/// The local server as a child process on `port`, over the database in `dir`.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(dir: &tempfile::TempDir, port: u16, fake: &FakeOpenAi) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lambent-test-server"));
        command
            .env_clear()
            .env("DATABASE_URL", format!("file:{}", dir.path().join("lambent.db").display()))
            .env("BIND", format!("127.0.0.1:{port}"))
            .envs(fake.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("start the server");
        let base = format!("http://127.0.0.1:{port}");
        let client = http_client();
        for _ in 0..300 {
            if client.get(format!("{base}/api/health/")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Self { child, base };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not come up on {base}");
    }
}

/// POSTs JSON as the user with `token`.
async fn post(base: &str, token: &str, path: &str, body: Value) -> reqwest::Response {
    http_client().post(format!("{base}{path}")).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn user_with_token(dir: &tempfile::TempDir) -> String {
    let store = lambent::Store::open(&config_in(dir, &[])).await.unwrap();
    store.migrate().await.unwrap();
    let user = store.create_user("durable", None, false).await.unwrap();
    let token = lambent::auth::new_token();
    store.create_token(user.id, "test", "api", None, &token).await.unwrap();
    token.secret
}

async fn rows(dir: &tempfile::TempDir, sql: &str) -> Vec<Value> {
    let store = lambent::Store::open(&config_in(dir, &[])).await.unwrap();
    store.query_json(sql).await.unwrap()
}

#[tokio::test]
async fn a_server_killed_mid_turn_restarts_with_the_message_kept_nothing_half_written_and_the_session_usable() {
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = user_with_token(&dir).await;
    let port = lambent_testkit::free_port().expect("a free port");
    let mut server = Server::start(&dir, port, &fake).await;
    let client = http_client();
    let agent: Value = post(&server.base, &token, "/api/agents/", json!({"name": "Durable", "is_default": true}))
        .await
        .json()
        .await
        .unwrap();
    assert!(agent["id"].is_i64(), "{agent}");

    // The upstream sends its first delta, then holds the rest back for ever.
    let gate = Arc::new(Notify::new());
    let mut steps = frames(text_events("resp_cut", &["Half", " an answer"]));
    steps.insert(5, Step::Gate(gate.clone()));
    fake.push_stream(steps);
    let response = post(&server.base, &token, "/api/agent/stream/", json!({"message": "Please remember this."})).await;
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("event: text_delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("a delta").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    server.child.start_kill().unwrap(); // SIGKILL: no shutdown, no cleanup.
    server.child.wait().await.unwrap();
    drop(body);

    // On disk: the user's message, no half-written answer, the turn still holding its session.
    let integrity = rows(&dir, "PRAGMA integrity_check").await;
    assert_eq!(integrity[0]["integrity_check"], "ok");
    let messages = rows(&dir, "SELECT role, content FROM agent_messages ORDER BY id").await;
    assert_eq!(messages, [json!({"role": "user", "content": "Please remember this."})]);
    assert_eq!(rows(&dir, "SELECT COUNT(*) AS n FROM agent_tool_calls").await[0]["n"], 0);
    let leased = rows(&dir, "SELECT id, turn_id FROM agent_sessions").await;
    assert!(leased[0]["turn_id"].is_string(), "the killed turn never gave its session back: {leased:?}");
    let session = leased[0]["id"].clone();

    // Restarted: the interrupted turn is closed in its record, and the session takes the next message.
    let server = Server::start(&dir, port, &fake).await;
    let replay = client
        .get(format!("{}/api/sessions/{session}/events/", server.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Frames are recorded off the relay path, so the last ones a client saw may not have reached the disk;
    // what was recorded is exactly what the client saw, in order, then the turn's closing frames.
    let ids: Vec<&str> = replay.lines().filter(|l| l.starts_with("id: ")).collect();
    assert!(ids.len() >= 2, "{replay}");
    let (recorded, closing) = ids.split_at(ids.len() - 2);
    let live_ids: Vec<&str> = seen.lines().filter(|l| l.starts_with("id: ")).collect();
    assert_eq!(recorded, &live_ids[..recorded.len()], "{replay}");
    assert!(closing.iter().all(|id| !seen.contains(*id)), "closing ids never repeat a live one: {closing:?}");
    assert!(replay.contains("event: error\n") && replay.contains("\"code\":\"interrupted\""), "{replay}");
    let done = replay.trim_end().rsplit("\n").next().unwrap().strip_prefix("data: ").unwrap();
    let done: Value = serde_json::from_str(done).unwrap();
    assert_eq!(done, json!({"session_id": session, "response_id": null, "status": "failed", "pending_tool_calls": []}));
    fake.push_stream(frames(text_events("resp_again", &["Remembered."])));
    let body = json!({"message": "Still there?", "session_id": session});
    let next = post(&server.base, &token, "/api/agent/stream/", body).await.text().await.unwrap();
    assert!(next.contains("\"status\":\"completed\""), "{next}");
    let messages = rows(&dir, "SELECT role, content FROM agent_messages ORDER BY id").await;
    assert_eq!(
        messages,
        [
            json!({"role": "user", "content": "Please remember this."}),
            json!({"role": "user", "content": "Still there?"}),
            json!({"role": "assistant", "content": "Remembered."})
        ]
    );
}

#[tokio::test]
async fn two_hundred_concurrent_streamed_turns_all_complete_and_are_stored_exactly_once() {
    const TURNS: usize = 200;
    let fake = FakeOpenAi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = user_with_token(&dir).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = config_in(&dir, &fake.env());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(lambent_local::serve(config, listener, async {
        let _ = stopped.await;
    }));
    let created = post(&base, &token, "/api/agents/", json!({"name": "Busy", "is_default": true})).await;
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    for _ in 0..TURNS {
        // A little time upstream, so that the turns really overlap.
        let mut steps = frames(text_events("resp_load", &["Hello", " there."]));
        steps.insert(3, Step::Pause(Duration::from_millis(50)));
        fake.push_stream(steps);
    }

    let turns = (0..TURNS).map(|i| {
        let (token, base) = (token.clone(), base.clone());
        async move {
            let body = json!({"message": format!("message {i}")});
            post(&base, &token, "/api/agent/stream/", body).await.text().await.unwrap()
        }
    });
    let replies = futures::future::join_all(turns).await;
    for reply in &replies {
        assert!(!reply.contains("event: error"), "{reply}");
        assert!(reply.contains("\"status\":\"completed\""), "{reply}");
    }
    assert_eq!(fake.requests().len(), TURNS);

    let counts = rows(
        &dir,
        "SELECT (SELECT COUNT(*) FROM agent_sessions) AS sessions,
                (SELECT COUNT(*) FROM agent_messages WHERE role = 'user') AS asked,
                (SELECT COUNT(DISTINCT content) FROM agent_messages WHERE role = 'user') AS distinct_asked,
                (SELECT COUNT(*) FROM agent_messages WHERE role = 'assistant' AND content = 'Hello there.'
                    AND status = 'completed') AS answered,
                (SELECT COUNT(*) FROM agent_turns WHERE finished_at IS NOT NULL) AS finished,
                (SELECT COUNT(*) FROM agent_sessions WHERE turn_id IS NOT NULL) AS leased,
                (SELECT COUNT(*) FROM agent_turn_events WHERE event = 'done') AS done_frames",
    )
    .await;
    assert_eq!(
        counts[0],
        json!({"sessions": TURNS, "asked": TURNS, "distinct_asked": TURNS, "answered": TURNS, "finished": TURNS,
               "leased": 0, "done_frames": TURNS})
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
