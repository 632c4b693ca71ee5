//! The deployed shape's other servers: a real libsql server (sqld, JWT authentication as Turso has), an HTTP
//! proxy in front of it that counts the requests reaching it and delays each by the network round trip being
//! simulated, and an AWS emulator (moto) holding the functions' secrets as SSM parameters.
//!
//! sqld and moto come from PyPI (`scripts/test-requirements.txt`); `scripts/bench` installs them and names
//! them in `LAMBENT_TEST_SQLD` and `LAMBENT_TEST_MOTO_SERVER`, as `scripts/test` does for the tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::server::{Result, free_port};

/// The SSM parameters the template's defaults name (`DatabaseAuthTokenParameter`, `OpenAiApiKeyParameter`).
pub const DATABASE_TOKEN_PARAMETER: &str = "/lambent/database-auth-token";
pub const OPENAI_KEY_PARAMETER: &str = "/lambent/openai-api-key";
/// The region the functions are told they run in; moto keeps parameters per region.
pub const AWS_REGION: &str = "eu-west-1";

/// Starts `program` with `args`, its output appended to `log`, killed when dropped; returns once it listens on
/// `port`.
async fn spawn_listening(program: &Path, args: &[String], port: u16, log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
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

/// A running sqld that accepts EdDSA JWTs signed with a key of this run's, killed when dropped.
pub struct Sqld {
    pub url: String,
    pub version: String,
    /// How its WAL is checkpointed, for the report.
    pub checkpoints: String,
    key: Ed25519KeyPair,
    binary: PathBuf,
    args: Vec<String>,
    port: u16,
    log: PathBuf,
    child: tokio::sync::Mutex<Child>,
}

impl Sqld {
    /// Starts `binary` on a new database in `dir`. With `checkpoint_interval_s` > 0 sqld checkpoints its WAL on
    /// that period instead of SQLite's automatic checkpoint at 1000 pages, which in sqld 0.24.32 can deadlock
    /// its write-lock manager under concurrent writers (every writer then waits for good; see [`Self::writable`]).
    pub async fn start(binary: &Path, dir: &Path, checkpoint_interval_s: u64) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| e.to_string())?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
        let key_file = dir.join("jwt.key");
        std::fs::write(&key_file, URL_SAFE_NO_PAD.encode(key.public_key().as_ref()))?;
        let port = free_port()?;
        let mut args = vec![
            "--db-path".into(),
            dir.join("data").display().to_string(),
            "--http-listen-addr".into(),
            format!("127.0.0.1:{port}"),
            "--auth-jwt-key-file".into(),
            key_file.display().to_string(),
            "--no-welcome".into(),
        ];
        let checkpoints = if checkpoint_interval_s > 0 {
            args.extend(["--checkpoint-interval-s".into(), checkpoint_interval_s.to_string()]);
            format!("`--checkpoint-interval-s {checkpoint_interval_s}`")
        } else {
            "its default WAL checkpoints (SQLite's automatic checkpoint at 1000 pages)".to_owned()
        };
        let log = dir.join("sqld.log");
        let child = spawn_listening(binary, &args, port, &log).await?;
        let version = tokio::process::Command::new(binary).arg("--version").output().await.map_or_else(
            |_| "sqld (version unknown)".to_owned(),
            // It prints "sqld sqld 0.24.32 (…)".
            |o| format!("sqld {}", String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("sqld ")),
        );
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            version,
            checkpoints,
            key,
            binary: binary.to_owned(),
            args,
            port,
            log,
            child: tokio::sync::Mutex::new(child),
        })
    }

    /// A read-write token valid for a day (claims `{"a": "rw", "exp": …}`).
    pub fn token(&self) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + 86_400;
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"a":"rw","exp":{exp}}}"#));
        let signed = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(signed.as_bytes()).as_ref());
        format!("{signed}.{signature}")
    }

    /// Does the server still take writes? `BEGIN IMMEDIATE` takes the write lock, `ROLLBACK` gives it back;
    /// asked directly (not through the proxy), twice before saying no. Seen with sqld 0.24.32 and its
    /// default checkpoints: after a few thousand concurrent write batches every writer's thread spins in
    /// `ManagedConnectionWalWrapper::acquire` (and the committing one in its WAL autocheckpoint, waiting for the
    /// same lock) for good, while reads still answer.
    pub async fn writable(&self) -> bool {
        let body = json!({"requests": [
            {"type": "execute", "stmt": {"sql": "BEGIN IMMEDIATE"}},
            {"type": "execute", "stmt": {"sql": "ROLLBACK"}},
            {"type": "close"}
        ]});
        let client = reqwest::Client::new();
        for _ in 0..2 {
            let request = client.post(format!("{}/v3/pipeline", self.url)).bearer_auth(self.token()).json(&body);
            let answer = async { request.timeout(Duration::from_secs(10)).send().await?.json::<Value>().await };
            if let Ok(answer) = answer.await
                && answer["results"].as_array().is_some_and(|r| r.iter().all(|r| r["type"] == "ok"))
            {
                return true;
            }
        }
        false
    }

    /// Kills the server and starts it again on the same data and port (as a deploy would).
    pub async fn restart(&self) -> Result<()> {
        let mut child = self.child.lock().await;
        let _ = child.kill().await;
        *child = spawn_listening(&self.binary, &self.args, self.port, &self.log).await?;
        Ok(())
    }
}

