//! One conversation turn, top to bottom: resolve the agent and session, store what the user sent, build the
//! upstream request, relay the upstream's events, store how each response ended, run server-side tools.
//!
//! A turn runs in its own task: a client that goes away does not stop it (the local server behaves as
//! Lambda does), and everything it produces is stored whether or not anyone is listening.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::domain::{
    Agent, MessageRequest, NewSession, Tool, ToolCallRecord, ToolOutputRequest, ToolType, build_instructions,
};
use crate::error::{Error, Result};
use crate::executors::Executor;
use crate::llm::events::{Finish, Observed, ResponseAccumulator, ToolCall};
use crate::llm::{ModelProvider, ModelRequest};
use crate::state::AppState;
use crate::store::{ResponseOutcome, Submission, TurnLease};

/// Tool rounds one turn may run on the server before it stops and hands the calls to the client.
pub const MAX_TOOL_ROUNDS: usize = 8;

/// What an expired call answers upstream, so the conversation can go on without it.
pub const EXPIRED_OUTPUT: &str = "{\"error\": \"The user sent a new message instead of this tool's output.\"}";

/// One thing a turn reports, in order; each becomes one SSE frame.
#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// An upstream event, byte for byte.
    OpenAi(Box<RawValue>),
    TextDelta(String),
    ToolCall(Value),
    ToolResult {
        call_id: String,
        output: String,
    },
    Error(TurnError),
    Done(Done),
}

