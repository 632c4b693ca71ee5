//! Starting a turn: what a message turn reads (one batch), how the request resolves against it (which agent,
//! which session, the instructions), and the one atomic write that takes the session's lease and stores what
//! the user sent before anything goes upstream.

use std::sync::Arc;
use std::time::Duration;

use super::engine::Turn;
use super::mcp::McpListing;
use crate::domain::{Approval, Caller, MessageRequest, ToolCall, ToolCallStatus, TurnId, build_instructions};
use crate::error::{Error, Result};
use crate::llm::history::rebuild;
use crate::llm::{ModelProvider, outputs_of, user_message};
use crate::state::AppState;
use crate::store::{IdempotencyClaim, ToolOutputContext, TurnContext, TurnLease, TurnRead, TurnSession};

/// A fresh turn id and its lease on a session, `lease` long (the HTTP edge bounds it by the function's
/// deadline: see `http::extract::LeaseTime`).
pub(super) fn new_lease(state: &AppState, lease: Duration) -> TurnLease {
    let expires = state.clock().now() + lease;
    TurnLease {
        turn_id: TurnId::from(format!("turn_{}", crate::auth::random_hex(8))),
        expires_at: crate::clock::format_timestamp(expires),
        held_until: std::time::Instant::now() + lease,
    }
}

/// Everything a message turn reads (and what the request's key recorded), in one batch.
pub(super) async fn read_context(
    state: &AppState,
    caller: &Caller,
    request: &MessageRequest,
    claim: Option<&IdempotencyClaim>,
) -> Result<TurnRead<TurnContext>> {
    let locals = state.config.local_providers();
    state.store.turn_context(request.agent_id, request.session_id, caller.owner_for(None), claim, &locals).await
}

/// Resolves a message turn from what [`read_context`] read and stores the user's message (everything the
/// turn writes before going upstream, in one batch). Nothing is stored when the request is invalid or no
/// model provider is configured.
pub(super) async fn start_message(
    state: &AppState,
    caller: &Caller,
    request: MessageRequest,
    lease: Duration,
    claim: Option<&IdempotencyClaim>,
    context: TurnContext,
) -> Result<Turn> {
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
    let provider = state.llm(&agent.provider)?;
    let texts: Vec<&str> = context.templates.iter().map(|t| t.template.as_str()).collect();
    let instructions =
        build_instructions(&agent.system_prompt, &texts, &request.variables, state.config.limits.instructions_chars)?;
    let target = match &session {
        Some(session) => TurnSession::Existing(session.id),
        None => TurnSession::New { agent: agent.id, owner: caller.owner_for(None) },
    };
    // The MCP servers are listed while the turn's first write goes to the database.
    let mcp = McpListing::start(state, context.mcp_servers, &context.tools);
    let lease = new_lease(state, lease);
    let started = state.store.begin_turn(target, &lease, &request.message, instructions.as_deref(), claim).await?;
    let session = match (session, started.created) {
        (Some(session), _) | (None, Some(session)) => session,
        (None, None) => return Err(Error::bug("a new turn's session was not created")),
    };
    // Calls the user moved on from are answered upstream first (expired ones say so).
    let mut input = outputs_of(&started.unanswered);
    input.push(user_message(&request.message));
    let answered = session.previous_response_id.as_deref().filter(|_| !started.unanswered.is_empty());
    let rebuilt = context.history.map(|history| rebuild(&history, answered, agent.input_budget, &input));
    Ok(Turn {
        provider,
        held_until: lease.held_until,
        turn_id: lease.turn_id,
        session_id: session.id,
        stateless: state.config.is_local(&agent.provider),
        dropped_turns: rebuilt.as_ref().map_or(0, |r| r.dropped_turns),
        history: rebuilt.map(|r| r.items),
        agent,
        instructions,
        tools: context.tools,
        input,
        previous_response_id: session.previous_response_id,
        auto_execute: request.auto_execute_tools,
        mcp,
        approval_tools: context.approval_tools.into_iter().collect(),
        approved: Vec::new(),
    })
}

/// What a continuation starts from: the submission's context, and its agent's MCP servers being listed.
pub(super) struct Resumed {
    pub provider: Arc<dyn ModelProvider>,
    pub stateless: bool,
    pub context: ToolOutputContext,
    pub mcp: McpListing,
}

/// The continuation of a response whose every call now has its output or a decision (the submission that
/// completed it took the session's lease in the same write). Approved calls run first, in the turn.
pub(super) fn continuation(
    Resumed { provider, stateless, context, mcp }: Resumed,
    lease: TurnLease,
    response_id: String,
    calls: &[crate::domain::ToolCallRecord],
    auto_execute: bool,
) -> Turn {
    let approved = calls
        .iter()
        .filter(|c| c.approval == Some(Approval::Approved) && c.status == ToolCallStatus::Pending)
        .map(|c| ToolCall {
            call_id: c.call_id.clone(),
            name: c.name.clone(),
            kind: c.kind,
            arguments: c.arguments.clone(),
        })
        .collect();
    let input = outputs_of(calls);
    let budget = context.agent.input_budget;
    let rebuilt = context.history.map(|history| rebuild(&history, Some(&response_id), budget, &input));
    Turn {
        provider,
        held_until: lease.held_until,
        turn_id: lease.turn_id,
        session_id: context.session.id,
        instructions: context.instructions,
        tools: context.tools,
        agent: context.agent,
        input,
        previous_response_id: Some(response_id),
        auto_execute,
        stateless,
        dropped_turns: rebuilt.as_ref().map_or(0, |r| r.dropped_turns),
        history: rebuilt.map(|r| r.items),
        mcp,
        approval_tools: context.approval_tools.into_iter().collect(),
        approved,
    }
}
