//! Request extractors that fail the way Django REST framework does, so handlers only see valid input; and
//! the [`Caller`] of a request, from `Authorization: Bearer <token>` (DRF's `Token <token>` works too).
//!
//! # Layout
//! - bodies and headers: [`JsonBody`], [`IdempotencyKey`], [`EventCursor`], [`Id`].
//! - what the deployed shape tells a request, put in its extensions by the Lambda entry point (`functions/`):
//!   [`PathPrefix`] (API Gateway's stage, which pagination links put back), [`Deadline`] (when the function
//!   is stopped, which bounds [`LeaseTime`]), [`ClientAddress`] (API Gateway's `sourceIp`; locally the socket
//!   peer, or `X-Forwarded-For` behind a configured proxy).
//! - [`ListQuery`] and [`Page`]: DRF's page-number pagination with absolute links.
//! - the [`Caller`] from the bearer token.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::Caller;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{Listed, Slice};

/// A JSON request body: 415 for another content type, 400 `JSON parse error - ...` for bad JSON.
/// An empty body without a content type reads as `{}` (so a bodiless POST gets "This field is required.").
#[derive(Debug)]
pub struct JsonBody(pub Value);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let content_type = req.headers().get(CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection: BytesRejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge
            } else if timed_out(&rejection) {
                Error::BodyTimeout
            } else {
                Error::BadRequest(rejection.body_text())
            }
        })?;
        match content_type {
            Some(ct) if is_json(&ct) => {
                if nesting(&bytes) > MAX_JSON_DEPTH {
                    return Err(Error::JsonParse(format!("nesting deeper than {MAX_JSON_DEPTH} levels")));
                }
                serde_json::from_slice(&bytes).map(Self).map_err(|e| Error::JsonParse(e.to_string()))
            }
            None if bytes.is_empty() => Ok(Self(Value::Object(Default::default()))),
            other => Err(Error::UnsupportedMediaType(other.unwrap_or_default())),
        }
    }
}

/// What a request body yields when it did not arrive by its deadline (see [`body_deadline`]).
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTimedOut {}

fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(err) = cause {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Middleware of the local server: a request's body must arrive whole within `limit` of its headers, else
/// reading it fails with [`BodyTimedOut`] (answered 408). Per request, not per chunk: a client trickling a
/// byte at a time is cut off as surely as one that stalls. (On Lambda the body has arrived before the
/// function runs.)
pub async fn body_deadline(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + limit;
    let (parts, body) = request.into_parts();
    let chunks = body.into_data_stream();
    let guarded = futures::stream::unfold(Some(chunks), move |chunks| async move {
        let mut chunks = chunks?;
        match tokio::time::timeout_at(deadline, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(chunks))),
            Ok(None) => None,
            Err(_) => Some((Err(axum::Error::new(BodyTimedOut)), None)),
        }
    });
    next.run(Request::from_parts(parts, axum::body::Body::from_stream(guarded))).await
}

/// The deepest nesting of arrays and objects a request body may have. No field of the API needs more than a
/// few levels (tool parameter schemas included); deep documents only cost stack and time.
pub const MAX_JSON_DEPTH: usize = 64;

/// How deeply arrays and objects nest in `bytes` (brackets inside strings do not count). Runs before
/// parsing, so a hostile document is refused without building it.
fn nesting(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0_usize, 0_usize, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The `Idempotency-Key` header: a retried request with the same key gets the first one's outcome.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let Some(value) = parts.headers.get("idempotency-key") else { return Ok(Self(None)) };
        let key =
            value.to_str().ok().filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
        match key {
            Some(key) => Ok(Self(Some(key.to_owned()))),
            None => Err(Error::field("Idempotency-Key", "Must be 1 to 255 visible ASCII characters.")),
        }
    }
}

/// Where an event replay starts: the `Last-Event-ID` header (sent by a reconnecting EventSource), else
/// `?after=`.
#[derive(Debug, Clone, Default)]
pub struct EventCursor(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for EventCursor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        if let Some(value) = parts.headers.get("last-event-id") {
            let id = value.to_str().map_err(|_| Error::field("Last-Event-ID", "Must be an event id."))?;
            return Ok(Self(Some(id.trim().to_owned()).filter(|id| !id.is_empty())));
        }
        let after = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .find(|(name, _)| name == "after")
            .map(|(_, value)| value.into_owned());
        Ok(Self(after.filter(|id| !id.is_empty())))
    }
}

/// An integer id from the path, as the id type of what the path names (`Id<SessionId>`; plain `i64` for an
/// object no other id meets). Anything else matches no object: 404, as Django's `<int:pk>` would.
#[derive(Debug, Clone, Copy)]
pub struct Id<T = i64>(pub T);

