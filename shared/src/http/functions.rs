//! Which endpoint groups form which AWS Lambda function, in one place: the binaries in `functions/src/bin/`
//! each name one [`Function`], `template.yaml` deploys one function per binary (`tests/template.rs` holds
//! the two to each other), and the local server mounts them all.

use axum::Router;
use utoipa_axum::router::OpenApiRouter;

use super::{agent, agent_tools, agents, auth, mcp_servers, openapi, providers, sessions, templates, tools, usage};
use crate::state::AppState;

/// One deployed Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Agents,
    Tools,
    AgentTools,
    Templates,
    Sessions,
    Auth,
    Docs,
    AgentChat,
    /// `/api/agent/stream/` and the session event stream: the two that answer with live frames for long.
    AgentStream,
    ToolOutput,
}

impl Function {
    /// Whether the function calls the model provider (and so reads its key at cold start). The others that
    /// are told of a key parameter (the `auth` function, for the health check) only report that it is set.
    pub fn calls_model(self) -> bool {
        matches!(self, Self::AgentChat | Self::AgentStream | Self::ToolOutput)
    }

    pub const ALL: [Self; 10] = [
        Self::Agents,
        Self::Tools,
        Self::AgentTools,
        Self::Templates,
        Self::Sessions,
        Self::Auth,
        Self::Docs,
        Self::AgentChat,
        Self::AgentStream,
        Self::ToolOutput,
    ];

    /// The binary's name (`functions/src/bin/<name>.rs`), as `template.yaml` builds it.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Agents => "agents",
            Self::Tools => "tools",
            Self::AgentTools => "agent-tools",
            Self::Templates => "templates",
            Self::Sessions => "sessions",
            Self::Auth => "auth",
            Self::Docs => "docs",
            Self::AgentChat => "agent-chat",
            Self::AgentStream => "agent-stream",
            Self::ToolOutput => "tool-output",
        }
    }

    /// Answers through Lambda response streaming (SSE), not one buffered response.
    pub fn streams(self) -> bool {
        matches!(self, Self::AgentStream | Self::ToolOutput)
    }

    /// Its routes, documented.
    pub fn api(self) -> OpenApiRouter<AppState> {
        match self {
            Self::Agents => agents::api().merge(providers::api()),
            Self::Tools => tools::api().merge(mcp_servers::api()),
            Self::AgentTools => agent_tools::api().merge(mcp_servers::links_api()),
            Self::Templates => templates::api(),
            Self::Sessions => sessions::api(),
            Self::Auth => auth::api().merge(usage::api()),
            Self::Docs => openapi::api(),
            Self::AgentChat => agent::chat_api(),
            Self::AgentStream => agent::stream_api().merge(sessions::events_api()),
            Self::ToolOutput => agent::tool_output_api(),
        }
    }

    /// Its router, with what every router shares ([`super::finish`]).
    pub fn router(self, state: AppState) -> Router {
        super::finish(self.api(), state)
    }
}
