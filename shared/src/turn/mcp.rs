//! MCP servers' tools in a turn: listed as the turn starts, in a task of their own that runs while the turn
//! writes its start to the database (the servers come with the turn's one read: no round trip of their own),
//! and offered to the model as function tools under names that cannot collide (`domain::mcp_tool_name`).
//! A server that cannot be listed does not fail the turn: its tools are left out and a `notice` frame says so.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::config::Limits;
use crate::domain::{HEADERS_CONTEXT, LinkedMcpServer, Tool, mcp_tool_name};
use crate::executors::mcp::McpServerSpec;
use crate::state::AppState;

/// One MCP tool as this turn offers it.
#[derive(Debug, Clone)]
pub(super) struct Offered {
    /// The name the model calls it by.
    pub name: String,
    /// Its name on its server.
    pub tool: String,
    pub server: Arc<McpServerSpec>,
    pub require_approval: bool,
    /// As the Responses API's `tools` list takes it.
    pub spec: Value,
}

/// What the listing found: the tools to offer, and a notice for each server (or tool) left out.
#[derive(Debug, Default)]
pub(super) struct McpOffer {
    pub tools: Vec<Offered>,
    pub notices: Vec<String>,
}

/// The listing of a turn's servers, started before the turn's first write and finished before its first
/// request upstream.
#[derive(Debug, Default)]
pub(super) enum McpListing {
    /// The agent uses no MCP server.
    #[default]
    None,
    Running(JoinHandle<McpOffer>),
}

impl McpListing {
    /// Starts listing `servers` (nothing to do without any); `own` are the agent's own tools, whose names
    /// the offered ones must not take.
    pub fn start(state: &AppState, servers: Vec<LinkedMcpServer>, own: &[Tool]) -> Self {
        if servers.is_empty() {
            return Self::None;
        }
        let taken: HashSet<String> = own.iter().map(|t| t.name.clone()).collect();
        let state = state.clone();
        Self::Running(tokio::spawn(crate::telemetry::in_scope(async move { offer(&state, servers, taken).await })))
    }

    pub async fn finish(self) -> McpOffer {
        match self {
            Self::None => McpOffer::default(),
            Self::Running(listing) => listing.await.unwrap_or_else(|e| McpOffer {
                tools: Vec::new(),
                notices: vec![format!("The MCP servers' tools are left out of this turn: their listing failed ({e}).")],
            }),
        }
    }
}

/// Lists every server at once and offers their tools, in link order.
async fn offer(state: &AppState, servers: Vec<LinkedMcpServer>, mut taken: HashSet<String>) -> McpOffer {
    let listed = futures::future::join_all(servers.iter().map(|server| list(state, server))).await;
    let mut offer = McpOffer::default();
    for (server, listed) in servers.iter().zip(listed) {
        let (spec, tools) = match listed {
            Ok(listed) => listed,
            Err(reason) => {
                offer.notices.push(format!("The MCP server \"{}\" is left out of this turn: {reason}.", server.name));
                continue;
            }
        };
        let spec = Arc::new(spec);
        let allowed = |name: &str| server.allowed_tools.is_empty() || server.allowed_tools.iter().any(|a| a == name);
        for tool in tools.iter().filter(|t| allowed(&t.name)).take(Limits::TOOLS_PER_AGENT) {
            let name = mcp_tool_name(server.id, &tool.name);
            let mut parameters = tool.input_schema.clone();
            if let Some(object) = parameters.as_object_mut() {
                object.entry("type").or_insert_with(|| json!("object"));
            }
            let description = tool.description.chars().take(Limits::TOOL_DESCRIPTION_CHARS).collect::<String>();
            if parameters.to_string().chars().count() > Limits::TOOL_SCHEMA_CHARS {
                offer.notices.push(format!(
                    "The tool \"{}\" of the MCP server \"{}\" is left out: its input schema is over {} characters.",
                    tool.name,
                    server.name,
                    Limits::TOOL_SCHEMA_CHARS
                ));
                continue;
            }
            if !taken.insert(name.clone()) {
                offer.notices.push(format!(
                    "The tool \"{}\" of the MCP server \"{}\" is left out: its name {name} is taken.",
                    tool.name, server.name
                ));
                continue;
            }
            offer.tools.push(Offered {
                spec: json!({"type": "function", "name": name, "description": description, "parameters": parameters}),
                name,
                tool: tool.name.clone(),
                server: Arc::clone(&spec),
                require_approval: server.require_approval,
            });
        }
    }
    offer
}

/// One server's tools, with what calls to it need.
async fn list(
    state: &AppState,
    server: &LinkedMcpServer,
) -> Result<(McpServerSpec, Arc<Vec<crate::executors::mcp::ListedTool>>), String> {
    let headers = match &server.headers_sealed {
        None => Vec::new(),
        Some(sealed) => {
            let key = state
                .config
                .secrets_key
                .as_ref()
                .ok_or("its header values cannot be opened without LAMBENT_SECRETS_KEY")?;
            let opened = crate::auth::open_sealed(key, HEADERS_CONTEXT, sealed)
                .map_err(|_| "its header values do not open with LAMBENT_SECRETS_KEY (was the key changed?)")?;
            let map: BTreeMap<String, String> =
                serde_json::from_str(&opened).map_err(|_| "its stored header values are not readable")?;
            map.into_iter().collect()
        }
    };
    let spec = McpServerSpec {
        id: server.id,
        url: server.url.clone(),
        fingerprint: server.headers_sealed.clone().unwrap_or_default(),
        headers,
    };
    let context = state.executors().map_err(|e| e.chain().to_string())?;
    let settings = state.config.mcp;
    let tools = state.mcp().tools(context, &spec, settings.tools_ttl, settings.list_timeout).await?;
    Ok((spec, tools))
}
