//! The crate's one error type and its HTTP face, in Django REST framework's shapes.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An underlying error kept as the cause of one of ours.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

// DRF's validation body: `{"field": ["message", ...]}`; its schema is `ValidationErrors`.
/// Field name → messages; `non_field_errors` for problems of the whole object.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ValidationErrors, example = json!({"name": ["This field is required."]}))]
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

/// The 400 of a turn whose instructions (the agent's system prompt or a template) name a `{{placeholder}}` the
/// request's `variables` do not fill: DRF's field shape (`variables`, one message per name) plus a `code` and
/// the names, so that a client (the playground) offers the missing fields without reading the English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"variables": ["Missing value for template variable \"customer\"."],
    "code": "missing_variables", "missing_variables": ["customer"]}))]
pub struct MissingVariables {
    // Fields in name order: the body kept the key order it had when built as a `serde_json::Value` map.
    pub code: ValidationCode,
    /// The names without a value, in the order the instructions name them, each once.
    pub missing_variables: Vec<String>,
    /// One message per missing name, as every other field error.
    pub variables: Vec<String>,
}

impl MissingVariables {
    pub fn new(names: Vec<String>) -> Self {
        let variables = names.iter().map(|name| format!("Missing value for template variable \"{name}\".")).collect();
        Self { code: ValidationCode::MissingVariables, missing_variables: names, variables }
    }
}

/// The `code` of a 400 that a client acts on, beyond showing its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidationCode {
    MissingVariables,
}

/// `{"detail": "..."}`: not found, wrong method, wrong content type, bad JSON.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "Not found."}))]
pub struct ErrorDetail {
    pub detail: String,
}

/// A 400: field errors, `{"detail": "JSON parse error - ..."}` for a body that is not JSON at all, or (a
/// message to an agent) the template variables its instructions need and the request does not give.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BadRequest {
    Fields(FieldErrors),
    Detail(ErrorDetail),
    MissingVariables(MissingVariables),
}

/// 409 while another turn runs on the session.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnRunning {
    pub detail: String,
    pub turn_id: String,
}

/// 429 when the caller's daily or monthly token budget is spent.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "Your daily token budget is spent.", "code": "budget_exceeded",
    "resets_at": "2026-12-08T00:00:00.000000Z"}))]
pub struct BudgetExceeded {
    pub detail: String,
    /// Always `budget_exceeded`.
    #[schema(value_type = String)]
    pub code: &'static str,
    /// When the spent period ends (the next UTC midnight, or the first of next month): turns start again then.
    pub resets_at: String,
}

/// The name of the requests-per-minute policy in the headers.
pub const REQUESTS_POLICY: &str = "default";
/// The name of the concurrent-turns policy.
pub const TURNS_POLICY: &str = "turns";
/// The requests-per-minute window, in seconds.
pub const WINDOW_SECS: u64 = 60;

/// One rate-limit policy as it stands for the caller after (or in refusing) a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// `default` (requests per minute) or `turns` (turns running at once).
    pub policy: &'static str,
    /// The limit.
    pub quota: i64,
    /// What is left of it (0 when refused).
    pub remaining: i64,
    /// Seconds until the quota is available again: the minute's end, or (turns) when to look again.
    pub reset: u64,
}

impl RateState {
    /// The `RateLimit-Policy` field: `"default";q=100;w=60`, or `"turns";q=2;qu="concurrent-requests"`.
    pub fn policy_field(&self) -> String {
        match self.policy {
            TURNS_POLICY => format!("\"{}\";q={};qu=\"concurrent-requests\"", self.policy, self.quota),
            _ => format!("\"{}\";q={};w={WINDOW_SECS}", self.policy, self.quota),
        }
    }

    /// The `RateLimit` field: `"default";r=50;t=30`.
    pub fn limit_field(&self) -> String {
        format!("\"{}\";r={};t={}", self.policy, self.remaining.max(0), self.reset)
    }

