//! Relay overhead: the same streamed answer fetched directly from the fake upstream and through the local
//! server, interleaved on the same workers so both see the same machine load; and the server's CPU per turn.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::report::percentile;
use crate::server::Result;

/// One streamed request: time to the first `event:` frame and to the end of the body, in ms.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub ttfe_ms: f64,
    pub total_ms: f64,
    /// The longest silence between two chunks of the body: a relay should not add stalls the upstream did not
    /// have (e.g. frames held back by Nagle's algorithm waiting for a delayed ACK, ~40 ms on Linux).
    pub max_gap_ms: f64,
}

/// What a level of concurrency produced.
#[derive(Debug, Default)]
pub struct Level {
    pub direct: Vec<Sample>,
    pub via: Vec<Sample>,
    /// Requests that failed: transport errors, non-200 answers, or a relayed turn not ending `done` completed.
    pub failures: usize,
    /// The first few failure messages, to say what went wrong.
    pub errors: Vec<String>,
}

/// The two ends the workers call, and how.
#[derive(Debug, Clone)]
pub struct Target {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<fake>/v1/responses`
    pub direct_url: String,
    /// `http://127.0.0.1:<server>/api/agent/stream/`
    pub via_url: String,
    pub token: String,
}

/// The client the harness uses: a pool large enough to keep one connection per worker alive, no timeout
/// short enough to cut a slow stream.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap_or_default()
}

impl Target {
    /// Straight to the fake upstream, with a body like the one the server sends.
    pub async fn direct(&self) -> Result<Sample> {
        let request = self.client.post(&self.direct_url).bearer_auth("sk-bench").json(&json!({
            "model": "gpt-4.1", "input": [{"role": "user", "content": "bench"}], "stream": true, "store": true
        }));
        let (sample, _) = timed(request).await?;
        Ok(sample)
    }

    /// Through the server: a streamed turn on a new session with the user's default agent. It must end with
    /// a `done` frame whose status is `completed`.
    pub async fn via(&self) -> Result<Sample> {
        let request = self.client.post(&self.via_url).bearer_auth(&self.token).json(&json!({"message": "bench"}));
        let (sample, body) = timed(request).await?;
        match done_status(&body).as_deref() {
            Some("completed") => Ok(sample),
            other => Err(format!("turn ended with done status {other:?}: …{}", tail(&body, 300)).into()),
        }
    }
}

/// Sends a request and reads its streamed body, timing the first `event:` and the end.
async fn timed(request: reqwest::RequestBuilder) -> Result<(Sample, String)> {
    let start = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let mut body = Vec::new();
    let mut ttfe = None;
    let (mut last, mut max_gap) = (None::<Instant>, Duration::ZERO);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.extend_from_slice(&chunk?);
        let now = Instant::now();
        if let Some(last) = last {
            max_gap = max_gap.max(now - last);
        }
        last = Some(now);
        // Headers alone are not an event: the clock stops at the first frame's bytes.
        if ttfe.is_none() && body.windows(6).any(|w| w == b"event:") {
            ttfe = Some(start.elapsed());
        }
    }
    let total = start.elapsed();
    let body = String::from_utf8_lossy(&body).into_owned();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", tail(&body, 300)).into());
    }
    let ttfe = ttfe.ok_or("the stream carried no event")?;
    Ok((Sample { ttfe_ms: ms(ttfe), total_ms: ms(total), max_gap_ms: ms(max_gap) }, body))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The `status` of the last `done` frame of an SSE body.
pub fn done_status(body: &str) -> Option<String> {
    let at = body.rfind("event: done\n")?;
    let data = body[at..].lines().find_map(|l| l.strip_prefix("data:"))?;
    let done: Value = serde_json::from_str(data.trim()).ok()?;
    done["status"].as_str().map(str::to_owned)
}

