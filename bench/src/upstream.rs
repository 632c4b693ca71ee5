//! The fake model provider: `POST /v1/responses` streams a Responses API transcript with N text deltas, built
//! by the test kit's fake (`lambent_testkit::openai`, whose frames mirror the recorded transcripts in
//! `tests/fixtures/openai/`), with a configurable delay before the first event and between deltas.
//!
//! Not the kit's `FakeOpenAi` server itself: that one answers a script queued per test and records every
//! request, where this one answers any number of requests with the same precomputed frames (only the id
//! replaced), paced, and counts the streams it has open, which proves the "256 concurrent streams" of the
//! memory figure really overlapped. It runs inside the harness, so the harness can hit it directly (the
//! baseline) and through the server under test (the relay) under identical conditions.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use lambent_testkit::openai::{Step, frames, text_events};

/// Stands for the response id in the precomputed frames; replaced per request so every stored response is
/// distinct, as with a real provider.
const ID: &str = "@ID@";

#[derive(Debug)]
struct Shared {
    first_delay_us: AtomicU64,
    delta_delay_us: AtomicU64,
    /// The transcript with [`ID`] in place of the response id; `bool` marks text deltas (delayed frames).
    frames: Vec<(bool, String)>,
    next_id: AtomicU64,
    open: AtomicUsize,
    peak_open: AtomicUsize,
    served: AtomicU64,
    /// When the latest request arrived, and when the latest stream handed over its last frame.
    last_request: Mutex<Option<Instant>>,
    last_end: Mutex<Option<Instant>>,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http://127.0.0.1:<port>/v1`, what `OPENAI_BASE_URL` is set to.
    pub base_url: String,
    shared: Arc<Shared>,
}

impl Upstream {
    pub async fn start(deltas: usize, first_delay: Duration, delta_delay: Duration) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            first_delay_us: AtomicU64::new(micros(first_delay)),
            delta_delay_us: AtomicU64::new(micros(delta_delay)),
            frames: transcript(deltas),
            next_id: AtomicU64::new(1),
            open: AtomicUsize::new(0),
            peak_open: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            last_request: Mutex::new(None),
            last_end: Mutex::new(None),
        });
        let app = axum::Router::new().route("/v1/responses", post(responses)).with_state(shared.clone());
        let addr: SocketAddr = lambent_testkit::serve(app, std::future::pending()).await?;
        Ok(Self { base_url: format!("http://{addr}/v1"), shared })
    }

    /// Changes the pacing of the streams that start from now on (the memory figure uses a slow upstream).
    pub fn set_delays(&self, first_delay: Duration, delta_delay: Duration) {
        self.shared.first_delay_us.store(micros(first_delay), Ordering::Relaxed);
        self.shared.delta_delay_us.store(micros(delta_delay), Ordering::Relaxed);
    }

    /// The most streams that were open at once since the last reset.
    pub fn peak_open(&self) -> usize {
        self.shared.peak_open.load(Ordering::Relaxed)
    }

    pub fn reset_peak(&self) {
        self.shared.peak_open.store(self.shared.open.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    pub fn served(&self) -> u64 {
        self.shared.served.load(Ordering::Relaxed)
    }

    /// When the latest request arrived and when its stream's last frame was handed over (one request at a
    /// time: what the round-trip counts split a turn's database requests by).
    pub fn last_stream(&self) -> Option<(Instant, Instant)> {
        let request = (*lock(&self.shared.last_request))?;
        let end = (*lock(&self.shared.last_end)).filter(|end| *end >= request)?;
        Some((request, end))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Decrements the open-stream gauge when the body is dropped (finished or abandoned by the client).
struct OpenStream(Arc<Shared>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn responses(State(shared): State<Arc<Shared>>, _body: Bytes) -> Response {
    *lock(&shared.last_request) = Some(Instant::now());
    let id = format!("resp_bench{:016x}", shared.next_id.fetch_add(1, Ordering::Relaxed));
    let first_delay = Duration::from_micros(shared.first_delay_us.load(Ordering::Relaxed));
    let delta_delay = Duration::from_micros(shared.delta_delay_us.load(Ordering::Relaxed));
    // Each frame with the pause that precedes it: the first event waits `first_delay`, each delta `delta_delay`.
    let steps: Vec<(Duration, Bytes)> = shared
        .frames
        .iter()
        .enumerate()
        .map(|(i, (is_delta, frame))| {
            let pause = if i == 0 { first_delay } else { Duration::ZERO }
                + if *is_delta { delta_delay } else { Duration::ZERO };
            (pause, Bytes::from(frame.replace(ID, &id)))
        })
        .collect();
    shared.served.fetch_add(1, Ordering::Relaxed);
    let now_open = shared.open.fetch_add(1, Ordering::Relaxed) + 1;
    shared.peak_open.fetch_max(now_open, Ordering::Relaxed);
    let guard = OpenStream(shared);
    let body = futures::stream::unfold((steps.into_iter(), guard), |(mut steps, guard)| async move {
        let Some((pause, frame)) = steps.next() else {
            // Asked for more once the last frame is out: the end of the answer.
            *lock(&guard.0.last_end) = Some(Instant::now());
            return None;
        };
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        Some((Ok::<_, std::io::Error>(frame), (steps, guard)))
    });
    Response::builder()
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap_or_default()
}

/// The frames of a plain text answer of `deltas` deltas, built by the tests' own fake so the wire format is
/// the one the tests check; `true` marks the text deltas (the frames that are paced).
fn transcript(deltas: usize) -> Vec<(bool, String)> {
    let words: Vec<String> = (0..deltas).map(|i| format!(" word{i}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    frames(text_events(ID, &words))
        .into_iter()
        .filter_map(|step| match step {
            Step::Frame(frame) => Some((frame.starts_with("event: response.output_text.delta\n"), frame)),
            _ => None,
        })
        .collect()
}
