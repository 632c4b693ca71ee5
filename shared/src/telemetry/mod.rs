//! Telemetry: logs, traces and metrics, set up in one place.
//!
//! - **Logs** go through `tracing`: JSON lines on Lambda (one object per line, the span list carrying the
//!   request id and, within a turn, the session and turn ids), readable text on the local server.
//! - **Traces** follow the OpenTelemetry GenAI conventions (the spans themselves are opened where the work is:
//!   `http::observe` for requests, `turn::engine` for turns, responses and tool runs). They are exported over
//!   OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, over `http/protobuf` unless
//!   `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` says `grpc`: otherwise there is no exporter and no OpenTelemetry
//!   layer at all. A Lambda function flushes them at the end of every invocation ([`flush`]): a frozen
//!   environment would keep unsent spans until its next invocation, or lose them. A span the export queue has
//!   no room for is counted and logged ([`SpanTally`]).
//! - **Metrics** are CloudWatch embedded-metric-format lines ([`Metrics`]), written to stdout on Lambda.
//!
//! # Layout
//! - this file: the subscriber ([`init`], [`subscriber`]), the process's exporter ([`flush`]), the incoming
//!   trace context ([`parent_context`]: W3C `traceparent`, X-Ray `X-Amzn-Trace-Id`), and [`escaped`]: what a
//!   user wrote (a name, a path, an upstream's error text), made safe for a log line or a span name.
//! - `otlp`: the exporter ([`Traces`]): the protocol from the standard variables, the batch processor, the tally
//!   of exported and dropped spans.
//! - `scope`: what one request carries through its tasks — its id and its counters ([`RequestScope`]).
//! - `metrics`: the EMF lines and where they go.

mod metrics;
mod otlp;
mod scope;

use std::sync::OnceLock;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;

pub use metrics::{Metrics, RequestMetrics, TurnMetrics, Warning};
pub use otlp::{Export, Protocol, SpanTally, Traces};
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

/// Whether `c` is invisible or reorders text around it: control characters (C0, DEL, C1: a newline or an ESC
/// forges log lines and colours terminals), bidirectional embeddings, overrides, isolates and marks
/// (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C: "Trojan Source" spoofing), zero-width and other
/// invisible format characters (U+200B-U+200D, U+2060-U+2064, U+FEFF, U+180E, U+00AD), and the line and
/// paragraph separators (U+2028, U+2029). Names refuse them (`domain::check_name`); logs escape them.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// `text` for a log line or a span name: each [`is_hidden`] character written as its Rust escape (`\n`,
/// `\u{1b}`, `\u{202e}`), so a value cannot end the line, forge the next one or recolour a terminal. Borrowed
/// when there is nothing to escape (the usual case).
pub fn escaped(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hidden(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
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

/// The exporter spans go through, when there is one ([`init`] sets it).
static TRACES: OnceLock<Traces> = OnceLock::new();

/// The filter from `RUST_LOG`, `info` when unset or unreadable.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// A subscriber writing `format` lines to `writer` at `filter`, and exporting spans through `traces` when
/// there is one (with none, no OpenTelemetry layer is built: tracing costs what it cost before).
pub fn subscriber(
    format: LogFormat,
    writer: BoxMakeWriter,
    filter: EnvFilter,
    traces: Option<&Traces>,
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
    let otel = traces.map(|t| {
        tracing_opentelemetry::layer().with_tracer(t.provider().tracer("lambent")).with_filter(LevelFilter::INFO)
    });
    tracing_subscriber::registry().with(lines.with_filter(filter)).with(otel)
}

/// Sets the process's subscriber: `format` lines (JSON to stdout, text to stderr) at `RUST_LOG`, and — when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set — span export over OTLP ([`Export::from_env`]). Call it inside the Tokio
/// runtime (the gRPC client is built on it), once the process's TLS provider is installed (the HTTP client
/// needs it). An exporter that cannot be built (a protocol Lambent does not speak, a malformed endpoint) is
/// reported and left out; the logs still work.
pub fn init(format: LogFormat) {
    let writer = match format {
        // On Lambda both streams reach CloudWatch; stdout is where the EMF lines go too.
        LogFormat::Json => BoxMakeWriter::new(std::io::stdout),
        LogFormat::Text { .. } => BoxMakeWriter::new(std::io::stderr),
    };
    let traces = match Export::from_env().and_then(|export| export.map(|e| Traces::new(&e)).transpose()) {
        Ok(traces) => traces,
        Err(err) => {
            eprintln!("lambent: traces are not exported: {err}");
            None
        }
    };
    let traces = traces.map(|t| TRACES.get_or_init(|| t));
    if let Some(traces) = traces {
        traces.report_drops_every(std::time::Duration::from_secs(10));
    }
    let _ = tracing::subscriber::set_global_default(subscriber(format, writer, env_filter(), traces));
}

/// Whether spans are being exported by this process (its subscriber came from [`init`] with an endpoint).
pub fn exporting() -> bool {
    TRACES.get().is_some()
}

/// Sends every ended span now and waits for the receiver's answer (a no-op without an exporter); logs the spans
/// dropped since the last report.
pub async fn flush() {
    if let Some(traces) = TRACES.get() {
        traces.flush().await;
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
    fn what_a_user_wrote_cannot_end_or_recolour_a_log_line() {
        let forged =
            "x\n2026-12-07T19:00:00Z  INFO lambent::request: POST /api/auth/login/ 200\u{1b}[31m\u{202e}\u{200b}";
        assert_eq!(
            escaped(forged),
            "x\\n2026-12-07T19:00:00Z  INFO lambent::request: POST /api/auth/login/ 200\\u{1b}[31m\\u{202e}\\u{200b}"
        );
        assert!(matches!(escaped("Support agent — été"), std::borrow::Cow::Borrowed("Support agent — été")));
    }

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
