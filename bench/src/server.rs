//! The servers under test as child processes of the release binaries (`lambent serve`), what they are given
//! ([`Env`]), and the `lambent` commands that prepare their database and the bench users.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use lambent_testkit::{Result, free_port};

/// The SSM parameters the template's defaults name (`DatabaseAuthTokenParameter`, `OpenAiApiKeyParameter`).
pub const DATABASE_TOKEN_PARAMETER: &str = "/lambent/database-auth-token";
pub const OPENAI_KEY_PARAMETER: &str = "/lambent/openai-api-key";

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
                ("DATABASE_AUTH_TOKEN_PARAMETER", DATABASE_TOKEN_PARAMETER.to_owned()),
                ("AWS_ENDPOINT_URL", endpoint.clone()),
                ("AWS_REGION", lambent_testkit::moto::REGION.to_owned()),
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
        Self::start_with(env, log_name, &[]).await
    }

    /// As [`Self::start`], with settings of its own on top of `env`'s.
    pub async fn start_with(env: &Env, log_name: &str, extra: &[(&str, &str)]) -> Result<Self> {
        let mut command = Command::new(env.bin("lambent"));
        command.arg("serve");
        Self::spawn(env, command, free_port()?, log_name, "/api/health/", extra).await
    }

    /// `command` (a server binary, or a tool running one, as `valgrind`) with the bench's settings, `port` in
    /// `BIND` and `extra` on top, its output in `log_name`; once it answers `health` with a success.
    pub async fn spawn(
        env: &Env,
        mut command: Command,
        port: u16,
        log_name: &str,
        health: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let log = std::fs::File::create(env.work_dir.join(log_name))?;
        command
            .envs(env.vars())
            .env("BIND", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .envs(extra.iter().copied())
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
