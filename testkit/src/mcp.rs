//! MCP servers for the tests, each started once per process ([`McpServers::shared`]) and ended by a
//! watchdog when the process that started them is gone (a static is never dropped):
//! - the protocol's reference server, `@modelcontextprotocol/server-everything` (npm, pinned in
//!   `testkit/mcp/package.json` and its lock file, installed by `scripts/test` with `npm ci`), in Streamable
//!   HTTP mode: tools `echo` `{message}` → "Echo: …", `get-sum` `{a, b}`, and more;
//! - a small server of our own (`testkit/mcp_server.py`, PyPI `mcp` in the virtual environment
//!   `LAMBENT_TEST_MCP_PYTHON` names): a slow tool, one that answers an MCP error, one that reads a header,
//!   and one that changes the tool list.
//!
//! Both listen on 127.0.0.1; their endpoint is `/mcp`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The two servers' endpoints.
pub struct McpServers {
    /// The reference server: `http://127.0.0.1:<port>/mcp`.
    pub everything: String,
    /// Ours: `http://127.0.0.1:<port>/mcp`.
    pub ours: String,
}

impl McpServers {
    /// The process's servers, started on first use; panics saying what is missing when one cannot start.
    pub fn shared() -> &'static McpServers {
        static SHARED: OnceLock<McpServers> = OnceLock::new();
        SHARED.get_or_init(|| start().unwrap_or_else(|e| panic!("MCP test servers: {e}")))
    }
}

fn start() -> crate::Result<McpServers> {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    let everything = kit.join("mcp/node_modules/.bin/mcp-server-everything");
    if !everything.exists() {
        return Err(format!(
            "{} is missing: run scripts/test (or `npm ci --prefix testkit/mcp`), which installs it",
            everything.display()
        )
        .into());
    }
    let python = std::env::var_os("LAMBENT_TEST_MCP_PYTHON").map(PathBuf::from).ok_or(
        "LAMBENT_TEST_MCP_PYTHON is not set: run with scripts/test (or `source scripts/test-tools.sh`), which \
         installs the test tools and sets it",
    )?;
    let dir = tempfile::tempdir()?.keep();
    let port = crate::free_port()?;
    watched(&everything, &["streamableHttp".into()], &[("PORT", port.to_string())], &dir.join("everything.log"))?;
    let ours = crate::free_port()?;
    let script = kit.join("mcp_server.py").display().to_string();
    watched(&python, &[script, ours.to_string()], &[], &dir.join("ours.log"))?;
    for (port, log) in [(port, "everything.log"), (ours, "ours.log")] {
        listening(port, &dir.join(log))?;
    }
    Ok(McpServers { everything: format!("http://127.0.0.1:{port}/mcp"), ours: format!("http://127.0.0.1:{ours}/mcp") })
}

/// Starts `program` under a watchdog that ends it once this process is gone.
fn watched(program: &Path, args: &[String], env: &[(&str, String)], log: &Path) -> crate::Result<()> {
    let script = format!(
        "\"$0\" \"$@\" & child=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 1; done; kill $child 2>/dev/null",
        parent = std::process::id()
    );
    let log = std::fs::File::create(log)?;
    let mut command = std::process::Command::new("sh");
    command.args(["-c", &script]).arg(program).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    Ok(())
}

fn listening(port: u16, log: &Path) -> crate::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("an MCP server did not listen on {port} within 60 s (its log: {})", log.display()).into())
}
