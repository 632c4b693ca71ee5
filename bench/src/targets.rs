//! The targets of issues 8 and 13 and whether the measured figures meet them: the report's headline tables.

use crate::results::{Figure, Function, Remote, RemoteLevel, Report, RoundTrips};
use crate::stats::num;

/// Fills the report's two headline tables from its detailed results.
pub fn fill(report: &mut Report) {
    report.headline = local(report);
    report.remote_headline = report.remote.as_ref().map(remote).unwrap_or_default();
}

/// The figures issue 8 sets targets for (the local server and the functions over an embedded file).
fn local(report: &Report) -> Vec<Figure> {
    let mut figures = Vec::new();
    let at_most = |value: f64, target: f64| (!value.is_nan()).then_some(value <= target);
    if let Some(level) = report.relay.iter().find(|l| l.concurrency == 64) {
        let v = level.times.added_ttfe_ms.p99;
        figures.push(Figure {
            figure: "Added time-to-first-event, p99, concurrency 64".into(),
            target: "≤ 1 ms".into(),
            measured: format!("{} ms", num(v, 2)),
            value: v,
            met: at_most(v, 1.0),
        });
    }
    if let Some(cpu) = &report.cpu {
        let v = cpu.ms_per_turn;
        figures.push(Figure {
            figure: format!("Server CPU per streamed turn (concurrency {})", cpu.concurrency),
            target: "≤ 0.5 ms".into(),
            measured: format!("{} ms", num(v, 2)),
            value: v,
            met: at_most(v, 0.5),
        });
    }
    let crud: Vec<&Function> = report.functions.iter().filter(|f| f.crud).collect();
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
    let sized = report.functions.iter().filter_map(|f| Some((f, f.size_mb?)));
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
    if let Some(largest) = report.functions.iter().max_by(|a, b| a.peak_rss_mb.total_cmp(&b.peak_rss_mb)) {
        let v = largest.peak_rss_mb;
        figures.push(Figure {
            figure: "Peak RSS per function, one request (largest)".into(),
            target: "≤ 30 MB".into(),
            measured: format!("{} MB ({})", num(v, 1), largest.name),
            value: v,
            met: at_most(v, 30.0),
        });
    }
    if let Some(streams) = &report.streams {
        let v = streams.peak_rss_mb;
        figures.push(Figure {
            figure: format!("Peak RSS, local server holding {} concurrent streams", streams.streams),
            target: "≤ 150 MB".into(),
            measured: format!("{} MB", num(v, 1)),
            value: v,
            met: at_most(v, 150.0),
        });
    }
    for crud in &report.crud {
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
    figures
}

/// The deployed shape's targets (issue 13), from its detailed results.
fn remote(remote: &Remote) -> Vec<Figure> {
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
