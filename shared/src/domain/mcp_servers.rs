//! MCP servers (Model Context Protocol, Streamable HTTP) as tool sources, agents' links to them, and the
//! names their tools are offered to the model under.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};

use super::ids::{AgentId, UserId};
use super::input::Input;
use super::tools::MCP_PREFIX;
use super::wire::{Bool, FieldKind, KeyField, Text, body, present};
use crate::config::Limits;
use crate::error::Result;

/// An MCP server's header values as the API takes them (never shows them: see [`McpServer::header_names`]).
pub type Headers = BTreeMap<String, String>;

/// Headers one server may carry.
pub const MAX_HEADERS: usize = 16;
/// Characters of one header value.
pub const MAX_HEADER_VALUE_CHARS: usize = 4096;
/// Names in `allowed_tools`.
pub const MAX_ALLOWED_TOOLS: usize = 128;
/// Characters of a URL.
pub const MAX_URL_CHARS: usize = 2000;
/// What a server's sealed header values are bound to (AES-GCM's associated data): the column they live in.
pub const HEADERS_CONTEXT: &str = "mcp_servers.headers_sealed";

/// MCP servers one agent may link: each is listed at every turn's start.
pub const SERVERS_PER_AGENT: usize = 8;

/// An MCP server Lambent calls tools on, over Streamable HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "everything", "owner": 2, "url": "https://mcp.example.com/mcp",
    "header_names": ["Authorization"], "allowed_tools": [], "is_active": true,
    "created_at": "2026-12-07T20:14:11.000000Z"}))]
pub struct McpServer {
    pub id: i64,
    pub name: String,
    #[schema(value_type = Option<i64>)]
    pub owner: Option<UserId>,
    /// The server's Streamable HTTP endpoint.
    pub url: String,
    /// The names of the headers sent with every request to the server; their values are write-only.
    pub header_names: Vec<String>,
    /// The tools of the server agents may use; empty = all.
    pub allowed_tools: Vec<String>,
    pub is_active: bool,
    pub created_at: String,
}

/// Every writable field of a server, as stored. `headers`: `None` keeps what is stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct McpServerFields {
    pub name: String,
    pub url: String,
    pub headers: Option<Headers>,
    pub allowed_tools: Vec<String>,
    pub is_active: bool,
}

impl From<&McpServer> for McpServerFields {
    fn from(s: &McpServer) -> Self {
        Self {
            name: s.name.clone(),
            url: s.url.clone(),
            headers: None,
            allowed_tools: s.allowed_tools.clone(),
            is_active: s.is_active,
        }
    }
}

/// A JSON value read by `parse` (not null), documented by `schema`.
#[derive(Clone, Copy)]
pub struct Parsed<T> {
    parse: fn(&Value) -> std::result::Result<T, String>,
    schema: fn() -> RefOr<Schema>,
}

impl<T> FieldKind for Parsed<T> {
    type Out = T;

    fn read(&self, input: &mut Input<'_>, field: &str, required: bool, _: &Limits) -> Option<T> {
        let value = input.json(field, required)?;
        match (self.parse)(&value) {
            Ok(parsed) => Some(parsed),
            Err(message) => {
                input.error(field, message);
                None
            }
        }
    }

    fn schema(&self, _: &Limits) -> RefOr<Schema> {
        (self.schema)()
    }
}

fn parse_url(value: &Value) -> std::result::Result<String, String> {
    let url = value.as_str().ok_or("Not a valid string.")?;
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!("Ensure this field has no more than {MAX_URL_CHARS} characters."));
    }
    let parsed = url::Url::parse(url).map_err(|_| "Enter a valid URL.".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err("An MCP server's URL must be http:// or https:// with a host.".into());
    }
    Ok(url.to_owned())
}

fn url_schema() -> RefOr<Schema> {
    ObjectBuilder::new().schema_type(Type::String).max_length(Some(MAX_URL_CHARS)).into()
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_headers(value: &Value) -> std::result::Result<Headers, String> {
    let object = value.as_object().ok_or("Must be an object of header names to values.")?;
    if object.len() > MAX_HEADERS {
        return Err(format!("At most {MAX_HEADERS} headers."));
    }
    let mut headers = Headers::new();
    for (name, value) in object {
        if name.is_empty() || name.len() > 100 || !name.bytes().all(is_token_char) {
            return Err(format!("\"{}\" is not a valid header name.", name.chars().take(100).collect::<String>()));
        }
        let lower = name.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "host"
                | "content-length"
                | "content-type"
                | "accept"
                | "mcp-session-id"
                | "connection"
                | "transfer-encoding"
        ) {
            return Err(format!("The header \"{name}\" is set by Lambent itself."));
        }
        // The value is never echoed: it may be a secret.
        let value = value.as_str().ok_or_else(|| format!("The value of \"{name}\" must be a string."))?;
        if value.chars().count() > MAX_HEADER_VALUE_CHARS
            || value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Err(format!(
                "The value of \"{name}\" must be at most {MAX_HEADER_VALUE_CHARS} characters, without control characters."
            ));
        }
        headers.insert(name.clone(), value.to_owned());
    }
    Ok(headers)
}

