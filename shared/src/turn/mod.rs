//! Conversation turns: the use cases the conversation endpoints call, and the mechanisms behind them.
//!
//! # Glossary
//! - **turn**: what one request starts — a message (`stream`, `chat`) or the tool outputs that complete a
//!   response (`tool-output`) — from storing what the user sent to its `done` frame. One runs per session at
//!   a time.
//! - **response**: one upstream `POST /v1/responses` stream, chained to the session's last completed one
//!   by `previous_response_id` — or, when Lambent keeps the conversation (a `local`-state provider, or a
//!   fork's first turn), carrying the whole history rebuilt from the store (`llm::history`).
//! - **round**: one response and the server-side tool calls run after it (`auto_execute_tools`); a turn
//!   runs at most [`MAX_TOOL_ROUNDS`] tool rounds.
//! - **frame**: one SSE event of a turn, id `<turn_id>:<seq>`, recorded so it can be replayed.
//! - **lease**: a turn's hold on its session (`agent_sessions.turn_id` until an expiry): taken in the
//!   turn's first write, given back with its last frame; an expired lease is a crashed turn's.
//! - **claim**: a request's `Idempotency-Key`, inserted in the same atomic write as what the request writes,
//!   so a retry replays the first request's outcome.
//!
//! How things end, in one vocabulary: a response *ends* (`llm::events::ResponseEnd`, collected by the
//! engine as an ended response and stored as a `store::ResponseRecord`); a turn *ends* with a [`TurnEnd`],
//! whose `done` is its last frame and which `Store::end_turn` records with the release of the session.
//!
//! # Layout, in the order a request flows
//! - this file: the use cases — [`stream`], [`tool_output`], [`approvals`], [`chat`], [`events`], [`cancel`], and
//!   [`close_interrupted`] at a local server's start.
//! - `idempotency`: claiming a key, and replaying what an earlier request with it did.
//! - `start`: reading a turn's context, resolving the request against it, the first write.
//! - `mcp`: the agent's MCP servers' tools, listed while the turn's first write runs, offered under
//!   collision-free names.
//! - `engine`: [`Turn`] — its rounds, relaying each response, storing how it ended, running tools;
//!   `spans`: the OpenTelemetry spans of a turn and of its tool runs.
//! - `next`: the pure decision of what a turn does after a response ends.
//! - `recorder`: frames to the client and, in batches, to the store; the turn's end recorded.
//! - `follow`: replay of recorded frames, and live follow of a turn running elsewhere.
//! - `frames`: the events and frames a turn produces.

mod engine;
mod follow;
mod frames;
mod idempotency;
mod mcp;
mod next;
mod recorder;
mod spans;
mod start;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde_json::Value;

pub use engine::{KeepAnswer, Turn, TurnEnd};
pub use follow::FOLLOW_POLL;
pub use frames::{CallFrame, Done, Frame, Frames, Notice, TextDelta, ToolResult, TurnError, TurnEvent, TurnStream};
pub use next::{CANCELLED, MAX_TOOL_ROUNDS};
pub use recorder::CANCEL_POLL;

use crate::domain::{
    Caller, ErrorCode, FrameId, MessageRequest, PendingToolCalls, ResponseStatus, SessionId, Submitted,
    ToolOutputRequest, TurnId,
};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{KeptAnswer, LeasedTurn, NewFrame, Store, Submission, TurnEnding};
use idempotency::{Replay, claim, replay};
use mcp::McpListing;
use start::{Resumed, continuation, new_lease, read_context, start_message};

/// `POST /api/agent/stream/`: starts a message turn and hands back its live frames — or, for a retried
/// `Idempotency-Key`, the recorded frames of the turn it started.
pub async fn stream(
    state: &AppState,
    caller: &Caller,
    request: MessageRequest,
    lease: Duration,
    key: Option<&str>,
    body: &Value,
) -> Result<TurnStream> {
    let claim = claim(state, caller, key, "stream", body);
    let read = read_context(state, caller, &request, claim.as_ref()).await?;
    match replay(state, read.key_record).await? {
        Some(Replay::Frames(frames)) => return Ok(frames),
        Some(Replay::Answer { .. }) => return Err(Error::KeyReused),
        None => {}
    }
    read.budget?.check(state.clock().now())?;
    Ok(start_message(state, caller, request, lease, claim.as_ref(), read.context).await?.stream(state.clone()))
}

