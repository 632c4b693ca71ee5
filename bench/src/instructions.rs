//! Instructions per streamed turn (issue 24): `lambent serve` and the bare relay (`lambent-bare-relay`, the same
//! HTTP stack and nothing else) each run under `valgrind --tool=callgrind` against the same fake upstream, on the
//! same keep-alive clients. After a warm-up the counters are zeroed (`callgrind_control -z`), `turns` turns run,
//! and the counters are dumped (`callgrind_control -d`): the dump's total over `turns` is the figure, every
//! thread of the process counted. Instruction counts do not depend on what else the machine runs, so an A/B
//! of two builds needs no quiet machine; the dumps stay in the work directory for `callgrind_annotate`.
//!
//! In the same run, CPU time per turn (`/proc`, the process and its children) of each server outside valgrind,
//! and of the LiteLLM proxy when `--litellm` names it (Python: instruction counts under valgrind would take
//! hours), on the same upstream and clients: the context of the ratio, and how far off a Python gateway is.
//!
//! `callgrind_control` is answered when the process next runs; an idle server sleeps in `epoll_wait`, so the
//! harness sends health checks until the answer comes. The few that land after a zeroing and before a dump are
//! counted with the turns (a health check is ~1/100 of a turn here).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::process::Command;

use crate::cli::{Args, say};
use crate::load::workers;
use crate::relay::Target;
use lambent_testkit::Result;

use crate::server::{Env, Server};

/// What one server's turns cost.
#[derive(Debug, Clone)]
pub struct Count {
    pub subject: &'static str,
    pub turns: usize,
    pub failures: usize,
    /// Instructions executed per turn, all threads.
    pub per_turn: f64,
    /// The callgrind dump the figure was read from.
    pub dump: PathBuf,
}

/// The servers measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Lambent,
    BareRelay,
    /// The `litellm` executable (PyPI `litellm[proxy]`), routing model `bridge` to the fake upstream's
    /// Responses endpoint (`openai/` models are relayed natively).
    LiteLlm(PathBuf),
}

/// LiteLLM refuses weak master keys; this one is random-looking and used for nothing else.
const LITELLM_KEY: &str = "sk-8f3a1c6e9b2d4f7a0c5e8b1d3f6a9c2e";

impl Subject {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lambent => "lambent",
            Self::BareRelay => "lambent-bare-relay",
            Self::LiteLlm(_) => "litellm",
        }
    }

    /// The server's command (its port in `BIND`, or on the command line) and its health path.
    fn command(&self, env: &Env, port: u16) -> Result<(Command, &'static str)> {
        Ok(match self {
            Self::Lambent => {
                let mut command = Command::new(env.bin("lambent"));
                command.arg("serve");
                (command, "/api/health/")
            }
            Self::BareRelay => (Command::new(env.bin("lambent-bare-relay")), "/api/health/"),
            Self::LiteLlm(exe) => {
                let config = env.work_dir.join("litellm.yaml");
                std::fs::write(
                    &config,
                    format!(
                        "model_list:\n  - model_name: bridge\n    litellm_params: {{model: openai/gpt-4.1, api_base: \"{}\", api_key: sk-bench}}\ngeneral_settings: {{master_key: os.environ/LITELLM_MASTER_KEY}}\n",
                        env.openai_base_url
                    ),
                )?;
                // The bench's DATABASE_URL names a SQLite file, which LiteLLM refuses (it takes PostgreSQL only).
                let mut command = Command::new("env");
                command
                    .args(["-u", "DATABASE_URL"])
                    .arg(exe)
                    .args(["--config", &config.to_string_lossy(), "--port", &port.to_string(), "--num_workers", "1"])
                    .env("LITELLM_MASTER_KEY", LITELLM_KEY)
                    .env("LITELLM_LOCAL_MODEL_COST_MAP", "True");
                (command, "/health/liveliness")
            }
        })
    }

    /// One streamed turn through this server.
    async fn turn(&self, target: &Target) -> Result<()> {
        match self {
            Self::Lambent => target.via().await.map(drop),
            Self::BareRelay => {
                let body = serde_json::json!({"message": "bench"});
                completed(target.client.post(&target.via_url).json(&body)).await
            }
            Self::LiteLlm(_) => {
                let body = serde_json::json!({"model": "bridge", "input": "bench", "stream": true});
                completed(target.client.post(&target.via_url).bearer_auth(LITELLM_KEY).json(&body)).await
            }
        }
    }

    fn stream_path(&self) -> &'static str {
        match self {
            Self::LiteLlm(_) => "/v1/responses",
            _ => "/api/agent/stream/",
        }
    }
}

