//! The tool-call ledger, and the one transaction that records how a response ended.

use libsql::params;

use super::{Row, listed_under, opt_int, vals};
use serde_json::Value;

use super::messages::{Ending, insert};
use super::{Listed, Slice, Sql, Store, collect, count, first, int, opt_text, opt_text_value, sessions, text};
use crate::domain::{Message, ToolCallRecord, ToolType};
use crate::error::{Error, Result};
use crate::llm::events::ToolCall;

use super::turns::{IdempotencyClaim, TurnKind, claim_key, insert_turn};

const COLUMNS: &str =
    "id, session_id, response_id, call_id, name, call_type, arguments, status, output, created_at, updated_at";

fn record(row: &Row) -> Result<ToolCallRecord> {
    let kind = text(row, 5)?;
    Ok(ToolCallRecord {
        id: int(row, 0)?,
        session: int(row, 1)?,
        response_id: text(row, 2)?,
        call_id: text(row, 3)?,
        name: text(row, 4)?,
        kind: ToolType::parse(&kind).ok_or_else(|| Error::Internal(format!("unknown call_type {kind:?}")))?,
        arguments: text(row, 6)?,
        status: text(row, 7)?,
        output: opt_text(row, 8)?,
        created_at: text(row, 9)?,
        updated_at: text(row, 10)?,
    })
}

async fn calls_of_response(conn: Sql<'_>, session: i64, response_id: &str) -> Result<Vec<ToolCallRecord>> {
    let rows = conn
        .query(
            &format!("SELECT {COLUMNS} FROM agent_tool_calls WHERE session_id = ?1 AND response_id = ?2 ORDER BY id"),
            params![session, response_id],
        )
        .await?;
    collect(rows, record).await
}

/// How one response ended, as the runtime hands it to the store.
#[derive(Debug)]
pub struct ResponseOutcome<'a> {
    pub session: i64,
    pub response_id: Option<&'a str>,
    /// `completed`, `requires_tool_output`, `failed` or `incomplete`.
    pub status: &'a str,
    pub text: &'a str,
    pub usage: Option<&'a Value>,
    /// The response's `output` array: present only for a completed response, which alone moves the session on.
    pub completed_output: Option<&'a Value>,
    /// Calls of a completed response; they enter the ledger as pending.
    pub calls: &'a [ToolCall],
}

/// What a tool-output submission led to.
#[derive(Debug)]
pub enum Submission {
    /// Other calls of the same response still wait for their outputs.
    Waiting { pending: Vec<String> },
    /// Every call of the response has an output: continue upstream with all of them.
    Complete { response_id: String, calls: Vec<ToolCallRecord> },
}