fn headers_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::RefOr(ObjectBuilder::new().schema_type(Type::String).into())))
        .into()
}

fn parse_names(value: &Value) -> std::result::Result<Vec<String>, String> {
    let items = value.as_array().ok_or("Expected a list of items but got type \"{}\".".replace("{}", kind(value)))?;
    if items.len() > MAX_ALLOWED_TOOLS {
        return Err(format!("Ensure this field has no more than {MAX_ALLOWED_TOOLS} elements."));
    }
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(name) if !name.is_empty() && name.chars().count() <= 128 => names.push(name.to_owned()),
            _ => return Err("Each tool name must be a string of 1 to 128 characters.".into()),
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

fn names_schema() -> RefOr<Schema> {
    ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).max_items(Some(MAX_ALLOWED_TOOLS)).into()
}

body! {
    /// The request body of MCP server writes, for the OpenAPI document.
    #[schema(name = "McpServerWrite", example = {"name": "everything", "url": "https://mcp.example.com/mcp",
        "headers": {"Authorization": "Bearer ..."}, "allowed_tools": ["echo"]})]
    pub struct McpServerChanges {
        /// Required on create and PUT; at most 200 characters.
        name: String = Text::new().max(|_| 200).required(),
        /// Required on create and PUT: the server's Streamable HTTP endpoint (http or https). A private,
        /// loopback or link-local host is refused at call time unless it is in LAMBENT_TOOL_HOSTS.
        url: String = Parsed { parse: parse_url, schema: url_schema }.required(),
        /// Write-only: header names to values sent with every request (e.g. `Authorization`). Stored sealed
        /// (AES-256-GCM under LAMBENT_SECRETS_KEY), never returned; absent on an update keeps them, `{}`
        /// clears them. At most 16.
        headers: Headers = Parsed { parse: parse_headers, schema: headers_schema },
        /// Tool names agents may use; empty (the default) = all the server has.
        allowed_tools: Vec<String> = Parsed { parse: parse_names, schema: names_schema },
        is_active: bool = Bool,
    }
}

impl McpServerChanges {
    pub fn apply(self, base: McpServerFields) -> McpServerFields {
        McpServerFields {
            name: self.name.unwrap_or(base.name),
            url: self.url.unwrap_or(base.url),
            headers: self.headers.or(base.headers),
            allowed_tools: self.allowed_tools.unwrap_or(base.allowed_tools),
            is_active: self.is_active.unwrap_or(base.is_active),
        }
    }

    /// For a create: `parse` has already required `name` and `url`.
    pub fn into_new(self) -> Result<McpServerFields> {
        let name = present("name", self.name.clone())?;
        let url = present("url", self.url.clone())?;
        Ok(self.apply(McpServerFields { name, url, is_active: true, ..Default::default() }))
    }
}

/// An MCP server linked to an agent; `enabled` switches it off without unlinking, `require_approval` makes
/// every call of its tools wait for a person's decision.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "agent": 1, "mcp_server": 1, "enabled": true, "require_approval": false}))]
pub struct AgentMcpLink {
    pub id: i64,
    #[schema(value_type = i64)]
    pub agent: AgentId,
    pub mcp_server: i64,
    pub enabled: bool,
    pub require_approval: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct McpLinkFields {
    pub agent: AgentId,
    pub mcp_server: i64,
    pub enabled: bool,
    pub require_approval: bool,
}

impl From<&AgentMcpLink> for McpLinkFields {
    fn from(l: &AgentMcpLink) -> Self {
        Self { agent: l.agent, mcp_server: l.mcp_server, enabled: l.enabled, require_approval: l.require_approval }
    }
}

body! {
    /// The request body of agent–MCP server link writes, for the OpenAPI document.
    #[schema(name = "AgentMcpServerWrite", example = {"agent": 1, "mcp_server": 1, "require_approval": true})]
    pub struct McpLinkChanges {
        agent: AgentId = AgentId::PK.required(),
        mcp_server: i64 = i64::PK.required(),
        /// Default true.
        enabled: bool = Bool,
        /// Default false: true makes every call of the server's tools wait for `POST /api/agent/approvals/`.
        require_approval: bool = Bool,
    }
}

impl McpLinkChanges {
    pub fn into_new(self) -> Result<McpLinkFields> {
        Ok(McpLinkFields {
            agent: present("agent", self.agent)?,
            mcp_server: present("mcp_server", self.mcp_server)?,
            enabled: self.enabled.unwrap_or(true),
            require_approval: self.require_approval.unwrap_or(false),
        })
    }

