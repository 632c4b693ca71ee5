//! The network between Lambent and its database: an HTTP proxy in front of sqld that counts every request
//! reaching it, notes when it arrived, and holds it for the set round-trip time before forwarding it (a Hrana
//! pipeline request is one exchange, so one delay is one round trip). The tests count round trips through it
//! (`tests/round_trips.rs` has budgets); the bench injects the round trip of the deployed shape with it.
//!
//! It can also answer in the database's place as sqld does when it cannot take a request (429
//! [`SQLD_BUSY`]: nothing ran), to a share of the requests ([`Proxy::refuse`]) or to all of them for a while
//! ([`Proxy::storm`]); refused requests are not forwarded.
//!
//! New behaviour (say, answering some requests itself) goes in as a field of [`ProxyOptions`], read in
//! [`forward`]; what changes during a run gets a setter like [`Proxy::set_rtt`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// sqld's answer (with 429) when it could not open a connection in time: nothing ran (PLATFORM.md, "Under
/// load").
pub const SQLD_BUSY: &str = r#"{"error":"Timed out while opening database connection"}"#;

/// How the proxy behaves from the start.
#[derive(Debug, Clone, Default)]
pub struct ProxyOptions {
    /// Every request is held this long before it is forwarded (see [`Proxy::set_rtt`]).
    pub rtt: Duration,
}

/// The proxy; clones share it. It serves until the process (or the test's runtime) ends.
#[derive(Clone)]
pub struct Proxy {
    /// `http://127.0.0.1:<port>`, what Lambent's `DATABASE_URL` is set to.
    pub url: String,
    shared: Arc<Shared>,
}

struct Shared {
    target: String,
    client: reqwest::Client,
    rtt_us: AtomicU64,
    count: AtomicU64,
    arrivals: Mutex<Vec<Instant>>,
    faults: Faults,
}

/// Which requests the proxy refuses with sqld's 429 instead of forwarding them.
#[derive(Default)]
struct Faults {
    /// Requests refused, per million.
    share_ppm: AtomicU64,
    storm: AtomicBool,
    refused: AtomicU64,
    /// A xorshift state: the same sequence of draws on every run.
    draws: AtomicU64,
}

impl Faults {
    fn refuses_next(&self) -> bool {
        let share = self.share_ppm.load(Ordering::SeqCst);
        let refuse = self.storm.load(Ordering::SeqCst) || (share > 0 && self.draw() % 1_000_000 < share);
        if refuse {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        refuse
    }

    fn draw(&self) -> u64 {
        let step = |x: u64| {
            let mut x = if x == 0 { 0x9E37_79B9_7F4A_7C15 } else { x };
            x ^= x << 13;
            x ^= x >> 7;
            x ^ (x << 17)
        };
        let previous = self.draws.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |x| Some(step(x))).unwrap_or(0);
        step(previous)
    }
}

impl Proxy {
    /// In front of `target` (`http://host:port`), adding nothing but the count.
    pub async fn start(target: &str) -> Self {
        Self::start_with(target, ProxyOptions::default()).await
    }

    pub async fn start_with(target: &str, options: ProxyOptions) -> Self {
        let shared = Arc::new(Shared {
            target: target.trim_end_matches('/').to_owned(),
            client: crate::http_client(),
            rtt_us: AtomicU64::new(micros(options.rtt)),
            count: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            faults: Faults::default(),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let addr = crate::serve_forever(app, "the database proxy").await;
        Self { url: format!("http://{addr}"), shared }
    }

    /// The round trip every request from now on pays.
    pub fn set_rtt(&self, rtt: Duration) {
        self.shared.rtt_us.store(micros(rtt), Ordering::Relaxed);
    }

    /// From now on, answers `share` (0 to 1) of the requests with sqld's 429 ([`SQLD_BUSY`]) in its place.
    pub fn refuse(&self, share: f64) {
        self.shared.faults.share_ppm.store((share.clamp(0.0, 1.0) * 1e6) as u64, Ordering::SeqCst);
    }

    /// While on, answers every request with sqld's 429.
    pub fn storm(&self, on: bool) {
        self.shared.faults.storm.store(on, Ordering::SeqCst);
    }

    /// Requests answered with 429 so far (counted in [`Self::count`] too).
    pub fn refused(&self) -> u64 {
        self.shared.faults.refused.load(Ordering::SeqCst)
    }

    /// Requests that reached the proxy so far (the database, unless refused).
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// When each request since the last call arrived (and forgets them).
    pub fn take_arrivals(&self) -> Vec<Instant> {
        std::mem::take(&mut *self.shared.arrivals.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until no request has arrived for `quiet`: whatever a request started in the background is done.
    pub async fn settle(&self, quiet: Duration) {
        loop {
            let before = self.count();
            tokio::time::sleep(quiet).await;
            if self.count() == before {
                return;
            }
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Counts the request, holds it for the round trip, refuses it if told to, else forwards it with its
/// credentials and content type and answers what the database answered (502 if it could not be reached).
async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.count.fetch_add(1, Ordering::SeqCst);
    shared.arrivals.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now());
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let rtt = Duration::from_micros(shared.rtt_us.load(Ordering::Relaxed));
    if !rtt.is_zero() {
        // A thread's sleep, not tokio's: tokio's timer rounds up to the next millisecond, which would add
        // ~0.5 ms to every simulated round trip.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rtt)).await;
    }
    if shared.faults.refuses_next() {
        return (StatusCode::TOO_MANY_REQUESTS, [("content-type", "application/json")], SQLD_BUSY).into_response();
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = shared.client.request(parts.method, format!("{}{path}", shared.target)).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(value) = parts.headers.get(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    match forwarded.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get("content-type").cloned();
            let body = response.bytes().await.unwrap_or_default();
            let mut answer = Response::builder().status(status);
            if let Some(content_type) = content_type {
                answer = answer.header("content-type", content_type);
            }
            answer.body(Body::from(body)).unwrap_or_default()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