impl Store {
    /// Records a finished response in one transaction: the assistant message, the session's chain (only
    /// for a completed response) and the ledger entries of its tool calls.
    pub async fn record_response(&self, outcome: ResponseOutcome<'_>) -> Result<Message> {
        let conn = self.conn().await;
        let now = self.now();
        let tx = conn.transaction().await?;
        let ending = Ending { status: outcome.status, response_id: outcome.response_id, usage: outcome.usage };
        let stored = insert(tx.sql(), outcome.session, "assistant", outcome.text, Some(ending), &now).await?;
        if let (Some(output), Some(response_id)) = (outcome.completed_output, outcome.response_id) {
            tx.execute(
                "UPDATE agent_sessions SET previous_response_id = ?1, last_output = ?2, updated_at = ?3 WHERE id = ?4",
                params![response_id, output.to_string(), now.clone(), outcome.session],
            )
            .await?;
            for call in outcome.calls {
                tx.execute(
                    "INSERT INTO agent_tool_calls
                     (session_id, response_id, call_id, name, call_type, arguments, status, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
                    params![
                        outcome.session,
                        response_id,
                        call.call_id.as_str(),
                        call.name.as_str(),
                        call.kind.as_str(),
                        call.arguments.as_str(),
                        now.clone()
                    ],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Stores a server-side executor's output for a pending call.
    pub async fn record_executed(&self, session: i64, call_id: &str, output: &str) -> Result<()> {
        self.conn()
            .await
            .execute(
                "UPDATE agent_tool_calls SET status = 'executed', output = ?1, updated_at = ?2
                 WHERE session_id = ?3 AND call_id = ?4 AND status = 'pending'",
                params![output, self.now(), session, call_id],
            )
            .await?;
        Ok(())
    }

    /// Stores client outputs for pending calls, all or nothing. Exactly one of concurrent submissions that
    /// complete a response sees `Complete` (the store's lock serialises them).
    pub async fn submit_tool_outputs(
        &self,
        session: i64,
        lease: &TurnLease,
        outputs: &[(String, String)],
        claim: Option<&IdempotencyClaim>,
    ) -> Result<Submission> {
        let conn = self.conn().await;
        let now = self.now();
        let tx = conn.transaction().await?;
        // Outputs are refused while a turn runs; the one that completes the response starts the next turn.
        take_lease(tx.sql(), session, lease, &now).await?;
        let mut response_id: Option<String> = None;
        for (call_id, output) in outputs {
            let rows = tx
                .query(
                    &format!("SELECT {COLUMNS} FROM agent_tool_calls WHERE session_id = ?1 AND call_id = ?2"),
                    params![session, call_id.as_str()],
                )
                .await?;
            let call = first(rows, record)
                .await?
                .ok_or_else(|| Error::Missing(format!("No tool call \"{call_id}\" in session {session}.")))?;
            if call.status != "pending" {
                return Err(Error::Conflict(format!("Tool call \"{call_id}\" is not pending: it is {}.", call.status)));
            }
            match &response_id {
                Some(id) if *id != call.response_id => {
                    return Err(Error::field("outputs", "All outputs must answer calls of the same response."));
                }
                _ => response_id = Some(call.response_id.clone()),
            }
            tx.execute(
                "UPDATE agent_tool_calls SET status = 'submitted', output = ?1, updated_at = ?2 WHERE id = ?3",
                params![output.as_str(), now.clone(), call.id],
            )
            .await?;
        }
        let response_id = response_id.ok_or_else(|| Error::field("outputs", "At least one output is required."))?;
        let calls = calls_of_response(tx.sql(), session, &response_id).await?;
        let pending: Vec<String> = calls.iter().filter(|c| c.status == "pending").map(|c| c.call_id.clone()).collect();
        if pending.is_empty() {
            insert_turn(tx.sql(), &lease.turn_id, session, TurnKind::ToolOutput, &now).await?;
            if let Some(claim) = claim {
                claim_key(tx.sql(), claim, Some(&lease.turn_id), None, &now).await?;
            }
        } else {
            release(tx.sql(), session, &lease.turn_id).await?;
            if let Some(claim) = claim {
                let body = serde_json::json!({"pending_tool_calls": pending}).to_string();
                claim_key(tx.sql(), claim, None, Some((202, &body)), &now).await?;
            }
        }
        tx.commit().await?;
        if pending.is_empty() {
            Ok(Submission::Complete { response_id, calls })
        } else {
            Ok(Submission::Waiting { pending })
        }
    }

    /// Calls of one response, oldest first.
    pub async fn response_tool_calls(&self, session: i64, response_id: &str) -> Result<Vec<ToolCallRecord>> {
        calls_of_response(self.conn().await.sql(), session, response_id).await
    }

    /// The session's ledger, oldest first; 404 when the session does not exist.
    pub async fn list_tool_calls(
        &self,
        viewer: &crate::auth::Caller,
        session: i64,
        slice: Slice,
    ) -> Result<Listed<ToolCallRecord>> {
        let conn = self.conn().await;
        let sees = |r: &Row| Ok(viewer.sees_private(opt_int(r, 0)?));
        let guard = (("SELECT owner_id FROM agent_sessions WHERE id = ?1", vals([session])?), &sees as _);
        listed_under(
            &conn,
            guard,
            ("SELECT COUNT(*) FROM agent_tool_calls WHERE session_id = ?1", vals([session])?),
            (
                &format!("SELECT {COLUMNS} FROM agent_tool_calls WHERE session_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3"),
                vals(params![session, slice.limit, slice.offset])?,
            ),
            record,
        )
        .await
    }
}

/// Takes the session's turn lease, or fails with the running turn's id. Inside the caller's transaction, so
/// a refused turn writes nothing.
async fn take_lease(conn: Sql<'_>, session: i64, lease: &TurnLease, now: &str) -> Result<()> {
    let taken = conn
        .execute(
            "UPDATE agent_sessions SET turn_id = ?1, turn_expires_at = ?2
             WHERE id = ?3 AND (turn_id IS NULL OR turn_expires_at IS NULL OR turn_expires_at <= ?4)",
            params![lease.turn_id.as_str(), lease.expires_at.as_str(), session, now],
        )
        .await?;
    if taken == 1 {
        return Ok(());
    }
    let rows = conn.query("SELECT turn_id FROM agent_sessions WHERE id = ?1", [session]).await?;
    let running = first(rows, |r| opt_text(r, 0)).await?.flatten().unwrap_or_default();
    Err(Error::TurnInProgress(running))
}

/// A turn's claim on its session.
#[derive(Debug, Clone)]
pub struct TurnLease {
    pub turn_id: String,
    pub expires_at: String,
}

/// What starting a message turn wrote.
#[derive(Debug)]
pub struct TurnStart {
    /// The user's message, stored before anything goes upstream.
    pub message: Message,
    /// Calls of a response that never got all its outputs (so none went upstream): the pending ones are now
    /// expired (their `output` is None), and every one must be answered upstream before the new message.
    pub unanswered: Vec<ToolCallRecord>,
}

impl Store {
    /// Starts a message turn in one transaction: stores the user's message, remembers the instructions the
    /// turn sends, and expires the calls the user moved on from.
    pub async fn begin_turn(
        &self,
        session: i64,
        lease: &TurnLease,
        content: &str,
        instructions: Option<&str>,
        claim: Option<&IdempotencyClaim>,
    ) -> Result<TurnStart> {
        let conn = self.conn().await;
        let now = self.now();
        let tx = conn.transaction().await?;
        take_lease(tx.sql(), session, lease, &now).await?;
        insert_turn(tx.sql(), &lease.turn_id, session, TurnKind::Message, &now).await?;
        if let Some(claim) = claim {
            claim_key(tx.sql(), claim, Some(&lease.turn_id), None, &now).await?;
        }
        let stored = insert(tx.sql(), session, "user", content, None, &now).await?;
        tx.execute(
            "UPDATE agent_sessions SET instructions = ?1, updated_at = ?2 WHERE id = ?3",
            params![opt_text_value(instructions.map(str::to_owned)), now.clone(), session],
        )
        .await?;
        // The calls of the session's last completed response were never answered upstream (answering them
        // moves the chain on), whatever their status: pending ones expire, submitted or executed ones carry
        // their output (a continuation that failed never delivered it).
        let rows = tx.query("SELECT previous_response_id FROM agent_sessions WHERE id = ?1", [session]).await?;
        let unanswered = match first(rows, |r| opt_text(r, 0)).await?.flatten() {
            Some(response_id) => calls_of_response(tx.sql(), session, &response_id).await?,
            None => Vec::new(),
        };
        tx.execute(
            "UPDATE agent_tool_calls SET status = 'expired', updated_at = ?1 WHERE session_id = ?2 AND status = 'pending'",
            params![now, session],
        )
        .await?;
        tx.commit().await?;
        Ok(TurnStart { message: stored, unanswered })
    }

    /// Gives the session back when a turn ends without its frames (the recorder failed).
    pub async fn end_turn(&self, session: i64, turn_id: &str) -> Result<()> {
        release(self.conn().await.sql(), session, turn_id).await
    }

    /// The instructions the session's last message turn sent.
    pub async fn session_instructions(&self, session: i64) -> Result<Option<String>> {
        let conn = self.conn().await;
        let rows = conn.query("SELECT instructions FROM agent_sessions WHERE id = ?1", [session]).await?;
        Ok(first(rows, |r| opt_text(r, 0)).await?.flatten())
    }
}

pub(super) async fn release(conn: Sql<'_>, session: i64, turn_id: &str) -> Result<()> {
    conn.execute(
        "UPDATE agent_sessions SET turn_id = NULL, turn_expires_at = NULL WHERE id = ?1 AND turn_id = ?2",
        params![session, turn_id],
    )
    .await?;
    Ok(())
}
