//! The machine the bench runs on, and what the kernel's accounting says about the processes under test
//! (`/proc/<pid>/stat` for CPU time, `/proc/<pid>/status` for memory).

use std::path::Path;

use serde::Serialize;

use lambent_testkit::Result;

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

/// Clock ticks per second of `/proc/<pid>/stat` times, from `getconf CLK_TCK` (the crate forbids the
/// `unsafe` a direct `sysconf` needs); 100 on every Linux this runs on in practice.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// User and system CPU time of a process and its descendants (all their threads), in ms.
pub fn tree_cpu_split_ms(pid: u32, ticks_per_s: u64) -> Result<(f64, f64)> {
    let (mut user, mut system) = cpu_split_ms(pid, ticks_per_s)?;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let mut at = child;
        // Walk up the parents: a descendant of `pid` reaches it.
        while at > 1 && at != pid {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{at}/stat")) else { break };
            at = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
        }
        if at == pid && child != pid {
            let (u, s) = cpu_split_ms(child, ticks_per_s).unwrap_or((0.0, 0.0));
            user += u;
            system += s;
        }
    }
    Ok((user, system))
}

/// User + system CPU time of a process (all its threads), in ms.
pub fn cpu_ms(pid: u32, ticks_per_s: u64) -> Result<f64> {
    let (user, system) = cpu_split_ms(pid, ticks_per_s)?;
    Ok(user + system)
}

/// User and system CPU time of a process (all its threads), in ms.
pub fn cpu_split_ms(pid: u32, ticks_per_s: u64) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at offsets 11 and 12.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or("unreadable /proc stat");
    let ms = |ticks: u64| ticks as f64 * 1000.0 / ticks_per_s as f64;
    Ok((ms(ticks(11)?), ms(ticks(12)?)))
}

/// A `kB` line of `/proc/<pid>/status` (`VmHWM`: peak resident memory; `VmRSS`: current), in MB. MB here
/// and everywhere in the report are 10^6 bytes (the kernel's kB are KiB): the stricter reading of the targets.
pub fn status_mb(pid: u32, key: &str) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(key)).ok_or_else(|| format!("no {key} in /proc status"))?;
    let kb: f64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or("unreadable /proc status")?;
    Ok(kb * 1024.0 / 1e6)
}

/// The size of a file in MB (10^6 bytes), if it exists.
pub fn file_mb(path: &Path) -> Option<f64> {
    std::fs::metadata(path).ok().map(|m| m.len() as f64 / 1e6)
}
