//! `TestApp`: the real routers on 127.0.0.1, over a fresh libsql file of their own. The servers around them
//! (the fake OpenAI, sqld, moto, the counting proxy, the Runtime API stub) are `lambent-testkit`'s; here is
//! only what needs Lambent's own crates or this directory's fixtures.

use std::net::SocketAddr;
use std::sync::Arc;

use lambent::{AppState, Config, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

/// The app plus whose token its requests carry (`alice`, a non-staff user, unless `as_user` says otherwise).
#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub token: Option<String>,
    client: reqwest::Client,
    _dir: Arc<TempDir>,
}

/// A user made for a test, with a token.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: lambent::domain::UserId,
    pub token: String,
}

/// A plain reqwest client, for tests that call a server with no `AppState` in their process: reqwest is built
/// without a crypto provider of its own, so the one the app uses is installed first (see `lambent::tls`).
pub fn http_client() -> reqwest::Client {
    lambent::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// A recorded transcript of `fixtures/openai/`, frame by frame, byte for byte.
pub fn transcript(name: &str) -> Vec<lambent_testkit::openai::Step> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/openai").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    lambent_testkit::openai::transcript_frames(&text)
}

/// An AWS configuration that talks to `moto` with dummy credentials, built as the functions build theirs.
pub async fn sdk_config(moto: &lambent_testkit::Moto) -> aws_config::SdkConfig {
    lambent_functions::aws_config()
        .endpoint_url(&moto.endpoint)
        .region(aws_config::Region::new(lambent_testkit::moto::REGION))
        .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A config over a database file inside `dir`, plus the given settings (named providers among them).
pub fn config_in(dir: &TempDir, env: &[(&str, String)]) -> Config {
    let url = format!("file:{}", dir.path().join("lambent.db").display());
    let vars = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
    Config::from_vars(vars.chain([("DATABASE_URL".to_owned(), url)])).expect("test config")
}

/// A migrated store over a fresh file, and the folder that holds it.
pub async fn fresh_state() -> (AppState, TempDir) {
    fresh_state_with(&[]).await
}

pub async fn fresh_state_with(env: &[(&str, String)]) -> (AppState, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_in(&dir, env);
    let store = Store::open(&config).await.expect("open store");
    store.migrate().await.expect("migrate");
    (AppState::new(config, store), dir)
}

/// The same over a store on `clock` (see [`ShiftedClock`]).
pub async fn fresh_state_on(env: &[(&str, String)], clock: Arc<ShiftedClock>) -> (AppState, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_in(&dir, env);
    let store = Store::open(&config).await.expect("open store").with_clock(clock);
    store.migrate().await.expect("migrate");
    (AppState::new(config, store), dir)
}

/// The system clock, moved forward when a test says: a lease or a throttle window lapses without waiting.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    ahead_ms: std::sync::atomic::AtomicI64,
}

impl ShiftedClock {
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).expect("a test-sized shift");
        self.ahead_ms.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl lambent::clock::Clock for ShiftedClock {
    fn now(&self) -> time::OffsetDateTime {
        let ahead = self.ahead_ms.load(std::sync::atomic::Ordering::SeqCst);
        time::OffsetDateTime::now_utc() + time::Duration::milliseconds(ahead)
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// With settings, e.g. `FakeOpenAi::env()`.
    pub async fn spawn_with(env: &[(&str, String)]) -> Self {
        let (state, dir) = fresh_state_with(env).await;
        Self::serve(state, dir).await
    }

    /// Serves an existing (migrated) state, e.g. over a remote database.
    pub async fn serve(state: AppState, dir: TempDir) -> Self {
        let mut app = Self::serve_anonymous(state, dir).await;
        app.token = Some(app.account("alice", false).await.token);
        app
    }

    /// The same with no user made and no credentials: for a database whose schema may lack the users' columns.
    pub async fn serve_anonymous(state: AppState, dir: TempDir) -> Self {
        let addr = listen(&state).await;
        Self { addr, state, token: None, client: http_client(), _dir: Arc::new(dir) }
    }

    /// A second server over the same database with its own state (its own connection, its own running
    /// turns), as another Lambda instance would be; same user and token.
    pub async fn twin(&self) -> Self {
        let config = (*self.state.config).clone();
        let state = AppState::open(config).await.expect("twin state");
        let addr = listen(&state).await;
        Self { addr, state, ..self.clone() }
    }

    /// Creates a user with a password (`<name>-password`) and an API token.
    pub async fn account(&self, username: &str, is_staff: bool) -> Account {
        let hash = lambent::auth::hash_password(&format!("{username}-password")).expect("hash");
        let user = self.store().create_user(username, Some(&hash), is_staff).await.expect("user");
        let token = lambent::auth::new_token();
        self.store().create_token(user.id, "test", "api", None, &token).await.expect("token");
        Account { id: user.id, token: token.secret }
    }

    /// The same app, calling with another token (None: no credentials).
    pub fn as_user(&self, token: Option<&str>) -> Self {
        Self { token: token.map(str::to_owned), ..self.clone() }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.state.store
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends a request with an optional JSON body; returns the status and the body parsed as JSON
    /// (`Value::Null` for an empty body).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// Sends raw bytes with a given content type.
    pub async fn send_raw(&self, method: Method, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .request(method, path)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates an object and returns its body, failing the test unless it answered 201.
    pub async fn create(&self, path: &str, body: Value) -> Value {
        let (status, created) = self.post(path, body).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path}: {created}");
        created
    }

    /// POSTs JSON and reads the whole answer: SSE frames when it streams, JSON otherwise.
    pub async fn stream(&self, path: &str, body: Value) -> Streamed {
        self.stream_with(Method::POST, path, Some(body), &[]).await
    }

    /// As [`Self::stream`], for any method, with extra headers (`Idempotency-Key`, `Last-Event-ID`).
    pub async fn stream_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Streamed {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let raw = response.text().await.expect("body");
        let frames = if content_type.starts_with("text/event-stream") { parse_frames(&raw) } else { Vec::new() };
        Streamed { status, headers, content_type, raw, frames }
    }

    /// Rows of a query, as JSON objects.
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        self.store().query_json(sql).await.expect("query")
    }

    /// Counts rows in a table straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        let rows = self.store().query_json(&format!("SELECT COUNT(*) AS n FROM {table}")).await.expect("count");
        rows[0]["n"].as_i64().expect("n")
    }
}