impl TurnEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenAi(_) => "openai_event",
            Self::TextDelta(_) => "text_delta",
            Self::ToolCall(_) => "tool_call",
            Self::ToolResult { .. } => "tool_result",
            Self::Error(_) => "error",
            Self::Done(_) => "done",
        }
    }

    /// The frame's `data:` line.
    pub fn data(&self) -> String {
        match self {
            Self::OpenAi(raw) => raw.get().to_owned(),
            Self::TextDelta(delta) => json!({"delta": delta}).to_string(),
            Self::ToolCall(call) => call.to_string(),
            Self::ToolResult { call_id, output } => json!({"call_id": call_id, "output": output}).to_string(),
            Self::Error(error) => json!(error).to_string(),
            Self::Done(done) => json!(done).to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TurnError {
    /// One of the documented error codes, e.g. `upstream_rate_limited`, `response_failed`, `tool_round_limit`.
    pub code: String,
    pub message: String,
}

/// The last frame of every turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Done {
    pub session_id: i64,
    pub response_id: Option<String>,
    /// `completed`, `requires_tool_output`, `failed` or `incomplete`.
    pub status: String,
    pub pending_tool_calls: Vec<String>,
}

/// A turn resolved and ready to go upstream.
#[derive(Debug)]
pub struct Turn {
    provider: Arc<dyn ModelProvider>,
    /// This turn's lease on its session, given back when it ends.
    turn_id: String,
    session_id: i64,
    agent: Agent,
    instructions: Option<String>,
    tools: Vec<Tool>,
    input: Vec<Value>,
    previous_response_id: Option<String>,
    auto_execute: bool,
}

/// What a tool-output submission starts.
#[derive(Debug)]
pub enum ToolOutputStart {
    /// Other calls of the response still need outputs (202).
    Waiting(Vec<String>),
    /// Every call has its output: the continuation is ready.
    Ready(Box<Turn>),
}

fn provider(state: &AppState) -> Result<Arc<dyn ModelProvider>> {
    state.llm()
}

fn new_lease(state: &AppState) -> TurnLease {
    let expires = state.store.clock().now() + state.config.turn_lease;
    TurnLease {
        turn_id: format!("turn_{}", crate::auth::random_hex(8)),
        expires_at: crate::clock::format_timestamp(expires),
    }
}

fn output_item(kind: ToolType, call_id: &str, output: &str) -> Value {
    let kind = match kind {
        ToolType::Function => "function_call_output",
        ToolType::Custom => "custom_tool_call_output",
    };
    json!({"type": kind, "call_id": call_id, "output": output})
}

fn outputs_of(calls: &[ToolCallRecord]) -> Vec<Value> {
    calls.iter().map(|c| output_item(c.kind, &c.call_id, c.output.as_deref().unwrap_or(EXPIRED_OUTPUT))).collect()
}

fn upstream_tool(tool: &Tool) -> Value {
    match tool.tool_type {
        ToolType::Function => json!({
            "type": "function", "name": tool.name, "description": tool.description, "parameters": tool.parameters,
        }),
        ToolType::Custom => {
            let mut spec = json!({"type": "custom", "name": tool.name, "description": tool.description});
            if let Some(format) = &tool.format {
                spec["format"] = format.clone();
            }
            spec
        }
    }
}

/// Resolves a message turn and stores the user's message. Nothing is stored when the request is invalid or
/// no model provider is configured.
pub async fn start_message(state: &AppState, caller: &Caller, request: MessageRequest) -> Result<Turn> {
    let provider = provider(state)?;
    let store = &state.store;
    let (agent, session) = match (request.agent_id, request.session_id) {
        (agent_id, Some(session_id)) => {
            let session = store.get_session(caller, session_id).await?;
            if let Some(agent_id) = agent_id.filter(|id| *id != session.agent) {
                store.get_agent(caller, agent_id).await?;
                return Err(Error::field(
                    "session_id",
                    format!("Session {session_id} belongs to agent {}, not agent {agent_id}.", session.agent),
                ));
            }
            // The session is the caller's, so its agent answers even if it is no longer visible to them.
            (store.get_agent(&Caller::system(), session.agent).await?, Some(session))
        }
        (Some(agent_id), None) => (store.get_agent(caller, agent_id).await?, None),
        (None, None) => {
            let agent = store
                .default_agent(caller.owner_for(None))
                .await?
                .ok_or_else(|| Error::field("agent_id", "No agent_id was given and no agent is marked is_default."))?;
            (agent, None)
        }
    };
    let templates = store.instruction_templates(&agent).await?;
    let texts: Vec<&str> = templates.iter().map(|t| t.template.as_str()).collect();
    let instructions = build_instructions(&agent.system_prompt, &texts, &request.variables)?;
    let tools = store.agent_active_tools(agent.id).await?;
    let session = match session {
        Some(session) => session,
        None => store.create_session(caller, NewSession { agent: agent.id }).await?,
    };
    let lease = new_lease(state);
    let started = store.begin_turn(session.id, &lease, &request.message, instructions.as_deref()).await?;
    let mut input = outputs_of(&started.unanswered);
    input.push(json!({"type": "message", "role": "user", "content": request.message}));
    Ok(Turn {
        provider,
        turn_id: lease.turn_id,
        session_id: session.id,
        agent,
        instructions,
        tools,
        input,
        previous_response_id: session.previous_response_id,
        auto_execute: request.auto_execute_tools,
    })
}

/// Stores submitted tool outputs; once every call of the response has one, prepares the continuation.
pub async fn start_tool_output(
    state: &AppState,
    caller: &Caller,
    request: ToolOutputRequest,
) -> Result<ToolOutputStart> {
    let provider = provider(state)?;
    let store = &state.store;
    let session = store.get_session(caller, request.session_id).await?;
    let lease = new_lease(state);
    let (response_id, calls) = match store.submit_tool_outputs(session.id, &lease, &request.outputs).await? {
        Submission::Waiting { pending } => return Ok(ToolOutputStart::Waiting(pending)),
        Submission::Complete { response_id, calls } => (response_id, calls),
    };
    let agent = store.get_agent(&Caller::system(), session.agent).await?;
    Ok(ToolOutputStart::Ready(Box::new(Turn {
        provider,
        turn_id: lease.turn_id,
        session_id: session.id,
        instructions: store.session_instructions(session.id).await?,
        tools: store.agent_active_tools(agent.id).await?,
        agent,
        input: outputs_of(&calls),
        previous_response_id: Some(response_id),
        auto_execute: request.auto_execute_tools,
    })))
}

/// Where a running turn sends its events: a stream's channel, or nowhere (the chat endpoint).
struct Sink(Option<mpsc::Sender<TurnEvent>>);

impl Sink {
    async fn send(&self, event: TurnEvent) {
        if let Some(tx) = &self.0 {
            // A closed channel means the client left; the turn goes on regardless.
            let _ = tx.send(event).await;
        }
    }
}

/// How one upstream response ended, with what the turn collected from it.
struct Ended {
    response_id: Option<String>,
    text: String,
    calls: Vec<ToolCall>,
    finish: Result<(Value, Option<Value>), TurnError>,
    failed_status: &'static str,
}

/// What a whole turn came to: the last assistant message and how it ended.
#[derive(Debug, Clone)]
pub struct TurnSummary {
    pub done: Done,
    pub message: Option<crate::domain::Message>,
    pub output_text: String,
    pub usage: Option<Value>,
    pub error: Option<TurnError>,
}

impl Turn {
    /// Runs the turn in its own task; its events arrive on the returned channel, ending with `done`.
    pub fn spawn(self, state: AppState) -> mpsc::Receiver<TurnEvent> {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            self.drive(&state, Sink(Some(tx))).await;
        });
        rx
    }

    /// Runs the turn in its own task (so a dropped request does not cut it short) and returns its summary.
    pub async fn run(self, state: AppState) -> Result<TurnSummary> {
        tokio::spawn(async move { self.drive(&state, Sink(None)).await })
            .await
            .map_err(|e| Error::Internal(format!("turn task failed: {e}")))
    }

    /// Runs every upstream round of the turn, then gives the session back (before `done`, so a client that
    /// reacts to `done` can send the next message at once).
    async fn drive(self, state: &AppState, sink: Sink) -> TurnSummary {
        let (session, turn_id) = (self.session_id, self.turn_id.clone());
        let summary = self.rounds(state, &sink).await;
        if let Err(err) = state.store.end_turn(session, &turn_id).await {
            tracing::error!(error = %err, session, "could not release the session's turn lease");
        }
        finish(&sink, summary).await
    }

    async fn rounds(mut self, state: &AppState, sink: &Sink) -> TurnSummary {
        let executors: HashMap<&str, Executor> = self
            .tools
            .iter()
            .filter_map(|t| Some((t.name.as_str(), Executor::parse(t.executor.as_ref()?).ok()?)))
            .collect();
        let tool_specs: Vec<Value> = self.tools.iter().map(upstream_tool).collect();
        let mut rounds = 0;
        loop {
            let request = ModelRequest {
                model: self.agent.model.clone(),
                instructions: self.instructions.clone(),
                input: std::mem::take(&mut self.input),
                tools: tool_specs.clone(),
                previous_response_id: self.previous_response_id.clone(),
                store: true,
                stream: true,
            };
            let ended = self.one_response(request, sink).await;
            let (status, completed) = match &ended.finish {
                Ok((output, usage)) => {
                    let status = if ended.calls.is_empty() { "completed" } else { "requires_tool_output" };
                    (status, Some((output, usage.as_ref())))
                }
                Err(_) => (ended.failed_status, None),
            };
            let stored = state
                .store
                .record_response(ResponseOutcome {
                    session: self.session_id,
                    response_id: ended.response_id.as_deref(),
                    status,
                    text: &ended.text,
                    usage: completed.and_then(|(_, usage)| usage),
                    completed_output: completed.map(|(output, _)| output),
                    calls: if completed.is_some() { &ended.calls } else { &[] },
                })
                .await;
            let mut summary = TurnSummary {
                done: Done {
                    session_id: self.session_id,
                    response_id: ended.response_id.clone(),
                    status: status.to_owned(),
                    pending_tool_calls: Vec::new(),
                },
                message: None,
                output_text: ended.text.clone(),
                usage: completed.and_then(|(_, usage)| usage.cloned()),
                error: ended.finish.as_ref().err().cloned(),
            };
            match stored {
                Ok(message) => summary.message = Some(message),
                Err(err) => {
                    tracing::error!(error = %err, session = self.session_id, "could not store the response");
                    summary.error = Some(TurnError {
                        code: "storage_error".into(),
                        message: "The response could not be stored.".into(),
                    });
                    summary.done.status = "failed".into();
                    return summary;
                }
            }
            if summary.error.is_some() || ended.calls.is_empty() {
                return summary;
            }
            let response_id = ended.response_id.clone().unwrap_or_default();
            let runnable: Vec<&ToolCall> =
                ended.calls.iter().filter(|c| self.auto_execute && executors.contains_key(c.name.as_str())).collect();
            if runnable.is_empty() {
                summary.done.pending_tool_calls = ended.calls.iter().map(|c| c.call_id.clone()).collect();
                return summary;
            }
            if rounds == MAX_TOOL_ROUNDS {
                summary.done.pending_tool_calls = ended.calls.iter().map(|c| c.call_id.clone()).collect();
                summary.error = Some(TurnError {
                    code: "tool_round_limit".into(),
                    message: format!(
                        "Stopped after {MAX_TOOL_ROUNDS} rounds of server-side tool calls; submit the pending outputs to go on."
                    ),
                });
                return summary;
            }
            rounds += 1;
            for call in &runnable {
                let output = match state.executors() {
                    Ok(context) => context.run(&executors[call.name.as_str()], call, state.store.clock()).await,
                    Err(err) => serde_json::json!({"error": err.to_string()}).to_string(),
                };
                if let Err(err) = state.store.record_executed(self.session_id, &call.call_id, &output).await {
                    tracing::error!(error = %err, "could not store a tool result");
                }
                sink.send(TurnEvent::ToolResult { call_id: call.call_id.clone(), output }).await;
            }
            if runnable.len() < ended.calls.len() {
                let done: Vec<&str> = runnable.iter().map(|c| c.call_id.as_str()).collect();
                summary.done.pending_tool_calls = ended
                    .calls
                    .iter()
                    .filter(|c| !done.contains(&c.call_id.as_str()))
                    .map(|c| c.call_id.clone())
                    .collect();
                return summary;
            }
            let calls = state.store.response_tool_calls(self.session_id, &response_id).await.unwrap_or_default();
            self.input = outputs_of(&calls);
            self.previous_response_id = Some(response_id);
        }
    }

    /// Opens one upstream response and relays it until it ends, one way or another.
    async fn one_response(&self, request: ModelRequest, sink: &Sink) -> Ended {
        let mut acc = ResponseAccumulator::default();
        let mut announced = 0;
        let fail = |acc: &ResponseAccumulator, code: &str, message: String, status: &'static str| Ended {
            response_id: acc.response_id.clone(),
            text: acc.text().to_owned(),
            calls: Vec::new(),
            finish: Err(TurnError { code: code.to_owned(), message }),
            failed_status: status,
        };
        let mut stream = match self.provider.stream(request).await {
            Ok(stream) => stream,
            Err(e) => return fail(&acc, e.code, e.message, "failed"),
        };
        let timeout = self.provider.read_timeout();
        loop {
            let raw = match tokio::time::timeout(timeout, stream.next()).await {
                Err(_) => {
                    let message = format!("the upstream sent nothing for {} s", timeout.as_secs_f64());
                    return fail(&acc, "upstream_timeout", message, "failed");
                }
                Ok(None) => {
                    let message = "the upstream stream ended before response.completed".to_owned();
                    return fail(&acc, "upstream_disconnected", message, "failed");
                }
                Ok(Some(Err(e))) => return fail(&acc, e.code, e.message, "failed"),
                Ok(Some(Ok(raw))) => raw,
            };
            let observed = match serde_json::from_str::<Value>(raw.get()) {
                Ok(event) => acc.observe(&event),
                Err(e) => return fail(&acc, "upstream_malformed", format!("unreadable upstream event: {e}"), "failed"),
            };
            sink.send(TurnEvent::OpenAi(raw)).await;
            match observed {
                Observed::Nothing => {}
                Observed::TextDelta(delta) => sink.send(TurnEvent::TextDelta(delta)).await,
                Observed::ToolCall(call) => {
                    announced += 1;
                    sink.send(TurnEvent::ToolCall(call.to_event())).await;
                }
                Observed::Finished(Finish::Completed { output, usage }) => {
                    // Calls that only the completed response listed are announced now.
                    for call in &acc.calls()[announced..] {
                        sink.send(TurnEvent::ToolCall(call.to_event())).await;
                    }
                    return Ended {
                        response_id: acc.response_id.clone(),
                        text: acc.text().to_owned(),
                        calls: acc.calls().to_vec(),
                        finish: Ok((output, usage)),
                        failed_status: "failed",
                    };
                }
                Observed::Finished(Finish::Failed { code, message, status }) => {
                    return fail(&acc, code, message, status);
                }
            }
        }
    }
}

