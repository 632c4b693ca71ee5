//! Replay and live follow: a turn's recorded frames read back from the store, and a running turn followed
//! by polling what its recorder writes. This works across processes: the follower and the turn share only
//! the database (a Lambda invocation replaying a turn that runs in another).
//!
//! # Concurrency
//! One task per follower, reading in pages of [`FOLLOW_BATCH`] and, while the turn runs, every
//! [`FOLLOW_POLL`]. A turn's last frames and the release of its session are one transaction, so once the
//! session is free one more read gets everything the turn recorded.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::frames::{Frame, Frames};
use crate::domain::{FrameId, SessionId, TurnId};
use crate::store::Store;

/// How often a follower looks for new frames of a running turn.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
const FOLLOW_BATCH: u64 = 256;

/// Sends the recorded frames after row `start` and then, while a turn runs (only `only_turn`, if given), the
/// frames it records; ends when no turn is running and everything recorded was sent. `seen` is the frame the
/// client has already: its turn's frames up to it are not sent again (the row a replay starts at may hold
/// some of them, see `store::frames`).
pub(super) fn follow_from(
    store: Arc<Store>,
    session: SessionId,
    mut start: i64,
    only_turn: Option<TurnId>,
    seen: Option<FrameId>,
) -> Frames {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut last_round = false;
        loop {
            let page = match store.frames_after(session, start, only_turn.as_ref(), FOLLOW_BATCH).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::error!(error = %err.chain(), session = session.0, "cannot read recorded frames");
                    return;
                }
            };
            for frame in page.frames {
                if seen.as_ref().is_some_and(|seen| frame.turn_id == seen.turn_id && frame.seq <= seen.seq) {
                    continue;
                }
                if tx.send(Arc::new(Frame::from(frame))).await.is_err() {
                    return;
                }
            }
            start = page.last_row.unwrap_or(start);
            if page.full {
                continue;
            }
            if last_round {
                return;
            }
            let running = match store.running_turn(session).await {
                Ok(running) => running.filter(|id| only_turn.as_ref().is_none_or(|only| only == id)),
                Err(_) => None,
            };
            // A turn's last frames and the release of its session are one transaction: once it is not
            // running, one more read gets everything it recorded.
            if running.is_none() {
                last_round = true;
                continue;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    });
    rx
}
