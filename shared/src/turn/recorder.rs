//! Recording a running turn's frames: the engine hands each frame to a [`Sink`], which sends it to the
//! client (if one listens) and leaves it in an [`Inbox`] for the recorder task, which writes frames in
//! batches and ends the turn in the store.
//!
//! # Concurrency
//! Two tasks per turn: the engine's (the relay, never waiting for the database) and the recorder's
//! ([`record`]). They share only the inbox: a mutex held for a push or a take, and a `Notify` rung by the
//! first frame of a batch. `done` is the one frame the engine waits for: it is written with the turn's end
//! (which frees the session) before the client sees it, so a client that reacts to `done` finds the session
//! free and every frame recorded. The recorder also watches for a cancel request from another process: its
//! writes read the flag, and a timer polls it while the upstream is quiet.
//!
//! # The turn's end, reported once
//! Where the end is recorded, the turn also writes its log line — `info` `turn ended` (status, tokens, time to
//! first event), or `warn` `turn failed` with the error code and message — and its metric line
//! (`telemetry::Metrics::turn`). Both are in the turn's span: they carry its request, session and turn ids.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::frames::{Done, Frame, TurnError, TurnEvent};
use crate::domain::{SessionId, TurnId, TurnUsage};
use crate::store::{KeptReply, NewFrame, Store, TurnEnding};
use crate::telemetry::{self, Metrics, TurnMetrics, Warning};

/// How often a running turn looks for a cancel request from another process while its upstream is quiet.
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// How long the recorder gathers frames before it writes them in one transaction.
const RECORD_INTERVAL: Duration = Duration::from_millis(50);

/// The same over a remote database, where each write is a network round trip: at most four a second,
/// and a turn shorter than this records all its frames with its end (issue 13's budget).
const REMOTE_RECORD_INTERVAL: Duration = Duration::from_millis(250);

/// A turn's end, as the engine leaves it for the recorder.
struct EndToRecord {
    /// The `done` frame (none if it could not be serialised).
    done: Option<Arc<Frame>>,
    /// A keyed chat's reply, kept for its key's retries.
    reply: Option<KeptReply>,
    /// How the turn went.
    summary: Summary,
    /// Who waits for both to be recorded.
    ack: oneshot::Sender<()>,
}

/// What the turn-end log line and metrics say.
struct Summary {
    usage: TurnUsage,
    status: String,
    error: Option<TurnError>,
    metrics: TurnMetrics,
}

/// Where a running turn sends its frames: to the recorder always, and to the client's stream if there is
/// one (the chat endpoint has none).
pub(super) struct Sink {
    turn_id: TurnId,
    metrics: Metrics,
    seq: AtomicU64,
    live: Option<mpsc::Sender<Arc<Frame>>>,
    inbox: Arc<Inbox>,
    started: Instant,
    first_event: OnceLock<Duration>,
    /// What the turn's responses reported, added to the usage aggregate with the turn's end.
    usage: std::sync::Mutex<TurnUsage>,
}

/// Frames waiting for the recorder. Only the first frame of a batch rings for it: the rest of the batch
/// arrives while it gathers (a wakeup of the recorder per frame was a large part of a frame's cost).
#[derive(Default)]
pub(super) struct Inbox {
    frames: std::sync::Mutex<Vec<Arc<Frame>>>,
    /// The `done` frame: recorded with the turn's end, then acknowledged.
    end: std::sync::Mutex<Option<EndToRecord>>,
    /// The turn went away without `done` (it panicked).
    abandoned: AtomicBool,
    bell: Notify,
}

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inbox {
    fn push(&self, frame: Arc<Frame>) {
        let first = {
            let mut frames = locked(&self.frames);
            frames.push(frame);
            frames.len() == 1
        };
        if first {
            self.bell.notify_one();
        }
    }

    fn is_ending(&self) -> bool {
        locked(&self.end).is_some() || self.abandoned.load(Ordering::Acquire)
    }
}

