//! A statement a request's first unit of work carries ahead of its own: the rate limit's count of the
//! request (`store::limits`), which so costs no round trip of its own.
//!
//! The HTTP layer runs each request [`within`] a slot; authenticating a caller with a limit [`arm`]s it; the
//! first query, statement or batch the request then sends takes it and sends it first — remotely in the same
//! Hrana request, every other step of which runs only if it succeeded (a refused request runs nothing
//! else). Its outcome is read by the lead's own `settle`: what to tell the client (kept in the slot for the
//! response's headers), or the error that refuses the request. A request that sends nothing after
//! authenticating hands the lead back unsent, for the HTTP layer to run alone. Interactive transactions
//! (migrations, templates' reorder) do not carry it.
//!
//! # Layout
//! - [`Lead`], [`arm`], [`take`] and [`settle`]: the statement and its life.
//! - [`within`]: a request's slot.

use std::sync::{Arc, Mutex};

use libsql::Value;

use super::Set;
use crate::error::{RateState, Result};

/// Reads the lead's outcome: the state to report, or the refusal.
pub(in crate::store) type Settle = Box<dyn FnOnce(Result<Set>) -> Result<Option<RateState>> + Send>;

/// The statement, its parameters, and how its outcome is read.
pub(in crate::store) struct Lead {
    pub sql: &'static str,
    pub params: Vec<Value>,
    pub settle: Settle,
}

#[derive(Default)]
struct Slot {
    lead: Option<Lead>,
    state: Option<RateState>,
}

tokio::task_local! {
    static REQUEST: Arc<Mutex<Slot>>;
}

fn with<T>(f: impl FnOnce(&mut Slot) -> T) -> Option<T> {
    REQUEST.try_with(|slot| f(&mut slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))).ok()
}

/// Runs a request's handling with a slot of its own; answers its output, the state its lead left, and the
/// lead if nothing took it.
pub(in crate::store) async fn within<F: std::future::Future>(f: F) -> (F::Output, Option<RateState>, Option<Lead>) {
    let slot = Arc::new(Mutex::new(Slot::default()));
    let out = REQUEST.scope(slot.clone(), f).await;
    let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    (out, slot.state.take(), slot.lead.take())
}

/// Arms the request's lead (outside a request, nothing happens).
pub(in crate::store) fn arm(lead: Lead) {
    with(|slot| slot.lead = Some(lead));
}

/// Takes the armed lead, if any: the unit of work about to be sent carries it.
pub(super) fn take() -> Option<Lead> {
    with(|slot| slot.lead.take()).flatten()
}

/// Reads a lead's outcome and keeps what it says for the response; the refusal is the error.
pub(in crate::store) fn settle(settle: Settle, outcome: Result<Set>) -> Result<()> {
    let state = settle(outcome)?;
    note(state);
    Ok(())
}

/// Keeps a state for the response's headers.
pub(in crate::store) fn note(state: Option<RateState>) {
    with(|slot| slot.state = state.or(slot.state));
}
