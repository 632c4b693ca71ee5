//! # `lambent-testkit`: the servers the tests and the bench start for themselves
//!
//! One copy of each, shared by the integration tests (`tests/`) and the benchmark harness (`bench/`). Every
//! server listens on 127.0.0.1 only.
//!
//! # Layout
//! - [`sqld`]: a real libsql server with JWT authentication (Ed25519), as Turso runs it; tokens signed here.
//! - [`moto`]: moto's server, the AWS emulator holding SSM parameters.
//! - [`proxy`]: an HTTP proxy in front of a database server that counts the requests reaching it and holds
//!   each for a set round trip, and can refuse them as sqld does under load (429); its
//!   [`proxy::ProxyOptions`] is where new behaviour goes.
//! - [`runtime_api`]: a stub of the Lambda Runtime API for a real function process.
//! - [`chat`]: a fake chat-completions API, replies scripted per model; [`litellm`]: LiteLLM's proxy in front
//!   of it, started once per process.
//! - [`mcp`]: MCP servers — the protocol's reference server (npm) and a small one of our own (PyPI `mcp`),
//!   started once per process.
//! - [`otlp`]: an OTLP/HTTP trace receiver (Python, the OpenTelemetry project's protos).
//! - [`openai`]: the fake Responses API (scripted replies, frames shaped like the recorded transcripts) and the
//!   builders of those frames.
//! - here: [`free_port`], [`serve`] (the accept loop all of them share), [`install_crypto_provider`], and the
//!   kit's [`Error`].
//!
//! Two ways to start a child-process service: `start()` for a test (the binary named in the environment by
//! `scripts/test-tools.sh`, a temporary folder, output discarded; it panics saying what is missing) and
//! `start_with(..)` for the bench (every choice made by the caller, errors returned so the harness can say
//! which section failed). The in-process servers bind an ephemeral port of the loopback and cannot fail short
//! of a broken machine, so they only have the first kind.
//!
//! The kit links none of Lambent's crates: the bench measures the release binaries as child processes and
//! must not link what it measures.

pub mod chat;
pub mod litellm;
pub mod mcp;
pub mod moto;
pub mod openai;
pub mod otlp;
pub mod proxy;
pub mod runtime_api;
pub mod sqld;

mod process;

use std::future::Future;
use std::net::SocketAddr;

pub use moto::Moto;
pub use openai::FakeOpenAi;
pub use proxy::{Proxy, ProxyOptions};
pub use runtime_api::RuntimeApi;
pub use sqld::{Sqld, SqldOptions};

/// Whatever went wrong starting or talking to a service, as a message.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// A port of 127.0.0.1 nobody listens on right now (a child process binds it a moment later).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Installs ring as the process's TLS provider, as `lambent::tls::install_crypto_provider` does: reqwest is
/// built without a provider of its own (the workspace's `rustls-no-provider`) and panics at client build
/// without one, even for plain HTTP. Whichever of the two runs first wins; both install the same.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client for talking to the kit's servers (the provider installed first).
pub(crate) fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder().tcp_nodelay(true).pool_max_idle_per_host(1024).build().unwrap_or_default()
}

/// Serves `app` on an ephemeral port of 127.0.0.1 until `shutdown` completes (then gracefully), and returns
/// the address. Accepted connections get `TCP_NODELAY`, as a production server sets it: otherwise each small
/// frame written while the previous one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on
/// Linux), and the kit's servers would add latency that is not Lambent's.
pub async fn serve(
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            eprintln!("lambent-testkit: the server on {addr} stopped: {err}");
        }
    });
    Ok(addr)
}

/// [`serve`] for as long as the process (or the test's runtime) lives; panics if no port can be bound.
pub(crate) async fn serve_forever(app: axum::Router, what: &str) -> SocketAddr {
    serve(app, std::future::pending()).await.unwrap_or_else(|e| panic!("{what}: cannot listen on 127.0.0.1: {e}"))
}
