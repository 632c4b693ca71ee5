//! MCP servers' tools, over the official SDK's client (rmcp, Streamable HTTP) on the same guarded HTTP
//! clients as the `http` executor: a private, loopback or link-local server is refused unless its host is in
//! `LAMBENT_TOOL_HOSTS`.
//!
//! Per instance, one connection (an MCP session) is kept per server and reused by later turns, with the
//! server's tool list: trusted for `LAMBENT_MCP_TOOLS_TTL`, and dropped as soon as the server sends
//! `notifications/tools/list_changed`. A connection that fails is forgotten, so the next use connects anew.
//! Nothing here fails a turn: a server that cannot be listed is an `Err` with a message for a notice frame,
//! and a call that fails is an error output the model sees.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use serde_json::{Value, json};

use super::{ExecutorContext, MAX_HTTP_OUTPUT_BYTES};

/// One server as a turn uses it: where it is, and its header values (opened from the store's sealed text).
#[derive(Debug, Clone)]
pub struct McpServerSpec {
    pub id: i64,
    pub url: String,
    /// What the headers were sealed as: a change of headers is a change of connection.
    pub fingerprint: String,
    pub headers: Vec<(String, String)>,
}

/// A tool as the server listed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTool {
    pub name: String,
    pub description: String,
    /// Its input JSON Schema (an object).
    pub input_schema: Value,
}

/// The connections of this instance, one per server.
#[derive(Default)]
pub struct McpClients {
    connections: Mutex<HashMap<i64, Arc<Connection>>>,
}

impl std::fmt::Debug for McpClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("McpClients")
    }
}

struct Connection {
    /// The URL and sealed headers it was opened with.
    key: String,
    service: RunningService<RoleClient, Watcher>,
    /// Set by the server's `notifications/tools/list_changed`.
    changed: Arc<AtomicBool>,
    tools: Mutex<Option<(Instant, Arc<Vec<ListedTool>>)>>,
}

/// The client side of a connection: says who Lambent is, and notes a changed tool list.
#[derive(Clone)]
struct Watcher {
    changed: Arc<AtomicBool>,
}

impl ClientHandler for Watcher {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("lambent", env!("CARGO_PKG_VERSION")))
    }

    fn on_tool_list_changed(
        &self,
        _context: NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + rmcp::service::MaybeSendFuture + '_ {
        self.changed.store(true, Ordering::SeqCst);
        std::future::ready(())
    }
}

fn key_of(spec: &McpServerSpec) -> String {
    format!("{}\n{}", spec.url, spec.fingerprint)
}

/// Why a request to a server failed, in words for a notice or an output: the SSRF guard's refusal when that
/// is the cause.
fn described(error: &(dyn std::error::Error + 'static)) -> String {
    ExecutorContext::refusal_in(error).unwrap_or_else(|| {
        let mut text = error.to_string();
        let mut cause = error.source();
        while let Some(inner) = cause {
            text = format!("{text}: {inner}");
            cause = inner.source();
        }
        text
    })
}

impl McpClients {
    /// The server's tools: the cached list while it is younger than `ttl` and the server has not said it
    /// changed, else listed now (connecting first if needed), all within `timeout`.
    pub async fn tools(
        &self,
        context: &ExecutorContext,
        spec: &McpServerSpec,
        ttl: Duration,
        timeout: Duration,
    ) -> Result<Arc<Vec<ListedTool>>, String> {
        let work = async {
            let connection = self.connection(context, spec).await?;
            let changed = connection.changed.swap(false, Ordering::SeqCst);
            if !changed
                && let Some((at, tools)) = connection.tools.lock().expect("tools lock").as_ref()
                && at.elapsed() < ttl
            {
                return Ok(Arc::clone(tools));
            }
            let listed = connection.service.list_all_tools().await.map_err(|e| {
                self.forget(spec.id);
                format!("listing its tools failed: {}", described(&e))
            })?;
            let tools: Arc<Vec<ListedTool>> = Arc::new(
                listed
                    .into_iter()
                    .map(|t| ListedTool {
                        name: t.name.into_owned(),
                        description: t.description.map(|d| d.into_owned()).unwrap_or_default(),
                        input_schema: Value::Object((*t.input_schema).clone()),
                    })
                    .collect(),
            );
            *connection.tools.lock().expect("tools lock") = Some((Instant::now(), Arc::clone(&tools)));
            Ok(tools)
        };
        tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
            self.forget(spec.id);
            Err(format!("it did not answer within {} ms", timeout.as_millis()))
        })
    }

    /// Runs `tools/call` for `tool` with the model's JSON `arguments`; answers the output the model sees (an
    /// `{"error": ...}` object when the call failed, timed out or the server said it is an error).
    pub async fn call(
        &self,
        context: &ExecutorContext,
        spec: &McpServerSpec,
        tool: &str,
        arguments: &str,
        timeout: Duration,
    ) -> String {
        let error = |message: String| json!({"error": message}).to_string();
        let arguments = match serde_json::from_str::<Value>(if arguments.trim().is_empty() { "{}" } else { arguments })
        {
            Ok(Value::Object(object)) => object,
            _ => return error("the arguments of an MCP tool call must be a JSON object".into()),
        };
        let work = async {
            let connection = self.connection(context, spec).await.map_err(|e| format!("the MCP server: {e}"))?;
            let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
            match connection.service.call_tool(params).await {
                Ok(result) => Ok(output_of(result)),
                Err(ServiceError::McpError(e)) => Err(format!("the MCP server answered an error: {}", e.message)),
                Err(other) => {
                    self.forget(spec.id);
                    Err(format!("the MCP call failed: {}", described(&other)))
                }
            }
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(output)) => output,
            Ok(Err(message)) => error(message),
            Err(_) => error(format!("the MCP server did not answer within {} ms", timeout.as_millis())),
        }
    }

    /// The open connection to the server, or a new one (the old one, if its URL or headers changed, closes).
    async fn connection(&self, context: &ExecutorContext, spec: &McpServerSpec) -> Result<Arc<Connection>, String> {
        let key = key_of(spec);
        if let Some(open) = self.connections.lock().expect("connections lock").get(&spec.id)
            && open.key == key
            && !open.service.is_transport_closed()
        {
            return Ok(Arc::clone(open));
        }
        let client = context.guarded_client(&spec.url)?;
        let mut headers = HashMap::new();
        for (name, value) in &spec.headers {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("the header {name:?} is not valid"))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("the value of the header {name} is not valid"))?;
            headers.insert(name, value);
        }
        let config = StreamableHttpClientTransportConfig::with_uri(spec.url.as_str())
            .custom_headers(headers)
            .reinit_on_expired_session(true)
            .max_json_response_size(4 * 1024 * 1024);
        let transport = StreamableHttpClientTransport::with_client(client, config);
        let changed = Arc::new(AtomicBool::new(false));
        let service = Watcher { changed: Arc::clone(&changed) }
            .serve(transport)
            .await
            .map_err(|e| format!("could not connect: {}", described(&e)))?;
        let connection = Arc::new(Connection { key, service, changed, tools: Mutex::new(None) });
        self.connections.lock().expect("connections lock").insert(spec.id, Arc::clone(&connection));
        Ok(connection)
    }

    fn forget(&self, server: i64) {
        self.connections.lock().expect("connections lock").remove(&server);
    }
}

