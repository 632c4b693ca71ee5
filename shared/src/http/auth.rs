//! Accounts: `/api/auth/` (login, logout, me), `/api/tokens/` (the caller's API tokens), `/api/users/`
//! (staff only) and the unauthenticated `/api/health/`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ClientAddress, Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, PageParams, STAFF_ONLY, ValidationErrors};
use crate::accounts::{self, IssuedToken};
use crate::domain::wire::present;
use crate::domain::{Caller, UserId};
use crate::domain::{Credentials, Mode, NewApiToken, UserWrite};
use crate::error::{Error, Result};
use crate::state::{AppState, Health};
use crate::store::{TokenInfo, User};

const NOT_FOUND: &str = "No user with this id.";

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, patch_user, delete_user))
        .routes(routes!(health))
}

/// Exchange a username and password for a short-lived token (12 hours) for the pages and tools.
#[utoipa::path(post, path = "/api/auth/login/", operation_id = "auth_login", tag = "auth", request_body = Credentials,
    security(()),
    responses((status = 200, description = "Logged in: a new token, good for 12 hours.", body = IssuedToken),
        (status = 400, description = "Wrong credentials (the same answer for an unknown user).", body = ValidationErrors),
        (status = 429, description = "Too many failed logins for this username, or attempts from this address: \
            `Retry-After` says how many seconds to wait.", body = ErrorDetail,
            headers(("Retry-After" = u64, description = "Seconds until a login is accepted again.")))))]
async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    JsonBody(body): JsonBody,
) -> Result<Json<IssuedToken>> {
    let Credentials { username, password } = Credentials::parse(&body, Mode::Create, &state.config.limits)?;
    let (username, password) = (present("username", username)?, present("password", password)?);
    Ok(Json(accounts::login(&state, &username, &password, &address).await?))
}

/// Revoke the token this request was made with.
#[utoipa::path(post, path = "/api/auth/logout/", operation_id = "auth_logout", tag = "auth",
    responses((status = 204, description = "Logged out: the token used is revoked.")))]
async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode> {
    let token = caller.token_id.ok_or(Error::NotFound)?;
    state.store.revoke_token(Some(caller.id), token).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the token belongs to.
#[utoipa::path(get, path = "/api/auth/me/", operation_id = "auth_me", tag = "auth",
    responses((status = 200, description = "The user the token belongs to.", body = User)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<User>> {
    Ok(Json(state.store.get_user(caller.id).await?))
}

/// The caller's API tokens (never their secrets).
#[utoipa::path(get, path = "/api/tokens/", operation_id = "tokens_list", tag = "auth", params(PageParams),
    responses((status = 200, description = "A page of your API tokens, without their secrets.", body = Page<TokenInfo>)))]
async fn list_tokens(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<TokenInfo>>> {
    Ok(Json(query.page(state.store.list_tokens(caller.id, query.slice()).await?)?))
}

/// Create an API token for the caller; its secret is in this answer only.
#[utoipa::path(post, path = "/api/tokens/", operation_id = "tokens_create", tag = "auth", request_body = NewApiToken,
    responses((status = 201, description = "Created: the new token, shown only this once.", body = IssuedToken),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<IssuedToken>)> {
    let request = NewApiToken::parse(&body, Mode::Create, &state.config.limits)?;
    let name = present("name", request.name)?;
    let issued = accounts::issue_api_token(&state.store, caller.id, &name, request.expires_in_days).await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Revoke one of the caller's tokens.
#[utoipa::path(delete, path = "/api/tokens/{id}/", operation_id = "tokens_revoke", tag = "auth", params(("id" = i64, Path)),
    responses((status = 204, description = "Revoked."), (status = 404, description = "No token with this id, or not yours.", body = ErrorDetail)))]
async fn revoke_token(State(state): State<AppState>, caller: Caller, Id(id): Id) -> Result<StatusCode> {
    state.store.revoke_token(Some(caller.id), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All users (staff only).
#[utoipa::path(get, path = "/api/users/", operation_id = "users_list", tag = "auth", params(PageParams),
    responses((status = 200, description = "A page of users.", body = Page<User>), (status = 403, description = STAFF_ONLY, body = ErrorDetail)))]
async fn list_users(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<User>>> {
    caller.require_staff()?;
    Ok(Json(query.page(state.store.list_users(query.slice()).await?)?))
}

/// Create a user (staff only).
#[utoipa::path(post, path = "/api/users/", operation_id = "users_create", tag = "auth", request_body = UserWrite,
    responses((status = 201, description = "Created: the new user.", body = User),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 403, description = STAFF_ONLY, body = ErrorDetail)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<User>)> {
    caller.require_staff()?;
    let user =
        accounts::create_user(&state.store, UserWrite::parse(&body, Mode::Create, &state.config.limits)?).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/api/users/{id}/", operation_id = "users_retrieve", tag = "auth", params(("id" = i64, Path)),
    responses((status = 200, description = "The user.", body = User), (status = 403, description = STAFF_ONLY, body = ErrorDetail),
        (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn get_user(State(state): State<AppState>, caller: Caller, Id(id): Id<UserId>) -> Result<Json<User>> {
    caller.require_staff()?;
    Ok(Json(state.store.get_user(id).await?))
}

/// Change a user: username, password, `is_staff`, `is_active` (deactivating revokes its tokens). Staff only.
#[utoipa::path(patch, path = "/api/users/{id}/", operation_id = "users_patch", tag = "auth", params(("id" = i64, Path)),
    request_body = UserWrite,
    responses((status = 200, description = "Saved: the updated user.", body = User),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors), (status = 403, description = STAFF_ONLY, body = ErrorDetail),
        (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn patch_user(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<UserId>,
    JsonBody(body): JsonBody,
) -> Result<Json<User>> {
    caller.require_staff()?;
    Ok(Json(
        accounts::update_user(&state.store, id, UserWrite::parse(&body, Mode::Patch, &state.config.limits)?).await?,
    ))
}

/// Delete a user and everything it owns. Staff only; not oneself.
#[utoipa::path(delete, path = "/api/users/{id}/", operation_id = "users_destroy", tag = "auth", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 400, description = "A user cannot delete themselves.", body = ErrorDetail),
        (status = 403, description = STAFF_ONLY, body = ErrorDetail), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn delete_user(State(state): State<AppState>, caller: Caller, Id(id): Id<UserId>) -> Result<StatusCode> {
    caller.require_staff()?;
    accounts::delete_user(&state.store, &caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where the health check is served: the schema middleware lets it through, since it checks the schema
/// itself (one database statement in all).
pub const HEALTH_PATH: &str = "/api/health/";

/// Readiness, without credentials: the database answers and its schema is current, and a model provider is
/// configured. Costs one database statement; never shows a secret.
#[utoipa::path(get, path = "/api/health/", operation_id = "health_check", tag = "health", security(()),
    responses((status = 200, description = "Ready: every check passed.", body = Health),
        (status = 503, description = "Not ready: the failing checks say why (`status` is `unavailable`).", body = Health)))]
async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let health = state.health().await;
    (if health.is_ready() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(health))
}
