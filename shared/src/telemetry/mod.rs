//! Telemetry: logs, traces and metrics, set up in one place.
//!
//! - **Logs** go through `tracing`: JSON lines on Lambda (one object per line, the span list carrying the
//!   request id and, within a turn, the session and turn ids), readable text on the local server.
//! - **Traces** follow the OpenTelemetry GenAI conventions (the spans themselves are opened where the work is:
//!   `http::observe` for requests, `turn::engine` for turns, responses and tool runs). They are exported over
//!   OTLP/gRPC only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set: otherwise there is no
//!   exporter and no OpenTelemetry layer at all. A Lambda function flushes them at the end of every invocation
//!   ([`flush`]): a frozen environment would keep unsent spans until its next invocation, or lose them.
//! - **Metrics** are CloudWatch embedded-metric-format lines ([`Metrics`]), written to stdout on Lambda.
//!
//! # Layout
//! - this file: the subscriber ([`init`], [`subscriber`]), the OTLP provider ([`otlp_provider`], [`flush`]),
//!   the incoming trace context ([`parent_context`]: W3C `traceparent`, X-Ray `X-Amzn-Trace-Id`).
//! - `scope`: what one request carries through its tasks — its id and its counters ([`RequestScope`]).
//! - `metrics`: the EMF lines and where they go.

mod metrics;
mod scope;

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;

pub use metrics::{Metrics, RequestMetrics, TurnMetrics};
pub use scope::{
    RequestScope, count_database_give_up, count_database_retry, count_round_trip, count_upstream_retry, current,
    in_scope, upstream_retries,
};

pub use opentelemetry::Context;

/// The id a request is known by, when its entry point has one (API Gateway's `requestContext.requestId` on
/// Lambda); otherwise one is made ([`new_request_id`]).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// A new request id: a UUID v7 (time-ordered, so ids sort as requests came), from the clock and getrandom.
pub fn new_request_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut random = [0_u8; 10];
    // Not a secret: without randomness the id is still unique enough with the clock and the counter.
    if getrandom::fill(&mut random).is_err() {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        random[..8].copy_from_slice(&n.to_be_bytes());
    }
    uuid::Builder::from_unix_timestamp_millis(millis as u64, &random).into_uuid().to_string()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (Lambda, `LogFormat: JSON`): the event's fields at the top level, the spans it
    /// happened in under `spans` (`request_id`, `session_id`, `turn_id` among their fields).
    Json,
    /// Human-readable lines; `ansi` for colour on a terminal.
    Text { ansi: bool },
}

/// The provider spans are exported through, when there is one ([`init`] sets it).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The filter from `RUST_LOG`, `info` when unset or unreadable.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A subscriber writing `format` lines to `writer` at `filter`, and exporting spans through `provider` when
/// there is one (with none, no OpenTelemetry layer is built: tracing costs what it cost before).
pub fn subscriber(
    format: LogFormat,
    writer: BoxMakeWriter,
    filter: EnvFilter,
    provider: Option<&SdkTracerProvider>,
) -> impl Subscriber + Send + Sync + 'static {
    use tracing_subscriber::Layer;
    let lines = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text { ansi } => tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(writer).boxed(),
    };
    // `RUST_LOG` filters the lines only: the spans go out at `info` whatever it says. With one filter for both,
    // `RUST_LOG=warn` (what the benchmark's server runs at, and what an operator sets to quiet the logs) exported
    // no span at all: the request, turn and chat spans are `info`.
    let otel = provider
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("lambent")).with_filter(LevelFilter::INFO));
    tracing_subscriber::registry().with(lines.with_filter(filter)).with(otel)
}

/// Sets the process's subscriber: `format` lines (JSON to stdout, text to stderr) at `RUST_LOG`, and — when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set — span export over OTLP. Call it inside the Tokio runtime (the gRPC
/// client is built on it). An exporter that cannot be built is reported and left out; the logs still work.
pub fn init(format: LogFormat) {
    let writer = match format {
        // On Lambda both streams reach CloudWatch; stdout is where the EMF lines go too.
        LogFormat::Json => BoxMakeWriter::new(std::io::stdout),
        LogFormat::Text { .. } => BoxMakeWriter::new(std::io::stderr),
    };
    let provider = match otlp_provider(None) {
        Ok(provider) => provider,
        Err(err) => {
            eprintln!("lambent: traces are not exported: {err}");
            None
        }
    };
    let provider = provider.map(|p| PROVIDER.get_or_init(|| p));
    let _ = tracing::subscriber::set_global_default(subscriber(format, writer, env_filter(), provider));
}

