//! `/api/sessions/`: conversations and their messages.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{EventCursor, Id, JsonBody, ListQuery, Page};
use super::openapi::{DELETED, ErrorDetail, INVALID_FIELDS, INVALID_PAGE, INVALID_QUERY, PageParams, ValidationErrors};
use super::sse::stream_response;
use crate::domain::wire::present;
use crate::domain::{Caller, SessionId, TurnId};
use crate::domain::{ForkRequest, Message, Mode, NewSession, Session, ToolCallRecord};
use crate::error::Result;
use crate::state::AppState;

const NOT_FOUND: &str = "No session with this id, or not yours to see.";
const NOT_FOUND_OR_INVALID_PAGE: &str = "No session with this id or not yours to see, or an invalid page.";
use crate::turn;

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(retrieve, destroy))
        .routes(routes!(messages))
        .routes(routes!(tool_calls))
        .routes(routes!(cancel))
        .routes(routes!(fork))
}

/// The session's event stream: served by the streaming function (it may follow a turn for minutes).
pub fn events_api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// List sessions, oldest first; `?agent=` keeps one agent's.
#[utoipa::path(operation_id = "sessions_list", get, path = "/api/sessions/", tag = "sessions",
    params(PageParams, ("agent" = Option<i64>, Query, description = "Only this agent's sessions")),
    responses((status = 200, description = "A page of the sessions you can see.", body = Page<Session>),
        (status = 400, description = INVALID_QUERY, body = ValidationErrors),
        (status = 404, description = INVALID_PAGE, body = ErrorDetail)))]
async fn list(State(state): State<AppState>, caller: Caller, query: ListQuery) -> Result<Json<Page<Session>>> {
    let agent = query.id_filter("agent")?;
    Ok(Json(query.page(state.store.list_sessions(&caller, agent, query.slice()).await?)?))
}

/// Start an empty session with an agent.
#[utoipa::path(operation_id = "sessions_create", post, path = "/api/sessions/", tag = "sessions", request_body = NewSession,
    responses((status = 201, description = "Created: the new session.", body = Session),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors)))]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Session>)> {
    let agent = present("agent", NewSession::parse(&body, Mode::Create, &state.config.limits)?.agent)?;
    Ok((StatusCode::CREATED, Json(state.store.create_session(&caller, agent).await?)))
}

