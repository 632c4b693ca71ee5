//! `/api/agents/`: agent profiles.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, INVALID_PAGE, PageParams, ValidationErrors};
use crate::domain::{Agent, AgentChanges, AgentFields, Mode};
use crate::domain::{AgentId, Caller};
use crate::error::Result;
use crate::state::AppState;

const LISTED: &str = "A page of the agents you can see.";
const CREATED: &str = "Created: the new agent.";
const FOUND: &str = "The agent.";
const SAVED: &str = "Saved: the updated agent.";
const NOT_FOUND: &str = "No agent with this id, or not yours to see.";

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(retrieve, replace, patch, destroy))
}

/// List agent profiles, oldest first.
#[utoipa::path(operation_id = "agents_list", get, path = "/api/agents/", tag = "agents", params(PageParams),
    responses((status = 200, description = LISTED, body = Page<Agent>), (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<Agent>>> {
    Ok(Json(query.page(state.store.list_agents(&caller, query.slice()).await?)?))
}

/// Create an agent profile. Setting `is_default` clears it on the owner's other agents.
#[utoipa::path(operation_id = "agents_create", post, path = "/api/agents/", tag = "agents", request_body = AgentChanges,
    responses((status = 201, description = CREATED, body = Agent), (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Agent>)> {
    let changes = AgentChanges::parse_configured(&body, Mode::Create, &state.config)?;
    let owner = caller.owner_for(changes.owner);
    Ok((StatusCode::CREATED, Json(state.store.create_agent(owner, changes.apply(AgentFields::default())).await?)))
}

#[utoipa::path(operation_id = "agents_retrieve", get, path = "/api/agents/{id}/", tag = "agents", params(("id" = i64, Path)),
    responses((status = 200, description = FOUND, body = Agent), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn retrieve(State(state): State<AppState>, caller: Caller, Id(id): Id<AgentId>) -> Result<Json<Agent>> {
    Ok(Json(state.store.get_agent(&caller, id).await?))
}

/// Replace an agent profile (`name` required).
#[utoipa::path(operation_id = "agents_replace", put, path = "/api/agents/{id}/", tag = "agents", params(("id" = i64, Path)), request_body = AgentChanges,
    responses((status = 200, description = SAVED, body = Agent), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<AgentId>,
    JsonBody(body): JsonBody,
) -> Result<Json<Agent>> {
    Ok(Json(
        state
            .store
            .update_agent(&caller, id, AgentChanges::parse_configured(&body, Mode::Replace, &state.config)?)
            .await?,
    ))
}

/// Change some fields of an agent profile.
#[utoipa::path(operation_id = "agents_patch", patch, path = "/api/agents/{id}/", tag = "agents", params(("id" = i64, Path)), request_body = AgentChanges,
    responses((status = 200, description = SAVED, body = Agent), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<AgentId>,
    JsonBody(body): JsonBody,
) -> Result<Json<Agent>> {
    Ok(Json(
        state
            .store
            .update_agent(&caller, id, AgentChanges::parse_configured(&body, Mode::Patch, &state.config)?)
            .await?,
    ))
}

/// Delete an agent profile with its tool links, sessions, messages and agent-scoped templates.
#[utoipa::path(operation_id = "agents_destroy", delete, path = "/api/agents/{id}/", tag = "agents", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn destroy(State(state): State<AppState>, caller: Caller, Id(id): Id<AgentId>) -> Result<StatusCode> {
    state.store.delete_agent(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