/// What a tool-output submission answers.
#[derive(Debug)]
pub enum ToolOutputStart {
    /// Other calls of the response still need outputs (202).
    Waiting(PendingToolCalls),
    /// Every call has its output: the continuation's frames (or, for a retried key, their replay).
    Streaming(TurnStream),
}

/// `POST /api/agent/tool-output/`: stores submitted outputs; once every call of the response has one, starts
/// the continuation. A retried `Idempotency-Key` gets the first answer again (or its turn's recorded frames).
pub async fn tool_output(
    state: &AppState,
    caller: &Caller,
    request: ToolOutputRequest,
    lease: Duration,
    key: Option<&str>,
    body: &Value,
) -> Result<ToolOutputStart> {
    submit(state, caller, request.into(), lease, (key, "tool-output"), body).await
}

/// `POST /api/agent/approvals/`: stores a person's decisions on calls that wait for approval; once every call
/// of the response has an output or a decision, starts the continuation, which runs the approved calls first
/// and answers the denied ones with their reason. Keys, leases, replay and cancel as for tool-output.
pub async fn approvals(
    state: &AppState,
    caller: &Caller,
    request: Submitted,
    lease: Duration,
    key: Option<&str>,
    body: &Value,
) -> Result<ToolOutputStart> {
    submit(state, caller, request, lease, (key, "approvals"), body).await
}

