//! The tool-call ledger, and the one write that records how a response ended.

use libsql::params;

use super::{Row, listed_under, opt_int, vals};
use serde_json::Value;

use super::conn::Batch;
use super::messages::{AssistantEnd, push_answer_once, push_insert, returned};
use super::{Listed, Slice, Store, int, opt_text, state, text};
use crate::domain::ToolCall;
use crate::domain::{Approval, Message, ResponseStatus, Role, SessionId, ToolCallRecord, ToolCallStatus, ToolType};
use crate::error::Result;

/// What the model and tool endpoints wrote as blobs: read whole, U+0000 and all (see `text` in `mod.rs`).
pub(super) const COLUMNS: &str = "id, session_id, CAST(response_id AS BLOB) AS response_id, \
    CAST(call_id AS BLOB) AS call_id, CAST(name AS BLOB) AS name, call_type, CAST(arguments AS BLOB) AS arguments, \
    status, CAST(output AS BLOB) AS output, created_at, updated_at, approval";

pub(super) fn record(row: &Row) -> Result<ToolCallRecord> {
    Ok(ToolCallRecord {
        id: int(row, 0)?,
        session: int(row, 1)?,
        response_id: text(row, 2)?,
        call_id: text(row, 3)?,
        name: text(row, 4)?,
        kind: state(row, 5, "agent_tool_calls.call_type", ToolType::parse)?,
        arguments: text(row, 6)?,
        status: state(row, 7, "agent_tool_calls.status", ToolCallStatus::parse)?,
        output: opt_text(row, 8)?,
        created_at: text(row, 9)?,
        updated_at: text(row, 10)?,
        approval: super::opt_state(row, 11, "agent_tool_calls.approval", Approval::parse)?,
    })
}

/// How one response ended, as a turn hands it to the store.
#[derive(Debug)]
pub struct ResponseRecord<'a> {
    pub session: SessionId,
    pub response_id: Option<&'a str>,
    pub status: ResponseStatus,
    pub text: &'a str,
    pub usage: Option<&'a Value>,
    /// The response's `output` array: present only for a completed response, which alone moves the session on.
    pub completed_output: Option<&'a Value>,
    /// Calls of a completed response; they enter the ledger as pending.
    pub calls: &'a [ToolCall],
    /// The calls among them that wait for a person's decision (their `approval` is `required`).
    pub awaiting_approval: &'a [String],
    /// Outputs of earlier calls the turn ran before this response (approved calls): `(call_id, output)`,
    /// stored as executed in the same write.
    pub executed: &'a [(String, String)],
}

impl Store {
    /// Records a finished response in one transaction: the assistant message, the session's chain (only
    /// for a completed response), the ledger entries of its tool calls, and the outputs of calls the turn ran
    /// before it.
    pub async fn record_response(&self, record: ResponseRecord<'_>) -> Result<Message> {
        let now = self.now();
        let end = AssistantEnd {
            status: record.status,
            response_id: record.response_id,
            usage: record.usage,
            output: record.completed_output,
        };
        // A response with an id is stored once whatever happens to the request (its message and calls are
        // conditioned on not being there yet): the write is retried even when its answer was lost.
        let (mut batch, stored) = match record.response_id {
            Some(_) => {
                let mut batch = Batch::write().repeatable();
                let stored = push_answer_once(&mut batch, record.session, record.text, end, &now)?;
                (batch, stored)
            }
            None => {
                let mut batch = Batch::write();
                let stored = push_insert(
                    &mut batch,
                    record.session.into(),
                    "?1",
                    Role::Assistant,
                    record.text,
                    Some(end),
                    &now,
                )?;
                (batch, stored)
            }
        };
        if let (Some(output), Some(response_id)) = (record.completed_output, record.response_id) {
            batch.push(
                "UPDATE agent_sessions SET previous_response_id = ?1, last_output = ?2, updated_at = ?3, resend_history = 0
                 WHERE id = ?4",
                params![response_id, output.to_string(), now.clone(), record.session],
            )?;
            for call in record.calls {
                batch.push(
                    "INSERT INTO agent_tool_calls
                     (session_id, response_id, call_id, name, call_type, arguments, status, created_at, updated_at, approval)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8) ON CONFLICT (session_id, call_id) DO NOTHING",
                    params![
                        record.session,
                        response_id,
                        call.call_id.as_str(),
                        call.name.as_str(),
                        call.kind.as_str(),
                        call.arguments.as_str(),
                        now.clone(),
                        super::opt_text_value(
                            record.awaiting_approval.contains(&call.call_id).then(|| Approval::Required.as_str().to_owned())
                        )
                    ],
                )?;
            }
        }
        for (call_id, output) in record.executed {
            batch.push(
                "UPDATE agent_tool_calls SET status = 'executed', output = ?1, updated_at = ?2
                 WHERE session_id = ?3 AND call_id = ?4 AND status = 'pending'",
                params![output.as_str(), now.clone(), record.session, call_id.as_str()],
            )?;
        }
        let mut out = self.conn().await.batch(batch).await?;
        if let Some(err) = out.first_error() {
            return Err(err.into());
        }
        returned(out.take(stored)?, super::messages::message)
    }

    /// Stores a server-side executor's output for a pending call.
    pub async fn record_executed(&self, session: SessionId, call_id: &str, output: &str) -> Result<()> {
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

    /// The session's ledger, oldest first; 404 when the session does not exist.
    pub async fn list_tool_calls(
        &self,
        viewer: &crate::domain::Caller,
        session: SessionId,
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
