//! What every request gets on its way through, whichever entry point serves it: an id (API Gateway's on
//! Lambda, a new UUID v7 otherwise) answered as `x-request-id` and quoted in every 5xx body; the HTTP server
//! span (`{method} {route}`, child of the caller's W3C or X-Ray trace), in which every log line of the
//! request — those of its spawned turn tasks too — carries `request_id`; one `info` line when the response's
//! head is ready; and the request's metrics scope (its database round trips, reported when its last task
//! ends).
//!
//! 5xx bodies: [`crate::error::Error`] answers them without knowing the request, so this layer adds
//! `"request_id"` to a 5xx JSON object body on its way out (a 5xx is rare and small: reading it costs
//! nothing that matters). An operator finds the request's log lines by that id.

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::Status;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::state::AppState;
use crate::telemetry::{self, RequestId, RequestScope};

/// The response header that names the request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The biggest 5xx body this layer reads to quote the request id in it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// `router` with [`observe`] around every route (after routing, so the span knows the route).
pub fn observed(router: Router, state: &AppState) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state.clone(), observe))
}

/// The middleware itself: see the module's documentation.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let id = request.extensions().get::<RequestId>().map_or_else(telemetry::new_request_id, |id| id.0.clone());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let name = format!("{method} {}", telemetry::escaped(route.as_deref().unwrap_or(&path)));
    let span = tracing::info_span!("request", otel.name = %name, otel.kind = "server", request_id = %id);
    if let Some(parent) = telemetry::parent_context(request.headers()) {
        let _ = span.set_parent(parent);
    }
    span.set_attribute("http.request.method", method.to_string());
    span.set_attribute("url.path", path.clone());
    if let Some(route) = &route {
        span.set_attribute("http.route", route.clone());
    }
    let scope = RequestScope::new(id.clone(), state.metrics.clone());
    let started = Instant::now();
    let handled = async move {
        let response = next.run(request).await;
        let status = response.status().as_u16();
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let current = tracing::Span::current();
        current.set_attribute("http.response.status_code", i64::from(status));
        if response.status().is_server_error() {
            current.set_status(Status::error(status.to_string()));
            current.set_attribute("error.type", status.to_string());
        }
        let route = route.as_deref().unwrap_or("");
        let path = telemetry::escaped(&path);
        tracing::info!(target: "lambent::request", %method, route, status, duration_ms = ms, "{method} {path} {status} {ms:.2}ms");
        response
    };
    let mut response = scope.run(handled.instrument(span)).await;
    if response.status().is_server_error() {
        response = quote_request_id(response, &id).await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// A 5xx JSON object body with `"request_id"` added; any other body as it was.
async fn quote_request_id(response: Response, id: &str) -> Response {
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.insert("request_id".to_owned(), id.into());
            let bytes = serde_json::Value::Object(object).to_string();
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(bytes)
        }
        _ => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}