    /// Puts `RateLimit-Policy` and `RateLimit` on a response.
    pub fn put_headers(&self, headers: &mut axum::http::HeaderMap) {
        for (name, value) in [("ratelimit-policy", self.policy_field()), ("ratelimit", self.limit_field())] {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                headers.insert(axum::http::HeaderName::from_static(name), value);
            }
        }
    }

    /// The detail of a refusal.
    pub fn detail(&self) -> String {
        match self.policy {
            TURNS_POLICY => format!(
                "You have {} turn{} running, your limit; wait for one to end.",
                self.quota,
                if self.quota == 1 { "" } else { "s" }
            ),
            _ => format!(
                "Request was throttled. Expected available in {} second{}.",
                self.reset,
                if self.reset == 1 { "" } else { "s" }
            ),
        }
    }
}

/// 429 when a rate limit refuses the request (with `Retry-After`, `RateLimit-Policy` and `RateLimit`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"detail": "Request was throttled. Expected available in 30 seconds.", "code": "rate_limited"}))]
pub struct RateLimited {
    pub detail: String,
    /// `rate_limited` (requests per minute) or `too_many_turns` (turns running at once).
    #[schema(value_type = String)]
    pub code: &'static str,
}

/// The body of an error answer: one of the documented shapes.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ErrorBody {
    /// Field errors, or `{"detail": ...}` (the shapes of every status but a running turn's 409).
    Plain(BadRequest),
    Running(TurnRunning),
    OverBudget(BudgetExceeded),
    RateLimited(RateLimited),
}

impl ErrorBody {
    fn detail(detail: impl Into<String>) -> Self {
        Self::Plain(BadRequest::Detail(ErrorDetail { detail: detail.into() }))
    }
}

#[derive(thiserror::Error)]
pub enum Error {
    #[error("invalid input: {0:?}")]
    Validation(FieldErrors),
    /// Template variables the instructions need and the request does not give (400, its body as it is).
    #[error("missing template variables: {:?}", .0.missing_variables)]
    MissingVariables(MissingVariables),
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
    /// Too many requests (429, with `Retry-After`): the seconds until one is accepted again.
    #[error("Request was throttled. Expected available in {0} second{s}.", s = if *.0 == 1 { "" } else { "s" })]
    Throttled(u64),
    /// A per-user rate limit refuses the request (429, with when to try again and the draft's headers).
    #[error("{}", .0.detail())]
    RateLimited(RateState),
    /// The caller's daily or monthly token budget is spent (429, with when it resets).
    #[error("{detail}")]
    BudgetExceeded { detail: String, resets_at: String },
    #[error("Method \"{0}\" not allowed.")]
    MethodNotAllowed(Method),
    #[error("Unsupported media type \"{0}\" in request.")]
    UnsupportedMediaType(String),
    #[error("Request body is too large.")]
    PayloadTooLarge,
    /// The request's body did not arrive within `LAMBENT_BODY_TIMEOUT` (408).
    #[error("The request body did not arrive in time.")]
    BodyTimeout,
    /// The schema and the code disagree (changed or missing migrations): an operator must act.
    #[error("migration error: {context}")]
    Migration {
        context: Cow<'static, str>,
        #[source]
        source: Option<Source>,
    },
    #[error("configuration error: {context}")]
    Config {
        context: Cow<'static, str>,
        #[source]
        source: Option<Source>,
    },
    /// A statement failed. The text includes libsql's (which has no context of its own to add), so
    /// [`Error::chain`] does not repeat it.
    #[error("database error: {0}")]
    Database(#[from] libsql::Error),
    /// The database could not be reached, or answered that it cannot serve (503 with `Retry-After`).
    #[error("database unavailable: {0}")]
    DatabaseUnavailable(String),
    /// A server-side failure: what was being done, and the error that stopped it (none for a state the
    /// code should never reach, see [`Error::bug`]).
    #[error("{context}")]
    Internal {
        context: Cow<'static, str>,
        #[source]
        source: Option<Source>,
    },
}

impl Error {
    /// A server-side failure of `source` while doing what `context` says (500, opaque to the client).
    pub fn internal(context: impl Into<Cow<'static, str>>, source: impl Into<Source>) -> Self {
        Self::Internal { context: context.into(), source: Some(source.into()) }
    }