/// CPU time per turn, outside valgrind.
#[derive(Debug, Clone)]
pub struct Cpu {
    pub subject: &'static str,
    pub turns: usize,
    pub failures: usize,
    pub ms_per_turn: f64,
    /// The part of `ms_per_turn` spent in user space (the rest is the kernel's).
    pub user_ms_per_turn: f64,
}

/// Runs `subject` as it ships and measures the CPU time (the process and its children) of `turns` turns on
/// `concurrency` keep-alive clients, after a warm-up.
pub async fn cpu(env: &Env, target: &Target, subject: &Subject, concurrency: usize, turns: usize) -> Result<Cpu> {
    let port = lambent_testkit::free_port()?;
    let (command, health) = subject.command(env, port)?;
    let server = Server::spawn(env, command, port, &format!("{}.cpu.log", subject.name()), health, &[]).await?;
    let job = turn_job(subject, target, &server);
    let _ = workers(concurrency, concurrency * 2, None, job.clone()).await;
    let ticks = crate::machine::clock_ticks();
    let before = crate::machine::tree_cpu_split_ms(server.pid, ticks)?;
    let results = workers(concurrency, turns, None, job).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = crate::machine::tree_cpu_split_ms(server.pid, ticks)?;
    server.stop().await;
    let failures = results.iter().filter(|r| r.is_err()).count();
    let per_turn = |ms: f64| ms / turns.max(1) as f64;
    Ok(Cpu {
        subject: subject.name(),
        turns,
        failures,
        ms_per_turn: per_turn(after.0 + after.1 - before.0 - before.1),
        user_ms_per_turn: per_turn(after.0 - before.0),
    })
}

/// One turn through `subject` running at `server`, as the workers call it.
fn turn_job(
    subject: &Subject,
    target: &Target,
    server: &Server,
) -> impl Fn(usize) -> futures::future::BoxFuture<'static, Result<()>> + Clone + Send + 'static {
    let target = Target { via_url: format!("{}{}", server.base_url, subject.stream_path()), ..target.clone() };
    let subject = subject.clone();
    move |_| {
        let (subject, target) = (subject.clone(), target.clone());
        Box::pin(async move { subject.turn(&target).await })
    }
}

/// A streamed answer that ends with the upstream's `response.completed`.
async fn completed(request: reqwest::RequestBuilder) -> Result<()> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.text().await?;
    if status.is_success() && body.contains("response.completed") {
        Ok(())
    } else {
        Err(format!("HTTP {status}: {}", body.chars().take(300).collect::<String>()).into())
    }
}