/// What the model sees of a call's result: its text blocks (other blocks named by kind), then its
/// structured content as JSON unless a text block already is exactly that; an `{"error": ...}` object when
/// the server flagged the result as an error. Cut at [`MAX_HTTP_OUTPUT_BYTES`].
fn output_of(result: CallToolResult) -> String {
    let mut parts: Vec<String> = result
        .content
        .iter()
        .map(|block| match block.as_text() {
            Some(text) => text.text.clone(),
            None => {
                let kind = serde_json::to_value(block)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                format!("[{} content]", kind.unwrap_or_else(|| "other".into()))
            }
        })
        .collect();
    if let Some(structured) = &result.structured_content {
        let as_json = structured.to_string();
        // A text block that already says it (the JSON itself, or the `{"result": ...}` wrapper SDKs put around a
        // plain return value) is not said twice.
        let says_it = |p: &String| {
            let parsed = serde_json::from_str::<Value>(p).ok();
            parsed.as_ref() == Some(structured)
                || structured.as_object().is_some_and(|o| {
                    o.len() == 1
                        && o.get("result").is_some_and(|r| r.as_str() == Some(p.as_str()) || Some(r) == parsed.as_ref())
                })
        };
        let repeated = parts.iter().any(says_it);
        if !repeated {
            parts.push(as_json);
        }
    }
    let mut text = parts.join("\n");
    if text.len() > MAX_HTTP_OUTPUT_BYTES {
        let mut end = MAX_HTTP_OUTPUT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    if result.is_error == Some(true) { json!({"error": text}).to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(value: Value) -> CallToolResult {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_results_text_and_structured_content_become_the_output() {
        assert_eq!(output_of(result(json!({"content": [{"type": "text", "text": "Echo: hi"}]}))), "Echo: hi");
        assert_eq!(
            output_of(result(json!({"content": [{"type": "text", "text": "sum"}], "structuredContent": {"sum": 3}}))),
            "sum\n{\"sum\":3}"
        );
        assert_eq!(
            output_of(result(
                json!({"content": [{"type": "text", "text": "{\"sum\":3}"}], "structuredContent": {"sum": 3}})
            )),
            "{\"sum\":3}"
        );
        assert_eq!(
            output_of(result(
                json!({"content": [{"type": "text", "text": "grew"}], "structuredContent": {"result": "grew"}})
            )),
            "grew"
        );
        assert_eq!(
            output_of(result(json!({"content": [{"type": "text", "text": "no such city"}], "isError": true}))),
            "{\"error\":\"no such city\"}"
        );
        assert_eq!(
            output_of(result(json!({"content": [{"type": "image", "data": "AA==", "mimeType": "image/png"}]}))),
            "[image content]"
        );
    }
}
