//! `/api/tools/`: tools agents may call.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, INVALID_PAGE, PageParams, ValidationErrors};
use crate::domain::Caller;
use crate::domain::{Mode, Tool, ToolChanges};
use crate::error::Result;
use crate::state::AppState;

const LISTED: &str = "A page of the tools you can see.";
const CREATED: &str = "Created: the new tool.";
const FOUND: &str = "The tool.";
const SAVED: &str = "Saved: the updated tool.";
const NOT_FOUND: &str = "No tool with this id, or not yours to see.";

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(retrieve, replace, patch, destroy))
}

/// List tools, oldest first.
#[utoipa::path(operation_id = "tools_list", get, path = "/api/tools/", tag = "tools", params(PageParams),
    responses((status = 200, description = LISTED, body = Page<Tool>), (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<Tool>>> {
    Ok(Json(query.page(state.store.list_tools(&caller, query.slice()).await?)?))
}

/// Create a tool: a function tool with a JSON Schema `parameters` object, or a custom tool with an optional `format`.
#[utoipa::path(operation_id = "tools_create", post, path = "/api/tools/", tag = "tools", request_body = ToolChanges,
    responses((status = 201, description = CREATED, body = Tool), (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Tool>)> {
    let changes = ToolChanges::parse(&body, Mode::Create, &state.config.limits)?;
    Ok((StatusCode::CREATED, Json(state.store.create_tool(caller.owner_for(changes.owner), changes).await?)))
}

#[utoipa::path(operation_id = "tools_retrieve", get, path = "/api/tools/{id}/", tag = "tools", params(("id" = i64, Path)),
    responses((status = 200, description = FOUND, body = Tool), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn retrieve(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Json<Tool>> {
    Ok(Json(state.store.get_tool(&caller, id).await?))
}

/// Replace a tool (`name` required).
#[utoipa::path(operation_id = "tools_replace", put, path = "/api/tools/{id}/", tag = "tools", params(("id" = i64, Path)), request_body = ToolChanges,
    responses((status = 200, description = SAVED, body = Tool), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<Tool>> {
    Ok(Json(
        state.store.update_tool(&caller, id, ToolChanges::parse(&body, Mode::Replace, &state.config.limits)?).await?,
    ))
}

/// Change some fields of a tool.
#[utoipa::path(operation_id = "tools_patch", patch, path = "/api/tools/{id}/", tag = "tools", params(("id" = i64, Path)), request_body = ToolChanges,
    responses((status = 200, description = SAVED, body = Tool), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<Tool>> {
    Ok(Json(state.store.update_tool(&caller, id, ToolChanges::parse(&body, Mode::Patch, &state.config.limits)?).await?))
}

/// Delete a tool and its agent links.
#[utoipa::path(operation_id = "tools_destroy", delete, path = "/api/tools/{id}/", tag = "tools", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn destroy(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode> {
    state.store.delete_tool(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
