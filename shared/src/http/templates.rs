//! `/api/templates/`: prompt templates, scoped to an agent or global.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, INVALID_PAGE, INVALID_QUERY, PageParams, ValidationErrors};
use crate::domain::Caller;
use crate::domain::{Mode, Template, TemplateChanges, TemplateScope};
use crate::error::{Error, Result};
use crate::state::AppState;

const LISTED: &str = "A page of the templates you can see.";
const CREATED: &str = "Created: the new template.";
const FOUND: &str = "The template.";
const SAVED: &str = "Saved: the updated template.";
const NOT_FOUND: &str = "No template with this id, or not yours to see.";

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(retrieve, replace, patch, destroy))
}

fn scope(query: &ListQuery) -> Result<TemplateScope> {
    let agent = query.id_filter("agent")?;
    let filter = match query.param("scope") {
        None | Some("" | "all") => ScopeFilter::All,
        Some("global") => ScopeFilter::Global,
        // An agent's templates are asked for: a scope other than `global` does not matter.
        Some(_) if agent.is_some() => ScopeFilter::All,
        Some(other) => return Err(Error::field("scope", format!("\"{other}\" is not a valid choice."))),
    };
    match (agent, filter) {
        (Some(_), ScopeFilter::Global) => {
            Err(Error::field("scope", "Global templates have no agent; drop ?agent= or ?scope=."))
        }
        (Some(agent), ScopeFilter::All) => Ok(TemplateScope::Agent(agent)),
        (None, ScopeFilter::Global) => Ok(TemplateScope::Global),
        (None, ScopeFilter::All) => Ok(TemplateScope::All),
    }
}

// The parsed `?scope=`, and its schema in the document.
/// `?scope=` for the OpenAPI document: `all` (the default) or `global`.
#[derive(utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum ScopeFilter {
    All,
    Global,
}

/// List templates, oldest first; `?agent=` keeps one agent's, `?scope=global` the global ones.
#[utoipa::path(operation_id = "templates_list", get, path = "/api/templates/", tag = "templates",
    params(PageParams, ("agent" = Option<i64>, Query, description = "Only this agent's templates"),
        ("scope" = inline(Option<ScopeFilter>), Query, description = "`global`: only templates with no agent")),
    responses((status = 200, description = LISTED, body = Page<Template>), (status = 400, description = INVALID_QUERY, body = ValidationErrors),
        (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<Template>>> {
    Ok(Json(query.page(state.store.list_templates(&caller, scope(&query)?, query.slice()).await?)?))
}

/// Create a template. Setting `is_default` clears it on the other templates of the same scope.
#[utoipa::path(operation_id = "templates_create", post, path = "/api/templates/", tag = "templates", request_body = TemplateChanges,
    responses((status = 201, description = CREATED, body = Template), (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Template>)> {
    let changes = TemplateChanges::parse(&body, Mode::Create, &state.config.limits)?;
    let owner = caller.owner_for(changes.owner);
    Ok((StatusCode::CREATED, Json(state.store.create_template(&caller, owner, changes).await?)))
}

#[utoipa::path(operation_id = "templates_retrieve", get, path = "/api/templates/{id}/", tag = "templates", params(("id" = i64, Path)),
    responses((status = 200, description = FOUND, body = Template), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn retrieve(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<Json<Template>> {
    Ok(Json(state.store.get_template(&caller, id).await?))
}

#[utoipa::path(operation_id = "templates_replace", put, path = "/api/templates/{id}/", tag = "templates", params(("id" = i64, Path)), request_body = TemplateChanges,
    responses((status = 200, description = SAVED, body = Template), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<Template>> {
    Ok(Json(
        state
            .store
            .update_template(&caller, id, TemplateChanges::parse(&body, Mode::Replace, &state.config.limits)?)
            .await?,
    ))
}

#[utoipa::path(operation_id = "templates_patch", patch, path = "/api/templates/{id}/", tag = "templates", params(("id" = i64, Path)), request_body = TemplateChanges,
    responses((status = 200, description = SAVED, body = Template), (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    JsonBody(body): JsonBody,
) -> Result<Json<Template>> {
    Ok(Json(
        state
            .store
            .update_template(&caller, id, TemplateChanges::parse(&body, Mode::Patch, &state.config.limits)?)
            .await?,
    ))
}

#[utoipa::path(operation_id = "templates_destroy", delete, path = "/api/templates/{id}/", tag = "templates", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn destroy(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode> {
    state.store.delete_template(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
