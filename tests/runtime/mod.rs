//! Conversations end to end: the real routers, a real libsql file, and the fake upstream.

mod chat;
mod concurrency;
mod failures;
mod idempotency;
mod resume;
pub mod stalls;
mod streaming;
mod tools;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::helpers::TestApp;
use lambent_testkit::openai::{FakeOpenAi, Step, frames, text_events};

/// An app pointed at a fake upstream, with a default agent.
pub struct Rig {
    pub app: TestApp,
    pub fake: FakeOpenAi,
    pub agent: Value,
}

impl Rig {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(extra: &[(&'static str, &str)]) -> Self {
        let fake = FakeOpenAi::start().await;
        let mut env = fake.env();
        for (key, value) in extra {
            env.retain(|(k, _)| k != key);
            env.push((key, (*value).to_owned()));
        }
        let app = TestApp::spawn_with(&env).await;
        let agent = app
            .create(
                "/api/agents/",
                json!({"name": "Helper", "model": "gpt-4.1", "system_prompt": "You are helpful.", "is_default": true}),
            )
            .await;
        Self { app, fake, agent }
    }

    /// Creates a tool and links it to the rig's agent.
    pub async fn tool(&self, body: Value) -> Value {
        let tool = self.app.create("/api/tools/", body).await;
        self.app.create("/api/agent-tools/", json!({"agent": self.agent["id"], "tool": tool["id"]})).await;
        tool
    }

    pub async fn messages(&self, session: &Value) -> Vec<Value> {
        self.app.rows(&format!("SELECT role, content, status, response_id, usage FROM agent_messages WHERE session_id = {session} ORDER BY id")).await
    }

    pub async fn ledger(&self, session: &Value) -> Vec<Value> {
        self.app
            .rows(&format!(
                "SELECT response_id, call_id, name, call_type, arguments, status, output FROM agent_tool_calls
                 WHERE session_id = {session} ORDER BY id"
            ))
            .await
    }

    pub async fn session(&self, session: &Value) -> Value {
        self.app.get(&format!("/api/sessions/{session}/")).await.1
    }

    /// Starts a streamed turn the fake holds at a gate after its first delta ("Still"); returns its session once
    /// that delta is recorded (the turn is past its start and waiting at the gate).
    pub async fn held_turn(
        &self,
        session: Option<&Value>,
    ) -> (Value, Arc<Notify>, tokio::task::JoinHandle<crate::helpers::Streamed>) {
        let gate = Arc::new(Notify::new());
        let mut steps = frames(text_events("resp_held", &["Still", " going"]));
        steps.insert(5, Step::Gate(gate.clone()));
        self.fake.push_stream(steps);
        let app = self.app.clone();
        let mut body = json!({"message": "long one"});
        if let Some(session) = session {
            body["session_id"] = session.clone();
        }
        let running = tokio::spawn(async move { app.stream("/api/agent/stream/", body).await });
        for _ in 0..250 {
            let recorded = self
                .app
                .rows(
                    "SELECT t.session_id FROM agent_turn_events e JOIN agent_turns t ON t.id = e.turn_id
                     WHERE instr(e.data, '{\"delta\":\"Still\"}') > 0",
                )
                .await;
            if let Some(row) = recorded.first() {
                return (row["session_id"].clone(), gate, running);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the held turn never recorded its first delta");
    }
}
