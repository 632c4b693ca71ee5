//! Span export over OTLP: the protocol the standard variables name, the SDK's batch processor, and an account of
//! every span that ended — exported, refused by the receiver, or dropped because the queue was full.
//!
//! The SDK's `BatchSpanProcessor` drops a span when its queue is full and keeps the count to itself (it says so
//! once, through a logging feature Lambent does not build). The telemetry benchmark saw 576 of ~4,800 turns'
//! spans arrive and could not tell where the rest went: its receiver drained its 64-span channel only every 5 s,
//! so each export waited on it, the queue filled behind, and spans were dropped unseen. Here a gate in front of
//! the processor admits a span only while fewer than the queue's size are waiting (ended, not yet handed to the
//! exporter), so the SDK's own queue never overflows and every drop is counted ([`SpanTally`]) and logged as a
//! warning with how many: at every [`Traces::flush`] (each Lambda invocation's end), every 10 s in a long-running
//! process ([`Traces::report_drops_every`]), and at shutdown. Not from the batch thread, which has no subscriber
//! of a test's, nor from the span's end, which runs inside the subscriber (an event there is swallowed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};

/// The OTLP transport, from `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// `http/protobuf`: the specification's default, and what OTLP/HTTP-only backends (Langfuse, Grafana Cloud)
    /// take. Sent to `<endpoint>/v1/traces` (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is).
    #[default]
    HttpProtobuf,
    /// `grpc`: a collector's port 4317 (the ADOT Lambda layer listens there).
    Grpc,
}

impl Protocol {
    /// The protocol the standard variables name (the traces' own first), through `var` (the environment, in
    /// [`Export::from_env`]). An empty variable counts as unset; a value Lambent does not speak (`http/json`, a
    /// typo) is an error naming it, not a silent fallback to another transport.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        for name in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            match var(name).as_deref().map(str::trim) {
                None | Some("") => continue,
                Some("http/protobuf") => return Ok(Self::HttpProtobuf),
                Some("grpc") => return Ok(Self::Grpc),
                Some(other) => return Err(format!("{name} is `{other}`: Lambent exports `http/protobuf` or `grpc`")),
            }
        }
        Ok(Self::default())
    }
}

/// The spec's default for `OTEL_BSP_MAX_QUEUE_SIZE`: spans waiting for export before more are dropped.
const DEFAULT_QUEUE: usize = 2048;

/// Where and how spans go.
#[derive(Debug, Clone)]
pub struct Export {
    /// The full URL (with `/v1/traces` for HTTP) when given; `None` reads the standard variables, as the OTLP
    /// crate does (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus the
    /// signal's path for HTTP).
    pub endpoint: Option<String>,
    pub protocol: Protocol,
    /// Spans held for export at most (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048 by default); past it, a span is dropped
    /// and counted.
    pub queue: usize,
}

impl Export {
    /// An export to `endpoint` over `protocol`, with the default queue (tests).
    pub fn to(endpoint: impl Into<String>, protocol: Protocol) -> Self {
        Self { endpoint: Some(endpoint.into()), protocol, queue: DEFAULT_QUEUE }
    }

    /// The export the standard variables describe; `None` when neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names a receiver.
    pub fn from_env() -> Result<Option<Self>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
            return Ok(None);
        }
        let queue = match var("OTEL_BSP_MAX_QUEUE_SIZE") {
            None => DEFAULT_QUEUE,
            Some(v) => v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("OTEL_BSP_MAX_QUEUE_SIZE is `{v}`: a number of spans above 0"))?,
        };
        Ok(Some(Self { endpoint: None, protocol: Protocol::from_vars(var)?, queue }))
    }
}

/// What became of the spans that ended, since the exporter was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanTally {
    /// Spans that ended (each one is exported, failed, dropped, or still waiting).
    pub ended: u64,
    /// Accepted by the receiver.
    pub exported: u64,
    /// Sent in an export the receiver refused or that timed out.
    pub failed: u64,
    /// Never sent: the queue was full when they ended.
    pub dropped: u64,
}

#[derive(Debug)]
struct Counts {
    queue: u64,
    /// Ended and admitted, not yet handed to the exporter: at most `queue`.
    waiting: AtomicU64,
    ended: AtomicU64,
    exported: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Drops already reported in a log line.
    reported: AtomicU64,
}

impl Counts {
    /// Logs the drops not yet reported, once, with how many.
    fn report_drops(&self) {
        let dropped = self.dropped.load(Ordering::Relaxed);
        let before = self.reported.swap(dropped, Ordering::Relaxed);
        if dropped > before {
            tracing::warn!(
                dropped = dropped - before,
                dropped_total = dropped,
                queue = self.queue,
                "spans were dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE) while the receiver was slow"
            );
        }
    }
}

