//! Streamed turns through the local server: the relay overhead (the same streamed answer fetched directly
//! from the fake upstream and through the server, interleaved on the same workers so both see the same
//! machine load), the server's CPU per turn, and its memory holding many streams at once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lambent_testkit::Result;
use serde_json::{Value, json};

use crate::cli::{Args, duration_ms, say};
use crate::load::{failures, workers};
use crate::machine::{clock_ticks, cpu_ms, status_mb};
use crate::results::{Cpu, RelayLevel, RelayTimes, Streams};
use crate::server::{Env, Server};
use crate::stats::{Pair, median, ms};
use crate::upstream::Upstream;

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

/// The percentiles of one run of a level: each series' p50 and p99, and what relaying added.
pub fn times(level: &Level) -> RelayTimes {
    let of = |samples: &[Sample], field: fn(&Sample) -> f64| Pair::of(&samples.iter().map(field).collect::<Vec<_>>());
    let (direct_ttfe_ms, via_ttfe_ms) = (of(&level.direct, |s| s.ttfe_ms), of(&level.via, |s| s.ttfe_ms));
    let (direct_total_ms, via_total_ms) = (of(&level.direct, |s| s.total_ms), of(&level.via, |s| s.total_ms));
    RelayTimes {
        direct_ttfe_ms,
        via_ttfe_ms,
        added_ttfe_ms: via_ttfe_ms - direct_ttfe_ms,
        direct_total_ms,
        via_total_ms,
        added_total_ms: via_total_ms - direct_total_ms,
        direct_max_gap_ms: of(&level.direct, |s| s.max_gap_ms),
        via_max_gap_ms: of(&level.via, |s| s.max_gap_ms),
    }
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

/// The relay figures: at each concurrency of `--concurrency`, `runs` runs of direct + relayed pairs (each after
/// an unrecorded warm-up that opens the connections the workers keep); per run the percentiles, then each
/// one's median over the runs.
pub async fn levels(args: &Args, target: &Target, runs: usize) -> Vec<RelayLevel> {
    let mut levels = Vec::new();
    for &concurrency in &args.concurrency {
        let concurrency = concurrency.max(1);
        let requests = if args.requests > 0 { args.requests } else { (8 * concurrency).max(200) };
        let pairs = (requests / 2).max(1);
        let (mut per_run, mut failures, mut errors) = (Vec::new(), 0, Vec::new());
        for _ in 0..runs {
            let _ = level(target, concurrency, concurrency, None).await;
            let measured = level(target, concurrency, pairs, None).await;
            failures += measured.failures;
            per_run.push(times(&measured));
            errors.extend(measured.errors);
        }
        let times = RelayTimes::median_of(&per_run);
        say(format!(
            "relay c={concurrency}: added TTFE p50 {:.2} / p99 {:.2} ms, added total p50 {:.2} / p99 {:.2} ms, {} failures",
            times.added_ttfe_ms.p50,
            times.added_ttfe_ms.p99,
            times.added_total_ms.p50,
            times.added_total_ms.p99,
            failures
        ));
        levels.push(RelayLevel { concurrency, pairs, times, failures, errors: errors.into_iter().take(3).collect() });
    }
    levels
}

/// The server's CPU per streamed turn: user + system time of its process around `--cpu-turns` relayed turns,
/// per run (after one unrecorded round that opens the connections).
pub async fn cpu(args: &Args, target: &Target, server: &Server, runs: usize) -> Result<Cpu> {
    let ticks = clock_ticks();
    let (mut per_turn, mut failures) = (Vec::new(), 0);
    let _ = via_only(target, args.cpu_concurrency, args.cpu_concurrency).await;
    for _ in 0..runs {
        let before = cpu_ms(server.pid, ticks)?;
        let (failed, _) = via_only(target, args.cpu_concurrency, args.cpu_turns).await;
        // `done` is recorded before it is sent, but let the server finish tidying the last turns.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = cpu_ms(server.pid, ticks)?;
        failures += failed;
        per_turn.push((after - before) / args.cpu_turns.max(1) as f64);
    }
    let figure = Cpu {
        concurrency: args.cpu_concurrency,
        turns: args.cpu_turns,
        ms_per_turn: median(&per_turn),
        ms_per_turn_runs: per_turn,
        failures,
    };
    say(format!("cpu: {:.3} ms per turn", figure.ms_per_turn));
    Ok(figure)
}

/// The local server's memory holding `--streams` streams at once: per run a fresh server (so VmHWM is this
/// figure's peak and not an earlier section's), all its turns started together against a slow upstream.
pub async fn streams(args: &Args, env: &Env, target: &Target, upstream: &Upstream, runs: usize) -> Result<Streams> {
    upstream.set_delays(duration_ms(args.first_delay_ms), duration_ms(args.streams_delta_delay_ms));
    let (mut peaks, mut idles, mut opens, mut failures, mut errors) =
        (Vec::new(), Vec::new(), Vec::new(), 0, Vec::new());
    for run in 0..runs {
        let fresh = Server::start(env, &format!("streams-{run}.log")).await?;
        idles.push(status_mb(fresh.pid, "VmRSS")?);
        let target = Target { via_url: format!("{}/api/agent/stream/", fresh.base_url), ..target.clone() };
        upstream.reset_peak();
        let (failed, errs) = via_only(&target, args.streams, args.streams).await;
        peaks.push(status_mb(fresh.pid, "VmHWM")?);
        opens.push(upstream.peak_open() as f64);
        failures += failed;
        errors.extend(errs);
        fresh.stop().await;
    }
    let figure = Streams {
        streams: args.streams,
        idle_rss_mb: median(&idles),
        peak_rss_mb: median(&peaks),
        peak_rss_mb_runs: peaks,
        peak_open_upstream: median(&opens),
        failures,
        errors: errors.into_iter().take(3).collect(),
    };
    say(format!(
        "{} streams: peak RSS {:.1} MB, {} open upstream at once",
        args.streams, figure.peak_rss_mb, figure.peak_open_upstream
    ));
    Ok(figure)
}