/// The network between the functions and their database: an HTTP proxy in front of sqld that counts every
/// request reaching it, notes when it arrived, and holds it for the set round-trip time before forwarding it
/// (a Hrana pipeline request is one exchange, so one delay is one round trip).
#[derive(Clone)]
pub struct Proxy {
    pub url: String,
    shared: Arc<ProxyShared>,
}

struct ProxyShared {
    target: String,
    client: reqwest::Client,
    rtt_us: AtomicU64,
    count: AtomicU64,
    arrivals: Mutex<Vec<Instant>>,
}

impl Proxy {
    pub async fn start(target: &str) -> Result<Self> {
        let client = reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(1024).build()?;
        let shared = Arc::new(ProxyShared {
            target: target.trim_end_matches('/').to_owned(),
            client,
            rtt_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new().fallback(forward).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let listener = listener.tap_io(crate::upstream::no_delay);
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("lambent-bench: the database proxy stopped: {err}");
            }
        });
        Ok(Self { url, shared })
    }

    /// The round trip every request from now on pays.
    pub fn set_rtt(&self, rtt: Duration) {
        self.shared.rtt_us.store(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Requests that reached the database so far.
    pub fn count(&self) -> u64 {
        self.shared.count.load(Ordering::Relaxed)
    }

    /// When each request since the last call arrived (and forgets them).
    pub fn take_arrivals(&self) -> Vec<Instant> {
        std::mem::take(&mut *self.shared.arrivals.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until no request has arrived for `quiet`: whatever a request started in the background is done.
    pub async fn settle(&self, quiet: Duration) {
        loop {
            let before = self.count();
            tokio::time::sleep(quiet).await;
            if self.count() == before {
                return;
            }
        }
    }
}

async fn forward(State(shared): State<Arc<ProxyShared>>, request: Request) -> Response {
    shared.count.fetch_add(1, Ordering::Relaxed);
    shared.arrivals.lock().unwrap_or_else(|e| e.into_inner()).push(Instant::now());
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let rtt = Duration::from_micros(shared.rtt_us.load(Ordering::Relaxed));
    if !rtt.is_zero() {
        // A thread's sleep, not tokio's: tokio's timer rounds up to the next millisecond, which would add
        // ~0.5 ms to every simulated round trip.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rtt)).await;
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut forwarded = shared.client.request(parts.method, format!("{}{path}", shared.target)).body(body);
    for name in ["authorization", "content-type"] {
        if let Some(value) = parts.headers.get(name) {
            forwarded = forwarded.header(name, value);
        }
    }
    match forwarded.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response.headers().get("content-type").cloned();
            let body = response.bytes().await.unwrap_or_default();
            let mut answer = Response::builder().status(status);
            if let Some(content_type) = content_type {
                answer = answer.header("content-type", content_type);
            }
            answer.body(Body::from(body)).unwrap_or_default()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// moto's server, holding the functions' SSM parameters; killed when dropped.
pub struct Moto {
    pub endpoint: String,
    client: reqwest::Client,
    _child: Child,
}

impl Moto {
    pub async fn start(binary: &Path, log: &Path) -> Result<Self> {
        let port = free_port()?;
        let args = ["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        let child = spawn_listening(binary, &args, port, log).await?;
        Ok(Self { endpoint: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new(), _child: child })
    }

    /// Stores a SecureString parameter, as `aws ssm put-parameter` would.
    pub async fn put_secure_string(&self, name: &str, value: &str) -> Result<()> {
        let body = json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true});
        self.call("PutParameter", &body).await
    }

    /// How long one `GetParameter` with decryption takes from here, ms: what each parameter a function reads
    /// at initialisation costs it at least.
    pub async fn get_ms(&self, name: &str) -> Result<f64> {
        let start = Instant::now();
        self.call("GetParameter", &json!({"Name": name, "WithDecryption": true})).await?;
        Ok(crate::relay::ms(start.elapsed()))
    }

    /// One SSM call (moto checks no signature, but reads the region from the credential scope).
    async fn call(&self, action: &str, body: &Value) -> Result<()> {
        let scope = format!("Credential=testing/20260101/{AWS_REGION}/ssm/aws4_request");
        let response = self
            .client
            .post(&self.endpoint)
            .header("x-amz-target", format!("AmazonSSM.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", format!("AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0"))
            .body(body.to_string())
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("moto: {action} {body}: {} {}", response.status(), response.text().await?).into());
        }
        response.bytes().await?;
        Ok(())
    }
}
