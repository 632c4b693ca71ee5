//! One conversation turn, top to bottom: resolve the agent and session, store what the user sent, build the
//! upstream request, relay the upstream's events, store how each response ended, run server-side tools.
//!
//! A turn runs in its own task: a client that goes away does not stop it (the local server behaves as
//! Lambda does), and everything it produces is stored whether or not anyone is listening.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::domain::{Agent, MessageRequest, Tool, ToolCallRecord, ToolOutputRequest, ToolType, build_instructions};
use crate::error::{Error, Result};
use crate::executors::Executor;
use crate::llm::events::{Finish, Observed, ResponseAccumulator, ToolCall};
use crate::llm::{ModelProvider, ModelRequest};
use crate::state::AppState;
use crate::store::{
    Earlier, IdempotencyClaim, KEY_LIFETIME, NewFrame, ResponseOutcome, StoredFrame, Submission, TurnContext,
    TurnLease, TurnRead, TurnSession,
};

/// Tool rounds one turn may run on the server before it stops and hands the calls to the client.
pub const MAX_TOOL_ROUNDS: usize = 8;

/// The `error` message of a cancelled turn.
pub const CANCELLED: &str = "The turn was cancelled (POST /api/sessions/{id}/cancel/).";

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

/// One SSE frame as it goes out and as it is recorded: `id` is `<turn_id>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub id: String,
    pub event: Cow<'static, str>,
    pub data: String,
}

impl From<StoredFrame> for Frame {
    fn from(stored: StoredFrame) -> Self {
        Self {
            seq: u64::try_from(stored.seq).unwrap_or(0),
            id: format!("{}:{}", stored.turn_id, stored.seq),
            event: Cow::Owned(stored.event),
            data: stored.data,
        }
    }
}

/// The frames a client reads: a live turn's, or recorded ones replayed.
pub type Frames = mpsc::Receiver<Arc<Frame>>;

/// A stream answer: its frames, and what the response headers name (`Lambent-Session-Id`, `Lambent-Turn-Id`)
/// so a client knows a new session's id, and what to cancel, before the first frame.
#[derive(Debug)]
pub struct TurnStream {
    pub session_id: i64,
    /// The one turn the frames belong to; `None` for the session event stream (it may span turns).
    pub turn_id: Option<String>,
    pub frames: Frames,
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
    /// Fired by `POST /api/sessions/{id}/cancel/`.
    cancel: CancellationToken,
    /// A keyed `chat`: its reply is kept for the key's retries, in the same write as the turn's end.
    answer_key: Option<IdempotencyClaim>,
}

/// A keyed chat's reply, recorded with the end of its turn: the key, the HTTP status and the JSON body.
type KeyedAnswer = (IdempotencyClaim, u16, String);

/// A turn's `done` frame, a keyed chat's reply, and who waits for both to be recorded.
type Finishing = (Arc<Frame>, Option<KeyedAnswer>, oneshot::Sender<()>);

