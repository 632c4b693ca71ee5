//! `TestApp`: the real routers on 127.0.0.1, over a fresh libsql file of their own.

use std::net::SocketAddr;
use std::sync::Arc;

use lambent::{AppState, Config, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    client: reqwest::Client,
    _dir: TempDir,
}

/// A config over a database file inside `dir`.
pub fn config_in(dir: &TempDir) -> Config {
    let url = format!("file:{}", dir.path().join("lambent.db").display());
    Config::from_lookup(|key| (key == "DATABASE_URL").then(|| url.clone())).expect("test config")
}

/// A migrated store over a fresh file, and the folder that holds it.
pub async fn fresh_state() -> (AppState, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_in(&dir);
    let store = Store::open(&config).await.expect("open store");
    store.migrate().await.expect("migrate");
    (AppState::new(config, store).expect("state"), dir)
}

impl TestApp {
    pub async fn spawn() -> Self {
        let (state, dir) = fresh_state().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = lambent::http::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self { addr, state, client: reqwest::Client::new(), _dir: dir }
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
        let mut request = self.client.request(method, self.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request")).await
    }

    /// Sends raw bytes with a given content type.
    pub async fn send_raw(&self, method: Method, path: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, self.url(path))
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

    /// Counts rows in a table straight from the database.
    pub async fn count(&self, table: &str) -> i64 {
        let rows = self.store().query_json(&format!("SELECT COUNT(*) AS n FROM {table}")).await.expect("count");
        rows[0]["n"].as_i64().expect("n")
    }
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