    /// A state the code should never reach, with no underlying error (500, opaque to the client).
    pub fn bug(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Internal { context: context.into(), source: None }
    }

    /// A configuration that cannot work, with nothing underneath (e.g. a malformed variable).
    pub fn config(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Config { context: context.into(), source: None }
    }

    /// A configuration that cannot work because `source` failed (e.g. a client that cannot be built).
    pub fn config_from(context: impl Into<Cow<'static, str>>, source: impl Into<Source>) -> Self {
        Self::Config { context: context.into(), source: Some(source.into()) }
    }

    /// The schema and the code disagree, with nothing underneath.
    pub fn migration(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Migration { context: context.into(), source: None }
    }

    /// A migration that failed because `source` did.
    pub fn migration_from(context: impl Into<Cow<'static, str>>, source: impl Into<Source>) -> Self {
        Self::Migration { context: context.into(), source: Some(source.into()) }
    }

    /// The error and every cause under it, `context: source: source's source ...`: what the logs show.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(FieldErrors::single(field, message))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::MissingVariables(_) | Self::BadRequest(_) | Self::JsonParse(_) => {
                StatusCode::BAD_REQUEST
            }
            Self::NotFound | Self::Missing(_) | Self::InvalidPage => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::TurnInProgress(_) | Self::KeyInProgress(_) => StatusCode::CONFLICT,
            Self::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Throttled(_) | Self::BudgetExceeded { .. } | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Unavailable(_) | Self::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Migration { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config { .. } | Self::Database(_) | Self::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON body a client sees. Server-side failures are opaque: their detail goes to the log only.
    pub fn body(&self) -> ErrorBody {
        match self {
            Self::Validation(errors) => ErrorBody::Plain(BadRequest::Fields(errors.clone())),
            Self::MissingVariables(answer) => ErrorBody::Plain(BadRequest::MissingVariables(answer.clone())),
            Self::TurnInProgress(turn_id) | Self::KeyInProgress(turn_id) => {
                ErrorBody::Running(TurnRunning { detail: self.to_string(), turn_id: turn_id.clone() })
            }
            Self::Migration { .. } => {
                ErrorBody::detail("The database schema is not up to date with this version; run `lambent migrate`.")
            }
            Self::BudgetExceeded { detail, resets_at } => ErrorBody::OverBudget(BudgetExceeded {
                detail: detail.clone(),
                code: "budget_exceeded",
                resets_at: resets_at.clone(),
            }),
            Self::RateLimited(state) => ErrorBody::RateLimited(RateLimited {
                detail: state.detail(),
                code: if state.policy == TURNS_POLICY { "too_many_turns" } else { "rate_limited" },
            }),
            Self::Config { .. } | Self::Database(_) | Self::Internal { .. } => {
                ErrorBody::detail("A server error occurred.")
            }
            Self::DatabaseUnavailable(_) => ErrorBody::detail("The database is unavailable; try again shortly."),
            other => ErrorBody::detail(other.to_string()),
        }
    }
}

/// See [`Error::chain`].
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = cause(self.0);
        while let Some(err) = next {
            write!(f, ": {err}")?;
            next = cause(err);
        }
        Ok(())
    }
}

/// `{:?}` (what `unwrap`, `expect` and a failing test print) is the chain as well: every cause, in order.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.chain())
    }
}

