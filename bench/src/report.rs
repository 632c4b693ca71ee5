//! Statistics, the machine description, and the report: markdown for `BENCHMARKS.md` (written between
//! markers, so hand-written analysis around it survives a re-run) and JSON for machines.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

pub const BEGIN: &str = "<!-- bench:begin -->";
pub const END: &str = "<!-- bench:end -->";

/// The `p`th percentile (nearest rank) of `values`; NaN when there are none.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of the runs' values (NaN ones, from failed runs, left out).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().filter(|v| !v.is_nan()).fold(f64::NAN, f64::max)
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().filter(|v| !v.is_nan()).fold(f64::NAN, f64::min)
}

/// p50 and p99, each the median over the runs of that run's percentile.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Pair {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gb: f64,
    pub kernel: String,
    pub rustc: String,
    pub load_before: String,
    pub load_after: String,
    pub date_utc: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let memory_kb: f64 = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores,
            memory_gb: memory_kb * 1024.0 / 1e9,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
            rustc: command_line("rustc", &["--version"]),
            load_before: load(),
            load_after: String::new(),
            date_utc: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

/// The 1, 5 and 15 minute load averages: how busy the machine was besides the benchmark.
pub fn load() -> String {
    let raw = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    raw.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

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

#[derive(Debug, Clone, Serialize)]
pub struct RelayLevel {
    pub concurrency: usize,
    /// Direct + relayed pairs per run.
    pub pairs: usize,
    pub direct_ttfe_ms: Pair,
    pub via_ttfe_ms: Pair,
    /// via − direct, per run and percentile, then the median over runs.
    pub added_ttfe_ms: Pair,
    pub direct_total_ms: Pair,
    pub via_total_ms: Pair,
    pub added_total_ms: Pair,
    /// The longest silence between two chunks of one response.
    pub direct_max_gap_ms: Pair,
    pub via_max_gap_ms: Pair,
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

fn num(v: f64, decimals: usize) -> String {
    if v.is_nan() { "—".into() } else { format!("{v:.decimals$}") }
}

fn pair(p: Pair, decimals: usize) -> String {
    format!("{} / {}", num(p.p50, decimals), num(p.p99, decimals))
}

/// A markdown table: the header row, its rule, then the rows.
fn table(md: &mut String, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) {
    let _ = writeln!(md, "| {} |\n|{}", header.join(" | "), "---|".repeat(header.len()));
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
}

impl Report {
    /// The figures the issue sets targets for, from the detailed results.
    pub fn headline(&mut self) {
        let mut figures = Vec::new();
        let at_most = |value: f64, target: f64| (!value.is_nan()).then_some(value <= target);
        if let Some(level) = self.relay.iter().find(|l| l.concurrency == 64) {
            let v = level.added_ttfe_ms.p99;
            figures.push(Figure {
                figure: "Added time-to-first-event, p99, concurrency 64".into(),
                target: "≤ 1 ms".into(),
                measured: format!("{} ms", num(v, 2)),
                value: v,
                met: at_most(v, 1.0),
            });
        }
        if let Some(cpu) = &self.cpu {
            let v = cpu.ms_per_turn;
            figures.push(Figure {
                figure: format!("Server CPU per streamed turn (concurrency {})", cpu.concurrency),
                target: "≤ 0.5 ms".into(),
                measured: format!("{} ms", num(v, 2)),
                value: v,
                met: at_most(v, 0.5),
            });
        }
        let crud: Vec<&Function> = self.functions.iter().filter(|f| f.crud).collect();
        if let Some(slowest) = crud.iter().max_by(|a, b| a.answered_ms.total_cmp(&b.answered_ms)) {
            let v = slowest.answered_ms;
            figures.push(Figure {
                figure: "Cold start to first answer, CRUD functions (slowest)".into(),
                target: "≤ 25 ms".into(),
                measured: format!("{} ms ({})", num(v, 1), slowest.name),
                value: v,
                met: at_most(v, 25.0),
            });
        }
        let sized = self.functions.iter().filter_map(|f| Some((f, f.size_mb?)));
        if let Some((largest, v)) = sized.max_by(|a, b| a.1.total_cmp(&b.1)) {
            let source = largest.size_source.as_deref().unwrap_or("?");
            let source = if source == "native" { "native x86_64 release, not cargo lambda" } else { source };
            figures.push(Figure {
                figure: "Function binary size (largest)".into(),
                target: "≤ 8 MB".into(),
                measured: format!("{} MB ({}; {source})", num(v, 2), largest.name),
                value: v,
                met: at_most(v, 8.0),
            });
        }
        if let Some(largest) = self.functions.iter().max_by(|a, b| a.peak_rss_mb.total_cmp(&b.peak_rss_mb)) {
            let v = largest.peak_rss_mb;
            figures.push(Figure {
                figure: "Peak RSS per function, one request (largest)".into(),
                target: "≤ 30 MB".into(),
                measured: format!("{} MB ({})", num(v, 1), largest.name),
                value: v,
                met: at_most(v, 30.0),
            });
        }
        if let Some(streams) = &self.streams {
            let v = streams.peak_rss_mb;
            figures.push(Figure {
                figure: format!("Peak RSS, local server holding {} concurrent streams", streams.streams),
                target: "≤ 150 MB".into(),
                measured: format!("{} MB", num(v, 1)),
                value: v,
                met: at_most(v, 150.0),
            });
        }
        for crud in &self.crud {
            let v = crud.requests_per_s;
            let get = crud.request.starts_with("GET");
            figures.push(Figure {
                figure: format!("{} throughput, concurrency {}", crud.request, crud.concurrency),
                target: if get { "≥ 10,000 req/s".into() } else { "— (reported)".into() },
                measured: format!("{} req/s", num(v, 0)),
                value: v,
                met: if get && !v.is_nan() { Some(v >= 10_000.0) } else { None },
            });
        }
        self.headline = figures;
        self.remote_headline = self.remote.as_ref().map(remote_figures).unwrap_or_default();
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(md, "{BEGIN}");
        let _ = writeln!(md, "<!-- Generated by lambent-bench; edits between these markers are overwritten. -->\n");
        let _ = writeln!(md, "## Results\n");
        let _ = writeln!(md, "Measured {} with:\n\n```bash\n{}\n```\n", m.date_utc, self.command);
        let _ = writeln!(
            md,
            "**Machine:** {} — {} cores, {:.1} GB RAM, Linux {}, {}. Load average (1/5/15 min) {} before, {} after.\n",
            m.cpu, m.cores, m.memory_gb, m.kernel, m.rustc, m.load_before, m.load_after
        );
        let _ = writeln!(
            md,
            "Every figure is the **median of {} runs**. MB = 10^6 bytes. Release builds (`[profile.release]`).\n",
            s.runs
        );
        targets_table(&mut md, &self.headline);
        if let Some(remote) = &self.remote {
            let _ = writeln!(
                md,
                "\n**The deployed shape** (issue 13): the release binaries against a real libsql server ({}) \
                 behind a proxy that holds every database request for the round-trip time r; details below.\n",
                remote.sqld
            );
            targets_table(&mut md, &self.remote_headline);
        }

        if !self.relay.is_empty() {
            let _ = writeln!(md, "\n### Relay overhead (`POST /api/agent/stream/` vs the upstream directly)\n");
            let _ = writeln!(
                md,
                "The fake upstream streams {} text deltas (first event after {} ms, deltas {} ms apart) plus the \
                 surrounding Responses events. Each worker alternates a direct request to it and a relayed turn \
                 through the local server (new session each). TTFE = time to the first `event:` bytes; total = \
                 end of body. *Added* = relayed − direct, per run and percentile (not paired per request). \
                 *Longest gap* = the longest silence between two chunks of one response (the upstream's own is \
                 about one delta interval). Times in ms, p50 / p99.\n",
                s.deltas, s.first_delay_ms, s.delta_delay_ms
            );
            let rows = self.relay.iter().map(|l| {
                vec![
                    l.concurrency.to_string(),
                    l.pairs.to_string(),
                    pair(l.direct_ttfe_ms, 2),
                    pair(l.via_ttfe_ms, 2),
                    format!("**{}**", pair(l.added_ttfe_ms, 2)),
                    pair(l.direct_total_ms, 1),
                    pair(l.via_total_ms, 1),
                    format!("**{}**", pair(l.added_total_ms, 2)),
                    pair(l.direct_max_gap_ms, 1),
                    pair(l.via_max_gap_ms, 1),
                    l.failures.to_string(),
                ]
            });
            let header = [
                "concurrency",
                "pairs/run",
                "direct TTFE",
                "relayed TTFE",
                "**added TTFE**",
                "direct total",
                "relayed total",
                "**added total**",
                "longest gap direct",
                "longest gap relayed",
                "failures",
            ];
            table(&mut md, &header, rows);
        }
        if let Some(cpu) = &self.cpu {
            let runs: Vec<String> = cpu.ms_per_turn_runs.iter().map(|v| num(*v, 2)).collect();
            let _ = writeln!(
                md,
                "\n**Server CPU per streamed turn:** {} ms (user + system time of the `lambent` process from \
                 `/proc/<pid>/stat` over {} relayed turns at concurrency {}; runs: {}; failures: {}). The fake \
                 upstream runs in the harness, so none of its work is counted.",
                num(cpu.ms_per_turn, 2),
                cpu.turns,
                cpu.concurrency,
                runs.join(", "),
                cpu.failures
            );
        }
        if let Some(st) = &self.streams {
            let runs: Vec<String> = st.peak_rss_mb_runs.iter().map(|v| num(*v, 1)).collect();
            let _ = writeln!(
                md,
                "\n**Local server holding {} streams:** peak RSS (VmHWM) {} MB (runs: {}), {} MB idle after start; \
                 a fresh server per run, {} simultaneous relayed turns against an upstream pacing deltas {} ms \
                 apart; at most {} upstream streams were open at once (median); failures: {}.",
                st.streams,
                num(st.peak_rss_mb, 1),
                runs.join(", "),
                num(st.idle_rss_mb, 1),
                st.streams,
                s.rss_delta_delay_ms,
                num(st.peak_open_upstream, 0),
                st.failures
            );
        }
        if !self.crud.is_empty() {
            let _ = writeln!(md, "\n### CRUD throughput (local SQLite default)\n");
            let _ = writeln!(
                md,
                "The caller is an ordinary (non-staff) user owning {} agents; GET runs before any POST so the list \
                 does not grow under it.\n",
                s.list_agents
            );
            let rows = self.crud.iter().map(|c| {
                let runs: Vec<String> = c.requests_per_s_runs.iter().map(|v| num(*v, 0)).collect();
                vec![
                    c.request.clone(),
                    c.concurrency.to_string(),
                    c.seconds.to_string(),
                    c.generator.clone(),
                    num(c.requests_per_s, 0),
                    runs.join(", "),
                    num(c.cpu_us_per_request, 0),
                    c.failed.to_string(),
                ]
            });
            let header = [
                "request",
                "concurrency",
                "seconds",
                "generator",
                "req/s (median)",
                "runs",
                "server CPU µs/request",
                "non-2xx + errors",
            ];
            table(&mut md, &header, rows);
        }
        if !self.functions.is_empty() {
            let _ = writeln!(md, "\n### Lambda functions (stub Runtime API, one invocation per cold process)\n");
            let _ = writeln!(
                md,
                "Times from exec: *ready* = the first `GET /next` (initialisation done), *first byte* and \
                 *answered* = the start and end of the answer's `POST .../response`, *first event* = its first SSE \
                 `event:` (streaming functions). Peak RSS = VmHWM once the \
                 function polls for its next invocation. Sizes: `target/lambda/<fn>/bootstrap` when `cargo lambda \
                 build --release` has run, else the native release binary (stripped by the release profile).\n"
            );
            functions_table(&mut md, &self.functions, false);
        }
        if let Some(remote) = &self.remote {
            remote_sections(&mut md, remote);
        }
        let remote_errors = self.remote.iter().flat_map(|r| {
            let levels = r
                .levels
                .iter()
                .flat_map(|l| l.errors.iter().map(move |e| format!("remote {} ms c={}: {e}", l.rtt_ms, l.concurrency)));
            let scale = r.scale.iter().flat_map(|s| {
                s.errors.iter().map(move |e| format!("scale-out {} ms × {}: {e}", s.rtt_ms, s.instances))
            });
            let functions =
                r.functions.iter().flat_map(|f| f.errors.iter().map(move |e| format!("{} (deployed): {e}", f.name)));
            levels.chain(scale).chain(functions).collect::<Vec<_>>()
        });
        let errors: Vec<String> = self
            .relay
            .iter()
            .flat_map(|l| l.errors.iter().map(move |e| format!("relay c={}: {e}", l.concurrency)))
            .chain(self.streams.iter().flat_map(|s| s.errors.iter().map(|e| format!("streams: {e}"))))
            .chain(self.functions.iter().flat_map(|f| f.errors.iter().map(move |e| format!("{}: {e}", f.name))))
            .chain(remote_errors)
            .collect();
        if !self.notes.is_empty() || !errors.is_empty() {
            let _ = writeln!(md, "\n### Notes\n");
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
            for error in errors.iter().take(10) {
                let _ = writeln!(md, "- failure: `{}`", error.replace('`', "'").replace('\n', " "));
            }
        }
        let _ = writeln!(md, "\n{END}");
        md
    }
}

/// A targets table: figure, target, measured, met.
fn targets_table(md: &mut String, figures: &[Figure]) {
    let rows = figures.iter().map(|f| {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        vec![f.figure.clone(), f.target.clone(), f.measured.clone(), met.to_owned()]
    });
    table(md, &["figure", "target", "measured (median)", "met?"], rows);
}

/// The Lambda functions' cold starts; `deployed` shows the template's memory size and the database round trips
/// instead of the binary size.
fn functions_table(md: &mut String, functions: &[Function], deployed: bool) {
    let rows = functions.iter().map(|f| {
        let size = match (f.size_mb, &f.size_source) {
            (Some(mb), Some(source)) => format!("{} MB ({source})", num(mb, 2)),
            _ => "—".into(),
        };
        let mut row = vec![
            f.name.clone(),
            f.request.clone(),
            num(f.ready_ms, 1),
            num(f.first_byte_ms, 1),
            num(f.first_event_ms, 1),
            format!("**{}** ({}–{})", num(f.answered_ms, 1), num(f.answered_ms_min, 1), num(f.answered_ms_max, 1)),
            format!("{} ({})", num(f.peak_rss_mb, 1), num(f.peak_rss_mb_max, 1)),
            num(f.cpu_ms, 0),
        ];
        if deployed {
            row.extend([format!("{} MB", f.memory_mb), f.round_trips.map_or_else(|| "—".into(), |n| num(n, 0))]);
        } else {
            row.push(size);
        }
        row.push(f.failures.to_string());
        row
    });
    let mut header = vec![
        "function",
        "request",
        "ready",
        "first byte",
        "first event",
        "**answered** (min–max)",
        "peak RSS (max)",
        "CPU ms",
    ];
    header.extend(if deployed { &["memory (template)", "database round trips"][..] } else { &["size"][..] });
    header.push("failures");
    table(md, &header, rows);
}

/// The deployed shape's targets (issue 13), from its detailed results.
fn remote_figures(remote: &Remote) -> Vec<Figure> {
    let at_most = |value: f64, target: f64| (!value.is_nan()).then_some(value <= target);
    let mut figures = Vec::new();
    for level in remote.levels.iter().filter(|l| l.concurrency == 1) {
        let r = level.rtt_ms;
        let v = level.added_ttfe_ms.p50;
        figures.push(Figure {
            figure: format!("Added time-to-first-event at r = {r} ms (p50, concurrency 1)"),
            target: format!("≤ 2·r + 2 = {} ms", 2.0 * r + 2.0),
            measured: format!("{} ms", num(v, 2)),
            value: v,
            met: at_most(v, 2.0 * r + 2.0),
        });
        let reads = level.wall_ms.iter().filter(|(request, _)| request.starts_with("GET"));
        if let Some((request, slowest)) = reads.max_by(|a, b| a.1.p50.total_cmp(&b.1.p50)) {
            figures.push(Figure {
                figure: format!("CRUD read at r = {r} ms (p50, concurrency 1, the slower of list and detail)"),
                target: format!("≤ 2·r + 1 = {} ms", 2.0 * r + 1.0),
                measured: format!("{} ms ({request})", num(slowest.p50, 2)),
                value: slowest.p50,
                met: at_most(slowest.p50, 2.0 * r + 1.0),
            });
        }
    }
    // Which requests a budget is about, and which of their counts.
    type Keep = fn(&str) -> bool;
    type Count = fn(&RoundTrips) -> Option<u64>;
    let most = |keep: &dyn Fn(&str) -> bool, count: Count| {
        remote.round_trips.iter().filter(|r| keep(&r.request)).filter_map(|r| Some((count(r)?, r))).max_by_key(|m| m.0)
    };
    let (total, before, after): (Count, Count, Count) = (|r| r.total, |r| r.before_upstream, |r| r.after_upstream);
    let (read, write, model): (Keep, Keep, Keep) =
        (|r| r.starts_with("GET"), |r| r == "POST /api/agents/", |r| r.starts_with("POST /api/agent/"));
    let budgets = [
        ("Database round trips of a CRUD read (warm; list, detail)", read, total),
        ("Database round trips of a CRUD write (warm; POST /api/agents/)", write, total),
        ("Database round trips before the model request (warm; stream, chat)", model, before),
        ("Database round trips after the model's last event (warm; stream, chat)", model, after),
    ];
    for (figure, keep, count) in budgets {
        if let Some((n, row)) = most(&keep, count) {
            figures.push(Figure {
                figure: figure.into(),
                target: "≤ 2".into(),
                measured: format!("{n} ({}, most seen)", row.request),
                value: n as f64,
                met: Some(n <= 2),
            });
        }
    }
    for (name, warm) in [("agents", "GET /api/agents/"), ("agent-stream", "POST /api/agent/stream/")] {
        let cold = remote.functions.iter().find(|f| f.name == name).and_then(|f| f.round_trips);
        if let (Some(cold), Some((warm_n, _))) = (cold, most(&|r: &str| r == warm, total)) {
            figures.push(Figure {
                figure: format!("Database round trips of a cold `{name}` function (init + {warm})"),
                target: format!("≤ warm + 1 = {}", warm_n + 1),
                measured: format!("{} (r = {} ms)", num(cold, 0), remote.lambda_rtt_ms),
                value: cold,
                met: at_most(cold, (warm_n + 1) as f64),
            });
        }
    }
    let cpu: Vec<&RemoteLevel> = remote.levels.iter().filter(|l| l.concurrency == 16).collect();
    if let Some(first) = cpu.first() {
        let measured: Vec<String> =
            cpu.iter().map(|l| format!("{} ms at r = {} ms", num(l.cpu_ms_per_turn, 2), l.rtt_ms)).collect();
        figures.push(Figure {
            figure: "Server CPU per streamed turn, remote database (concurrency 16)".into(),
            target: "— (reported; the local target is ≤ 1.5 ms)".into(),
            measured: measured.join(", "),
            value: first.cpu_ms_per_turn,
            met: None,
        });
    }
    let instances = remote.scale.iter().map(|s| s.instances).max().unwrap_or(0);
    let far = remote.scale.iter().filter(|s| s.instances == instances).max_by(|a, b| a.rtt_ms.total_cmp(&b.rtt_ms));
    let near = remote.scale.iter().find(|s| s.instances == instances && s.rtt_ms == 0.0);
    if let (Some(far), Some(near)) = (far.filter(|f| f.rtt_ms > 0.0), near) {
        let ratio = far.turns_per_s / near.turns_per_s;
        figures.push(Figure {
            figure: format!("Scale-out, {instances} instances: turns/s at r = {} ms ÷ at r = 0", far.rtt_ms),
            target: "≥ 50 %".into(),
            measured: format!(
                "{} % ({} / {} turns/s)",
                num(ratio * 100.0, 0),
                num(far.turns_per_s, 1),
                num(near.turns_per_s, 1)
            ),
            value: ratio,
            met: (!ratio.is_nan()).then_some(ratio >= 0.5),
        });
        figures.push(Figure {
            figure: format!("Scale-out, {instances} instances at r = {} ms: time to first event p50", far.rtt_ms),
            target: "≤ 50 ms".into(),
            measured: format!("{} ms", num(far.ttfe_ms.p50, 1)),
            value: far.ttfe_ms.p50,
            met: at_most(far.ttfe_ms.p50, 50.0),
        });
    }
    figures
}

/// The deployed shape's detailed tables.
fn remote_sections(md: &mut String, remote: &Remote) {
    let _ = writeln!(md, "\n### Deployed shape: a remote database ({}) behind an injected round trip\n", remote.sqld);
    let _ = writeln!(
        md,
        "`lambent serve` (release) with `DATABASE_URL` pointing at an HTTP proxy in front of a real sqld with JWT \
         authentication (`DATABASE_AUTH_TOKEN`), schema applied by `lambent migrate` first. The proxy counts every \
         request reaching sqld and holds it for r before forwarding it (one Hrana pipeline request = one round \
         trip); at r = 0 it still costs its own loopback hop. sqld runs with {}. The fake upstream answers {} \
         text deltas {} ms apart; each turn starts a new session.\n",
        remote.sqld_checkpoints, remote.deltas, remote.delta_delay_ms
    );
    for restart in &remote.sqld_restarts {
        let _ = writeln!(md, "- **sqld stopped taking writes** {restart}.");
    }
    if !remote.sqld_restarts.is_empty() {
        md.push('\n');
    }
    let rtts: Vec<f64> = remote.round_trips.iter().fold(Vec::new(), |mut rtts, r| {
        if !rtts.contains(&r.rtt_ms) {
            rtts.push(r.rtt_ms);
        }
        rtts
    });
    if !rtts.is_empty() {
        let samples = remote.round_trips.iter().map(|r| r.samples).max().unwrap_or(0);
        let _ = writeln!(
            md,
            "**Database round trips per request**, warm server (a request with the same token first), {samples} \
             requests one at a time, the most seen; each count waits until the database has been quiet for \
             250 ms + 3·r, so writes left to the background count too. Model endpoints: *before* the fake upstream \
             received the model request + *during* its answer + *after* its last event = total.\n"
        );
        let mut requests: Vec<&str> = Vec::new();
        for r in &remote.round_trips {
            if !requests.contains(&r.request.as_str()) {
                requests.push(&r.request);
            }
        }
        let rows = requests.iter().map(|request| {
            let model = request.starts_with("POST /api/agent/");
            let mut row = vec![(*request).to_owned(), if model { "≤ 2 + · + ≤ 2" } else { "≤ 2" }.to_owned()];
            for rtt in &rtts {
                let found = remote.round_trips.iter().find(|r| r.request == *request && r.rtt_ms == *rtt);
                row.push(found.map_or_else(
                    || "—".into(),
                    |r| match (r.total, r.before_upstream, r.after_upstream) {
                        (Some(total), Some(before), Some(after)) if model => {
                            format!("{before} + {} + {after} = **{total}**", total.saturating_sub(before + after))
                        }
                        (Some(total), ..) => format!("**{total}**"),
                        _ => format!("— ({} failed)", r.failures),
                    },
                ));
            }
            row
        });
        let mut header = vec!["request".to_owned(), "budget".to_owned()];
        header.extend(rtts.iter().map(|r| format!("r = {r} ms")));
        table(md, &header.iter().map(String::as_str).collect::<Vec<_>>(), rows);
    }
    if let Some(first) = remote.levels.first() {
        let _ = writeln!(
            md,
            "\n**Latency under concurrency**, keep-alive clients (a pool, one connection per worker, as browsers and \
             SDKs keep them), every endpoint in turn at each level. Wall time = request sent → whole answer read \
             (the stream's: end of body). *Added* = relayed − direct against the fake upstream, as in the relay \
             table. CPU = the server's user + system time per streamed turn during the stream runs. Times in ms, \
             p50 / p99.\n"
        );
        let rows = remote.levels.iter().map(|l| {
            let mut row = vec![format!("{} ms", l.rtt_ms), l.concurrency.to_string(), l.requests.to_string()];
            row.extend(l.wall_ms.iter().map(|(_, p)| pair(*p, 1)));
            row.extend([
                format!("**{}**", pair(l.added_ttfe_ms, 1)),
                pair(l.added_total_ms, 1),
                num(l.cpu_ms_per_turn, 2),
                l.failures.to_string(),
            ]);
            row
        });
        let mut header = vec!["r".to_owned(), "concurrency".to_owned(), "requests/run".to_owned()];
        header.extend(first.wall_ms.iter().map(|(request, _)| request.clone()));
        header.extend(["**stream: added TTFE**", "stream: added total", "CPU ms/turn", "failures"].map(String::from));
        table(md, &header.iter().map(String::as_str).collect::<Vec<_>>(), rows);
    }
    if !remote.scale.is_empty() {
        let _ = writeln!(
            md,
            "\n**Scale-out**: N `lambent serve` processes (stand-ins for N warm Lambda instances) on the one sqld, one \
             client each running streamed turns back to back on its keep-alive connection for {} s; the upstream \
             paces {} deltas {} ms apart. TTFE = request sent → first event (not *added*).\n",
            remote.scale[0].seconds, remote.deltas, remote.scale_delta_delay_ms
        );
        let rows = remote.scale.iter().map(|s| {
            let runs: Vec<String> = s.turns_per_s_runs.iter().map(|v| num(*v, 1)).collect();
            vec![
                format!("{} ms", s.rtt_ms),
                s.instances.to_string(),
                format!("**{}**", num(s.turns_per_s, 1)),
                runs.join(", "),
                pair(s.ttfe_ms, 1),
                s.failures.to_string(),
            ]
        });
        let header = ["r", "instances", "**turns/s** (deployment)", "runs", "TTFE p50 / p99", "failures"];
        table(md, &header, rows);
    }
    if !remote.functions.is_empty() {
        let _ = writeln!(
            md,
            "\n### Lambda functions as deployed (remote database at r = {} ms, SSM secrets)\n",
            remote.lambda_rtt_ms
        );
        let _ = writeln!(
            md,
            "As the stub table above, but each function configured as `template.yaml` deploys it: `DATABASE_URL` is \
             the proxy in front of sqld, the database token (and, for the agent functions, the OpenAI key) is read \
             at initialisation from SSM SecureString parameters in moto (`AWS_ENDPOINT_URL`, dummy credentials), and \
             `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` is the template's `MemorySize`. Nothing here limits memory or CPU to \
             that size: Lambda gives a function a share of a vCPU proportional to its memory (a whole one at \
             1,769 MB), so the CPU column is what stretches there. *Database round trips* = requests reaching sqld \
             during the cold process (initialisation and the one request). moto answers one `GetParameter` in {} ms \
             (median of five from the harness); *ready* includes one such read per parameter.\n",
            num(remote.ssm_get_ms, 1)
        );
        functions_table(md, &remote.functions, true);
    }
}

/// Writes `section` into `path` between the markers, leaving everything else in the file as it was. A file
/// without markers gets the section appended; a missing file is created with a title.
pub fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let updated = match (existing.find(BEGIN), existing.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = &existing[end + END.len()..];
            format!("{}{}{}", &existing[..begin], section.trim_end(), after)
        }
        _ if existing.trim().is_empty() => {
            format!("# Benchmarks\n\nRun with `scripts/bench` (see the README).\n\n{section}")
        }
        _ => format!("{}\n\n{section}", existing.trim_end()),
    };
    std::fs::write(path, updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_medians() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!((percentile(&v, 50.0), percentile(&v, 99.0), percentile(&v, 100.0)), (50.0, 99.0, 100.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_section_replaces_only_what_is_between_the_markers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("B.md");
        std::fs::write(&path, format!("# B\n\nintro\n\n{BEGIN}\nold\n{END}\n\n## Analysis\nkeep me\n")).unwrap();
        write_section(&path, &format!("{BEGIN}\nnew\n{END}\n")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("# B\n\nintro\n\n{BEGIN}\nnew\n{END}\n\n## Analysis\nkeep me\n"));
    }
}
