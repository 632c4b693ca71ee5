//! Turns as rows, and the leases they hold on their sessions: starting a message turn, the tool-output
//! submission that starts a continuation, ending a turn (its last frames with the release of its session),
//! and cancel requests. Every start is one atomic batch that takes the lease first, so a refused start
//! writes nothing.

use libsql::params;

use super::conn::Batch;
use super::frames::{NewFrame, push_frames};
use super::idempotency::{
    IDEMPOTENCY_KEY, IdempotencyClaim, KeptReply, STORE_ANSWER, push_claim, push_submission_claim,
};
use super::messages::{push_insert, returned};
use super::tool_calls::{COLUMNS, record};
use super::{Sql, Store, collect, first, int, opt_int, opt_text, opt_text_value, sessions, text};
use crate::domain::{
    AgentId, Answers, Approval, Caller, Role, SessionId, ToolCallRecord, ToolCallStatus, TurnId, TurnUsage, UserId,
};
use crate::error::{Error, Result};

// Leases: one turn per session at a time, taken in the turn's first write.

/// What kind of request started a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnKind {
    Message,
    ToolOutput,
}

impl TurnKind {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Message => "message",
            Self::ToolOutput => "tool_output",
        }
    }
}

/// Takes the session's lease when it is free or expired: `?1` turn, `?2` expiry, `?3` session, `?4` now.
const TAKE_LEASE: &str = "UPDATE agent_sessions SET turn_id = ?1, turn_expires_at = ?2
     WHERE id = ?3 AND (turn_id IS NULL OR turn_expires_at IS NULL OR turn_expires_at <= ?4)";

/// Holds while the user `?1` has fewer turns running (sessions with a live lease at `?3`) than their
/// `max_concurrent_turns`, else `?2` the default (null or 0, or no user: no limit). Counted inside the
/// turn's atomic start, so turns racing on any number of instances are serialised by the database's write.
const UNDER_TURN_LIMIT: &str = "NOT EXISTS (SELECT 1 FROM users u WHERE u.id = ?1
       AND nullif(coalesce(u.max_concurrent_turns, ?2), 0) <= (SELECT count(*) FROM agent_sessions l
           WHERE l.owner_id = u.id AND l.turn_id IS NOT NULL AND l.turn_expires_at > ?3))";

/// Gives the session back, if the turn still holds it: `?1` the session, `?2` the turn.
pub(super) const RELEASE: &str =
    "UPDATE agent_sessions SET turn_id = NULL, turn_expires_at = NULL WHERE id = ?1 AND turn_id = ?2";

pub(super) async fn release(conn: Sql<'_>, session: SessionId, turn_id: &TurnId) -> Result<()> {
    conn.execute(RELEASE, params![session, turn_id]).await?;
    Ok(())
}

/// A turn's claim on its session.
#[derive(Debug, Clone)]
pub struct TurnLease {
    pub turn_id: TurnId,
    pub expires_at: String,
    /// When the lease ends, on this instance's monotonic clock: the turn's writes retry until then.
    pub held_until: std::time::Instant,
}

/// The session a message turn runs on.
#[derive(Debug, Clone, Copy)]
pub enum TurnSession {
    Existing(SessionId),
    /// A new session of this agent, created holding the turn's lease.
    New {
        agent: AgentId,
        owner: Option<UserId>,
    },
}

/// What starting a message turn wrote.
#[derive(Debug)]
pub struct TurnStart {
    /// The session, when the turn created it.
    pub created: Option<crate::domain::Session>,
    /// Calls of a response that never got all its outputs (so none went upstream): the pending ones are now
    /// expired (their `output` is None), and every one must be answered upstream before the new message.
    pub unanswered: Vec<ToolCallRecord>,
}

/// A turn holding its session's lease, as a process that is the database's sole server finds it at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedTurn {
    pub session: SessionId,
    pub turn_id: TurnId,
    /// The last frame it recorded (0: none); `None` when the lease has no turn row (from before turns were rows).
    pub last_seq: Option<i64>,
}

