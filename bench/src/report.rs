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
    pub size_mb: Option<f64>,
    pub size_source: Option<String>,
    pub runs: usize,
    pub failures: usize,
    pub errors: Vec<String>,
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
        let headline = self.headline.iter().map(|f| {
            let met = match f.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            };
            vec![f.figure.clone(), f.target.clone(), f.measured.clone(), met.to_owned()]
        });
        table(&mut md, &["figure", "target", "measured (median)", "met?"], headline);

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
            let rows = self.functions.iter().map(|f| {
                let size = match (f.size_mb, &f.size_source) {
                    (Some(mb), Some(source)) => format!("{} MB ({source})", num(mb, 2)),
                    _ => "—".into(),
                };
                vec![
                    f.name.clone(),
                    f.request.clone(),
                    num(f.ready_ms, 1),
                    num(f.first_byte_ms, 1),
                    num(f.first_event_ms, 1),
                    format!(
                        "**{}** ({}–{})",
                        num(f.answered_ms, 1),
                        num(f.answered_ms_min, 1),
                        num(f.answered_ms_max, 1)
                    ),
                    format!("{} ({})", num(f.peak_rss_mb, 1), num(f.peak_rss_mb_max, 1)),
                    size,
                    f.failures.to_string(),
                ]
            });
            let header = [
                "function",
                "request",
                "ready",
                "first byte",
                "first event",
                "**answered** (min–max)",
                "peak RSS (max)",
                "size",
                "failures",
            ];
            table(&mut md, &header, rows);
        }
        let errors: Vec<String> = self
            .relay
            .iter()
            .flat_map(|l| l.errors.iter().map(move |e| format!("relay c={}: {e}", l.concurrency)))
            .chain(self.streams.iter().flat_map(|s| s.errors.iter().map(|e| format!("streams: {e}"))))
            .chain(self.functions.iter().flat_map(|f| f.errors.iter().map(move |e| format!("{}: {e}", f.name))))
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
