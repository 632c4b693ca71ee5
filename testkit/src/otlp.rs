//! An OTLP/HTTP trace receiver: `otlp_http_receiver.py` beside this crate, decoding with the OpenTelemetry
//! project's own Python protos (PyPI `opentelemetry-proto`, pinned in scripts/test-requirements.txt), so the
//! HTTP side is checked by an implementation independent of the Rust crates that send.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};

/// An OTLP/HTTP trace receiver (`otlp_http_receiver.py`, decoding with the OpenTelemetry project's Python
/// protos); the spans it received, one JSON object each (name, ids, parent, service, attributes).
pub struct OtlpHttpReceiver {
    /// `http://127.0.0.1:PORT`: what `OTEL_EXPORTER_OTLP_ENDPOINT` names (the exporter adds `/v1/traces`).
    pub base: String,
    spans: Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    _child: Child,
}

impl OtlpHttpReceiver {
    pub async fn start() -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/otlp_http_receiver.py");
        let mut child = Command::new("python3")
            .arg(script)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 is needed, with scripts/test-requirements.txt installed: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the receiver names its port")
            .expect("its stdout")
            .unwrap_or_else(|| {
                panic!("the receiver exited: is opentelemetry-proto installed (scripts/test-requirements.txt)?")
            });
        let spans = Arc::new(std::sync::Mutex::new(Vec::new()));
        let received = spans.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let span = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a span ({e}): {line}"));
                received.lock().unwrap().push(span);
            }
        });
        Self { base: format!("http://127.0.0.1:{}", port.trim()), spans, _child: child }
    }

    /// The URL spans are posted to.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.base)
    }

    /// The spans received so far, once there are at least `at_least` (or after 20 s, however many came).
    pub async fn spans(&self, at_least: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            if self.spans.lock().unwrap().len() >= at_least {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.spans.lock().unwrap().clone()
    }
}