/// The process's (or a test's) span export: the provider the tracing layer feeds, and its tally.
#[derive(Debug, Clone)]
pub struct Traces {
    provider: SdkTracerProvider,
    counts: Arc<Counts>,
}

impl Traces {
    /// Builds the exporter `export` describes behind the SDK's batch processor (its thread exports every
    /// `OTEL_BSP_SCHEDULE_DELAY`, 5 s, or when `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512, are waiting, and at every
    /// [`Traces::flush`]). The service is `OTEL_SERVICE_NAME`, else the Lambda function's name, else `lambent`.
    /// Over HTTP, reqwest's client takes its TLS from the process-wide provider: install it first (the entry
    /// points do, before [`super::init`]; the `tls` module is a layer beside this one).
    pub fn new(export: &Export) -> Result<Self, String> {
        use opentelemetry_otlp::WithExportConfig;
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let exporter = match export.protocol {
            Protocol::Grpc => {
                let mut builder = builder.with_tonic().with_protocol(opentelemetry_otlp::Protocol::Grpc);
                if let Some(endpoint) = &export.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                builder.build()
            }
            Protocol::HttpProtobuf => {
                let mut builder = builder.with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                if let Some(endpoint) = &export.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                builder.build()
            }
        }
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
        let counts = Arc::new(Counts {
            queue: export.queue as u64,
            waiting: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            exported: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        });
        // The SDK's queue is as long as the gate's: it never fills, so the gate's count is every drop.
        let config = BatchConfigBuilder::default().with_max_queue_size(export.queue).build();
        let batch = BatchSpanProcessor::new(Counted { inner: exporter, counts: counts.clone() }, config);
        let mut resource = opentelemetry_sdk::Resource::builder();
        if !std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty()) {
            let name = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "lambent".to_owned());
            resource = resource.with_service_name(name);
        }
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Gate { inner: batch, counts: counts.clone() })
            .with_resource(resource.build())
            .build();
        Ok(Self { provider, counts })
    }

    pub fn provider(&self) -> &SdkTracerProvider {
        &self.provider
    }

    /// Logs the drops not yet reported every `period`, on the runtime (a long-running process; a Lambda function
    /// reports at each invocation's [`Traces::flush`]).
    pub fn report_drops_every(&self, period: Duration) {
        let counts = self.counts.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    counts.report_drops();
                }
            });
        }
    }

    /// What became of the spans so far.
    pub fn tally(&self) -> SpanTally {
        let c = &self.counts;
        SpanTally {
            ended: c.ended.load(Ordering::Relaxed),
            exported: c.exported.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Sends every ended span now and waits for the receiver's answer. The SDK's flush blocks its thread while
    /// the export runs (the gRPC client on the runtime, the HTTP one on its own thread), so it runs on a
    /// blocking thread.
    pub async fn flush(&self) {
        let provider = self.provider.clone();
        match tokio::task::spawn_blocking(move || provider.force_flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "could not flush the spans"),
            Err(err) => tracing::warn!(error = %err, "could not flush the spans"),
        }
        self.counts.report_drops();
    }
}

/// In front of the batch processor: admits a span while fewer than the queue's size wait, else drops and
/// counts it.
#[derive(Debug)]
struct Gate {
    inner: BatchSpanProcessor,
    counts: Arc<Counts>,
}

impl SpanProcessor for Gate {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let c = &self.counts;
        c.ended.fetch_add(1, Ordering::Relaxed);
        let admitted = c.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < c.queue).then_some(n + 1));
        if admitted.is_ok() {
            self.inner.on_end(span);
        } else {
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.counts.report_drops();
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it is handed and what the receiver took. Runs on the batch thread.
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    counts: Arc<Counts>,
}

impl SpanExporter for Counted {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        self.counts.waiting.fetch_sub(n, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.counts.exported.fetch_add(n, Ordering::Relaxed),
            Err(err) => {
                tracing::warn!(spans = n, error = %err, "could not export spans");
                self.counts.failed.fetch_add(n, Ordering::Relaxed)
            }
        };
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_protocol_is_http_protobuf_unless_a_variable_says_grpc_the_traces_own_first() {
        assert_eq!(Protocol::from_vars(vars(&[])), Ok(Protocol::HttpProtobuf));
        assert_eq!(Protocol::from_vars(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", " ")])), Ok(Protocol::HttpProtobuf));
        assert_eq!(Protocol::from_vars(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])), Ok(Protocol::Grpc));
        let both =
            vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")]);
        assert_eq!(Protocol::from_vars(both), Ok(Protocol::HttpProtobuf));
        let err = Protocol::from_vars(vars(&[("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")])).unwrap_err();
        assert!(err.contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") && err.contains("http/json"), "{err}");
    }
}
