//! A bare relay: `POST /api/agent/stream/` `{"message": …}` becomes a streamed Responses request to
//! `OPENAI_BASE_URL`, and the upstream's SSE bytes go back as they come. The same stack as Lambent (tokio, axum
//! over hyper with `TCP_NODELAY`, reqwest 0.13 with a keep-alive pool) and nothing else: no authentication, no
//! database, no parsing or re-encoding of the stream, no spans. What a turn costs here is the floor Lambent's
//! CPU per streamed turn is held to (at most 2×, issue 24); `lambent-bench --only instructions` counts both.
//!
//! Settings: `BIND` (`127.0.0.1:8001`), `OPENAI_BASE_URL`, `OPENAI_API_KEY`.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use serde_json::{Value, json};

#[derive(Clone)]
struct Upstream {
    client: reqwest::Client,
    url: String,
    key: String,
}

async fn relay(State(upstream): State<Upstream>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let body = json!({
        "model": "gpt-4.1",
        "input": [{"role": "user", "content": request["message"]}],
        "stream": true,
        "store": true,
    });
    match upstream.client.post(&upstream.url).bearer_auth(&upstream.key).json(&body).send().await {
        Ok(answer) if answer.status().is_success() => {
            let stream = answer.bytes_stream().map_err(std::io::Error::other);
            ([(header::CONTENT_TYPE, "text/event-stream")], Body::from_stream(stream)).into_response()
        }
        Ok(answer) => answer.status().into_response(),
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let base = var("OPENAI_BASE_URL", "https://api.openai.com/v1");
    let upstream = Upstream {
        client: reqwest::Client::builder().tcp_nodelay(true).build().expect("an HTTP client"),
        url: format!("{}/responses", base.trim_end_matches('/')),
        key: var("OPENAI_API_KEY", "sk-none"),
    };
    let app = axum::Router::new()
        .route("/api/agent/stream/", axum::routing::post(relay))
        .route("/api/health/", axum::routing::get(|| async { "ok" }))
        .with_state(upstream);
    let listener = tokio::net::TcpListener::bind(var("BIND", "127.0.0.1:8001")).await.expect("bind");
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await.expect("serve");
}