/// What a tool-output submission answers.
#[derive(Debug)]
pub enum ToolOutputStart {
    /// Other calls of the response still need outputs (202, with this body).
    Waiting(Value),
    /// Every call has its output: the continuation's frames (or, for a retried key, their replay).
    Streaming(TurnStream),
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

/// The `Idempotency-Key` of a request, tied to what the request asked for.
fn claim(
    state: &AppState,
    caller: &Caller,
    key: Option<&str>,
    endpoint: &'static str,
    body: &Value,
) -> Option<IdempotencyClaim> {
    let key = key?;
    let fingerprint = hex::encode(Sha256::digest(format!("{endpoint}\n{body}")));
    let expired_before = crate::clock::format_timestamp(state.store.clock().now() - KEY_LIFETIME);
    Some(IdempotencyClaim { owner: caller.id, key: key.to_owned(), endpoint, fingerprint, expired_before })
}

/// How a keyed request that ran before is answered again.
enum Again {
    /// Its turn's frames, replayed from the store.
    Replay(TurnStream),
    /// What it answered without a turn, or the chat reply it gave.
    Answer(u16, Value),
}

/// `earlier` was read with the turn's context, in the same round trip.
async fn again(state: &AppState, earlier: Result<Option<Earlier>>) -> Result<Option<Again>> {
    Ok(match earlier? {
        None => None,
        Some(
            Earlier::Answered { status, body } | Earlier::Turn { response: Some((status, body)), running: false, .. },
        ) => {
            let body = serde_json::from_str(&body).map_err(|e| Error::internal("reading a stored answer", e))?;
            Some(Again::Answer(status, body))
        }
        Some(Earlier::Turn { turn_id, running: true, .. }) => return Err(Error::KeyInProgress(turn_id)),
        Some(Earlier::Turn { session, turn_id, .. }) => {
            let start = state.store.frame_cursor(session, &turn_id, 0).await?.unwrap_or(0);
            let frames = follow_from(state, session, start, Some(turn_id.clone()));
            Some(Again::Replay(TurnStream { session_id: session, turn_id: Some(turn_id), frames }))
        }
    })
}

/// `POST /api/agent/stream/`: starts a message turn and hands back its live frames — or, for a retried
/// `Idempotency-Key`, the recorded frames of the turn it started.
pub async fn stream(
    state: &AppState,
    caller: &Caller,
    request: MessageRequest,
    key: Option<&str>,
    body: &Value,
) -> Result<TurnStream> {
    let claim = claim(state, caller, key, "stream", body);
    let read = read_context(state, caller, &request, claim.as_ref()).await?;
    match again(state, read.earlier).await? {
        Some(Again::Replay(frames)) => return Ok(frames),
        Some(Again::Answer(..)) => return Err(Error::KeyReused),
        None => {}
    }
    Ok(start_message(state, caller, request, claim.as_ref(), read.context).await?.stream(state.clone()))
}

/// Everything a message turn reads (and what an earlier request with its key did), in one batch.
async fn read_context(
    state: &AppState,
    caller: &Caller,
    request: &MessageRequest,
    claim: Option<&IdempotencyClaim>,
) -> Result<TurnRead<TurnContext>> {
    state.store.turn_context(request.agent_id, request.session_id, caller.owner_for(None), claim).await
}

/// Resolves a message turn from what [`read_context`] read and stores the user's message (everything the
/// turn writes before going upstream, in one batch). Nothing is stored when the request is invalid or no
/// model provider is configured.
async fn start_message(
    state: &AppState,
    caller: &Caller,
    request: MessageRequest,
    claim: Option<&IdempotencyClaim>,
    context: TurnContext,
) -> Result<Turn> {
    let provider = provider(state)?;
    let store = &state.store;
    let (agent, session) = match (request.agent_id, request.session_id) {
        (agent_id, Some(session_id)) => {
            let session = context.session.filter(|s| caller.sees_private(s.owner)).ok_or(Error::NotFound)?;
            if let Some(agent_id) = agent_id.filter(|id| *id != session.agent) {
                context.agent.filter(|a| caller.sees(a.owner)).ok_or(Error::NotFound)?;
                return Err(Error::field(
                    "session_id",
                    format!("Session {session_id} belongs to agent {}, not agent {agent_id}.", session.agent),
                ));
            }
            // The session is the caller's, so its agent answers even if it is no longer visible to them.
            (context.agent.ok_or(Error::NotFound)?, Some(session))
        }
        (Some(_), None) => (context.agent.filter(|a| caller.sees(a.owner)).ok_or(Error::NotFound)?, None),
        (None, None) => {
            let agent = context
                .agent
                .ok_or_else(|| Error::field("agent_id", "No agent_id was given and no agent is marked is_default."))?;
            (agent, None)
        }
    };
    let texts: Vec<&str> = context.templates.iter().map(|t| t.template.as_str()).collect();
    let instructions = build_instructions(&agent.system_prompt, &texts, &request.variables)?;
    let target = match &session {
        Some(session) => TurnSession::Existing(session.id),
        None => TurnSession::New { agent: agent.id, owner: caller.owner_for(None) },
    };
    let lease = new_lease(state);
    let started = store.begin_turn(target, &lease, &request.message, instructions.as_deref(), claim).await?;
    let session = match (session, started.created) {
        (Some(session), _) | (None, Some(session)) => session,
        (None, None) => return Err(Error::bug("a new turn's session was not created")),
    };
    let mut input = outputs_of(&started.unanswered);
    input.push(json!({"type": "message", "role": "user", "content": request.message}));
    Ok(Turn {
        provider,
        turn_id: lease.turn_id,
        session_id: session.id,
        agent,
        instructions,
        tools: context.tools,
        input,
        previous_response_id: session.previous_response_id,
        auto_execute: request.auto_execute_tools,
        cancel: CancellationToken::new(),
        answer_key: None,
    })
}

/// `POST /api/agent/tool-output/`: stores submitted outputs; once every call of the response has one, starts
/// the continuation. A retried `Idempotency-Key` gets the first answer again (or its turn's recorded frames).
pub async fn tool_output(
    state: &AppState,
    caller: &Caller,
    request: ToolOutputRequest,
    key: Option<&str>,
    body: &Value,
) -> Result<ToolOutputStart> {
    let claim = claim(state, caller, key, "tool-output", body);
    let store = &state.store;
    // One read batch (what the continuation needs, the calls to validate, the key's earlier request), then
    // one atomic write.
    let read = store.tool_output_context(caller, request.session_id, &request.outputs, claim.as_ref()).await?;
    match again(state, read.earlier).await? {
        Some(Again::Replay(frames)) => return Ok(ToolOutputStart::Streaming(frames)),
        Some(Again::Answer(_, body)) => return Ok(ToolOutputStart::Waiting(body)),
        None => {}
    }
    let provider = provider(state)?;
    let context = read.context?;
    let lease = new_lease(state);
    let (response_id, calls) = match store
        .submit_tool_outputs(&context, &lease, &request.outputs, claim.as_ref())
        .await?
    {
        Submission::Waiting { pending } => return Ok(ToolOutputStart::Waiting(json!({"pending_tool_calls": pending}))),
        Submission::Complete { response_id, calls } => (response_id, calls),
    };
    let turn = Turn {
        provider,
        turn_id: lease.turn_id,
        session_id: context.session.id,
        instructions: context.instructions,
        tools: context.tools,
        agent: context.agent,
        input: outputs_of(&calls),
        previous_response_id: Some(response_id),
        auto_execute: request.auto_execute_tools,
        cancel: CancellationToken::new(),
        answer_key: None,
    };
    Ok(ToolOutputStart::Streaming(turn.stream(state.clone())))
}

/// `POST /api/sessions/{id}/cancel/`: asks the session's running turn to stop; answers its id. The flag in
/// the store reaches a turn in another process within [`CANCEL_POLL`]; one in this process stops at once.
pub async fn cancel(state: &AppState, caller: &Caller, session: i64) -> Result<String> {
    let turn_id = state.store.request_cancel(caller, session).await?;
    state.cancel_turn(&turn_id);
    Ok(turn_id)
}

/// Ends the turns a stopped process left holding their sessions: each gets `error` `interrupted` and `done`
/// recorded (so a replay ends the way a live stream would have) and its session back. Only for a process that
/// is the database's sole server (the local server on its SQLite file), at start: elsewhere a lease may
/// belong to a turn alive in another process, and it expires by itself.
pub async fn close_interrupted(store: &crate::store::Store) -> Result<usize> {
    let leased = store.leased_turns().await?;
    for (session, turn_id, last_seq) in &leased {
        let Some(last_seq) = last_seq else {
            store.end_turn(*session, turn_id).await?;
            continue;
        };
        // Frames a client saw may never have been recorded (the recorder writes in batches), so the closing
        // frames take numbers no live frame can have: an id seen live must never name a different frame.
        let seq = u64::try_from(*last_seq).unwrap_or(0).max(INTERRUPTED_SEQ);
        let error = TurnEvent::Error(TurnError {
            code: "interrupted".into(),
            message: "The server stopped during this turn; send the message again.".into(),
        });
        let done = TurnEvent::Done(Done {
            session_id: *session,
            response_id: None,
            status: "failed".into(),
            pending_tool_calls: Vec::new(),
        });
        let (error_data, done_data) = (error.data(), done.data());
        let frames = [
            NewFrame { seq: seq + 1, event: error.name(), data: &error_data },
            NewFrame { seq: seq + 2, event: done.name(), data: &done_data },
        ];
        store.finish_turn(*session, turn_id, &frames, None).await?;
    }
    Ok(leased.len())
}

/// How often a running turn looks for a cancel request from another process while its upstream is quiet.
pub const CANCEL_POLL: Duration = Duration::from_secs(1);
/// Where the closing frames of a turn interrupted by a stop are numbered from.
pub const INTERRUPTED_SEQ: u64 = 1 << 40;
/// How long the recorder gathers frames before it writes them in one transaction.
const RECORD_INTERVAL: Duration = Duration::from_millis(50);

/// The same over a remote database, where each write is a network round trip: at most four a second,
/// and a turn shorter than this records all its frames with its end (issue 13's budget).
const REMOTE_RECORD_INTERVAL: Duration = Duration::from_millis(250);
/// How often a follower looks for new frames of a running turn.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
const FOLLOW_BATCH: u64 = 256;

/// `GET /api/sessions/{id}/events/`: the frames after `after` (`<turn_id>:<seq>`, from `Last-Event-ID` or
/// `?after=`), or the session's latest turn from its start; follows live while a turn is running.
pub async fn events(state: &AppState, caller: &Caller, session: i64, after: Option<&str>) -> Result<TurnStream> {
    state.store.get_session(caller, session).await?;
    let start = match after {
        Some(cursor) => {
            let (turn_id, seq) = cursor
                .rsplit_once(':')
                .and_then(|(turn, seq)| Some((turn, seq.parse::<i64>().ok()?)))
                .ok_or_else(|| Error::field("after", "An event id looks like \"<turn_id>:<seq>\"."))?;
            state
                .store
                .frame_cursor(session, turn_id, seq)
                .await?
                .ok_or_else(|| Error::field("after", format!("No turn \"{turn_id}\" in session {session}.")))?
        }
        None => match state.store.latest_turn_cursor(session).await? {
            Some((_, start)) => start,
            None => i64::MAX,
        },
    };
    Ok(TurnStream { session_id: session, turn_id: None, frames: follow_from(state, session, start, None) })
}

/// Sends the recorded frames after `start` and then, while a turn runs (only `only_turn`, if given), the
/// frames it records; ends when no turn is running and everything recorded was sent.
fn follow_from(state: &AppState, session: i64, mut start: i64, only_turn: Option<String>) -> Frames {
    let (tx, rx) = mpsc::channel(64);
    let store = state.store.clone();
    tokio::spawn(async move {
        let mut last_round = false;
        loop {
            let frames = match store.frames_after(session, start, only_turn.as_deref(), FOLLOW_BATCH).await {
                Ok(frames) => frames,
                Err(err) => {
                    tracing::error!(error = %err, session, "cannot read recorded frames");
                    return;
                }
            };
            let full = frames.len() as u64 == FOLLOW_BATCH;
            for frame in frames {
                start = frame.row;
                if tx.send(Arc::new(Frame::from(frame))).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            if last_round {
                return;
            }
            let running = match store.running_turn(session).await {
                Ok(running) => running.filter(|id| only_turn.as_ref().is_none_or(|only| only == id)),
                Err(_) => None,
            };
            // A turn's last frames and the release of its session are one transaction: once it is not
            // running, one more read gets everything it recorded.
            if running.is_none() {
                last_round = true;
                continue;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    rx
}

/// Where a running turn sends its frames: to the recorder always, and to the client's stream if there is
/// one (the chat endpoint has none).
struct Sink {
    turn_id: String,
    seq: AtomicU64,
    live: Option<mpsc::Sender<Arc<Frame>>>,
    inbox: Arc<Inbox>,
}

/// Frames waiting for the recorder. Only the first frame of a batch rings for it: the rest of the batch
/// arrives while it gathers (a wakeup of the recorder per frame was a large part of a frame's cost).
#[derive(Default)]
struct Inbox {
    frames: std::sync::Mutex<Vec<Arc<Frame>>>,
    /// The `done` frame: recorded with the turn's end, then acknowledged.
    finish: std::sync::Mutex<Option<Finishing>>,
    /// The turn went away without `done` (it panicked).
    abandoned: std::sync::atomic::AtomicBool,
    bell: tokio::sync::Notify,
}

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inbox {
    fn push(&self, frame: Arc<Frame>) {
        let first = {
            let mut frames = locked(&self.frames);
            frames.push(frame);
            frames.len() == 1
        };
        if first {
            self.bell.notify_one();
        }
    }

    fn ending(&self) -> bool {
        locked(&self.finish).is_some() || self.abandoned.load(Ordering::Acquire)
    }
}

impl Sink {
    fn frame(&self, event: &TurnEvent) -> Arc<Frame> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        Arc::new(Frame {
            seq,
            id: format!("{}:{seq}", self.turn_id),
            event: Cow::Borrowed(event.name()),
            data: event.data(),
        })
    }

    async fn send(&self, event: TurnEvent) {
        let frame = self.frame(&event);
        self.inbox.push(frame.clone());
        if let Some(tx) = &self.live {
            // A closed channel means the client left; the turn goes on regardless.
            let _ = tx.send(frame).await;
        }
    }

    /// Records `done` together with the turn's end (which frees the session), then sends it to the client:
    /// a client that reacts to `done` finds the session free and every frame recorded.
    async fn finish(&self, done: TurnEvent, answer: Option<KeyedAnswer>) {
        let frame = self.frame(&done);
        let (ack, acked) = oneshot::channel();
        *locked(&self.inbox.finish) = Some((frame.clone(), answer, ack));
        self.inbox.bell.notify_one();
        // An error here means the recorder is gone; the client still gets `done`.
        let _ = acked.await;
        if let Some(tx) = &self.live {
            let _ = tx.send(frame).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.inbox.abandoned.store(true, Ordering::Release);
        self.inbox.bell.notify_one();
    }
}

/// Writes a turn's frames to the store in batches (off the relay path), watches for a cancel request from
/// another process, and ends the turn in the store when `done` arrives.
async fn record(state: AppState, session: i64, turn_id: String, inbox: Arc<Inbox>, cancel: CancellationToken) {
    let store = &state.store;
    let interval = if store.is_remote() { REMOTE_RECORD_INTERVAL } else { RECORD_INTERVAL };
    // Two timers for the whole turn, reset rather than rebuilt: one per frame showed up in the profile.
    let poll = tokio::time::sleep(CANCEL_POLL);
    let gather = tokio::time::sleep(RECORD_INTERVAL);
    tokio::pin!(poll, gather);
    loop {
        tokio::select! {
            () = inbox.bell.notified() => {}
            () = &mut poll, if !cancel.is_cancelled() => {
                if store.cancel_requested(&turn_id).await.unwrap_or(false) {
                    cancel.cancel();
                }
                poll.as_mut().reset(tokio::time::Instant::now() + CANCEL_POLL);
                continue;
            }
        }
        // Frames that arrive within RECORD_INTERVAL share one transaction: a commit per frame cost more CPU
        // than the whole relay (BENCHMARKS.md). Clients never wait for this; `done` ends the wait at once.
        if !inbox.ending() {
            gather.as_mut().reset(tokio::time::Instant::now() + interval);
            tokio::select! {
                () = &mut gather => {}
                () = inbox.bell.notified() => {}
            }
        }
        let batch = std::mem::take(&mut *locked(&inbox.frames));
        let mut rows: Vec<NewFrame<'_>> =
            batch.iter().map(|f| NewFrame { seq: f.seq, event: &f.event, data: &f.data }).collect();
        let finish = locked(&inbox.finish).take();
        if let Some((done, answer, ack)) = finish {
            rows.push(NewFrame { seq: done.seq, event: &done.event, data: &done.data });
            let answer = answer.as_ref().map(|(claim, status, body)| (claim, *status, body.as_str()));
            if let Err(err) = store.finish_turn(session, &turn_id, &rows, answer).await {
                tracing::error!(error = %err, session, "could not record the end of a turn");
                if let Err(err) = store.end_turn(session, &turn_id).await {
                    tracing::error!(error = %err, session, "could not release the session's turn lease");
                }
            }
            let _ = ack.send(());
            return;
        }
        match store.record_frames(&turn_id, &rows).await {
            // The write read the cancel flag too: the next poll can wait a whole interval.
            Ok(cancelled) => {
                if cancelled {
                    cancel.cancel();
                }
                poll.as_mut().reset(tokio::time::Instant::now() + CANCEL_POLL);
            }
            Err(err) => tracing::error!(error = %err, session, "could not record a turn's frames"),
        }
        if inbox.abandoned.load(Ordering::Acquire) && locked(&inbox.frames).is_empty() {
            break;
        }
    }
    // The turn task went away without `done` (it panicked): free the session rather than wait for the lease.
    if let Err(err) = store.end_turn(session, &turn_id).await {
        tracing::error!(error = %err, session, "could not release the session's turn lease");
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
    pub fn id(&self) -> &str {
        &self.turn_id
    }

    /// Runs the turn in its own task; its frames arrive on the returned stream, ending with `done`.
    pub fn stream(self, state: AppState) -> TurnStream {
        let (session_id, turn_id) = (self.session_id, Some(self.turn_id.clone()));
        TurnStream { session_id, turn_id, frames: self.spawn(state) }
    }

    fn spawn(self, state: AppState) -> Frames {
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            self.drive(&state, Some(tx)).await;
        });
        rx
    }

    /// Runs the turn in its own task (so a dropped request does not cut it short) and returns its summary.
    pub async fn run(self, state: AppState) -> Result<TurnSummary> {
        tokio::spawn(async move { self.drive(&state, None).await })
            .await
            .map_err(|e| Error::internal("turn task failed", e))
    }

    /// Runs every upstream round of the turn, then ends it: `done` is recorded with the release of the
    /// session before the client sees it.
    async fn drive(mut self, state: &AppState, live: Option<mpsc::Sender<Arc<Frame>>>) -> TurnSummary {
        let (session, turn_id) = (self.session_id, self.turn_id.clone());
        self.cancel = state.register_turn(&turn_id);
        let answer_key = self.answer_key.take();
        let inbox = Arc::new(Inbox::default());
        tokio::spawn(record(state.clone(), session, turn_id.clone(), inbox.clone(), self.cancel.clone()));
        let sink = Sink { turn_id: turn_id.clone(), seq: AtomicU64::new(0), live, inbox };
        let summary = self.rounds(state, &sink).await;
        if let Some(error) = &summary.error {
            sink.send(TurnEvent::Error(error.clone())).await;
        }
        let answer = answer_key.map(|claim| {
            let reply = ChatReply::from(summary.clone());
            let body = serde_json::to_string(&reply).unwrap_or_default();
            (claim, reply.http_status().as_u16(), body)
        });
        sink.finish(TurnEvent::Done(summary.done.clone()), answer).await;
        state.forget_turn(&turn_id);
        summary
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
            if self.cancel.is_cancelled() {
                summary.done.pending_tool_calls = ended.calls.iter().map(|c| c.call_id.clone()).collect();
                summary.error = Some(TurnError { code: "cancelled".into(), message: CANCELLED.into() });
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
        let cancelled = |acc: &ResponseAccumulator| fail(acc, "cancelled", CANCELLED.to_owned(), "incomplete");
        let opened = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return cancelled(&acc),
            opened = self.provider.stream(request) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => return fail(&acc, e.code, e.message, "failed"),
        };
        let timeout = self.provider.read_timeout();
        loop {
            let next = tokio::select! {
                biased;
                // Dropping the stream closes the upstream connection.
                () = self.cancel.cancelled() => return cancelled(&acc),
                next = tokio::time::timeout(timeout, stream.next()) => next,
            };
            let raw = match next {
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
        let upstream_failed =
            summary.error.as_ref().is_some_and(|e| !matches!(e.code.as_str(), "tool_round_limit" | "cancelled"));
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

/// `POST /api/agent/chat/`: runs a whole message turn and answers with its outcome (status and JSON body);
/// a retried `Idempotency-Key` gets the same answer without a second turn.
pub async fn chat(
    state: &AppState,
    caller: &Caller,
    request: MessageRequest,
    key: Option<&str>,
    body: &Value,
) -> Result<(u16, Value)> {
    let claim = claim(state, caller, key, "chat", body);
    let read = read_context(state, caller, &request, claim.as_ref()).await?;
    match again(state, read.earlier).await? {
        Some(Again::Answer(status, body)) => return Ok((status, body)),
        // A chat turn that ended without storing its reply (the process died in between).
        Some(Again::Replay(_)) => return Err(Error::KeyInProgress(String::new())),
        None => {}
    }
    let mut turn = start_message(state, caller, request, claim.as_ref(), read.context).await?;
    // The reply is kept for the key's retries with the turn's end (one write), not after it.
    turn.answer_key = claim;
    let reply = ChatReply::from(turn.run(state.clone()).await?);
    let status = reply.http_status().as_u16();
    let body = serde_json::to_value(&reply).map_err(|e| Error::internal("encoding a reply", e))?;
    Ok((status, body))
}