/// Runs `job` on `concurrency` workers, each calling it again as soon as its call is done, until `jobs` calls
/// have started or `deadline` has passed; the calls' outputs, in no particular order. The worker's number is
/// passed to `job`. (A panicking worker aborts the whole process: the release profile has `panic = "abort"`.)
pub async fn workers<T, F, Fut>(concurrency: usize, jobs: usize, deadline: Option<Instant>, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = T> + Send,
{
    let remaining = Arc::new(AtomicUsize::new(jobs));
    let handles: Vec<_> = (0..concurrency.max(1))
        .map(|w| {
            let (job, remaining) = (job.clone(), remaining.clone());
            tokio::spawn(async move {
                let mut outputs = Vec::new();
                while deadline.is_none_or(|at| Instant::now() < at)
                    && remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
                {
                    outputs.push(job(w).await);
                }
                outputs
            })
        })
        .collect();
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap_or_default());
    }
    all
}

/// `pairs` direct + via pairs on `concurrency` workers (fewer if `deadline` passes first). Even workers start
/// with the direct request, odd ones with the relayed one, so neither kind always runs first.
pub async fn level(target: &Target, concurrency: usize, pairs: usize, deadline: Option<Instant>) -> Level {
    let target = target.clone();
    let results = workers(concurrency, pairs, deadline, move |w| {
        let target = target.clone();
        async move {
            let mut pair = Vec::with_capacity(2);
            for via in if w % 2 == 0 { [false, true] } else { [true, false] } {
                pair.push((via, if via { target.via().await } else { target.direct().await }));
            }
            pair
        }
    })
    .await;
    let mut level = Level::default();
    for (via, result) in results.into_iter().flatten() {
        match result {
            Ok(sample) if via => level.via.push(sample),
            Ok(sample) => level.direct.push(sample),
            Err(err) => {
                level.failures += 1;
                if level.errors.len() < 5 {
                    level.errors.push(format!("{}: {err}", if via { "via" } else { "direct" }));
                }
            }
        }
    }
    level
}

/// Which figure of a sample a series is about.
type Field = fn(&Sample) -> f64;

/// p50 and p99 of direct and relayed TTFE, total and longest gap (in that order, 12 values), then the added
/// (relayed − direct) TTFE p50, p99 and total p50, p99.
pub fn percentiles(level: &Level) -> [f64; 16] {
    let (ttfe, total, gap): (Field, Field, Field) = (|s| s.ttfe_ms, |s| s.total_ms, |s| s.max_gap_ms);
    let series = [
        (&level.direct, ttfe),
        (&level.via, ttfe),
        (&level.direct, total),
        (&level.via, total),
        (&level.direct, gap),
        (&level.via, gap),
    ];
    let mut row = [0.0; 16];
    for (i, (samples, field)) in series.into_iter().enumerate() {
        let values: Vec<f64> = samples.iter().map(field).collect();
        row[i * 2] = percentile(&values, 50.0);
        row[i * 2 + 1] = percentile(&values, 99.0);
    }
    // Added = relayed − direct, per percentile, within the run.
    row[12] = row[2] - row[0];
    row[13] = row[3] - row[1];
    row[14] = row[6] - row[4];
    row[15] = row[7] - row[5];
    row
}

/// `turns` relayed turns on `concurrency` workers, nothing else: what the CPU figure divides by, and the
/// 256 simultaneous streams of the memory figure. Returns the failures and the first few of their messages.
pub async fn via_only(target: &Target, concurrency: usize, turns: usize) -> (usize, Vec<String>) {
    let target = target.clone();
    let results = workers(concurrency, turns, None, move |_| {
        let target = target.clone();
        async move { target.via().await }
    })
    .await;
    failures(results)
}

/// How many of `results` failed, and the first few messages.
pub fn failures<T>(results: impl IntoIterator<Item = Result<T>>) -> (usize, Vec<String>) {
    let mut all = (0, Vec::new());
    for err in results.into_iter().filter_map(std::result::Result::err) {
        all.0 += 1;
        if all.1.len() < 5 {
            all.1.push(err.to_string());
        }
    }
    all
}
