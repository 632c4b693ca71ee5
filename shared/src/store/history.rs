//! A session's conversation read back for a rebuild (`llm::history`), inside the batch a turn already reads
//! its context with: no extra round trip. The rows come only when the history is wanted — the agent's provider
//! keeps no state (its name is among the `local` ones the statement is given), or the session owes its
//! provider the whole history (`resend_history`, set by a fork) — so a turn on a stateful provider reads
//! nothing more than before.

use libsql::Value;

use super::conn::{Batch, Outcomes};
use super::messages::{COLUMNS as MESSAGE_COLUMNS, message};
use super::tool_calls::{COLUMNS as CALL_COLUMNS, record};
use super::{Row, opt_json_col};
use crate::domain::{StoredHistory, StoredMessage};
use crate::error::Result;

/// Where a pushed history read's rows are.
#[derive(Debug, Clone, Copy)]
pub(super) struct HistoryRead {
    wanted: usize,
    messages: usize,
    calls: usize,
}

/// Pushes the history reads. `session` and `agent` are SQL expressions over `params`, `locals` the
/// placeholder of the JSON array of `local` providers' names among them.
pub(super) fn push_read(
    batch: &mut Batch,
    session: &str,
    agent: &str,
    locals: &str,
    params: &[Value],
) -> Result<HistoryRead> {
    let wanted = format!(
        "((SELECT provider FROM agent_profiles WHERE id = {agent}) IN (SELECT value FROM json_each({locals}))
          OR (SELECT resend_history FROM agent_sessions WHERE id = {session}) = 1)"
    );
    Ok(HistoryRead {
        wanted: batch.push(format!("SELECT coalesce({wanted}, 0)"), params.to_vec())?,
        messages: batch.push(
            format!(
                "SELECT {MESSAGE_COLUMNS}, output FROM agent_messages WHERE session_id = {session} AND {wanted}
                 ORDER BY id"
            ),
            params.to_vec(),
        )?,
        calls: batch.push(
            format!(
                "SELECT {CALL_COLUMNS} FROM agent_tool_calls WHERE session_id = {session} AND {wanted} ORDER BY id"
            ),
            params.to_vec(),
        )?,
    })
}

/// The history a pushed read found, `None` when it is not wanted.
pub(super) fn take(out: &mut Outcomes, read: HistoryRead) -> Result<Option<StoredHistory>> {
    let wanted = out.take(read.wanted)?.rows().next().map(|r| super::int(&r, 0)).transpose()?.unwrap_or(0) != 0;
    if !wanted {
        return Ok(None);
    }
    let stored = |r: &Row| Ok(StoredMessage { message: message(r)?, output: opt_json_col(r, 8)? });
    Ok(Some(StoredHistory {
        messages: out.take(read.messages)?.rows().map(|r| stored(&r)).collect::<Result<_>>()?,
        calls: out.take(read.calls)?.rows().map(|r| record(&r)).collect::<Result<_>>()?,
    }))
}

/// The JSON array of the `local` providers' names, as [`push_read`]'s `locals` parameter.
pub(super) fn locals_param(locals: &[&str]) -> Value {
    Value::Text(serde_json::Value::from(locals.to_vec()).to_string())
}
