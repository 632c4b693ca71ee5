//! Child-process services: finding their binaries and waiting until they listen.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::Result;

/// The binary a test tool's variable names (`LAMBENT_TEST_SQLD`, `LAMBENT_TEST_MOTO_SERVER`); panics saying
/// how to get it, as a test cannot run without it.
pub fn tool(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: run with scripts/test (or `source scripts/test-tools.sh`), which installs the test \
             tools and sets it"
        )
    })
}

/// Starts `program` with `args`, its output appended to `log` (discarded without one), killed when dropped;
/// returns once it accepts connections on `port` (at most 30 s: moto's first start imports a lot of Python).
pub async fn spawn_listening(program: &Path, args: &[String], port: u16, log: Option<&Path>) -> Result<Child> {
    let (stdout, stderr) = match log {
        Some(log) => {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
            (Stdio::from(file.try_clone()?), Stdio::from(file))
        }
        None => (Stdio::null(), Stdio::null()),
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            return Err(format!("{} exited at start: {status}", program.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("{} did not listen on {port} within 30 s", program.display()).into())
}