#[utoipa::path(operation_id = "sessions_retrieve", get, path = "/api/sessions/{id}/", tag = "sessions", params(("id" = i64, Path)),
    responses((status = 200, description = "The session.", body = Session), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn retrieve(State(state): State<AppState>, caller: Caller, Id(id): Id<SessionId>) -> Result<Json<Session>> {
    Ok(Json(state.store.get_session(&caller, id).await?))
}

/// Fork a session: a new session of yours holding copies of its messages and tool calls up to and including
/// `message` (default: the last), continuing from there — on the same agent, or on `agent`, whose first turn
/// sends the copied history whole. The original is untouched. A point between a tool call and its output
/// (a response still waiting for outputs) is refused.
#[utoipa::path(operation_id = "sessions_fork", post, path = "/api/sessions/{id}/fork/", tag = "sessions",
    params(("id" = i64, Path)), request_body = ForkRequest,
    responses((status = 201, description = "Created: the fork.", body = Session),
        (status = 400, description = INVALID_FIELDS, body = ValidationErrors),
        (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn fork(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<SessionId>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Session>)> {
    let fork = ForkRequest::parse(&body, Mode::Patch, &state.config.limits)?;
    Ok((StatusCode::CREATED, Json(state.store.fork_session(&caller, id, &fork).await?)))
}

/// Delete a session and its messages.
#[utoipa::path(operation_id = "sessions_destroy", delete, path = "/api/sessions/{id}/", tag = "sessions", params(("id" = i64, Path)),
    responses((status = 204, description = DELETED), (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn destroy(State(state): State<AppState>, caller: Caller, Id(id): Id<SessionId>) -> Result<StatusCode> {
    state.store.delete_session(&caller, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The session's messages, oldest first.
#[utoipa::path(operation_id = "sessions_messages", get, path = "/api/sessions/{id}/messages/", tag = "sessions", params(("id" = i64, Path), PageParams),
    responses((status = 200, description = "A page of the session's messages, oldest first.", body = Page<Message>),
        (status = 404, description = NOT_FOUND_OR_INVALID_PAGE, body = ErrorDetail)))]
async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<SessionId>,
    query: ListQuery,
) -> Result<Json<Page<Message>>> {
    Ok(Json(query.page(state.store.list_messages(&caller, id, query.slice()).await?)?))
}

/// The session's tool calls and what became of them, oldest first.
#[utoipa::path(get, path = "/api/sessions/{id}/tool-calls/", operation_id = "sessions_tool_calls", tag = "sessions",
    params(("id" = i64, Path), PageParams),
    responses((status = 200, description = "A page of the session's tool calls, oldest first.", body = Page<ToolCallRecord>),
        (status = 404, description = NOT_FOUND_OR_INVALID_PAGE, body = ErrorDetail)))]
async fn tool_calls(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<SessionId>,
    query: ListQuery,
) -> Result<Json<Page<ToolCallRecord>>> {
    Ok(Json(query.page(state.store.list_tool_calls(&caller, id, query.slice()).await?)?))
}

/// Replay a session's turn frames and follow a running turn live.
///
/// With `Last-Event-ID` (what a reconnecting EventSource sends) or `?after=<turn_id>:<seq>`: every frame the
/// session recorded after that one. Without: the session's latest turn from its first frame. While a turn is
/// running the stream follows it; it ends once no turn is running and every recorded frame was sent.
#[utoipa::path(get, path = "/api/sessions/{id}/events/", operation_id = "sessions_events", tag = "sessions",
    params(("id" = i64, Path),
        ("after" = Option<String>, Query, description = "Replay after this frame id (`<turn_id>:<seq>`)."),
        ("Last-Event-ID" = Option<String>, Header, description = "As `after`; takes precedence.")),
    responses((status = 200, description = super::sse::SSE_DESCRIPTION, content_type = "text/event-stream", body = String),
        (status = 400, description = "`after` or `Last-Event-ID` is not a frame id.", body = ValidationErrors),
        (status = 404, description = NOT_FOUND, body = ErrorDetail)))]
async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<SessionId>,
    EventCursor(after): EventCursor,
) -> Result<Response> {
    let frames = turn::events(&state, &caller, id, after.as_deref()).await?;
    Ok(stream_response(frames, state.config.sse_keepalive))
}

/// A cancel request, accepted.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CancelAccepted)]
pub struct Cancelling {
    #[schema(value_type = i64)]
    pub session_id: SessionId,
    /// The turn asked to stop; it ends with `error` `cancelled` and `done` `incomplete`.
    #[schema(value_type = String)]
    pub turn_id: TurnId,
    pub status: &'static str,
}

/// Stop the session's running turn.
///
/// The turn stops reading the upstream, stores the partial answer as `incomplete`, and ends with an `error`
/// frame `cancelled` and `done`. The session keeps its last completed response, so the next message works.
#[utoipa::path(post, path = "/api/sessions/{id}/cancel/", operation_id = "sessions_cancel", tag = "sessions",
    params(("id" = i64, Path)),
    responses((status = 202, description = "Cancelling: the running turn stops at its next step.", body = Cancelling),
        (status = 404, description = NOT_FOUND, body = ErrorDetail),
        (status = 409, description = "No turn is running on this session.", body = ErrorDetail)))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id<SessionId>,
) -> Result<(StatusCode, Json<Cancelling>)> {
    let turn_id = turn::cancel(&state, &caller, id).await?;
    Ok((StatusCode::ACCEPTED, Json(Cancelling { session_id: id, turn_id, status: "cancelling" })))
}