impl Store {
    /// Starts a message turn in one atomic batch (one round trip remotely): takes the session's lease (or
    /// creates the session holding it), inserts the turn, claims the idempotency key, stores the user's
    /// message and the instructions the turn sends, and expires the calls the user moved on from.
    ///
    /// Every statement after the lease names the session through the turn's row, so when the lease is held
    /// by another turn the turn row is not inserted, the message's NOT NULL session fails, and the whole batch
    /// rolls back: a refused turn writes nothing.
    pub async fn begin_turn(
        &self,
        session: TurnSession,
        lease: &TurnLease,
        content: &str,
        instructions: Option<&str>,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<TurnStart> {
        let now = self.now();
        let turn = &lease.turn_id;
        let held = "(SELECT session_id FROM agent_turns WHERE id = ?1)";
        let mut batch = Batch::write();
        // The user's turn limit first: a refused turn writes nothing.
        let (owner, owner_param) = match session {
            TurnSession::New { owner, .. } => ("?1", super::opt_int_value(owner)),
            TurnSession::Existing(id) => ("(SELECT owner_id FROM agent_sessions WHERE id = ?1)", id.into()),
        };
        let turn_default = super::opt_int_value(self.rate_limits.max_concurrent_turns.map(i64::from));
        let under_limit = batch.push(
            abort_unless(&UNDER_TURN_LIMIT.replace("?1", owner)),
            params![owner_param.clone(), turn_default, now.clone()],
        )?;
        let created = match session {
            TurnSession::New { agent, owner } => {
                let created = batch.push(
                    format!(
                        "INSERT INTO agent_sessions (agent_id, owner_id, created_at, updated_at, turn_id, turn_expires_at)
                         VALUES (?1, ?2, ?3, ?3, ?4, ?5) RETURNING {}",
                        sessions::COLUMNS
                    ),
                    params![agent, super::opt_int_value(owner), now.clone(), turn, lease.expires_at.as_str()],
                )?;
                batch.push(
                    "INSERT INTO agent_turns (id, session_id, kind, created_at) VALUES (?1, last_insert_rowid(), ?2, ?3)",
                    params![turn, TurnKind::Message.as_str(), now.clone()],
                )?;
                Some(created)
            }
            TurnSession::Existing(session) => {
                batch.push(TAKE_LEASE, params![turn, lease.expires_at.as_str(), session, now.clone()])?;
                batch.push(
                    "INSERT INTO agent_turns (id, session_id, kind, created_at)
                     SELECT ?1, id, ?2, ?3 FROM agent_sessions WHERE id = ?4 AND turn_id = ?1",
                    params![turn, TurnKind::Message.as_str(), now.clone(), session],
                )?;
                None
            }
        };
        let claimed = claim.map(|claim| push_claim(&mut batch, claim, Some(turn), None, &now)).transpose()?;
        // The user's message, stored before anything goes upstream.
        push_insert(&mut batch, turn.into(), held, Role::User, content, None, &now)?;
        batch.push(
            format!("UPDATE agent_sessions SET instructions = ?2, updated_at = ?3 WHERE id = {held}"),
            params![turn, opt_text_value(instructions.map(str::to_owned)), now.clone()],
        )?;
        // The calls of the session's last completed response were never answered upstream (answering them
        // moves the chain on), whatever their status: pending ones expire, submitted or executed ones carry
        // their output (a continuation that failed never delivered it).
        let unanswered = batch.push(
            format!(
                "SELECT {COLUMNS} FROM agent_tool_calls WHERE session_id = {held}
                 AND response_id = (SELECT previous_response_id FROM agent_sessions WHERE id = {held}) ORDER BY id"
            ),
            [turn],
        )?;
        batch.push(
            format!(
                "UPDATE agent_tool_calls SET status = 'expired', updated_at = ?2 WHERE session_id = {held} AND status = 'pending'"
            ),
            params![turn, now],
        )?;
        let mut out = self.conn().await.batch(batch).await?;
        if out.failed_at() == Some(under_limit) {
            let quota = self.turn_quota(owner, owner_param).await?.unwrap_or(0);
            return Err(Error::RateLimited(crate::domain::RateState {
                policy: crate::domain::TURNS_POLICY,
                quota,
                remaining: 0,
                reset: 1,
            }));
        }
        if let Some(err) = out.first_error() {
            let err = Error::from(err);
            if claimed.is_some() && IDEMPOTENCY_KEY.violated_by(&err) {
                return Err(self.key_holder(claim).await);
            }
            if let TurnSession::Existing(session) = session {
                return Err(self.lease_holder(session).await);
            }
            return Err(err);
        }
        Ok(TurnStart {
            created: created.map(|i| returned(out.take(i)?, sessions::session)).transpose()?,
            unanswered: out.take(unanswered)?.rows().map(|r| record(&r)).collect::<Result<_>>()?,
        })
    }

    /// Why a turn could not take its session: the turn that holds it (a refused begin wrote nothing).
    async fn lease_holder(&self, session: SessionId) -> Error {
        match self.conn().await.query("SELECT turn_id FROM agent_sessions WHERE id = ?1", [session]).await {
            Ok(rows) => match first(rows, |r| opt_text(r, 0)).await {
                Ok(running) => Error::TurnInProgress(running.flatten().unwrap_or_default()),
                Err(err) => err,
            },
            Err(err) => err,
        }
    }

    /// Gives the session back when a turn ends without its frames (the recorder failed).
    pub async fn release_turn(&self, session: SessionId, turn_id: &TurnId) -> Result<()> {
        release(self.conn().await.sql(), session, turn_id).await
    }
}

// A tool-output submission, and the continuation turn it may start.

/// What a tool-output submission read: see [`Store::tool_output_context`].
#[derive(Debug)]
pub struct ToolOutputContext {
    pub session: crate::domain::Session,
    pub agent: crate::domain::Agent,
    pub tools: Vec<crate::domain::Tool>,
    /// The names of the tools whose link says `require_approval`.
    pub approval_tools: Vec<String>,
    /// The MCP servers the agent uses.
    pub mcp_servers: Vec<crate::domain::LinkedMcpServer>,
    /// The instructions the session's last message turn sent.
    pub instructions: Option<String>,
    /// The response the outputs answer.
    pub response_id: String,
    /// The session's conversation, when the continuation sends it whole (see `store::history`).
    pub history: Option<crate::domain::StoredHistory>,
}

/// The answers checked against what [`Store::tool_output_context`] read, in the order they were sent.
fn validate_outputs(
    viewer: &Caller,
    session: SessionId,
    answers: &Answers,
    out: &mut super::conn::Outcomes,
    [found, agent, tools, servers, calls]: [usize; 5],
    history: super::history::HistoryRead,
) -> Result<ToolOutputContext> {
    let row = out.take(found)?.rows().next().ok_or(Error::NotFound)?;
    let found = sessions::session(&row)?;
    if !viewer.sees_private(found.owner) {
        return Err(Error::NotFound);
    }
    let instructions = opt_text(&row, 7)?;
    let known: Vec<ToolCallRecord> = out.take(calls)?.rows().map(|r| record(&r)).collect::<Result<_>>()?;
    let mut response_id: Option<String> = None;
    for call_id in answers.call_ids() {
        let call = known
            .iter()
            .find(|c| c.call_id == call_id)
            .ok_or_else(|| Error::Missing(format!("No tool call \"{call_id}\" in session {session}.")))?;
        match (answers.is_decisions(), call.approval) {
            (true, Some(Approval::Required)) | (false, None) => {}
            (true, None) => {
                return Err(Error::Conflict(format!("Tool call \"{call_id}\" needs no approval: send its output.")));
            }
            (true, Some(decided)) => {
                return Err(Error::Conflict(format!("Tool call \"{call_id}\" was already decided: {decided}.")));
            }
            (false, Some(_)) => {
                return Err(Error::Conflict(format!(
                    "Tool call \"{call_id}\" waits for a person's decision: POST /api/agent/approvals/."
                )));
            }
        }
        if call.status != ToolCallStatus::Pending {
            return Err(Error::Conflict(format!("Tool call \"{call_id}\" is not pending: it is {}.", call.status)));
        }
        match &response_id {
            Some(id) if *id != call.response_id => {
                return Err(Error::field("outputs", "All outputs must answer calls of the same response."));
            }
            _ => response_id = Some(call.response_id.clone()),
        }
    }
    let response_id = response_id.ok_or_else(|| Error::field("outputs", "At least one output is required."))?;
    let linked = super::turn_context::linked_tools(out, tools, servers)?;
    Ok(ToolOutputContext {
        agent: out.take(agent)?.rows().next().map(|r| super::agents::agent(&r)).transpose()?.ok_or(Error::NotFound)?,
        tools: linked.tools,
        approval_tools: linked.approval_tools,
        mcp_servers: linked.mcp_servers,
        session: found,
        instructions,
        response_id,
        history: super::history::take(out, history)?,
    })
}

/// A statement that fails (rolling its atomic batch back) unless `condition` holds. SQLite has no RAISE
/// outside triggers, so the failing branch evaluates `json('…')` on text that is not JSON: a batch decides on
/// the server, in one round trip, what an interactive transaction would decide between round trips.
/// `condition` is a fixed SQL fragment of the store's own; values are always parameters.
fn abort_unless(condition: &str) -> String {
    format!("SELECT CASE WHEN ({condition}) THEN 1 ELSE json('batch aborted: condition failed') END")
}

/// What a tool-output submission led to.
#[derive(Debug)]
pub enum Submission {
    /// Other calls of the same response still wait for their outputs.
    Waiting { pending: Vec<String> },
    /// Every call of the response has an output or a decision: continue upstream with all of them (approved
    /// calls are still `pending`: the continuation runs them first).
    Complete { response_id: String, calls: Vec<ToolCallRecord> },
}

impl Store {
    /// What a tool-output submission reads before it writes, in one batch (one round trip remotely): the
    /// session (404 unless the viewer's), its agent, the agent's active tools, the instructions of its last
    /// message turn, and the ledger entries of the submitted calls. The outputs are validated against them
    /// here, in the order they were sent: an unknown call is 404, one not pending 409, calls of different
    /// responses 400.
    pub async fn tool_output_context(
        &self,
        viewer: &Caller,
        session: SessionId,
        answers: &Answers,
        claim: Option<&IdempotencyClaim>,
        locals: &[&str],
    ) -> Result<super::TurnRead<Result<ToolOutputContext>>> {
        let ids = serde_json::Value::from(answers.call_ids()).to_string();
        let agent_of = "(SELECT agent_id FROM agent_sessions WHERE id = ?1)";
        let mut batch = Batch::read();
        let found = batch
            .push(format!("SELECT {}, instructions FROM agent_sessions WHERE id = ?1", sessions::COLUMNS), [session])?;
        let agent = batch
            .push(format!("SELECT {} FROM agent_profiles WHERE id = {agent_of}", super::agents::COLUMNS), [session])?;
        let tools = batch.push(super::turn_context::TOOLS.replace("?1", agent_of), [session])?;
        let servers = batch.push(super::mcp_servers::LINKED.replace("?1", agent_of), [session])?;
        let calls = batch.push(
            format!(
                "SELECT {COLUMNS} FROM agent_tool_calls WHERE session_id = ?1 AND call_id IN (SELECT value FROM json_each(?2))"
            ),
            params![session, ids],
        )?;
        let with_locals = [libsql::Value::from(session), super::history::locals_param(locals)];
        let history = super::history::push_read(&mut batch, "?1", agent_of, "?2", &with_locals)?;
        let key_read = super::idempotency::push_key_read(&mut batch, claim, &self.now())?;
        let budget = super::usage::push_budget_read(&mut batch, viewer.owner_for(None), self.clock().now())?;
        let mut out = self.conn().await.batch(batch).await?;
        let key_record = super::idempotency::take_key_record(&mut out, key_read);
        let budget = super::usage::take_budget(&mut out, budget);
        let context =
            validate_outputs(viewer, session, answers, &mut out, [found, agent, tools, servers, calls], history);
        Ok(super::TurnRead { key_record, context, budget })
    }