    pub fn apply(self, base: McpLinkFields) -> McpLinkFields {
        McpLinkFields {
            agent: self.agent.unwrap_or(base.agent),
            mcp_server: self.mcp_server.unwrap_or(base.mcp_server),
            enabled: self.enabled.unwrap_or(base.enabled),
            require_approval: self.require_approval.unwrap_or(base.require_approval),
        }
    }
}

/// A server an agent's turn uses: what the turn's read finds for each enabled link of an active server.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkedMcpServer {
    pub id: i64,
    pub name: String,
    pub url: String,
    /// `v1:…` as [`crate::auth`] sealed it; `None` without headers.
    pub headers_sealed: Option<String>,
    pub allowed_tools: Vec<String>,
    pub require_approval: bool,
}

// The names MCP tools are offered to the model under.
//
// `mcp__<server id>__<tool name>`: the prefix `mcp__` is reserved (no tool of Lambent's own may start with it:
// see `is_reserved_tool_name`), so an MCP tool never collides with the agent's own tools; the server's id
// keeps two servers' tools apart. Reversed by reading the id between the two `__` and taking the rest as the
// tool's name. A tool whose name would not fit (over 64 characters in all, or characters the Responses API
// refuses) is offered as `mcp__<id>__<its first valid characters>_<8 hex of its name's SHA-256>`, and the
// turn maps that back through the server's listing.

/// The name an MCP server's tool is offered under.
pub fn mcp_tool_name(server: i64, tool: &str) -> String {
    let plain = format!("{MCP_PREFIX}{server}__{tool}");
    if super::tools::is_valid_tool_name(&plain) {
        return plain;
    }
    use sha2::Digest;
    let hash = hex::encode(&sha2::Sha256::digest(tool.as_bytes())[..4]);
    let head = format!("{MCP_PREFIX}{server}__");
    let room = 64usize.saturating_sub(head.len() + 1 + hash.len());
    let kept: String =
        tool.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').take(room).collect();
    format!("{head}{kept}_{hash}")
}

/// The server id and the name part of an offered MCP tool name (the tool's own name unless it was hashed).
pub fn parse_mcp_tool_name(name: &str) -> Option<(i64, &str)> {
    let rest = name.strip_prefix(MCP_PREFIX)?;
    let (id, tool) = rest.split_once("__")?;
    Some((id.parse().ok()?, tool))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcp_tool_names_round_trip_and_fit_the_limit() {
        assert_eq!(mcp_tool_name(7, "echo"), "mcp__7__echo");
        assert_eq!(parse_mcp_tool_name("mcp__7__echo"), Some((7, "echo")));
        assert_eq!(parse_mcp_tool_name("mcp__7__get__sum"), Some((7, "get__sum")));
        let long = "x".repeat(80);
        let name = mcp_tool_name(12345, &long);
        assert!(super::super::tools::is_valid_tool_name(&name), "{name}");
        assert_ne!(name, mcp_tool_name(12345, &"x".repeat(81)), "hashed names stay apart");
        let dotted = mcp_tool_name(3, "files.read");
        assert!(super::super::tools::is_valid_tool_name(&dotted) && dotted.starts_with("mcp__3__filesread_"));
        assert_eq!(parse_mcp_tool_name(&dotted).map(|(id, _)| id), Some(3));
        assert!(parse_mcp_tool_name("echo").is_none() && parse_mcp_tool_name("mcp__x__echo").is_none());
    }

    #[test]
    fn header_values_are_checked_without_being_echoed() {
        let err = parse_headers(&serde_json::json!({"X-Key": "line\nbreak s3cret"})).unwrap_err();
        assert!(err.contains("X-Key") && !err.contains("s3cret"), "{err}");
        assert!(parse_headers(&serde_json::json!({"bad name": "v"})).is_err());
        assert!(parse_headers(&serde_json::json!({"Host": "v"})).is_err());
        assert_eq!(parse_headers(&serde_json::json!({"Authorization": "Bearer x"})).unwrap().len(), 1);
    }
}