/// The cause to show after `err`: a database error's text already ends with libsql's, so it goes on from
/// that error's own causes.
fn cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a (dyn std::error::Error + 'static)> {
    match err.downcast_ref::<Error>() {
        Some(Error::Database(db)) => std::error::Error::source(db),
        _ => err.source(),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self.chain(), "request failed");
        }
        let mut response = (status, axum::Json(self.body())).into_response();
        if matches!(self, Self::DatabaseUnavailable(_)) {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        if let Self::Throttled(seconds) = self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        if let Self::RateLimited(state) = self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(state.reset));
            state.put_headers(response.headers_mut());
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the outer cause")]
    struct Outer(#[source] std::io::Error);

    /// The log lines written while `f` runs, and what it answered.
    fn logged<T>(f: impl FnOnce() -> T) -> (String, T) {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        (text, out)
    }

    /// The status, body and log line of an error answered to a client.
    async fn answered(err: Error) -> (StatusCode, Value, String) {
        let (log, response) = logged(|| err.into_response());
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), log)
    }

    #[tokio::test]
    async fn an_internal_error_logs_its_whole_chain_and_answers_an_opaque_body() {
        let err = Error::internal("reading a stored answer", Outer(std::io::Error::other("the root cause")));
        assert_eq!(err.to_string(), "reading a stored answer");
        assert_eq!(err.chain().to_string(), "reading a stored answer: the outer cause: the root cause");
        let (status, body, log) = answered(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"detail": "A server error occurred."}));
        assert!(log.contains("request failed"), "{log}");
        assert!(log.contains("error=reading a stored answer: the outer cause: the root cause"), "{log}");
    }

    #[tokio::test]
    async fn a_database_error_logs_libsqls_message_once_and_answers_an_opaque_body() {
        let failure = libsql::Error::SqliteFailure(2067, "UNIQUE constraint failed: users.username".into());
        let err = Error::from(failure);
        assert!(std::error::Error::source(&err).is_some_and(|s| s.is::<libsql::Error>()), "the source is kept");
        let chain = "database error: SQLite failure: `UNIQUE constraint failed: users.username`";
        assert_eq!(err.chain().to_string(), chain);
        let (status, body, log) = answered(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"detail": "A server error occurred."}));
        assert!(log.contains(&format!("error={chain}")), "{log}");
        assert!(!log.contains(&format!("{chain}: SQLite failure")), "said once: {log}");
    }

    #[tokio::test]
    async fn missing_variables_answer_drf_s_field_shape_with_a_code_and_the_names() {
        let names = vec!["customer".to_owned(), "tone".to_owned()];
        let (status, body, _) = answered(Error::MissingVariables(MissingVariables::new(names))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({
                "variables": ["Missing value for template variable \"customer\".",
                    "Missing value for template variable \"tone\"."],
                "code": "missing_variables",
                "missing_variables": ["customer", "tone"],
            })
        );
    }

    #[test]
    fn a_chain_goes_through_nested_errors_of_ours() {
        let failed = Error::from(libsql::Error::SqliteFailure(1, "near \"CREAT\": syntax error".into()));
        let err = Error::migration_from("0007_x.sql failed", failed);
        assert_eq!(
            err.chain().to_string(),
            "migration error: 0007_x.sql failed: database error: SQLite failure: `near \"CREAT\": syntax error`"
        );
        assert_eq!(Error::bug("COUNT returned no row").chain().to_string(), "COUNT returned no row");
        let config = Error::config_from("cannot listen on 127.0.0.1:1", std::io::Error::other("address in use"));
        assert_eq!(config.chain().to_string(), "configuration error: cannot listen on 127.0.0.1:1: address in use");
    }

    #[test]
    fn debug_prints_the_chain_so_a_failed_unwrap_shows_every_cause() {
        let source = std::io::Error::other("connection reset");
        let err = Error::internal("reading the tool's answer", source);
        assert_eq!(format!("{err:?}"), "reading the tool's answer: connection reset");
    }
}
