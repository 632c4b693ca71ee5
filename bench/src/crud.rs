//! CRUD throughput: `GET /api/agents/` and `POST /api/agents/` at a fixed concurrency for a fixed time.
//!
//! Driven by `wrk`, a C load generator, because on a 2-core machine a reqwest loop in this process would
//! compete with the server for the same cores and become the bottleneck well below the 10,000 requests/s
//! target. Without `wrk` an in-process generator stands in, and the report says so.

use std::path::Path;
use std::time::{Duration, Instant};

use lambent_testkit::Result;
use serde::Serialize;

use crate::cli::{Args, say};
use crate::load::{client, workers};
use crate::machine::{clock_ticks, cpu_ms};
use crate::results::Crud;
use crate::server::Server;
use crate::stats::median;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Get,
    Post,
}

/// One timed run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub requests_per_s: f64,
    pub requests: u64,
    /// Answers other than 2xx/3xx, and socket errors.
    pub failed: u64,
}

/// `GET /api/agents/` then `POST /api/agents/` (GET first: POST grows the list), each `runs` times for
/// `--crud-seconds` at `--crud-concurrency`, with the server's CPU time per request around each run. Without
/// `wrk`, the in-process generator stands in and a note says so.
pub async fn figures(
    args: &Args,
    server: &Server,
    token: &str,
    runs: usize,
    work_dir: &Path,
    notes: &mut Vec<String>,
) -> Result<Vec<Crud>> {
    let use_wrk = have_wrk();
    if !use_wrk {
        notes.push(
            "`wrk` was not available: the CRUD figures come from an in-process reqwest generator sharing the \
             2 cores with the server, so they understate the server."
                .into(),
        );
    }
    let url = format!("{}/api/agents/", server.base_url);
    let duration = Duration::from_secs(args.crud_seconds.max(1));
    let ticks = clock_ticks();
    let mut figures = Vec::new();
    for method in [Method::Get, Method::Post] {
        let (mut rates, mut cpu_us, mut failed) = (Vec::new(), Vec::new(), 0);
        for _ in 0..runs {
            let before = cpu_ms(server.pid, ticks)?;
            let run = if use_wrk {
                wrk(method, &url, token, args.crud_concurrency, args.wrk_threads, duration, work_dir).await?
            } else {
                in_process(method, &url, token, args.crud_concurrency, duration).await?
            };
            let after = cpu_ms(server.pid, ticks)?;
            rates.push(run.requests_per_s);
            cpu_us.push((after - before) * 1000.0 / run.requests.max(1) as f64);
            failed += run.failed;
        }
        let request = match method {
            Method::Get => "GET /api/agents/",
            Method::Post => "POST /api/agents/",
        };
        let figure = Crud {
            request: request.into(),
            concurrency: args.crud_concurrency,
            seconds: duration.as_secs(),
            generator: if use_wrk { format!("wrk -t{}", args.wrk_threads) } else { "in-process".into() },
            requests_per_s: median(&rates),
            requests_per_s_runs: rates,
            cpu_us_per_request: median(&cpu_us),
            failed,
        };
        say(format!("{request}: {:.0} req/s, {failed} non-2xx/errors", figure.requests_per_s));
        figures.push(figure);
    }
    Ok(figures)
}

/// The body each POST sends: an ordinary, non-default agent.
const POST_BODY: &str = r#"{"name": "wrk agent", "system_prompt": "You are a helpful assistant."}"#;

/// Is `wrk` on the PATH?
fn have_wrk() -> bool {
    std::process::Command::new("wrk").arg("--version").output().is_ok()
}

/// One `wrk` run against `url`.
async fn wrk(
    method: Method,
    url: &str,
    token: &str,
    concurrency: usize,
    threads: usize,
    duration: Duration,
    work_dir: &Path,
) -> Result<Run> {
    let mut command = tokio::process::Command::new("wrk");
    command.args([
        format!("-t{}", threads.clamp(1, concurrency)),
        format!("-c{concurrency}"),
        format!("-d{}s", duration.as_secs().max(1)),
        "--timeout".into(),
        "10s".into(),
    ]);
    if method == Method::Post {
        // wrk sends bodies only through a script.
        let script = work_dir.join("post.lua");
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{POST_BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
            ),
        )?;
        command.arg("-s").arg(script);
    } else {
        command.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    let output = command.arg(url).output().await?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("wrk failed: {text}{}", String::from_utf8_lossy(&output.stderr)).into());
    }
    parse_wrk(&text).ok_or_else(|| format!("cannot read wrk's output:\n{text}").into())
}

/// Reads `Requests/sec:`, `N requests in`, `Non-2xx or 3xx responses:` and `Socket errors:` from wrk's report.
fn parse_wrk(text: &str) -> Option<Run> {
    let number = |s: &str| s.trim().trim_end_matches(',').parse::<f64>().ok();
    let requests_per_s = text.lines().find_map(|l| l.trim().strip_prefix("Requests/sec:")).and_then(number)?;
    let requests = text.lines().find_map(|l| l.split_once(" requests in ")).and_then(|(n, _)| number(n))? as u64;
    let non_2xx =
        text.lines().find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:")).and_then(number).unwrap_or(0.0)
            as u64;
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket = text.lines().find_map(|l| l.trim().strip_prefix("Socket errors:")).map_or(0, |rest| {
        rest.split(',').filter_map(|part| part.split_whitespace().nth(1)).filter_map(|n| n.parse::<u64>().ok()).sum()
    });
    Some(Run { requests_per_s, requests, failed: non_2xx + socket })
}

/// The stand-in without `wrk`: `concurrency` reqwest workers for `duration`.
async fn in_process(method: Method, url: &str, token: &str, concurrency: usize, duration: Duration) -> Result<Run> {
    let client = client();
    let (url, token) = (url.to_owned(), token.to_owned());
    let start = Instant::now();
    let answers = workers(concurrency, usize::MAX, Some(start + duration), move |_| {
        let request = match method {
            Method::Get => client.get(&url),
            Method::Post => client.post(&url).header("content-type", "application/json").body(POST_BODY),
        };
        let request = request.bearer_auth(&token);
        async move {
            match request.send().await {
                Ok(response) => response.status().is_success() && response.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await;
    let requests = answers.len() as u64;
    Ok(Run {
        requests_per_s: requests as f64 / start.elapsed().as_secs_f64(),
        requests,
        failed: answers.iter().filter(|ok| !**ok).count() as u64,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_wrk_report() {
        let text = "Running 5s test @ http://127.0.0.1:1/api/agents/\n  1 threads and 64 connections\n\
            \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency     5.00ms    1.00ms  20.00ms   90.00%\n\
            \x20 51234 requests in 5.00s, 10.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 7\nRequests/sec:  10246.80\nTransfer/sec:      2.00MB\n";
        let run = super::parse_wrk(text).unwrap();
        assert_eq!((run.requests, run.failed), (51234, 10));
        assert!((run.requests_per_s - 10246.8).abs() < 1e-9);
    }
}