/// What tool-output and approvals share: answers stored in one read batch and one atomic write, then 202 or
/// the continuation.
async fn submit(
    state: &AppState,
    caller: &Caller,
    request: Submitted,
    lease: Duration,
    (key, endpoint): (Option<&str>, &'static str),
    body: &Value,
) -> Result<ToolOutputStart> {
    let claim = claim(state, caller, key, endpoint, body);
    let store = &state.store;
    // One read batch (what the continuation needs, the calls to validate, the key's earlier request), then
    // one atomic write.
    let locals = state.config.local_providers();
    let read = store.tool_output_context(caller, request.session_id, &request.answers, claim.as_ref(), &locals).await?;
    match replay(state, read.key_record).await? {
        Some(Replay::Frames(frames)) => return Ok(ToolOutputStart::Streaming(frames)),
        Some(Replay::Answer { body, .. }) => {
            let pending = serde_json::from_value(body).map_err(|e| Error::internal("a kept 202 answer", e))?;
            return Ok(ToolOutputStart::Waiting(pending));
        }
        None => {}
    }
    // Nothing is written without a model provider to continue with, or with the caller's budget spent (the
    // outputs are not stored: sent again after `resets_at`, they continue the response then).
    // (An unconfigured provider answers 503 before a missing session's 404, as before providers had names.)
    let provider = state.llm(read.context.as_ref().map_or(crate::config::DEFAULT_PROVIDER, |c| &c.agent.provider))?;
    read.budget?.check(state.clock().now())?;
    let mut context = read.context?;
    let stateless = state.config.is_local(&context.agent.provider);
    let lease = new_lease(state, lease);
    // The MCP servers are listed while the submission is written (a 202 leaves them listed in this
    // instance's cache).
    let mcp = McpListing::start(state, std::mem::take(&mut context.mcp_servers), &context.tools);
    match store.submit_tool_outputs(&context, &lease, &request.answers, claim.as_ref()).await? {
        Submission::Waiting { pending } => {
            Ok(ToolOutputStart::Waiting(PendingToolCalls { pending_tool_calls: pending }))
        }
        Submission::Complete { response_id, calls } => {
            let resumed = Resumed { provider, stateless, context, mcp };
            let turn = continuation(resumed, lease, response_id, &calls, request.auto_execute_tools);
            Ok(ToolOutputStart::Streaming(turn.stream(state.clone())))
        }
    }
}

/// What the chat endpoint answers.
#[derive(Debug)]
pub enum ChatOutcome {
    /// The turn ran to its end.
    Ran(Box<TurnEnd>),
    /// A retried `Idempotency-Key`: the reply the first request gave.
    Replayed { status: axum::http::StatusCode, body: Value },
}

/// `POST /api/agent/chat/`: runs a whole message turn and answers how it ended; a retried `Idempotency-Key`
/// gets the first request's reply without a second turn. `reply` is how the HTTP layer answers a turn's
/// end: for a keyed request it is recorded with the turn's end (one write), not after it.
pub async fn chat(
    state: &AppState,
    caller: &Caller,
    request: MessageRequest,
    lease: Duration,
    key: Option<&str>,
    body: &Value,
    reply: fn(&TurnEnd) -> Result<KeptAnswer>,
) -> Result<ChatOutcome> {
    let claim = claim(state, caller, key, "chat", body);
    let read = read_context(state, caller, &request, claim.as_ref()).await?;
    match replay(state, read.key_record).await? {
        Some(Replay::Answer { status, body }) => return Ok(ChatOutcome::Replayed { status, body }),
        // A chat turn that ended without storing its reply (the process died in between).
        Some(Replay::Frames(_)) => return Err(Error::KeyInProgress(String::new())),
        None => {}
    }
    read.budget?.check(state.clock().now())?;
    let turn = start_message(state, caller, request, lease, claim.as_ref(), read.context).await?;
    let keep = claim.map(|claim| KeepAnswer { claim, reply });
    Ok(ChatOutcome::Ran(Box::new(turn.run(state.clone(), keep).await?)))
}

/// `GET /api/sessions/{id}/events/`: the frames after `after` (`<turn_id>:<seq>`, from `Last-Event-ID` or
/// `?after=`), or the session's latest turn from its start; follows live while a turn is running.
pub async fn events(state: &AppState, caller: &Caller, session: SessionId, after: Option<&str>) -> Result<TurnStream> {
    state.store.get_session(caller, session).await?;
    let (start, seen) = match after {
        Some(cursor) => {
            let frame: FrameId = cursor.parse()?;
            let start =
                state.store.frame_cursor(session, &frame).await?.ok_or_else(|| {
                    Error::field("after", format!("No turn \"{}\" in session {session}.", frame.turn_id))
                })?;
            (start, Some(frame))
        }
        // No turn yet: nothing to replay, only what comes.
        None => (state.store.latest_turn_cursor(session).await?.unwrap_or(i64::MAX), None),
    };
    let frames = follow::follow_from(state.store.clone(), session, start, None, seen);
    Ok(TurnStream { session_id: session, turn_id: None, frames })
}

/// `POST /api/sessions/{id}/cancel/`: asks the session's running turn to stop; answers its id. The flag in
/// the store reaches a turn in another process within [`CANCEL_POLL`]; one in this process stops at once.
pub async fn cancel(state: &AppState, caller: &Caller, session: SessionId) -> Result<TurnId> {
    let turn_id = state.store.request_cancel(caller, session).await?;
    state.cancel_turn(&turn_id);
    Ok(turn_id)
}

/// Where the closing frames of a turn interrupted by a stop are numbered from.
pub const INTERRUPTED_SEQ: u64 = 1 << 40;

/// Ends the turns a stopped process left holding their sessions: each gets `error` `interrupted` and `done`
/// recorded (so a replay ends the way a live stream would have) and its session back. Only for a process that
/// is the database's sole server (the local server on its SQLite file), at start: elsewhere a lease may
/// belong to a turn alive in another process, and it expires by itself.
pub async fn close_interrupted(store: &Store) -> Result<usize> {
    let leased = store.leased_turns().await?;
    for LeasedTurn { session, turn_id, last_seq } in &leased {
        let Some(last_seq) = last_seq else {
            store.release_turn(*session, turn_id).await?;
            continue;
        };
        // Frames a client saw may never have been recorded (the recorder writes in batches), so the closing
        // frames take numbers no live frame can have: an id seen live must never name a different frame.
        let seq = u64::try_from(*last_seq).unwrap_or(0).max(INTERRUPTED_SEQ);
        let error = TurnEvent::Error(TurnError {
            code: ErrorCode::Interrupted,
            message: "The server stopped during this turn; send the message again.".into(),
        });
        let done = TurnEvent::Done(Done {
            session_id: *session,
            response_id: None,
            status: ResponseStatus::Failed,
            pending_tool_calls: Vec::new(),
            approval_requests: Vec::new(),
            dropped_turns: 0,
        });
        let serialised = |event: &TurnEvent| event.data().map_err(|e| Error::internal("a closing frame", e));
        let (error_data, done_data) = (serialised(&error)?, serialised(&done)?);
        let frames = [
            NewFrame { seq: seq + 1, event: error.name(), data: &error_data },
            NewFrame { seq: seq + 2, event: done.name(), data: &done_data },
        ];
        // What its responses reported died with the process: the turn counts as failed, with no tokens.
        let usage = crate::domain::TurnUsage::default();
        let ending =
            TurnEnding { session: *session, turn_id, frames: &frames, reply: None, usage: &usage, failed: true };
        store.end_turn(&ending).await?;
    }
    Ok(leased.len())
}
