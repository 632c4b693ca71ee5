//! # `lambent-bench`: the benchmarks of issues 8 and 13
//!
//! Measures the release binaries as child processes, everything else in this process. `scripts/bench` builds
//! the binaries and runs this with the defaults.
//!
//! # Layout
//! - [`cli`]: the arguments, and progress on stderr.
//! - [`server`]: `lambent serve` as a child process, what the processes under test are given, the bench users.
//! - [`upstream`]: the paced fake Responses upstream (its frames built by `lambent_testkit::openai`).
//! - [`load`]: the load generator (workers calling a job back to back).
//! - The sections, each measuring its figures: [`lambda`] (cold start and memory of each function through the
//!   kit's stub Runtime API), [`relay`] (relay overhead, CPU per turn, memory holding many streams), [`crud`]
//!   (throughput with `wrk`), [`remote`] (the deployed shape: a real sqld behind the kit's proxy injecting the
//!   round trip to the database, and moto for the functions' SSM secrets).
//! - [`machine`]: the machine, and the processes' CPU time and memory from `/proc`.
//! - [`stats`]: percentiles, medians; [`results`]: what the report holds; [`targets`]: the issues' targets
//!   and whether they are met; [`report`]: the markdown written into `BENCHMARKS.md`.
//!
//! The servers around Lambent (sqld, moto, the proxy, the Runtime API stub) are `lambent-testkit`'s, the same
//! the integration tests start.
//!
//! Order matters and is fixed: the functions run first, on the freshly prepared database (so their lists are
//! the same small lists every time); then the relay and CPU figures; GET throughput before POST (POST grows
//! the agent list); then the memory figure on fresh servers; then the remote sections on a database of their
//! own (the deployed functions first, again on small lists; their POSTs by another user than their GETs).

mod cli;
mod crud;
mod instructions;
mod lambda;
mod load;
mod machine;
mod relay;
mod remote;
mod report;
mod results;
mod server;
mod stats;
mod targets;
mod upstream;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use lambent_testkit::Result;

use crate::cli::{Args, duration_ms, say};
use crate::machine::Machine;
use crate::results::Report;
use crate::server::{Env, Secrets, Server};
use crate::upstream::Upstream;

#[tokio::main]
async fn main() -> ExitCode {
    // The harness's clients only speak plain HTTP, but built beside the workspace reqwest has rustls without a
    // provider and would panic at client build.
    lambent_testkit::install_crypto_provider();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            say(format!("failed: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Where the binaries under test are: `--bin-dir` (default `$CARGO_TARGET_DIR/release`, else
/// `target/release`) and `--lambda-dir` (default: `lambda/` beside it).
struct Binaries {
    bin_dir: PathBuf,
    lambda_dir: PathBuf,
}

impl Binaries {
    /// Finds them, failing with the command that builds them if one the sections need is missing.
    fn find(args: &Args) -> Result<Self> {
        let target_dir = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
        let bin_dir = args.bin_dir.clone().unwrap_or_else(|| target_dir.join("release"));
        let lambda_dir = args.lambda_dir.clone().unwrap_or_else(|| bin_dir.parent().unwrap_or(&bin_dir).join("lambda"));
        let mut needed = vec!["lambent"];
        if args.wanted("lambda") || args.wanted("remote-lambda") {
            needed.extend(lambda::functions().into_iter().map(|(name, _)| name));
        }
        if args.wanted("instructions") {
            needed.push("lambent-bare-relay");
        }
        if let Some(missing) = needed.iter().find(|name| !bin_dir.join(name).exists()) {
            return Err(format!(
                "{} is missing: cargo build --release -p lambent-local -p lambent-functions",
                bin_dir.join(missing).display()
            )
            .into());
        }
        Ok(Self { bin_dir: std::path::absolute(&bin_dir)?, lambda_dir })
    }
}

/// The sections in their fixed order (see the crate doc), then the report.
async fn run(args: Args) -> Result<()> {
    let runs = args.runs.max(1);
    let binaries = Binaries::find(&args)?;
    let started = std::time::Instant::now();
    let temp = tempfile::Builder::new().prefix("lambent-bench").tempdir()?;
    let work_dir = work_dir(&args, temp.path())?;
    let mut report = Report::new(&args, runs, Machine::probe());
    let machine = &report.machine;
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
        bin_dir: binaries.bin_dir.clone(),
        work_dir: work_dir.clone(),
        database_url: format!("file:{}", work_dir.join("bench.db").display()),
        openai_base_url: upstream.base_url.clone(),
        secrets: Secrets::Plain { database_auth_token: None },
    };
    let server = Server::start(&env, "server.log").await?;
    let token = server::setup(&env, &server, args.list_agents).await?;
    say(format!("server pid {} on {}; bench user ready", server.pid, server.base_url));

    if args.wanted("lambda") {
        report.functions = lambda::stub_figures(&env, &token, runs, &binaries.lambda_dir, &mut report.notes).await;
    }
    let target = relay::Target {
        client: load::client(),
        direct_url: format!("{}/responses", upstream.base_url),
        via_url: format!("{}/api/agent/stream/", server.base_url),
        token: token.clone(),
    };
    if args.wanted("relay") {
        report.relay = relay::levels(&args, &target, runs).await;
    }
    if args.wanted("cpu") {
        report.cpu = Some(relay::cpu(&args, &target, &server, runs).await?);
    }
    if args.wanted("instructions") {
        instructions::figures(&args, &env, &target).await?;
    }
    if args.wanted("crud") {
        report.crud = crud::figures(&args, &server, &token, runs, &work_dir, &mut report.notes).await?;
    }
    server.stop().await;
    if args.wanted("streams") {
        report.streams = Some(relay::streams(&args, &env, &target, &upstream, runs).await?);
    }
    if ["remote-lambda", "remote-endpoints", "remote-scale", "remote-load"].into_iter().any(|s| args.wanted(s)) {
        report.remote = Some(remote::figures(&args, &env, runs, &mut report.notes).await?);
    }

    report.machine.load_after = machine::load();
    report.closing_notes(upstream.served(), started.elapsed());
    targets::fill(&mut report);
    write(&args, &report)
}

/// `--work-dir` (made absolute), else the run's temporary folder.
fn work_dir(args: &Args, temp: &Path) -> Result<PathBuf> {
    match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            Ok(std::path::absolute(dir)?)
        }
        None => Ok(temp.to_owned()),
    }
}

/// The markdown into `--out` (between the markers) and on stdout; the JSON summary into `--json`.
fn write(args: &Args, report: &Report) -> Result<()> {
    let markdown = report::markdown(report);
    report::write_section(&args.out, &markdown)?;
    if let Some(path) = &args.json {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(report)?)?;
    }
    println!("{markdown}");
    say(format!("wrote {}", args.out.display()));
    Ok(())
}
