//! `/api/mcp-servers/`: MCP servers agents take tools from; `/api/agent-mcp-servers/`: which agents use them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, INVALID_PAGE, INVALID_QUERY, PageParams, ValidationErrors};
use crate::domain::{
    AgentMcpLink, Caller, HEADERS_CONTEXT, Headers, McpLinkChanges, McpServer, McpServerChanges, Mode,
};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::SealedHeaders;

const LISTED: &str = "A page of the MCP servers you can see.";
const CREATED: &str = "Created: the new MCP server (header values are never shown).";
const FOUND: &str = "The MCP server (header values are never shown).";
const SAVED: &str = "Saved: the updated MCP server.";
const NOT_FOUND: &str = "No MCP server with this id, or not yours to see.";
const LINKS_LISTED: &str = "A page of the links between agents and MCP servers you can see.";
const LINK_NOT_FOUND: &str = "No link with this id, or not yours to see.";

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(retrieve, replace, patch, destroy))
}

pub fn links_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_links, create_link)).routes(routes!(
        retrieve_link,
        replace_link,
        patch_link,
        destroy_link
    ))
}

/// Header values sealed with `LAMBENT_SECRETS_KEY` (none: `sealed` is `None`); without a key, headers are
/// refused with a field error rather than stored readable.
fn seal(state: &AppState, headers: &Headers) -> Result<SealedHeaders> {
    let names = headers.keys().cloned().collect();
    if headers.is_empty() {
        return Ok(SealedHeaders { sealed: None, names });
    }
    let key = state.config.secrets_key.as_ref().ok_or_else(|| {
        Error::field("headers", "This server keeps no secrets: set LAMBENT_SECRETS_KEY to store header values.")
    })?;
    let plain = serde_json::to_string(headers).map_err(|e| Error::internal("headers as JSON", e))?;
    Ok(SealedHeaders { sealed: Some(crate::auth::seal(key, HEADERS_CONTEXT, &plain)?), names })
}