/// The local server as a child process on `port`, over the database in `dir`.
pub struct ChildServer {
    pub child: tokio::process::Child,
    pub base: String,
}

impl ChildServer {
    pub async fn start(dir: &tempfile::TempDir, port: u16, fake: &lambent_testkit::openai::FakeOpenAi) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lambent-test-server"));
        command
            .env_clear()
            .env("DATABASE_URL", format!("file:{}", dir.path().join("lambent.db").display()))
            .env("BIND", format!("127.0.0.1:{port}"))
            .envs(fake.env())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().expect("start the server");
        let base = format!("http://127.0.0.1:{port}");
        let client = http_client();
        for _ in 0..300 {
            if client.get(format!("{base}/api/health/")).send().await.is_ok_and(|r| r.status().is_success()) {
                return Self { child, base };
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the server did not come up on {base}");
    }
}

/// A user `durable` (no password) and an API token for it, in the database in `dir`.
pub async fn user_with_token(dir: &tempfile::TempDir) -> String {
    let store = lambent::Store::open(&config_in(dir, &[])).await.unwrap();
    store.migrate().await.unwrap();
    let user = store.create_user("durable", None, false).await.unwrap();
    let token = lambent::auth::new_token();
    store.create_token(user.id, "test", "api", None, &token).await.unwrap();
    token.secret
}

/// Serves `state` on a free port of 127.0.0.1 as `lambent serve` does (the same app, the same accept loop and
/// socket options), until the test ends.
async fn listen(state: &AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = lambent_local::app(state.clone());
    let header_timeout = state.config.header_timeout;
    tokio::spawn(async move {
        lambent_local::serve_app(listener, app, header_timeout, std::future::pending()).await.expect("serve")
    });
    addr
}

async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    (status, body)
}

/// One SSE frame as received.
#[derive(Debug, Clone)]
pub struct Frame {
    pub event: String,
    pub id: Option<String>,
    /// The `data:` text, exactly as sent.
    pub data: String,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{}: {e}: {}", self.event, self.data))
    }
}

/// A whole streamed (or JSON) answer.
#[derive(Debug)]
pub struct Streamed {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub content_type: String,
    pub raw: String,
    pub frames: Vec<Frame>,
}

impl Streamed {
    pub fn events(&self, name: &str) -> Vec<Value> {
        self.frames.iter().filter(|f| f.event == name).map(Frame::json).collect()
    }

    pub fn names(&self) -> Vec<&str> {
        self.frames.iter().map(|f| f.event.as_str()).collect()
    }

    /// The `done` frame, which must be the last.
    pub fn done(&self) -> Value {
        let last = self.frames.last().unwrap_or_else(|| panic!("no frames: {}", self.raw));
        assert_eq!(last.event, "done", "done comes last: {:?}", self.names());
        last.json()
    }

    pub fn text(&self) -> String {
        self.events("text_delta").iter().map(|d| d["delta"].as_str().unwrap().to_owned()).collect()
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn body(&self) -> Value {
        serde_json::from_str(&self.raw).unwrap_or_else(|e| panic!("{}: not JSON: {e}: {}", self.status, self.raw))
    }
}

fn parse_frames(raw: &str) -> Vec<Frame> {
    raw.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut id = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            Some(Frame { event: event?, id, data: data.join("\n") })
        })
        .collect()
}
