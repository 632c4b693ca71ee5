//! Plain types of Lambent's objects as the API shows them, and the parsing and validation of writes.
//!
//! Each aggregate has a read type (what the API returns), a `*Fields` type (every writable field, as stored)
//! and a `*Changes` type: what one request asked to change, declared once with `wire::body!`, which makes
//! both its reading from JSON with DRF's messages and its schema in the OpenAPI document.
//!
//! # Layout
//! - `access`: the [`Caller`] and the access rules every read and write applies.
//! - `approvals`: a person's decisions on calls that wait for approval, and what a submission answers.
//! - `input`: reading a JSON body field by field with DRF's messages.
//! - `ids`: the ids of users, agents, sessions, messages and turns, one type each.
//! - `wire`: request bodies declared once — the fields' kinds and the `body!` macro.
//! - `states`: the states a response, a tool call and a message are in, and a turn's error codes (enums).
//! - one file per aggregate: `accounts` (users, tokens), `agents`, `tools` (and the [`ToolCall`] a model
//!   makes), `executor` (a tool's server-side [`Executor`]), `agent_tools`, `mcp_servers` (MCP servers, agents' links to them, the
//!   names their tools go upstream under), `templates`, `sessions` (and
//!   messages, tool-call records), `forks` (what a fork request says), `history` (a session's conversation
//!   read back for a rebuild), `turns` (what a conversation request says, the instructions it builds),
//!   `usage` (a turn's tokens, usage reports, prices, budgets), `limits` (rate limits' windows and
//!   headers).

mod access;
mod accounts;
mod agent_tools;
mod agents;
mod approvals;
mod executor;
mod forks;
mod history;
mod ids;
mod input;
mod limits;
mod mcp_servers;
mod sessions;
mod states;
mod templates;
mod tools;
mod turns;
mod usage;
pub mod wire;

pub use access::Caller;
pub use accounts::{Credentials, MIN_PASSWORD_CHARS, NewApiToken, NewToken, UserWrite, check_username};
pub use agent_tools::{AgentToolLink, LinkChanges, LinkFields};
pub use agents::{Agent, AgentChanges, AgentFields, DEFAULT_MODEL};
pub use approvals::{Answers, ApprovalRequest, ApprovalWrite, Decision, Submitted, denial_output};
pub use executor::{DEFAULT_HTTP_TIMEOUT, Executor, MAX_HTTP_TIMEOUT, REDACTED};
pub use forks::ForkRequest;
pub use history::{StoredHistory, StoredMessage};
pub use ids::{AgentId, FrameId, Key, MessageId, SessionId, TurnId, UserId};
pub use input::{Input, Mode, NULL_CHARACTERS, check_name, check_text, missing_pk};
pub use limits::{REQUESTS_POLICY, RateState, TURNS_POLICY, WINDOW_SECS, minute_window};
pub use mcp_servers::{
    AgentMcpLink, HEADERS_CONTEXT, Headers, LinkedMcpServer, McpLinkChanges, McpLinkFields, McpServer,
    McpServerChanges, McpServerFields, SERVERS_PER_AGENT, mcp_tool_name, parse_mcp_tool_name,
};
pub use sessions::{Message, NewSession, Session, ToolCallRecord, Usage};
pub use states::{Approval, ErrorCode, ResponseStatus, Role, ToolCallStatus};
pub use templates::{Template, TemplateChanges, TemplateFields, TemplateScope};
pub use tools::{
    MCP_PREFIX, Tool, ToolCall, ToolChanges, ToolFields, ToolType, is_reserved_tool_name, is_valid_tool_name,
};
pub use turns::{
    MessageRequest, MessageWrite, PendingToolCalls, ToolOutput, ToolOutputRequest, ToolOutputWrite, build_instructions,
};
pub use usage::{
    Breakdown, Budget, BudgetPeriods, DEFAULT_DAYS, HourRange, Period, TurnUsage, UsageBucket, UsageQuery, UsageReport,
    UsageRow, budget_periods,
};