impl<S: Send + Sync, T: std::str::FromStr> FromRequestParts<S> for Id<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| Error::NotFound)?;
        raw.parse().map(Self).map_err(|_| Error::NotFound)
    }
}

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 100;

/// DRF page-number pagination: what a list request asks for, and the parameters the document lists.
#[derive(Debug, Clone, Copy, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1-based page number; a page past the end answers 404 `Invalid page.`.
    #[param(required = false)]
    page: u64,
    /// Items per page: default 50, at most 100.
    #[param(required = false)]
    page_size: u64,
}

/// A list request: DRF's page-number pagination (`?page=`, `?page_size=`) plus the filters it carries.
#[derive(Debug)]
pub struct ListQuery {
    paging: PageParams,
    params: Vec<(String, String)>,
    /// Absolute URL of the request without its query, for `next` / `previous`.
    base: String,
}

impl FromRequestParts<AppState> for ListQuery {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let OriginalUri(uri) = OriginalUri::from_request_parts(parts, state).await.map_err(|_| Error::NotFound)?;
        let params: Vec<(String, String)> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
        let get = |key: &str| params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let page = match get("page") {
            None => 1,
            Some(raw) => raw.parse::<u64>().ok().filter(|p| *p >= 1).ok_or(Error::InvalidPage)?,
        };
        let page_size = get("page_size")
            .and_then(|raw| raw.parse::<u64>().ok())
            .filter(|size| *size >= 1)
            .map_or(DEFAULT_PAGE_SIZE, |size| size.min(MAX_PAGE_SIZE));
        // A page starting past any row count SQLite can hold cannot exist (and its offset would overflow).
        if (page - 1).checked_mul(page_size).is_none_or(|offset| offset > i64::MAX as u64) {
            return Err(Error::InvalidPage);
        }
        let prefix = parts.extensions.get::<PathPrefix>().map_or("", |p| p.0.as_str());
        let host = match parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>() {
            // The local server: a forwarded host is believed only from a configured proxy.
            Some(peer) if !state.config.trusted_proxies.contains(&peer.0.ip()) => direct_host(&parts.headers),
            _ => public_host(&parts.headers),
        };
        let base = format!("{}://{host}{prefix}{}", scheme(&parts.headers), uri.path());
        Ok(Self { paging: PageParams { page, page_size }, params, base })
    }
}

/// The first value of a header (a proxy chain may list several, the client's first).
fn first_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = headers.get(name)?.to_str().ok()?;
    value.split(',').next().map(str::trim).filter(|v| !v.is_empty())
}

/// The scheme the client used: CloudFront's viewer protocol, else the last proxy's `X-Forwarded-Proto`
/// (API Gateway sets it), else plain HTTP (the local server).
fn scheme(headers: &HeaderMap) -> &str {
    first_value(headers, "cloudfront-forwarded-proto")
        .or_else(|| first_value(headers, "x-forwarded-proto"))
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or("http")
}

/// The host the client called: `X-Forwarded-Host` (what the template's CloudFront function copies the
/// viewer's `Host` into, since CloudFront sends API Gateway its own host), else `Host`. Only a plain
/// `host[:port]` counts (no path, userinfo or spaces: it goes into links as it is). The local server takes
/// `X-Forwarded-Host` only from `LAMBENT_TRUSTED_PROXIES` (see [`ListQuery`]), as it does `X-Forwarded-For`.
pub fn public_host(headers: &HeaderMap) -> &str {
    first_value(headers, "x-forwarded-host").filter(|h| is_host(h)).unwrap_or_else(|| direct_host(headers))
}

/// The `Host` the client sent, if it is a plain `host[:port]`.
fn direct_host(headers: &HeaderMap) -> &str {
    first_value(headers, HOST.as_str()).filter(|h| is_host(h)).unwrap_or("localhost")
}

/// A URL authority without userinfo: what a link may be built on.
fn is_host(value: &str) -> bool {
    !value.contains('@') && value.parse::<axum::http::uri::Authority>().is_ok()
}

/// A path prefix the entry point took off before routing and the client's URL had: API Gateway's
/// `/{stage}`, when the client called the `execute-api` host itself (through CloudFront the stage is the
/// origin's path, not the client's). Pagination links put it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPrefix(pub String);

/// When the function serving this request is stopped (Lambda's invocation deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(pub std::time::SystemTime);

/// How long past the function's deadline a turn's lease lasts: the deadline is the instance's own clock and
/// other instances compare against theirs (Lambda's are NTP-synchronised to well under a second), and the
/// turn's first write lands a little after the lease was computed.
pub const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// How long a turn this request starts may hold its session: `LAMBENT_TURN_LEASE`, but never past the
/// function's [`Deadline`] (plus [`LEASE_MARGIN`]): a function stopped at its timeout cannot give the session
/// back, and the next message must not wait out a lease it no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTime(pub std::time::Duration);

