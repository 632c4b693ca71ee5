//! What the report holds: each section's figures, as measured (the JSON summary is these, serialised).

use std::time::Duration;

use serde::Serialize;

use crate::cli::Args;
use crate::machine::Machine;
use crate::stats::Pair;

/// One figure the issue sets a target for (or reports without one).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub figure: String,
    pub target: String,
    pub measured: String,
    pub value: f64,
    /// None when there is no target, or nothing was measured.
    pub met: Option<bool>,
}

/// The p50 and p99 of each series of the relay figures, and what relaying added (relayed − direct, per
/// percentile, within one run): one run's, or each figure's median over the runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RelayTimes {
    pub direct_ttfe_ms: Pair,
    pub via_ttfe_ms: Pair,
    pub added_ttfe_ms: Pair,
    pub direct_total_ms: Pair,
    pub via_total_ms: Pair,
    pub added_total_ms: Pair,
    /// The longest silence between two chunks of one response.
    pub direct_max_gap_ms: Pair,
    pub via_max_gap_ms: Pair,
}

impl RelayTimes {
    /// Each figure's median over `runs`.
    pub fn median_of(runs: &[Self]) -> Self {
        let of = |figure: fn(&Self) -> Pair| Pair::median_of(runs.iter().map(figure));
        Self {
            direct_ttfe_ms: of(|r| r.direct_ttfe_ms),
            via_ttfe_ms: of(|r| r.via_ttfe_ms),
            added_ttfe_ms: of(|r| r.added_ttfe_ms),
            direct_total_ms: of(|r| r.direct_total_ms),
            via_total_ms: of(|r| r.via_total_ms),
            added_total_ms: of(|r| r.added_total_ms),
            direct_max_gap_ms: of(|r| r.direct_max_gap_ms),
            via_max_gap_ms: of(|r| r.via_max_gap_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayLevel {
    pub concurrency: usize,
    /// Direct + relayed pairs per run.
    pub pairs: usize,
    /// Each the median over the runs.
    #[serde(flatten)]
    pub times: RelayTimes,
    /// Over all runs.
    pub failures: usize,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub concurrency: usize,
    pub turns: usize,
    pub ms_per_turn: f64,
    pub ms_per_turn_runs: Vec<f64>,
    pub failures: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Streams {
    pub streams: usize,
    pub idle_rss_mb: f64,
    pub peak_rss_mb: f64,
    pub peak_rss_mb_runs: Vec<f64>,
    /// The most upstream streams open at once (median over runs): shows they overlapped.
    pub peak_open_upstream: f64,
    pub failures: usize,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Crud {
    pub request: String,
    pub concurrency: usize,
    pub seconds: u64,
    pub generator: String,
    pub requests_per_s: f64,
    pub requests_per_s_runs: Vec<f64>,
    /// The server's own CPU time (user + system) per answered request, µs: unlike req/s, it does not depend
    /// on what else the machine runs.
    pub cpu_us_per_request: f64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Function {
    pub name: String,
    pub request: String,
    pub crud: bool,
    pub answered_ms: f64,
    pub answered_ms_min: f64,
    pub answered_ms_max: f64,
    pub first_byte_ms: f64,
    pub first_event_ms: f64,
    pub ready_ms: f64,
    pub peak_rss_mb: f64,
    pub peak_rss_mb_max: f64,
    /// User + system CPU time of the cold process, initialisation and the one request.
    pub cpu_ms: f64,
    /// What `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` said (the template's `MemorySize` in the deployed shape).
    pub memory_mb: u32,
    /// Requests that reached the remote database during the cold process (None: an embedded file).
    pub round_trips: Option<f64>,
    pub size_mb: Option<f64>,
    pub size_source: Option<String>,
    pub runs: usize,
    pub failures: usize,
    pub errors: Vec<String>,
}

/// The database requests of one request on a warm server (the most seen over the samples).
#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub request: String,
    pub rtt_ms: f64,
    pub samples: usize,
    pub total: Option<u64>,
    /// Before the fake upstream received the model request (the model endpoints only).
    pub before_upstream: Option<u64>,
    /// After the upstream's answer ended.
    pub after_upstream: Option<u64>,
    pub failures: usize,
}

/// One round trip and concurrency of the remote figures.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteLevel {
    pub rtt_ms: f64,
    pub concurrency: usize,
    /// Requests answered per endpoint and run (the fewest over endpoints and runs: the time cap may cut a level).
    pub requests: usize,
    /// Wall time per endpoint (the stream's: to the end of its body).
    pub wall_ms: Vec<(String, Pair)>,
    pub added_ttfe_ms: Pair,
    pub added_total_ms: Pair,
    /// The server's CPU per streamed turn during the stream runs.
    pub cpu_ms_per_turn: f64,
    pub failures: usize,
    pub errors: Vec<String>,
}

/// N servers on one database, one client each.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRun {
    pub rtt_ms: f64,
    pub instances: usize,
    pub seconds: f64,
    pub turns_per_s: f64,
    pub turns_per_s_runs: Vec<f64>,
    /// Time to first event (absolute, not added).
    pub ttfe_ms: Pair,
    pub failures: usize,
    pub errors: Vec<String>,
}

/// The load run: many clients per server, each turn's outcome counted.
#[derive(Debug, Clone, Serialize)]
pub struct LoadRun {
    pub rtt_ms: f64,
    pub instances: usize,
    pub clients_per_instance: usize,
    pub turns: usize,
    pub seconds: f64,
    pub completed: usize,
    /// Refused before anything was stored: 503 with `Retry-After`.
    pub refused: usize,
    /// Turns that ended `storage_error`: an answer the model gave, not stored.
    pub storage_errors: usize,
    pub server_errors: usize,
    /// Anything else (another status, another error code, no `done`).
    pub other: usize,
    /// Time to first event of the completed turns.
    pub ttfe_ms: Pair,
    /// The database requests the servers retried, and those that gave up (their EMF lines).
    pub db_retries: u64,
    pub db_give_ups: u64,
    pub errors: Vec<String>,
}

/// The deployed shape: a remote libsql server behind an injected round trip.
#[derive(Debug, Clone, Serialize)]
pub struct Remote {
    pub sqld: String,
    /// How sqld checkpointed its WAL.
    pub sqld_checkpoints: String,
    /// Where sqld stopped taking writes and was restarted.
    pub sqld_restarts: Vec<String>,
    pub deltas: usize,
    pub delta_delay_ms: f64,
    pub round_trips: Vec<RoundTrips>,
    pub levels: Vec<RemoteLevel>,
    pub scale_delta_delay_ms: f64,
    pub scale: Vec<ScaleRun>,
    pub load: Option<LoadRun>,
    pub lambda_rtt_ms: f64,
    /// moto's time for one `GetParameter`, from the harness (median of five).
    pub ssm_get_ms: f64,
    pub functions: Vec<Function>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub runs: usize,
    pub deltas: usize,
    pub first_delay_ms: f64,
    pub delta_delay_ms: f64,
    pub rss_delta_delay_ms: f64,
    pub list_agents: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub headline: Vec<Figure>,
    pub relay: Vec<RelayLevel>,
    pub cpu: Option<Cpu>,
    pub streams: Option<Streams>,
    pub crud: Vec<Crud>,
    pub functions: Vec<Function>,
    /// The targets of the deployed shape (issue 13), from [`Report::remote`].
    pub remote_headline: Vec<Figure>,
    pub remote: Option<Remote>,
    pub notes: Vec<String>,
}
impl Report {
    /// An empty report of this run: the command that produced it, the settings the figures depend on.
    pub fn new(args: &Args, runs: usize, machine: Machine) -> Self {
        let command = std::env::var("BENCH_COMMAND").unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
        Self {
            command,
            machine,
            settings: Settings {
                runs,
                deltas: args.deltas,
                first_delay_ms: args.first_delay_ms,
                delta_delay_ms: args.delta_delay_ms,
                rss_delta_delay_ms: args.streams_delta_delay_ms,
                list_agents: args.list_agents,
            },
            headline: Vec::new(),
            relay: Vec::new(),
            cpu: None,
            streams: None,
            crud: Vec::new(),
            functions: Vec::new(),
            remote_headline: Vec::new(),
            remote: None,
            notes: Vec::new(),
        }
    }

    /// The notes every run ends with: a busy machine, how much the fake upstream served, how long it took.
    pub fn closing_notes(&mut self, upstream_served: u64, took: Duration) {
        let load: f64 = self.machine.load_before.split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(0.0);
        if load > 0.5 {
            self.notes.push(format!(
                "The machine was not idle when the run started (1-minute load {load:.2}): other work competed for \
                 the 2 cores, so the figures may be noisy."
            ));
        }
        if upstream_served > 0 {
            self.notes.push(format!("The fake upstream served {upstream_served} responses in all."));
        }
        self.notes.push(format!("The whole run took {:.1} min.", took.as_secs_f64() / 60.0));
    }
}
