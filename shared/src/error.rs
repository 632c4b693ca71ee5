//! The crate's one error type and its HTTP face, in Django REST framework's shapes.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// DRF's validation body: `{"field": ["message", ...]}`; `non_field_errors` for whole-object problems.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(BTreeMap<String, Vec<String>>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_default().push(message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn single(field: &str, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.add(field, message);
        errors
    }

    /// `Ok(())` when nothing was recorded, the validation error otherwise.
    pub fn into_result(self) -> Result<()> {
        if self.is_empty() { Ok(()) } else { Err(Error::Validation(self)) }
    }

    pub fn to_json(&self) -> Value {
        json!(self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input: {0:?}")]
    Validation(FieldErrors),
    /// A 400 that is not about one field: `{"detail": ...}`.
    #[error("{0}")]
    BadRequest(String),
    #[error("JSON parse error - {0}")]
    JsonParse(String),
    #[error("Not found.")]
    NotFound,
    /// A 404 with a more helpful detail than DRF's default.
    #[error("{0}")]
    Missing(String),
    /// No or bad credentials (401), with DRF's message.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Visible but not the caller's to change (403).
    #[error("You do not have permission to perform this action.")]
    Forbidden,
    /// Another turn is running on the session (409, with its id).
    #[error("Another turn is still running on this session; wait for its done event.")]
    TurnInProgress(String),
    /// A request with the same `Idempotency-Key` is still running (409, with its turn's id).
    #[error("A request with this Idempotency-Key is still running; its events are at /api/sessions/{{id}}/events/.")]
    KeyInProgress(String),
    /// An `Idempotency-Key` reused for a different request (422).
    #[error("This Idempotency-Key was already used for a different request.")]
    KeyReused,
    /// The request conflicts with the object's state (409).
    #[error("{0}")]
    Conflict(String),
    /// A dependency is not configured or not reachable (503), e.g. no OpenAI API key.
    #[error("{0}")]
    Unavailable(String),
    #[error("Invalid page.")]
    InvalidPage,
    #[error("Method \"{0}\" not allowed.")]
    MethodNotAllowed(Method),
    #[error("Unsupported media type \"{0}\" in request.")]
    UnsupportedMediaType(String),
    #[error("Request body is too large.")]
    PayloadTooLarge,
    /// The schema and the code disagree (changed or missing migrations): an operator must act.
    #[error("migration error: {0}")]
    Migration(String),
    #[error("configuration error: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(#[from] libsql::Error),
    /// The database could not be reached, or answered that it cannot serve (503 with `Retry-After`).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A server-side failure: what was being done, and why it failed (answered opaquely, logged whole).
    pub fn internal(context: &str, source: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {source}"))
    }

    /// A state the code should never reach.
    pub fn bug(context: impl Into<String>) -> Self {
        Self::Internal(context.into())
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::BadRequest(_) | Self::JsonParse(_) => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::Missing(_) | Self::InvalidPage => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::TurnInProgress(_) | Self::KeyInProgress(_) => StatusCode::CONFLICT,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Migration(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config(_) | Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body a client sees. Server-side failures are opaque: their detail goes to the log only.
    pub fn body(&self) -> Value {
        match self {
            Self::Validation(errors) => errors.to_json(),
            Self::TurnInProgress(turn_id) | Self::KeyInProgress(turn_id) => {
                json!({"detail": self.to_string(), "turn_id": turn_id})
            }
            Self::Migration(_) => json!({
                "detail": "The database schema is not up to date with this version; run `lambent migrate`."
            }),
            Self::Config(_) | Self::Database(_) | Self::Internal(_) => {
                json!({ "detail": "A server error occurred." })
            }
            Self::DatabaseUnavailable(_) => {
                json!({ "detail": "The database is unavailable; try again shortly." })
            }
            other => json!({ "detail": other.to_string() }),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if matches!(self, Self::DatabaseUnavailable(_)) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            // As DRF's token authentication does: say which scheme to use.
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