async fn finish(sink: &Sink, summary: TurnSummary) -> TurnSummary {
    if let Some(error) = &summary.error {
        sink.send(TurnEvent::Error(error.clone())).await;
    }
    sink.send(TurnEvent::Done(summary.done.clone())).await;
    summary
}

/// The chat endpoint's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    pub session_id: i64,
    pub response_id: Option<String>,
    /// `completed`, `requires_tool_output`, `failed` or `incomplete`.
    pub status: String,
    pub message: Option<ChatMessage>,
    pub output_text: String,
    pub pending_tool_calls: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    /// Why the turn ended early, when it did.
    pub error: Option<TurnError>,
    /// The error message again, DRF-style, when the upstream failed (502).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessage {
    pub id: i64,
    pub role: String,
    pub content: String,
    pub created_at: String,
}

impl From<TurnSummary> for ChatReply {
    fn from(summary: TurnSummary) -> Self {
        let upstream_failed = summary.error.as_ref().is_some_and(|e| e.code != "tool_round_limit");
        Self {
            session_id: summary.done.session_id,
            response_id: summary.done.response_id,
            status: summary.done.status,
            message: summary.message.map(|m| ChatMessage {
                id: m.id,
                role: m.role,
                content: m.content,
                created_at: m.created_at,
            }),
            output_text: summary.output_text,
            pending_tool_calls: summary.done.pending_tool_calls,
            usage: summary.usage,
            detail: upstream_failed.then(|| summary.error.as_ref().map(|e| e.message.clone())).flatten(),
            error: summary.error,
        }
    }
}

impl ChatReply {
    /// 502 when the upstream failed the turn; 200 otherwise.
    pub fn http_status(&self) -> axum::http::StatusCode {
        if self.detail.is_some() { axum::http::StatusCode::BAD_GATEWAY } else { axum::http::StatusCode::OK }
    }
}

/// Runs a whole message turn and answers with its outcome (the chat endpoint).
pub async fn chat(state: &AppState, caller: &Caller, request: MessageRequest) -> Result<ChatReply> {
    let turn = start_message(state, caller, request).await?;
    Ok(turn.run(state.clone()).await?.into())
}