impl Sink {
    /// A sink for a turn's frames, and the inbox its recorder reads.
    pub(super) fn new(turn_id: TurnId, live: Option<mpsc::Sender<Arc<Frame>>>, metrics: Metrics) -> (Self, Arc<Inbox>) {
        let inbox = Arc::new(Inbox::default());
        let sink = Self {
            turn_id,
            metrics,
            seq: AtomicU64::new(0),
            live,
            inbox: inbox.clone(),
            started: Instant::now(),
            first_event: OnceLock::new(),
            usage: std::sync::Mutex::new(TurnUsage::default()),
        };
        (sink, inbox)
    }

    /// The event's frame, numbered. An event whose payload does not serialise is a logged and counted warning,
    /// and no frame: its number is not taken, so the frames a client sees stay consecutive.
    fn frame(&self, event: &TurnEvent) -> Option<Arc<Frame>> {
        let data = match event.data() {
            Ok(data) => data,
            Err(err) => {
                tracing::error!(error = %err, event = event.name(), "could not serialise a frame");
                self.metrics.warning(Warning::FrameNotSerialised);
                return None;
            }
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        Some(Arc::new(Frame { seq, id: format!("{}:{seq}", self.turn_id), event: Cow::Borrowed(event.name()), data }))
    }

    /// Adds one response's `usage` (as the provider reported it, however the response ended) to the turn's.
    pub(super) fn count_tokens(&self, usage: &serde_json::Value) {
        locked(&self.usage).add(usage);
    }

    pub(super) async fn send(&self, event: TurnEvent) {
        self.first_event.get_or_init(|| self.started.elapsed());
        let Some(frame) = self.frame(&event) else { return };
        self.inbox.push(frame.clone());
        if let Some(tx) = &self.live {
            // A closed channel means the client left; the turn goes on regardless.
            let _ = tx.send(frame).await;
        }
    }

    /// Records `done` together with the turn's end (which frees the session), then sends it to the client:
    /// a client that reacts to `done` finds the session free and every frame recorded.
    pub(super) async fn end(&self, done: Done, reply: Option<KeptReply>, error: Option<&TurnError>) {
        let status = done.status.as_str().to_owned();
        let frame = self.frame(&TurnEvent::Done(done));
        let failure = error.filter(|e| e.code.is_failure());
        let usage = *locked(&self.usage);
        let tokens = |n: i64| u64::try_from(n).unwrap_or(0);
        let summary = Summary {
            usage,
            status,
            error: error.cloned(),
            metrics: TurnMetrics {
                error_code: failure.map(|e| e.code.as_str().to_owned()),
                upstream_retries: telemetry::upstream_retries(),
                time_to_first_event: self.first_event.get().copied(),
                input_tokens: tokens(usage.input_tokens),
                output_tokens: tokens(usage.output_tokens),
            },
        };
        let (ack, acked) = oneshot::channel();
        *locked(&self.inbox.end) = Some(EndToRecord { done: frame.clone(), reply, summary, ack });
        self.inbox.bell.notify_one();
        // An error here means the recorder is gone; the client still gets `done`.
        let _ = acked.await;
        if let (Some(tx), Some(frame)) = (&self.live, frame) {
            let _ = tx.send(frame).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.inbox.abandoned.store(true, Ordering::Release);
        self.inbox.bell.notify_one();
    }
}

/// Writes a turn's frames to the store in batches (off the relay path), watches for a cancel request from
/// another process, and ends the turn in the store when `done` arrives.
pub(super) async fn record(
    store: Arc<Store>,
    metrics: Metrics,
    session: SessionId,
    turn_id: TurnId,
    inbox: Arc<Inbox>,
    cancel: CancellationToken,
) {
    let interval = if store.is_remote() { REMOTE_RECORD_INTERVAL } else { RECORD_INTERVAL };
    // Two timers for the whole turn, reset rather than rebuilt: one per frame showed up in the profile.
    let poll = tokio::time::sleep(CANCEL_POLL);
    let gather = tokio::time::sleep(RECORD_INTERVAL);
    tokio::pin!(poll, gather);
    loop {
        tokio::select! {
            () = inbox.bell.notified() => {}
            () = &mut poll, if !cancel.is_cancelled() => {
                match store.cancel_requested(&turn_id).await {
                    Ok(true) => cancel.cancel(),
                    Ok(false) => {}
                    // The turn goes on: a cancel request is found by the next poll, or by the next write.
                    Err(err) => {
                        tracing::warn!(error = %err.chain(), session = session.0, "could not poll for a cancel request");
                        metrics.warning(Warning::CancelPollFailed);
                    }
                }
                poll.as_mut().reset(tokio::time::Instant::now() + CANCEL_POLL);
                continue;
            }
        }
        // Frames that arrive within RECORD_INTERVAL share one transaction: a commit per frame cost more CPU
        // than the whole relay (BENCHMARKS.md). Clients never wait for this; `done` ends the wait at once.
        if !inbox.is_ending() {
            gather.as_mut().reset(tokio::time::Instant::now() + interval);
            tokio::select! {
                () = &mut gather => {}
                () = inbox.bell.notified() => {}
            }
        }
        let batch = std::mem::take(&mut *locked(&inbox.frames));
        let mut rows: Vec<NewFrame<'_>> =
            batch.iter().map(|f| NewFrame { seq: f.seq, event: &f.event, data: &f.data }).collect();
        let end = locked(&inbox.end).take();
        if let Some(EndToRecord { done, reply, summary, ack }) = end {
            if let Some(done) = &done {
                rows.push(NewFrame { seq: done.seq, event: &done.event, data: &done.data });
            }
            let ending = TurnEnding {
                session,
                turn_id: &turn_id,
                frames: &rows,
                reply: reply.as_ref(),
                usage: &summary.usage,
                failed: summary.error.as_ref().is_some_and(|e| e.code.is_failure()),
            };
            if let Err(err) = store.end_turn(&ending).await {
                tracing::error!(error = %err.chain(), session = session.0, "could not record the end of a turn");
                if let Err(err) = store.release_turn(session, &turn_id).await {
                    tracing::error!(error = %err.chain(), session = session.0, "could not release the session's turn lease");
                }
            }
            report(&metrics, &summary);
            let _ = ack.send(());
            return;
        }
        match store.record_frames(&turn_id, &rows).await {
            // The write read the cancel flag too: the next poll can wait a whole interval.
            Ok(cancelled) => {
                if cancelled {
                    cancel.cancel();
                }
                poll.as_mut().reset(tokio::time::Instant::now() + CANCEL_POLL);
            }
            Err(err) => {
                tracing::error!(error = %err.chain(), session = session.0, "could not record a turn's frames");
                metrics.warning(Warning::FramesNotRecorded);
            }
        }
        if inbox.abandoned.load(Ordering::Acquire) && locked(&inbox.frames).is_empty() {
            break;
        }
    }
    // The turn task went away without `done` (it panicked): free the session rather than wait for the lease.
    if let Err(err) = store.release_turn(session, &turn_id).await {
        tracing::error!(error = %err.chain(), session = session.0, "could not release the session's turn lease");
    }
}

/// The turn-end log line and metric line.
fn report(metrics: &Metrics, summary: &Summary) {
    let m = &summary.metrics;
    let first_ms = m.time_to_first_event.map(|d| d.as_secs_f64() * 1000.0);
    let (status, input_tokens, output_tokens) = (summary.status.as_str(), m.input_tokens, m.output_tokens);
    match &summary.error {
        Some(error) if error.code.is_failure() => tracing::warn!(
            target: "lambent::turn",
            status, error_code = error.code.as_str(), error = %crate::telemetry::escaped(&error.message), input_tokens, output_tokens,
            time_to_first_event_ms = first_ms, upstream_retries = m.upstream_retries, "turn failed"
        ),
        error => tracing::info!(
            target: "lambent::turn",
            status, error_code = error.as_ref().map(|e| e.code.as_str()), input_tokens, output_tokens,
            time_to_first_event_ms = first_ms, upstream_retries = m.upstream_retries, "turn ended"
        ),
    }
    metrics.turn(m);
}
