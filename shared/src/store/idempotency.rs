//! Idempotency keys: claimed in the same atomic batch as what a request writes, read back in the same batch
//! as what a retry reads, for an idempotent replay.

use libsql::params;

use super::conn::Batch;
use super::{Store, first, opt_int, opt_text, text};
use crate::domain::{SessionId, TurnId, UserId};
use crate::error::{Error, Result};

/// A request's `Idempotency-Key`, claimed in the same transaction as what the request writes.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub owner: UserId,
    pub key: String,
    /// The endpoint's name; a key belongs to one endpoint.
    pub endpoint: &'static str,
    pub fingerprint: String,
    /// Keys recorded before this time are forgotten (see [`KEY_LIFETIME`]).
    pub expired_before: String,
}
/// How long a key is remembered, as Stripe and the IETF draft suggest.
pub const KEY_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// What a key recorded of the request that claimed it: what an idempotent replay answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRecord {
    /// It started this turn; `running` while the turn holds its session. A keyed chat's reply is kept too.
    Turn { session: SessionId, turn_id: TurnId, running: bool, answer: Option<KeptAnswer> },
    /// It was answered without a turn (a 202 of tool-output).
    Answered(KeptAnswer),
}
/// An answer kept for a key's retries: its HTTP status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptAnswer {
    pub status: axum::http::StatusCode,
    pub body: String,
}
/// A keyed chat's reply, kept with its key for the key's retries (recorded with the turn's end).
#[derive(Debug, Clone)]
pub struct KeptReply {
    pub claim: IdempotencyClaim,
    pub answer: KeptAnswer,
}
/// `idempotency_keys`' `PRIMARY KEY (owner_id, key)`: a key another request claimed first.
pub(super) const IDEMPOTENCY_KEY: super::Unique = super::Unique::new("idempotency_keys", &["owner_id", "key"]);

/// Frees the key if the request that claimed it is older than [`KEY_LIFETIME`].
fn push_forget_expired(batch: &mut Batch, claim: &IdempotencyClaim) -> Result<usize> {
    batch.push(
        "DELETE FROM idempotency_keys WHERE owner_id = ?1 AND key = ?2 AND created_at <= ?3",
        params![claim.owner, claim.key.as_str(), claim.expired_before.as_str()],
    )
}

/// Adds the claim of a key to an atomic batch: an expired key is freed, then the key inserted; a twin that
/// holds it makes the INSERT fail on the primary key (and the batch roll back). Answers the INSERT's index.
pub(super) fn push_claim(
    batch: &mut Batch,
    claim: &IdempotencyClaim,
    turn_id: Option<&TurnId>,
    answer: Option<&KeptAnswer>,
    now: &str,
) -> Result<usize> {
    push_forget_expired(batch, claim)?;
    batch.push(
        "INSERT INTO idempotency_keys (owner_id, key, endpoint, fingerprint, turn_id, status_code, response, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            claim.owner,
            claim.key.as_str(),
            claim.endpoint,
            claim.fingerprint.as_str(),
            super::opt_text_value(turn_id.map(|id| id.as_str().to_owned())),
            super::opt_int_value(answer.map(|a| i64::from(a.status.as_u16()))),
            super::opt_text_value(answer.map(|a| a.body.clone())),
            now
        ],
    )
}
/// Adds the claim of a tool-output submission's key to its atomic batch, after the statements that decide
/// whether it starts turn `turn`: the key records that turn when the batch started it, and otherwise the 202
/// answer it gave — the pending calls of `response` in session `session`, as `domain::PendingToolCalls`
/// (which a replay reads it back as). `?1`..`?8`: owner, key, endpoint, fingerprint, turn, session, response,
/// now.
pub(super) fn push_submission_claim(
    batch: &mut Batch,
    claim: &IdempotencyClaim,
    turn: &TurnId,
    session: SessionId,
    response: &str,
    now: &str,
) -> Result<usize> {
    push_forget_expired(batch, claim)?;
    batch.push(
        "INSERT INTO idempotency_keys (owner_id, key, endpoint, fingerprint, turn_id, status_code, response, created_at)
         SELECT ?1, ?2, ?3, ?4, t.id, CASE WHEN t.id IS NULL THEN 202 END,
                CASE WHEN t.id IS NULL THEN json_object('pending_tool_calls', (
                    SELECT json_group_array(call_id) FROM (SELECT call_id FROM agent_tool_calls
                     WHERE session_id = ?6 AND response_id = ?7 AND status = 'pending'
                       AND (approval IS NULL OR approval = 'required') ORDER BY id))) END,
                ?8
         FROM (SELECT (SELECT id FROM agent_turns WHERE id = ?5) AS id) t",
        params![
            claim.owner,
            claim.key.as_str(),
            claim.endpoint,
            claim.fingerprint.as_str(),
            turn,
            session,
            response,
            now
        ],
    )
}

