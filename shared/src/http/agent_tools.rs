//! `/api/agent-tools/`: which tools an agent may call.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, INVALID_PAGE, INVALID_QUERY, PageParams, ValidationErrors};
use crate::domain::Caller;
use crate::domain::{AgentToolLink, LinkChanges, Mode};
use crate::error::Result;
use crate::state::AppState;

const LISTED: &str = "A page of the links between agents and tools you can see.";
const CREATED: &str = "Created: the new link.";
const FOUND: &str = "The link.";
const SAVED: &str = "Saved: the updated link.";
const NOT_FOUND: &str = "No link with this id, or not yours to see.";

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(retrieve, replace, patch, destroy))
}

/// List agent-tool links, oldest first; `?agent=` keeps one agent's.
#[utoipa::path(operation_id = "agent_tools_list", get, path = "/api/agent-tools/", tag = "agent-tools",
    params(PageParams, ("agent" = Option<i64>, Query, description = "Only this agent's links")),
    responses((status = 200, description = LISTED, body = Page<AgentToolLink>), (status = 400, description = INVALID_QUERY, body = ValidationErrors),
        (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<AgentToolLink>>> {
    let agent = query.id_filter("agent")?;
    Ok(Json(query.page(state.store.list_agent_tools(&caller, agent, query.slice()).await?)?))
}

/// Link a tool to an agent. A pair can be linked once.
#[utoipa::path(operation_id = "agent_tools_create", post, path = "/api/agent-tools/", tag = "agent-tools", request_body = LinkChanges,
    responses((status = 201, description = CREATED, body = AgentToolLink), (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<AgentToolLink>)> {
    let fields = LinkChanges::parse(&body, Mode::Create, &state.config.limits)?.into_new()?;
    Ok((StatusCode::CREATED, Json(state.store.create_agent_tool(&caller, fields).await?)))
}

#[utoipa::path(operation_id = "agent_tools_retrieve", get, path = "/api/agent-tools/{id}/", tag = "agent-tools", params(("id" = i64, Path)),
    responses((status = 200, description = FOUND, body = AgentToolLink), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn retrieve(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Json<AgentToolLink>> {
    Ok(Json(state.store.get_agent_tool(&caller, id).await?))
}

#[utoipa::path(operation_id = "agent_tools_replace", put, path = "/api/agent-tools/{id}/", tag = "agent-tools", params(("id" = i64, Path)), request_body = LinkChanges,
    responses((status = 200, description = SAVED, body = AgentToolLink), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<AgentToolLink>> {
    Ok(Json(
        state
            .store
            .update_agent_tool(&caller, id, LinkChanges::parse(&body, Mode::Replace, &state.config.limits)?)
            .await?,
    ))
}

/// Change a link, typically `{"enabled": false}`.
#[utoipa::path(operation_id = "agent_tools_patch", patch, path = "/api/agent-tools/{id}/", tag = "agent-tools", params(("id" = i64, Path)), request_body = LinkChanges,
    responses((status = 200, description = SAVED, body = AgentToolLink), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<AgentToolLink>> {
    Ok(Json(
        state
            .store
            .update_agent_tool(&caller, id, LinkChanges::parse(&body, Mode::Patch, &state.config.limits)?)
            .await?,
    ))
}

#[utoipa::path(operation_id = "agent_tools_destroy", delete, path = "/api/agent-tools/{id}/", tag = "agent-tools", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn destroy(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode> {
    state.store.delete_agent_tool(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
