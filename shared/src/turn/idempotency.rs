//! Idempotent replay: a request's `Idempotency-Key` is claimed in the same atomic batch as what the request
//! writes, so of two twins exactly one starts a turn; a retry of a finished request gets its outcome again
//! (its turn's recorded frames, or the answer it gave) without a second model call.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::follow::follow_from;
use super::frames::TurnStream;
use crate::domain::{Caller, FrameId};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{IdempotencyClaim, KEY_LIFETIME, KeyRecord};

/// The `Idempotency-Key` of a request, tied to what the request asked for.
pub(super) fn claim(
    state: &AppState,
    caller: &Caller,
    key: Option<&str>,
    endpoint: &'static str,
    body: &Value,
) -> Option<IdempotencyClaim> {
    let key = key?;
    let fingerprint = hex::encode(Sha256::digest(format!("{endpoint}\n{body}")));
    let expired_before = crate::clock::format_timestamp(state.clock().now() - KEY_LIFETIME);
    Some(IdempotencyClaim { owner: caller.id, key: key.to_owned(), endpoint, fingerprint, expired_before })
}

/// How a keyed request that ran before is answered again.
#[derive(Debug)]
pub(super) enum Replay {
    /// Its turn's frames, replayed from the store.
    Frames(TurnStream),
    /// What it answered without a turn (a 202 of tool-output), or the chat reply it gave.
    Answer { status: axum::http::StatusCode, body: Value },
}

/// The replay of what the key recorded (read with the turn's context, in the same round trip); `None` for a
/// first request. 409 while the keyed request still runs; 422 (from the read) for a different request.
pub(super) async fn replay(state: &AppState, recorded: Result<Option<KeyRecord>>) -> Result<Option<Replay>> {
    Ok(match recorded? {
        None => None,
        Some(KeyRecord::Answered(answer) | KeyRecord::Turn { answer: Some(answer), running: false, .. }) => {
            let body = serde_json::from_str(&answer.body).map_err(|e| Error::internal("a kept answer's JSON", e))?;
            Some(Replay::Answer { status: answer.status, body })
        }
        Some(KeyRecord::Turn { turn_id, running: true, .. }) => return Err(Error::KeyInProgress(turn_id.to_string())),
        Some(KeyRecord::Turn { session, turn_id, .. }) => {
            let first = FrameId { turn_id: turn_id.clone(), seq: 0 };
            let start = state.store.frame_cursor(session, &first).await?.unwrap_or(0);
            let frames = follow_from(state.store.clone(), session, start, Some(turn_id.clone()), None);
            Some(Replay::Frames(TurnStream { session_id: session, turn_id: Some(turn_id), frames }))
        }
    })
}