    /// Stores client outputs for pending calls, all or nothing, in one atomic batch (one round trip
    /// remotely). Exactly one of concurrent submissions that complete a response sees `Complete`: the
    /// server runs batches one at a time, and whether calls are still pending is decided inside the batch.
    ///
    /// The batch takes the session's lease, stops (rolls back) unless it holds it, marks the calls submitted
    /// only if every one of them is still pending (and stops otherwise), then either starts the continuation
    /// turn (no call of the response is pending any more) or gives the lease back, claims the key with what
    /// it decided, and reads the response's calls back.
    pub async fn submit_tool_outputs(
        &self,
        context: &ToolOutputContext,
        lease: &TurnLease,
        answers: &Answers,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Submission> {
        let now = self.now();
        let session = context.session.id;
        let response = context.response_id.as_str();
        let turn = &lease.turn_id;
        let rows = serde_json::Value::from(answers.rows()).to_string();
        // What the answered calls' approval must be: none for outputs, `required` for decisions.
        let expected = answers.is_decisions().then_some(Approval::Required.as_str());
        let pending_of_response = "SELECT 1 FROM agent_tool_calls WHERE session_id = ?1 AND response_id = ?2
             AND status = 'pending' AND (approval IS NULL OR approval = 'required')";
        let mut batch = Batch::write();
        batch.push(TAKE_LEASE, params![turn, lease.expires_at.as_str(), session, now.clone()])?;
        let leased = batch
            .push(abort_unless("(SELECT turn_id FROM agent_sessions WHERE id = ?1) IS ?2"), params![session, turn])?;
        // An output (or a denial's) marks its call submitted; an approval leaves it pending, to run.
        batch.push(
            "UPDATE agent_tool_calls SET updated_at = ?4,
                    output = p.output, approval = coalesce(p.decision, approval),
                    status = CASE WHEN p.decision = 'approved' THEN 'pending' ELSE 'submitted' END
             FROM (SELECT json_extract(value, '$[0]') AS call_id, json_extract(value, '$[1]') AS output,
                          json_extract(value, '$[2]') AS decision FROM json_each(?3)) p
             WHERE agent_tool_calls.call_id = p.call_id AND session_id = ?1 AND response_id = ?2
               AND status = 'pending' AND approval IS ?5",
            params![session, response, rows, now.clone(), super::opt_text_value(expected.map(str::to_owned))],
        )?;
        let answered = answers.call_ids().len();
        let all_pending = batch.push(abort_unless("changes() = ?1"), [i64::try_from(answered).unwrap_or(i64::MAX)])?;
        batch.push(
            format!(
                "INSERT INTO agent_turns (id, session_id, kind, created_at)
                 SELECT ?3, ?1, ?4, ?5 WHERE NOT EXISTS ({pending_of_response})"
            ),
            params![session, response, turn, TurnKind::ToolOutput.as_str(), now.clone()],
        )?;
        batch.push(
            format!("{RELEASE} AND NOT EXISTS (SELECT 1 FROM agent_turns WHERE id = ?2)"),
            params![session, turn],
        )?;
        let claimed =
            claim.map(|claim| push_submission_claim(&mut batch, claim, turn, session, response, &now)).transpose()?;
        let calls = batch.push(
            format!("SELECT {COLUMNS} FROM agent_tool_calls WHERE session_id = ?1 AND response_id = ?2 ORDER BY id"),
            params![session, response],
        )?;
        let started = batch.push("SELECT id FROM agent_turns WHERE id = ?1", [turn])?;
        let mut out = self.conn().await.batch(batch).await?;
        match out.failed_at() {
            None => {}
            Some(step) if step == leased => return Err(self.lease_holder(session).await),
            Some(step) if step == all_pending => {
                return Err(Error::Conflict(
                    "A tool call of this submission is no longer pending (answered or decided meanwhile).".into(),
                ));
            }
            Some(step) if Some(step) == claimed => return Err(self.key_holder(claim).await),
            Some(_) => {
                return Err(out
                    .first_error()
                    .map_or_else(|| Error::bug("a batch failed without a failed statement"), Error::from));
            }
        }
        let calls: Vec<ToolCallRecord> = out.take(calls)?.rows().map(|r| record(&r)).collect::<Result<_>>()?;
        if out.take(started)?.rows().next().is_some() {
            Ok(Submission::Complete { response_id: context.response_id.clone(), calls })
        } else {
            Ok(Submission::Waiting {
                pending: calls
                    .iter()
                    .filter(|c| c.status == ToolCallStatus::Pending && c.approval != Some(Approval::Approved))
                    .map(|c| c.call_id.clone())
                    .collect(),
            })
        }
    }
}

// Running and ending: a turn's end recorded with the release of its session, and cancel requests.

/// Runs an atomic batch for its effect; the first failure is the error.
async fn write(conn: &super::Conn<'_>, batch: Batch) -> Result<()> {
    match conn.batch(batch).await?.first_error() {
        Some(err) => Err(err.into()),
        None => Ok(()),
    }
}

/// How a turn ended, as [`Store::end_turn`] records it.
#[derive(Debug, Clone, Copy)]
pub struct TurnEnding<'a> {
    pub session: SessionId,
    pub turn_id: &'a TurnId,
    /// Its last frames, ending with `done`.
    pub frames: &'a [NewFrame<'a>],
    /// A keyed chat's reply, kept for its key's retries.
    pub reply: Option<&'a KeptReply>,
    /// What its responses reported, added to the usage aggregate.
    pub usage: &'a TurnUsage,
    /// Whether it counts as a failed turn.
    pub failed: bool,
}