/// Whether spans are being exported by this process (its subscriber came from [`init`] with an endpoint).
pub fn exporting() -> bool {
    PROVIDER.get().is_some()
}

/// The OTLP/gRPC exporter's provider: to `endpoint` when given (tests), else where the standard variables say
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, their `_HEADERS` and `_TIMEOUT`);
/// `None` when neither names one. The service is `OTEL_SERVICE_NAME`, else the Lambda function's name, else
/// `lambent`. Spans go out in batches from the SDK's own thread, and at every [`flush`].
pub fn otlp_provider(endpoint: Option<&str>) -> Result<Option<SdkTracerProvider>, String> {
    use opentelemetry_otlp::WithExportConfig;
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    if endpoint.is_none() && !set("OTEL_EXPORTER_OTLP_ENDPOINT") && !set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Ok(None);
    }
    let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let exporter = builder.build().map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if !set("OTEL_SERVICE_NAME") {
        let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "lambent".to_owned());
        resource = resource.with_service_name(name);
    }
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build()))
}

/// Sends every ended span now and waits for the receiver's answer (a no-op without an exporter). The SDK's
/// flush blocks its thread while the gRPC client runs on the runtime, so it runs on a blocking thread.
pub async fn flush() {
    if let Some(provider) = PROVIDER.get() {
        flush_provider(provider).await;
    }
}

/// [`flush`] for a given provider (tests hold their own).
pub async fn flush_provider(provider: &SdkTracerProvider) {
    let provider = provider.clone();
    match tokio::task::spawn_blocking(move || provider.force_flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "could not flush the spans"),
        Err(err) => tracing::warn!(error = %err, "could not flush the spans"),
    }
}

/// A header lookup, as the propagators take it.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The trace the incoming request belongs to: W3C `traceparent` (with `tracestate`) first, else X-Ray's
/// `X-Amzn-Trace-Id` (API Gateway's header; a Lambda function copies the runtime's `_X_AMZN_TRACE_ID` into it).
/// `None` when neither names a valid trace: the request starts its own.
///
/// An X-Ray parent is taken as sampled whatever its `Sampled=` says: that flag is X-Ray's own decision (the
/// runtime sends `Sampled=0` whenever active tracing is off), and spans are exported here only when an
/// operator asked for it by setting the endpoint.
pub fn parent_context(headers: &axum::http::HeaderMap) -> Option<Context> {
    if headers.contains_key("traceparent") {
        let context = TraceContextPropagator::new().extract(&Headers(headers));
        if context.span().span_context().is_valid() {
            return Some(context);
        }
    }
    let xray = headers.get("x-amzn-trace-id")?.to_str().ok()?;
    let span = xray_span_context(xray)?;
    Some(Context::new().with_remote_span_context(span))
}

/// `Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1` as a remote span context.
fn xray_span_context(header: &str) -> Option<SpanContext> {
    let (mut root, mut parent) = (None, None);
    for part in header.split(';') {
        match part.trim().split_once('=') {
            Some(("Root", value)) => root = Some(value),
            Some(("Parent", value)) => parent = Some(value),
            _ => {}
        }
    }
    let root: String = root?.strip_prefix("1-")?.chars().filter(|c| *c != '-').collect();
    let trace_id = TraceId::from_hex(&root).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(parent?).ok().filter(|id| *id != SpanId::INVALID)?;
    Some(SpanContext::new(trace_id, span_id, TraceFlags::SAMPLED, true, TraceState::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xray_header_names_its_trace_and_parent() {
        let span = xray_span_context("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0")
            .expect("a valid header");
        assert_eq!(span.trace_id().to_string(), "5759e988bd862e3fe1be46a994272793");
        assert_eq!(span.span_id().to_string(), "53995c3f42cd8ad8");
        assert!(span.is_sampled() && span.is_remote());
        assert!(xray_span_context("Root=1-5759e988-bd862e3fe1be46a994272793").is_none(), "no parent, no link");
        assert!(xray_span_context("Root=2-x;Parent=53995c3f42cd8ad8").is_none());
    }

    #[test]
    fn traceparent_wins_over_the_xray_header() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".parse().unwrap());
        headers.insert(
            "x-amzn-trace-id",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".parse().unwrap(),
        );
        let context = parent_context(&headers).expect("a parent");
        assert_eq!(context.span().span_context().trace_id().to_string(), "0af7651916cd43dd8448eb211c80319c");
        headers.remove("traceparent");
        let context = parent_context(&headers).expect("a parent");
        assert_eq!(context.span().span_context().trace_id().to_string(), "5759e988bd862e3fe1be46a994272793");
        assert!(parent_context(&axum::http::HeaderMap::new()).is_none());
    }
}
