//! The servers under test as child processes of the release binaries, and what their kernel accounting says
//! about them (`/proc/<pid>/stat` for CPU time, `/proc/<pid>/status` for memory).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The password of the bench users; long enough for the API's validation, never used for anything real.
const PASSWORD: &str = "bench-password-not-secret";

/// Where the binaries are and the database they share.
#[derive(Debug, Clone)]
pub struct Env {
    pub bin_dir: PathBuf,
    pub work_dir: PathBuf,
    pub database_url: String,
    pub openai_base_url: String,
    pub secrets: Secrets,
}

/// How the processes under test get their secrets.
#[derive(Debug, Clone)]
pub enum Secrets {
    /// In the environment, as `lambent serve` reads them: the OpenAI key, and the database's token if it has one.
    Plain { database_auth_token: Option<String> },
    /// As deployed: the names of SSM parameters, read at initialisation from the AWS emulator at `endpoint`
    /// (dummy credentials). Only the database token's parameter is named here: the template names the OpenAI
    /// key's to the agent functions only (see `lambda::Shape`).
    Ssm { endpoint: String },
}

impl Env {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The settings every process under test gets: the bench database, the fake upstream, the secrets, quiet
    /// logs.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        let mut vars =
            vec![("DATABASE_URL", self.database_url.clone()), ("OPENAI_BASE_URL", self.openai_base_url.clone())];
        match &self.secrets {
            Secrets::Plain { database_auth_token } => {
                vars.push(("OPENAI_API_KEY", "sk-bench".to_owned()));
                vars.extend(database_auth_token.iter().map(|token| ("DATABASE_AUTH_TOKEN", token.clone())));
            }
            Secrets::Ssm { endpoint } => vars.extend([
                ("DATABASE_AUTH_TOKEN_PARAMETER", crate::services::DATABASE_TOKEN_PARAMETER.to_owned()),
                ("AWS_ENDPOINT_URL", endpoint.clone()),
                ("AWS_REGION", crate::services::AWS_REGION.to_owned()),
                ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
                ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ]),
        }
        vars
    }
}

/// A running `lambent serve`, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub pid: u32,
    pub base_url: String,
}

impl Server {
    pub async fn start(env: &Env, log_name: &str) -> Result<Self> {
        let mut command = Command::new(env.bin("lambent"));
        command.arg("serve");
        Self::spawn(env, command, free_port()?, log_name, "/api/health/").await
    }

    /// `command` (a server binary, or a tool running one, as `valgrind`) with the bench's settings, `port` in
    /// `BIND`, its output in `log_name`; once it answers `health` with a success.
    pub async fn spawn(env: &Env, mut command: Command, port: u16, log_name: &str, health: &str) -> Result<Self> {
        let log = std::fs::File::create(env.work_dir.join(log_name))?;
        command
            .envs(env.vars())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .current_dir(&env.work_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let program = command.as_std().get_program().to_string_lossy().into_owned();
        let child = command.spawn().map_err(|e| format!("cannot start {program}: {e}"))?;
        let pid = child.id().ok_or("the server exited at once")?;
        let server = Self { child, pid, base_url: format!("http://127.0.0.1:{port}") };
        server.wait_healthy(health).await?;
        Ok(server)
    }

    async fn wait_healthy(&self, health: &str) -> Result<()> {
        let client = reqwest::Client::new();
        // Under valgrind a server takes seconds to start.
        let deadline = Instant::now() + Duration::from_secs(120);
        let url = format!("{}{health}", self.base_url);
        while Instant::now() < deadline {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(format!("the server did not answer {url} within 120 s").into())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// A port nobody listens on right now (the server binds it a moment later).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs a `lambent` command to completion and returns its standard output.
async fn cli(env: &Env, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(env.bin("lambent"))
        .args(args)
        .envs(env.vars())
        .env("RUST_LOG", "warn")
        .current_dir(&env.work_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.unwrap_or_default().as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    if !output.status.success() {
        return Err(format!("lambent {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Prepares the bench database and returns the token of its (non-staff) user, who owns `agents` agents, the
/// first of them its default. Ordinary users, not staff, because that is what the API mostly serves.
pub async fn setup(env: &Env, server: &Server, agents: usize) -> Result<String> {
    cli(env, &["createsuperuser", "--username", "bench-admin"], Some(&format!("{PASSWORD}\n"))).await?;
    let token = add_user(env, server, "bench").await?;
    for i in 0..agents.max(1) {
        let body = json!({"name": format!("Bench agent {i}"), "system_prompt": "You are a helpful assistant.",
                          "is_default": i == 0});
        let response = post(server, "/api/agents/", &token, &body).await?;
        if !response.status().is_success() {
            return Err(format!("creating an agent: {} {}", response.status(), response.text().await?).into());
        }
    }
    Ok(token)
}

/// Creates another ordinary user (through the API, as the bench's staff user) and returns a token of theirs.
pub async fn add_user(env: &Env, server: &Server, username: &str) -> Result<String> {
    let admin = cli(env, &["token", "create", "--user", "bench-admin", "--name", username], None).await?;
    let created = post(server, "/api/users/", &admin, &json!({"username": username, "password": PASSWORD})).await?;
    if !created.status().is_success() {
        return Err(format!("creating the user {username}: {} {}", created.status(), created.text().await?).into());
    }
    cli(env, &["token", "create", "--user", username, "--name", "bench"], None).await
}

async fn post(server: &Server, path: &str, token: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new().post(format!("{}{path}", server.base_url)).bearer_auth(token).json(body).send().await
}

/// Runs `lambent migrate`: what a deploy does before the functions serve.
pub async fn migrate(env: &Env) -> Result<()> {
    cli(env, &["migrate"], None).await.map(drop)
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

/// User + system CPU time of a process and its descendants (all their threads), in ms.
pub fn tree_cpu_ms(pid: u32, ticks_per_s: u64) -> Result<f64> {
    let mut total = cpu_ms(pid, ticks_per_s)?;
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let mut at = child;
        // Walk up the parents: a descendant of `pid` reaches it.
        while at > 1 && at != pid {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{at}/stat")) else { break };
            at = stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0);
        }
        if at == pid && child != pid {
            total += cpu_ms(child, ticks_per_s).unwrap_or(0.0);
        }
    }
    Ok(total)
}

/// User + system CPU time of a process (all its threads), in ms.
pub fn cpu_ms(pid: u32, ticks_per_s: u64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; fields count from after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or("unreadable /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, so utime (14) and stime (15) are at offsets 11 and 12.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).ok_or("unreadable /proc stat");
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 * 1000.0 / ticks_per_s as f64)
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