impl Store {
    /// Ends a turn in one atomic batch (one round trip remotely): its last frames (ending with `done`), its
    /// finish time, the release of its session and, for a keyed chat, the reply its key's retries get.
    /// Whoever sees the session free therefore finds every frame recorded. The turn's tokens (and whether it
    /// failed) are added to the usage aggregate in the same batch: the report and the budgets cost the turn
    /// no round trip.
    pub async fn end_turn(&self, end: &TurnEnding<'_>) -> Result<()> {
        let TurnEnding { session, turn_id, frames, reply, usage, failed } = *end;
        // Safe to run twice (frames already recorded are kept, the finish time is set once, the release and
        // the kept answer write what they wrote): retried even when a request's answer was lost. The usage is
        // added only by the run that set the finish time (see `usage::push_turn_usage`), so it counts once.
        let now = self.now();
        let mut batch = Batch::write().repeatable();
        push_frames(&mut batch, turn_id, frames)?;
        batch.push(
            "UPDATE agent_turns SET finished_at = ?1 WHERE id = ?2 AND finished_at IS NULL",
            params![now.clone(), turn_id],
        )?;
        super::usage::push_turn_usage(&mut batch, session, usage, failed, &now)?;
        batch.push(RELEASE, params![session, turn_id])?;
        if let Some(KeptReply { claim, answer }) = reply {
            let status = i64::from(answer.status.as_u16());
            batch.push(STORE_ANSWER, params![status, answer.body.as_str(), claim.owner, claim.key.as_str()])?;
        }
        write(&self.conn().await, batch).await
    }