/// Counts `subject`'s instructions over `turns` streamed turns on `concurrency` keep-alive clients.
pub async fn count(env: &Env, target: &Target, subject: &Subject, concurrency: usize, turns: usize) -> Result<Count> {
    let name = subject.name();
    let out = env.work_dir.join(format!("callgrind.{name}"));
    let port = lambent_testkit::free_port()?;
    let (plain, health) = subject.command(env, port)?;
    let plain = plain.as_std();
    let mut command = Command::new("valgrind");
    command
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(plain.get_program())
        .args(plain.get_args());
    let server = Server::spawn(env, command, port, &format!("{name}.callgrind.log"), health, &[]).await?;
    let turn = turn_job(subject, target, &server);
    // Warm-up: opens the keep-alive connections, fills the pools and caches.
    let _ = workers(concurrency, concurrency * 2, None, turn.clone()).await;
    control(&server, "-z").await?;
    let results = workers(concurrency, turns, None, turn).await;
    // `done` is sent after it is recorded; let the server finish tidying the last turns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = SystemTime::now();
    control(&server, "-d").await?;
    let dump = newest_since(&env.work_dir, &format!("callgrind.{name}"), before)?;
    server.stop().await;
    let failures = results.iter().filter(|r| r.is_err()).count();
    let total = totals(&std::fs::read_to_string(&dump)?).ok_or_else(|| format!("no totals in {}", dump.display()))?;
    Ok(Count { subject: name, turns, failures, per_turn: total as f64 / turns.max(1) as f64, dump })
}

/// Runs `callgrind_control <flag> <pid>`, poking the server with health checks until it has answered.
async fn control(server: &Server, flag: &str) -> Result<()> {
    let mut control = Command::new("callgrind_control")
        .arg(flag)
        .arg(server.pid.to_string())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("callgrind_control (valgrind's): {e}"))?;
    let client = reqwest::Client::new();
    let health = format!("{}/api/health/", server.base_url);
    for _ in 0..600 {
        if let Some(status) = control.try_wait()? {
            return if status.success() { Ok(()) } else { Err(format!("callgrind_control {flag}: {status}").into()) };
        }
        let _ = client.get(&health).send().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("callgrind_control {flag} did not finish").into())
}

/// The newest file in `dir` whose name starts with `prefix`, written after `since`.
fn newest_since(dir: &Path, prefix: &str, since: SystemTime) -> Result<PathBuf> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let modified = entry.metadata()?.modified()?;
        if entry.file_name().to_string_lossy().starts_with(prefix)
            && modified >= since
            && newest.as_ref().is_none_or(|(at, _)| modified > *at)
        {
            newest = Some((modified, entry.path()));
        }
    }
    newest.map(|(_, path)| path).ok_or_else(|| format!("no callgrind dump {prefix}* in {}", dir.display()).into())
}

/// The `totals:` (else `summary:`) line of a callgrind dump: instructions, when `Ir` is the only event.
fn totals(dump: &str) -> Option<u64> {
    let line =
        dump.lines().find(|l| l.starts_with("totals:")).or_else(|| dump.lines().find(|l| l.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The section: CPU per turn of the bare relay, Lambent and (with `--litellm`) LiteLLM, then instructions per
/// turn of the first two, on the CPU figure's concurrency; said as it goes (the report's tables do not carry it).
pub async fn figures(args: &Args, env: &Env, target: &Target) -> Result<()> {
    let mut subjects = vec![Subject::BareRelay, Subject::Lambent];
    if let Some(litellm) = &args.litellm {
        subjects.push(Subject::LiteLlm(litellm.clone()));
    }
    let c = args.cpu_concurrency;
    for subject in &subjects {
        let cpu = cpu(env, target, subject, c, args.cpu_turns).await?;
        say(format!(
            "cpu: {} {:.3} ms per turn ({:.3} user, {:.3} system; {} turns, c = {c}, {} failures)",
            cpu.subject,
            cpu.ms_per_turn,
            cpu.user_ms_per_turn,
            cpu.ms_per_turn - cpu.user_ms_per_turn,
            cpu.turns,
            cpu.failures
        ));
    }
    let mut counts = Vec::new();
    for subject in &subjects[..2] {
        let count = count(env, target, subject, c, args.instruction_turns).await?;
        say(format!(
            "instructions: {} {:.0} per turn ({} turns, c = {c}, {} failures; {})",
            count.subject,
            count.per_turn,
            count.turns,
            count.failures,
            count.dump.display()
        ));
        counts.push(count);
    }
    if let [bare, lambent] = counts.as_slice() {
        say(format!("instructions: lambent / bare relay = {:.2}", lambent.per_turn / bare.per_turn));
    }
    Ok(())
}