/// List MCP servers, oldest first.
#[utoipa::path(operation_id = "mcp_servers_list", get, path = "/api/mcp-servers/", tag = "mcp-servers", params(PageParams),
    responses((status = 200, description = LISTED, body = Page<McpServer>), (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<McpServer>>> {
    Ok(Json(query.page(state.store.list_mcp_servers(&caller, query.slice()).await?)?))
}

/// Add an MCP server (Streamable HTTP). Its tools are listed when a turn of a linked agent starts.
#[utoipa::path(operation_id = "mcp_servers_create", post, path = "/api/mcp-servers/", tag = "mcp-servers", request_body = McpServerChanges,
    responses((status = 201, description = CREATED, body = McpServer), (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<McpServer>)> {
    let fields = McpServerChanges::parse(&body, Mode::Create, &state.config.limits)?.into_new()?;
    let headers = seal(&state, fields.headers.as_ref().unwrap_or(&Headers::new()))?;
    Ok((StatusCode::CREATED, Json(state.store.create_mcp_server(caller.owner_for(None), fields, headers).await?)))
}

#[utoipa::path(operation_id = "mcp_servers_retrieve", get, path = "/api/mcp-servers/{id}/", tag = "mcp-servers", params(("id" = i64, Path)),
    responses((status = 200, description = FOUND, body = McpServer), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn retrieve(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Json<McpServer>> {
    Ok(Json(state.store.get_mcp_server(&caller, id).await?))
}

/// Writes the changes a PUT or PATCH asked for.
async fn update(state: &AppState, caller: &Caller, id: i64, body: &serde_json::Value, mode: Mode) -> Result<McpServer> {
    let changes = McpServerChanges::parse(body, mode, &state.config.limits)?;
    let existing = state.store.mcp_server_to_change(caller, id).await?;
    let fields = changes.apply((&existing).into());
    let headers = fields.headers.as_ref().map(|h| seal(state, h)).transpose()?;
    state.store.update_mcp_server(&existing, fields, headers).await
}

/// Replace an MCP server (`name` and `url` required; headers absent = kept).
#[utoipa::path(operation_id = "mcp_servers_replace", put, path = "/api/mcp-servers/{id}/", tag = "mcp-servers", params(("id" = i64, Path)), request_body = McpServerChanges,
    responses((status = 200, description = SAVED, body = McpServer), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<McpServer>> {
    Ok(Json(update(&state, &caller, id, &body, Mode::Replace).await?))
}

/// Change some fields of an MCP server (`{"headers": {}}` clears its headers).
#[utoipa::path(operation_id = "mcp_servers_patch", patch, path = "/api/mcp-servers/{id}/", tag = "mcp-servers", params(("id" = i64, Path)), request_body = McpServerChanges,
    responses((status = 200, description = SAVED, body = McpServer), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<McpServer>> {
    Ok(Json(update(&state, &caller, id, &body, Mode::Patch).await?))
}

/// Delete an MCP server and its agent links.
#[utoipa::path(operation_id = "mcp_servers_destroy", delete, path = "/api/mcp-servers/{id}/", tag = "mcp-servers", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn destroy(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode> {
    state.store.delete_mcp_server(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List agent–MCP server links, oldest first; `?agent=` keeps one agent's.
#[utoipa::path(operation_id = "agent_mcp_servers_list", get, path = "/api/agent-mcp-servers/", tag = "agent-mcp-servers",
    params(PageParams, ("agent" = Option<i64>, Query, description = "Only this agent's links")),
    responses((status = 200, description = LINKS_LISTED, body = Page<AgentMcpLink>), (status = 400, description = INVALID_QUERY, body = ValidationErrors),
        (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list_links(
    State(state): State<AppState>,
    caller: Caller,
    query: ListQuery,
) -> Result<Json<Page<AgentMcpLink>>> {
    let agent = query.id_filter("agent")?;
    Ok(Json(query.page(state.store.list_agent_mcp_servers(&caller, agent, query.slice()).await?)?))
}

/// Link an MCP server to an agent (at most 8 per agent). A pair can be linked once.
#[utoipa::path(operation_id = "agent_mcp_servers_create", post, path = "/api/agent-mcp-servers/", tag = "agent-mcp-servers", request_body = McpLinkChanges,
    responses((status = 201, description = "Created: the new link.", body = AgentMcpLink), (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<AgentMcpLink>)> {
    let fields = McpLinkChanges::parse(&body, Mode::Create, &state.config.limits)?.into_new()?;
    Ok((StatusCode::CREATED, Json(state.store.create_agent_mcp_server(&caller, fields).await?)))
}

#[utoipa::path(operation_id = "agent_mcp_servers_retrieve", get, path = "/api/agent-mcp-servers/{id}/", tag = "agent-mcp-servers", params(("id" = i64, Path)),
    responses((status = 200, description = "The link.", body = AgentMcpLink), (status = 404, description = LINK_NOT_FOUND, body = ErrorDetail)))]
async fn retrieve_link(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Json<AgentMcpLink>> {
    Ok(Json(state.store.get_agent_mcp_server(&caller, id).await?))
}

#[utoipa::path(operation_id = "agent_mcp_servers_replace", put, path = "/api/agent-mcp-servers/{id}/", tag = "agent-mcp-servers", params(("id" = i64, Path)), request_body = McpLinkChanges,
    responses((status = 200, description = "Saved: the updated link.", body = AgentMcpLink), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = LINK_NOT_FOUND, body = ErrorDetail)))]
async fn replace_link(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<AgentMcpLink>> {
    let changes = McpLinkChanges::parse(&body, Mode::Replace, &state.config.limits)?;
    Ok(Json(state.store.update_agent_mcp_server(&caller, id, changes).await?))
}

/// Change a link, typically `{"require_approval": true}` or `{"enabled": false}`.
#[utoipa::path(operation_id = "agent_mcp_servers_patch", patch, path = "/api/agent-mcp-servers/{id}/", tag = "agent-mcp-servers", params(("id" = i64, Path)), request_body = McpLinkChanges,
    responses((status = 200, description = "Saved: the updated link.", body = AgentMcpLink), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = LINK_NOT_FOUND, body = ErrorDetail)))]
async fn patch_link(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<AgentMcpLink>> {
    let changes = McpLinkChanges::parse(&body, Mode::Patch, &state.config.limits)?;
    Ok(Json(state.store.update_agent_mcp_server(&caller, id, changes).await?))
}

#[utoipa::path(operation_id = "agent_mcp_servers_destroy", delete, path = "/api/agent-mcp-servers/{id}/", tag = "agent-mcp-servers", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = LINK_NOT_FOUND, body = ErrorDetail)))]
async fn destroy_link(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode> {
    state.store.delete_agent_mcp_server(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