    /// The id of the session's running turn, if any (an expired lease is a crashed turn: not running).
    pub async fn running_turn(&self, session: SessionId) -> Result<Option<TurnId>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT turn_id FROM agent_sessions WHERE id = ?1 AND turn_expires_at > ?2",
                params![session, self.now()],
            )
            .await?;
        Ok(first(rows, |r| opt_text(r, 0)).await?.flatten().map(TurnId::from))
    }

    /// Turns that hold their session's lease ([`LeasedTurn`]), with the last frame each recorded (`None`: no turn row, a lease
    /// from before turns were rows). For a process that knows it is the only one serving the database.
    pub async fn leased_turns(&self) -> Result<Vec<LeasedTurn>> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT s.id, s.turn_id, CASE WHEN t.id IS NULL THEN NULL
                        ELSE (SELECT COALESCE(MAX(e.seq), 0) FROM agent_turn_events e WHERE e.turn_id = t.id) END
                 FROM agent_sessions s LEFT JOIN agent_turns t ON t.id = s.turn_id
                 WHERE s.turn_id IS NOT NULL ORDER BY s.id",
                (),
            )
            .await?;
        collect(rows, |r| Ok(LeasedTurn { session: int(r, 0)?, turn_id: text(r, 1)?.into(), last_seq: opt_int(r, 2)? }))
            .await
    }

    /// Asks the session's running turn to stop; answers its id. 404 for a session the caller cannot see,
    /// 409 when no turn is running.
    pub async fn request_cancel(&self, caller: &Caller, session: SessionId) -> Result<TurnId> {
        let conn = self.conn().await;
        sessions::find_visible(conn.sql(), caller, session).await?;
        let now = self.now();
        let rows = conn
            .query(
                "UPDATE agent_turns SET cancel_requested = 1
                 WHERE id = (SELECT turn_id FROM agent_sessions WHERE id = ?1 AND turn_expires_at > ?2)
                 RETURNING id",
                params![session, now],
            )
            .await?;
        first(rows, |r| text(r, 0).map(TurnId::from))
            .await?
            .ok_or_else(|| Error::Conflict("No turn is running on this session.".into()))
    }

    /// Whether someone asked the turn to stop (possibly from another process).
    pub async fn cancel_requested(&self, turn_id: &TurnId) -> Result<bool> {
        let conn = self.conn().await;
        let rows = conn.query("SELECT cancel_requested FROM agent_turns WHERE id = ?1", [turn_id]).await?;
        Ok(first(rows, |r| int::<i64>(r, 0)).await?.unwrap_or(0) != 0)
    }
}
