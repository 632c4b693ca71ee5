//! Forking a session: one read batch (the session, the fork point, the agent to continue with), then one
//! atomic write that creates the fork and copies the messages and tool calls up to the point.
//!
//! How the fork's next turn continues is decided here, once: from the point's response id when the fork
//! keeps the agent and the point is a completed response (a provider that keeps state has it), otherwise from
//! the copied history sent whole (`resend_history`; a provider whose state Lambent keeps always gets it).

use libsql::params;

use super::conn::Batch;
use super::messages::returned;
use super::{Store, agents, messages, opt_int_value, opt_text_value, sessions};
use crate::domain::{Caller, ForkRequest, ResponseStatus, Session, SessionId, missing_pk};
use crate::error::{Error, Result};

/// The session the batch's INSERT created: AUTOINCREMENT keeps its id in `sqlite_sequence`, which, unlike
/// `last_insert_rowid()`, the later INSERTs of the batch do not move.
const FORKED: &str = "(SELECT seq FROM sqlite_sequence WHERE name = 'agent_sessions')";

impl Store {
    /// Forks the caller's session `source` at `fork.message` (default: its last message). 404 for a session
    /// the caller cannot see; 400 naming `message` (not the session's, or a response waiting for tool outputs:
    /// between a call and its output) or `agent` (not one the caller sees).
    pub async fn fork_session(&self, caller: &Caller, source: SessionId, fork: &ForkRequest) -> Result<Session> {
        let conn = self.conn().await;
        let mut batch = Batch::read();
        let found = batch.push(format!("SELECT {} FROM agent_sessions WHERE id = ?1", sessions::COLUMNS), [source])?;
        let point = batch.push(
            format!(
                "SELECT {} FROM agent_messages WHERE session_id = ?1
                 AND id = coalesce(?2, (SELECT max(id) FROM agent_messages WHERE session_id = ?1))",
                messages::COLUMNS
            ),
            params![source, opt_int_value(fork.message)],
        )?;
        let agent = batch.push(
            format!(
                "SELECT {} FROM agent_profiles WHERE id = coalesce(?1, (SELECT agent_id FROM agent_sessions WHERE id = ?2))",
                agents::COLUMNS
            ),
            params![opt_int_value(fork.agent), source],
        )?;
        let mut out = conn.batch(batch).await?;
        let session = out.take(found)?.rows().next().map(|r| sessions::session(&r)).transpose()?;
        let session = session.filter(|s| caller.sees_private(s.owner)).ok_or(Error::NotFound)?;
        let point = out.take(point)?.rows().next().map(|r| messages::message(&r)).transpose()?;
        let agent = out.take(agent)?.rows().next().map(|r| agents::agent(&r)).transpose()?;
        // The session's own agent answers even if the caller no longer sees it; another must be visible.
        let agent = match (agent, fork.agent) {
            (Some(agent), None) => agent,
            (Some(agent), Some(_)) if caller.sees(agent.owner) => agent,
            (_, named) => return Err(Error::field("agent", missing_pk(named.map_or(0, |agent| agent.0)))),
        };
        if let (None, Some(id)) = (&point, fork.message) {
            return Err(Error::field("message", format!("No message {id} in session {source}.")));
        }
        if let Some(p) = point.as_ref().filter(|p| p.status == Some(ResponseStatus::RequiresToolOutput)) {
            return Err(Error::field(
                "message",
                format!(
                    "Message {} asked for tool calls whose outputs come after it: a fork cannot end between a call \
                     and its output. Fork from the message that answered the outputs, or from one before the calls.",
                    p.id
                ),
            ));
        }
        let chained = point
            .as_ref()
            .filter(|p| agent.id == session.agent && p.status == Some(ResponseStatus::Completed))
            .and_then(|p| p.response_id.clone());
        let resend = chained.is_none() && point.is_some();
        let upto = point.as_ref().map_or(0, |p| p.id.0);
        let now = self.now();
        let mut batch = Batch::write();
        let created = batch.push(
            format!(
                "INSERT INTO agent_sessions
                 (agent_id, owner_id, previous_response_id, instructions, resend_history, created_at, updated_at)
                 VALUES (?1, ?2, ?3, (SELECT instructions FROM agent_sessions WHERE id = ?4), ?5, ?6, ?6)
                 RETURNING {}",
                sessions::COLUMNS
            ),
            params![agent.id, opt_int_value(caller.owner_for(None)), opt_text_value(chained), source, resend, now],
        )?;
        batch.push(
            format!(
                "INSERT INTO agent_messages (session_id, role, content, status, response_id, usage, created_at, output)
                 SELECT {FORKED}, role, content, status, response_id, usage, created_at, output
                 FROM agent_messages WHERE session_id = ?1 AND id <= ?2 ORDER BY id"
            ),
            params![source, upto],
        )?;
        // The calls of the copied responses; none can be pending (a point between a call and its output is
        // refused above, and a new message expires the calls it moves on from).
        batch.push(
            format!(
                "INSERT INTO agent_tool_calls
                 (session_id, response_id, call_id, name, call_type, arguments, status, output, created_at, updated_at)
                 SELECT {FORKED}, response_id, call_id, name, call_type, arguments,
                        CASE status WHEN 'pending' THEN 'expired' ELSE status END, output, created_at, updated_at
                 FROM agent_tool_calls WHERE session_id = ?1 AND response_id IN
                   (SELECT response_id FROM agent_messages WHERE session_id = ?1 AND id <= ?2 AND response_id IS NOT NULL)
                 ORDER BY id"
            ),
            params![source, upto],
        )?;
        let mut out = conn.batch(batch).await?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        returned(out.take(created)?, sessions::session)
    }
}