impl FromRequestParts<AppState> for LeaseTime {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let configured = state.config.turn_lease;
        let Some(Deadline(deadline)) = parts.extensions.get::<Deadline>().copied() else { return Ok(Self(configured)) };
        let remaining = deadline.duration_since(std::time::SystemTime::now()).unwrap_or_default();
        Ok(Self(configured.min(remaining + LEASE_MARGIN)))
    }
}

/// The address a request came from: what login throttling counts. On Lambda, API Gateway's `sourceIp` (the
/// entry point puts it in the extensions); locally the socket peer, or, when the peer is one of
/// `LAMBENT_TRUSTED_PROXIES`, the last `X-Forwarded-For` address that is not a trusted proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddress(pub String);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(address) = parts.extensions.get::<ClientAddress>() {
            return Ok(address.clone());
        }
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        let Some(peer) = peer else { return Ok(Self("unknown".to_owned())) };
        let trusted = |ip: &std::net::IpAddr| state.config.trusted_proxies.contains(ip);
        if !trusted(&peer) {
            return Ok(Self(peer.to_string()));
        }
        // Each proxy appends the address it was called from: from the right, the first one not ours.
        let forwarded: Vec<std::net::IpAddr> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let client = forwarded.into_iter().rev().find(|ip| !trusted(ip)).unwrap_or(peer);
        Ok(Self(client.to_string()))
    }
}

impl ListQuery {
    pub fn slice(&self) -> Slice {
        Slice { limit: self.paging.page_size, offset: (self.paging.page - 1) * self.paging.page_size }
    }

    /// A filter that must be an integer id when present (`?agent=3`).
    pub fn id_filter<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>> {
        match self.param(key) {
            None | Some("") => Ok(None),
            Some(raw) => raw.trim().parse().map(Some).map_err(|_| Error::field(key, "Enter a whole number.")),
        }
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Wraps a store listing in DRF's envelope; a page past the end is 404 `Invalid page.`.
    pub fn page<T>(&self, listed: Listed<T>) -> Result<Page<T>> {
        let pages = listed.count.div_ceil(self.paging.page_size).max(1);
        if self.paging.page > pages {
            return Err(Error::InvalidPage);
        }
        Ok(Page {
            count: listed.count,
            next: (self.paging.page < pages).then(|| self.url_for(Some(self.paging.page + 1))),
            previous: (self.paging.page > 1)
                .then(|| self.url_for((self.paging.page > 2).then_some(self.paging.page - 1))),
            results: listed.items,
        })
    }

    /// This request's URL with `page` replaced (or removed, for the first page, as DRF does).
    fn url_for(&self, page: Option<u64>) -> String {
        let mut pairs: Vec<(String, String)> = self.params.iter().filter(|(k, _)| k != "page").cloned().collect();
        if let Some(page) = page {
            pairs.push(("page".to_owned(), page.to_string()));
        }
        if pairs.is_empty() {
            return self.base.clone();
        }
        let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
        format!("{}?{query}", self.base)
    }
}

/// DRF's paginated list envelope.
// Documented as `Paginated<Item>List` with `results` referencing `<Item>` (see `openapi::paginated_names`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub count: u64,
    /// Absolute URL of the next page, or null.
    pub next: Option<String>,
    /// Absolute URL of the previous page, or null.
    pub previous: Option<String>,
    pub results: Vec<T>,
}

/// The token in `Authorization: Bearer <token>` or `Token <token>`.
fn bearer(parts: &Parts) -> Result<&str> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(Error::Unauthenticated("Authentication credentials were not provided."))?;
    let value = header.to_str().map_err(|_| Error::Unauthenticated("Invalid token header."))?;
    let (scheme, token) =
        value.trim().split_once(' ').ok_or(Error::Unauthenticated("Invalid token header. No credentials provided."))?;
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")) {
        return Err(Error::Unauthenticated("Authentication credentials were not provided."));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(Error::Unauthenticated("Invalid token header. Token string should not contain spaces."));
    }
    Ok(token)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let secret = bearer(parts)?;
        let caller = state
            .store
            .authenticate(&crate::auth::token_hash(secret))
            .await?
            .ok_or(Error::Unauthenticated("Invalid token."))?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::nesting;

    #[test]
    fn nesting_counts_brackets_outside_strings_only() {
        assert_eq!(nesting(b"{}"), 1);
        assert_eq!(nesting(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(nesting(br#"{"a": "[[[[{{{{\"[["}"#), 1);
        assert_eq!(nesting(b"[[[[[[]]]]]]"), 6);
    }
}