/// Adds the read of what the key recorded to a batch, if the request has a key (see [`take_key_record`]).
pub(super) fn push_key_read<'a>(
    batch: &mut Batch,
    claim: Option<&'a IdempotencyClaim>,
    now: &str,
) -> Result<Option<KeyRead<'a>>> {
    let Some(claim) = claim else { return Ok(None) };
    let index = batch.push(
        "SELECT k.endpoint, k.fingerprint, k.turn_id, k.status_code, k.response, t.session_id,
                (s.turn_id = t.id AND s.turn_expires_at > ?3)
         FROM idempotency_keys k
         LEFT JOIN agent_turns t ON t.id = k.turn_id
         LEFT JOIN agent_sessions s ON s.id = t.session_id
         WHERE k.owner_id = ?1 AND k.key = ?2 AND k.created_at > ?4",
        params![claim.owner, claim.key.as_str(), now, claim.expired_before.as_str()],
    )?;
    Ok(Some(KeyRead { claim, index }))
}

/// A key read pushed into a batch: what [`take_key_record`] takes back.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyRead<'a> {
    claim: &'a IdempotencyClaim,
    index: usize,
}

/// What the key recorded, from the batch [`push_key_read`] added its read to; `Ok(None)` without a key.
pub(super) fn take_key_record(out: &mut super::conn::Outcomes, read: Option<KeyRead<'_>>) -> Result<Option<KeyRecord>> {
    match read {
        Some(read) => read_key_record(out.take(read.index)?, read.claim),
        None => Ok(None),
    }
}
/// What the key recorded, if an earlier request claimed it; 422 when that was a different request.
fn read_key_record(set: super::conn::Set, claim: &IdempotencyClaim) -> Result<Option<KeyRecord>> {
    let Some(r) = set.rows().next() else { return Ok(None) };
    let (endpoint, fingerprint, turn_id, status, body, session, running) = (
        text(&r, 0)?,
        text(&r, 1)?,
        opt_text(&r, 2)?,
        opt_int(&r, 3)?,
        opt_text(&r, 4)?,
        opt_int(&r, 5)?,
        opt_int(&r, 6)?.unwrap_or(0) != 0,
    );
    if endpoint != claim.endpoint || fingerprint != claim.fingerprint {
        return Err(Error::KeyReused);
    }
    let answer = match status.zip(body) {
        Some((status, body)) => Some(KeptAnswer { status: kept_status(status)?, body }),
        None => None,
    };
    Ok(Some(match (turn_id, session) {
        (Some(turn_id), Some(session)) => KeyRecord::Turn { session, turn_id: turn_id.into(), running, answer },
        _ => KeyRecord::Answered(answer.ok_or_else(|| Error::KeyInProgress(String::new()))?),
    }))
}
/// A kept answer's status, as the store wrote it.
fn kept_status(status: i64) -> Result<axum::http::StatusCode> {
    u16::try_from(status)
        .ok()
        .and_then(|status| axum::http::StatusCode::from_u16(status).ok())
        .ok_or_else(|| Error::bug(format!("a kept answer's status {status} is not an HTTP status")))
}
/// Keeps the answer a keyed request gave (the chat reply), for its retries: `?1` status, `?2` body, `?3` owner,
/// `?4` key.
pub(super) const STORE_ANSWER: &str =
    "UPDATE idempotency_keys SET status_code = ?1, response = ?2 WHERE owner_id = ?3 AND key = ?4";

impl Store {
    /// Why a key could not be claimed: a twin request holds it (with its turn, if it started one).
    pub(super) async fn key_holder(&self, claim: Option<&IdempotencyClaim>) -> Error {
        let Some(claim) = claim else { return Error::KeyInProgress(String::new()) };
        let conn = self.conn().await;
        let rows = conn
            .query(
                "SELECT turn_id FROM idempotency_keys WHERE owner_id = ?1 AND key = ?2",
                params![claim.owner, claim.key.as_str()],
            )
            .await;
        match rows {
            Ok(rows) => {
                Error::KeyInProgress(first(rows, |r| opt_text(r, 0)).await.ok().flatten().flatten().unwrap_or_default())
            }
            Err(err) => err,
        }
    }
}
