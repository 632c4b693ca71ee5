//! Server-side tool executors: what runs a tool call when a conversation asks for `auto_execute_tools`.
//!
//! A failing executor never fails the turn: its error becomes the tool's output, so the model sees it and
//! can answer accordingly.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use crate::clock::{Clock, format_timestamp};
use crate::llm::events::ToolCall;

/// The most an `http` executor reads from its endpoint; the rest is cut off.
pub const MAX_HTTP_OUTPUT_BYTES: usize = 64 * 1024;
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// Answers with the call's arguments (or input), unchanged.
    Echo,
    /// Answers with the current UTC time.
    Now,
    /// POSTs `{name, call_id, arguments}` to `url`; the response body is the output.
    Http { url: String, timeout: Duration },
}

impl Executor {
    /// Reads a tool's `executor` JSON; the error names what is wrong, for the field error.
    pub fn parse(value: &Value) -> Result<Self, String> {
        match value.get("type").and_then(Value::as_str) {
            Some("echo") => Ok(Self::Echo),
            Some("now") => Ok(Self::Now),
            Some("http") => {
                let url = value.get("url").and_then(Value::as_str).unwrap_or_default();
                let parsed =
                    reqwest::Url::parse(url).map_err(|_| "An http executor needs an absolute \"url\".".to_owned())?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err("An http executor's \"url\" must be http:// or https:// with a host.".into());
                }
                let timeout = match value.get("timeout_ms") {
                    None | Some(Value::Null) => DEFAULT_HTTP_TIMEOUT,
                    Some(ms) => ms
                        .as_u64()
                        .filter(|ms| (1..=MAX_HTTP_TIMEOUT.as_millis() as u64).contains(ms))
                        .map(Duration::from_millis)
                        .ok_or_else(|| format!("\"timeout_ms\" must be 1 to {}.", MAX_HTTP_TIMEOUT.as_millis()))?,
                };
                Ok(Self::Http { url: url.to_owned(), timeout })
            }
            _ => Err("Must be {\"type\": \"echo\"}, {\"type\": \"now\"} or {\"type\": \"http\", \"url\": ...}.".into()),
        }
    }
}

/// What executors need from the process: an HTTP client and the hosts `http` executors may reach.
#[derive(Debug, Clone)]
pub struct ExecutorContext {
    pub http: reqwest::Client,
    /// `LAMBENT_TOOL_HOSTS`: host names (or `host:port`) an `http` executor may call. Empty = none.
    pub allowed_hosts: Vec<String>,
}

impl ExecutorContext {
    pub async fn run(&self, executor: &Executor, call: &ToolCall, clock: &dyn Clock) -> String {
        match executor {
            Executor::Echo => call.arguments.clone(),
            Executor::Now => format_timestamp(clock.now()),
            Executor::Http { url, timeout } => match self.post(url, *timeout, call).await {
                Ok(output) => output,
                Err(message) => json!({"error": message}).to_string(),
            },
        }
    }

    fn allows(&self, url: &reqwest::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let with_port = url.port_or_known_default().map(|port| format!("{host}:{port}"));
        self.allowed_hosts.iter().any(|allowed| allowed == host || Some(allowed) == with_port.as_ref())
    }

    async fn post(&self, url: &str, timeout: Duration, call: &ToolCall) -> Result<String, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad executor URL: {e}"))?;
        if !self.allows(&parsed) {
            return Err(format!(
                "the tool's host {} is not in LAMBENT_TOOL_HOSTS",
                parsed.host_str().unwrap_or_default()
            ));
        }
        let body = json!({"name": call.name, "call_id": call.call_id, "arguments": call.arguments});
        let exchange = async {
            let response =
                self.http.post(parsed).json(&body).send().await.map_err(|e| format!("tool call failed: {e}"))?;
            let status = response.status();
            let mut bytes = Vec::new();
            let mut chunks = response.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| format!("tool response broke off: {e}"))?;
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_HTTP_OUTPUT_BYTES {
                    bytes.truncate(MAX_HTTP_OUTPUT_BYTES);
                    break;
                }
            }
            let text = String::from_utf8_lossy(&bytes).into_owned();
            if status.is_success() { Ok(text) } else { Err(format!("tool endpoint answered HTTP {status}: {text}")) }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| format!("tool endpoint did not answer within {} ms", timeout.as_millis()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executors_parse_and_explain_mistakes() {
        assert_eq!(Executor::parse(&json!({"type": "echo"})), Ok(Executor::Echo));
        assert_eq!(
            Executor::parse(&json!({"type": "http", "url": "https://tools.example/run", "timeout_ms": 500})),
            Ok(Executor::Http { url: "https://tools.example/run".into(), timeout: Duration::from_millis(500) })
        );
        assert!(Executor::parse(&json!({"type": "http", "url": "ftp://x"})).is_err());
        assert!(Executor::parse(&json!({"type": "http", "url": "https://x", "timeout_ms": 0})).is_err());
        assert!(Executor::parse(&json!({"type": "shell"})).is_err());
    }

    #[test]
    fn only_allowlisted_hosts_are_reachable() {
        let ctx = ExecutorContext {
            http: reqwest::Client::new(),
            allowed_hosts: vec!["tools.example".into(), "127.0.0.1:9000".into()],
        };
        assert!(ctx.allows(&"https://tools.example/x".parse().unwrap()));
        assert!(ctx.allows(&"http://127.0.0.1:9000/x".parse().unwrap()));
        assert!(!ctx.allows(&"http://127.0.0.1:9001/x".parse().unwrap()));
        assert!(!ctx.allows(&"https://evil.example/x".parse().unwrap()));
    }
}
