//! The Hrana client: a remote libsql server (sqld, Turso) over Hrana's HTTP pipeline (`/v3/pipeline`), one
//! request per unit of work. Why not libsql's own remote connection, and the rules it keeps, are in the
//! parent module's doc.
//!
//! # Layout
//! - [`Remote`]: the client. [`Remote::unit`] sends a unit of work on a kept stream (else a fresh one) and
//!   sends it again on a fresh stream when the kept one was refused, or when the answer said nothing ran
//!   (`retry`); [`Remote::send`] is one HTTP request, holding one of the instance's in-flight slots.
//! - [`SendError`]: what a failed request means for sending it again; [`Limits`]: the retry budget and the
//!   in-flight bound.
//! - [`Baton`], [`PipelineUrl`], [`Reply`], [`Idle`]: a stream's name, where its requests go, what a request
//!   answered, and a stream kept for the next unit.
//! - [`RemoteTx`]: an interactive transaction (migrations) on a stream of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libsql_hrana::proto;

use super::retry::Attempts;
use super::wire::{self, Refusal, close, encode, execute_result, request, statement_error};
use super::{Batch, Outcome, Outcomes, Set};
use crate::error::{Error, Result};

/// How long an idle stream is reused: well inside sqld's and Turso's ~10 s expiry, so a kept stream is
/// rarely gone when used (and when it is, [`Remote::unit`] sends the work again on a fresh one).
const STREAM_REUSE: Duration = Duration::from_secs(5);

/// Idle streams kept at most (each holds a connection on the server).
const MAX_IDLE_STREAMS: usize = 8;

/// How long a pooled connection to the database may sit idle before it is dropped rather than reused: under
/// the keep-alive limits of the proxies in front of hosted databases, and short enough that a Lambda instance
/// thawed after a long pause opens a fresh one instead of writing into a connection the network forgot.
const POOL_IDLE: Duration = Duration::from_secs(20);

/// A server-side stream's name, as the server issued it: sent with the stream's next request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Baton(String);

/// Where a stream's requests go: the pipeline endpoint, or the one the server named for the stream
/// (`base_url`, a replica's own address behind a load balancer).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PipelineUrl(String);

impl PipelineUrl {
    fn under(base: &str) -> Self {
        Self(format!("{}/v3/pipeline", base.trim_end_matches('/')))
    }
}

/// What one pipeline request answered: the stream to send the next request on (`None`: closed), where to
/// send it if the server said, and the results of the requests (the leading pragma's left out).
struct Reply {
    baton: Option<Baton>,
    url: Option<PipelineUrl>,
    results: Vec<proto::StreamResult>,
}

/// A server-side stream left open after a clean unit of work.
struct Idle {
    baton: Baton,
    url: Option<PipelineUrl>,
    at: Instant,
}

impl Reply {
    /// The stream this reply leaves open, to keep if the unit of work ended clean.
    fn stream(&mut self, url: Option<PipelineUrl>) -> Option<Idle> {
        let baton = self.baton.take()?;
        Some(Idle { baton, url: self.url.take().or(url), at: Instant::now() })
    }
}

/// Why [`Remote::send`] failed, as far as sending it again is concerned.
enum SendError {
    /// The server did not know the kept stream (expired, or it restarted) and ran none of the request: decided
    /// by the protocol's error code ([`wire::refusal`]). [`Remote::unit`] sends it again on a fresh stream.
    StaleStream(String),
    /// The server answered that it ran nothing (429: sqld could not open a connection in time; 503), or it
    /// could not be reached at all: safe to send again, after the wait `Retry-After` asks if it does.
    NothingRan {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Sent, but no answer came (a timeout, a dropped connection): it may have run. Sent again only when the
    /// work is safe to repeat.
    Unknown(String),
    Failed(Error),
}

impl SendError {
    /// The error once this is not (or no longer) retried.
    fn into_error(self) -> Error {
        match self {
            Self::StaleStream(text) => Error::internal("the database no longer knew the stream", text),
            Self::NothingRan { why, .. } | Self::Unknown(why) => Error::DatabaseUnavailable(why),
            Self::Failed(err) => err,
        }
    }
}

/// What bounds a [`Remote`]'s requests.
#[derive(Debug, Clone, Copy)]
pub(in crate::store) struct Limits {
    /// How long a request refused with "nothing ran" is tried again ([`retry::Attempts`]).
    pub retry_budget: Duration,
    /// Requests in flight at once; more wait for one to end (an instance queues instead of stampeding).
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { retry_budget: Duration::from_secs(5), max_in_flight: 16 }
    }
}

impl From<Error> for SendError {
    fn from(err: Error) -> Self {
        Self::Failed(err)
    }
}

/// A remote libsql server (sqld, Turso) over Hrana's HTTP pipeline (`/v3/pipeline`).
#[derive(Clone)]
pub struct Remote {
    client: reqwest::Client,
    pipeline: PipelineUrl,
    token: Option<String>,
    round_trips: Arc<AtomicU64>,
    /// Streams of finished units of work, newest last (see [`Remote::unit`]).
    idle: Arc<Mutex<Vec<Idle>>>,
    retry_budget: Duration,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("pipeline", &self.pipeline.0).finish_non_exhaustive()
    }
}

impl Remote {
    pub(in crate::store) fn new(
        url: &str,
        token: Option<&str>,
        connect_timeout: Duration,
        limits: Limits,
    ) -> Result<Self> {
        crate::tls::install_crypto_provider();
        let base = match url.strip_prefix("libsql://") {
            Some(rest) => format!("https://{rest}"),
            None => url.to_owned(),
        };
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(connect_timeout)
            .timeout(Duration::from_secs(30))
            .pool_idle_timeout(POOL_IDLE)
            .build()
            .map_err(|e| Error::config_from("cannot build the database HTTP client", e))?;
        Ok(Self {
            client,
            pipeline: PipelineUrl::under(&base),
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
            round_trips: Arc::default(),
            idle: Arc::default(),
            retry_budget: limits.retry_budget,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
        })
    }

    /// One trivial statement: a wrong URL or a refused token shows at start.
    pub(in crate::store) async fn probe(&self) -> Result<()> {
        self.single(proto::Stmt::new("SELECT 1", true)).await.map(drop)
    }

    /// HTTP requests sent to the database so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// One pipeline request: `PRAGMA foreign_keys = ON` (on a new stream), then `requests`, on the stream
    /// `baton` names (a new one without). An interactive transaction's: sent again on the same stream while
    /// the answer says nothing ran (the stream is still the server's, and still in its transaction).
    async fn pipeline(
        &self,
        url: Option<&PipelineUrl>,
        baton: Option<Baton>,
        requests: Vec<proto::StreamRequest>,
    ) -> Result<Reply> {
        let requests = requests.iter().map(encode).collect::<Result<Vec<_>>>()?;
        let mut attempts = Attempts::new(self.retry_budget);
        loop {
            match self.send(url, baton.clone(), &requests).await {
                Err(SendError::NothingRan { why, retry_after }) => attempts.wait(&why, retry_after).await?,
                other => return other.map_err(SendError::into_error),
            }
        }
    }

    /// [`Self::pipeline`] for requests already encoded (a unit of work may be sent twice, see [`Self::unit`]).
    async fn send(
        &self,
        url: Option<&PipelineUrl>,
        baton: Option<Baton>,
        requests: &[serde_json::Value],
    ) -> Result<Reply, SendError> {
        let fresh = baton.is_none();
        let mut all = Vec::with_capacity(requests.len() + 1);
        if fresh {
            all.push(encode(&request(proto::Stmt::new("PRAGMA foreign_keys = ON", false)))?);
        }
        all.extend_from_slice(requests);
        let body = serde_json::to_vec(&serde_json::json!({"baton": baton.map(|b| b.0), "requests": all}))
            .map_err(|e| Error::internal("encoding a Hrana request", e))?;
        let mut http = self
            .client
            .post(&url.unwrap_or(&self.pipeline).0)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(token) = &self.token {
            http = http.bearer_auth(token);
        }
        // Held while the request is in flight only, not across a retry's wait.
        let _permit = self.in_flight.acquire().await.map_err(|e| Error::internal("the database request queue", e))?;
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::count_round_trip();
        let response = http.send().await.map_err(|e| unanswered(&e))?;
        let status = response.status();
        let retry_after = crate::backoff::retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| SendError::Unknown(chain(&e)))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let why =
                format!("the database answered {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)]));
            return Err(match status {
                reqwest::StatusCode::TOO_MANY_REQUESTS | reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    SendError::NothingRan { why, retry_after }
                }
                _ => Error::DatabaseUnavailable(why).into(),
            });
        }
        if !status.is_success() {
            return Err(match wire::refusal(status, &bytes, !fresh) {
                Refusal::StaleStream(text) => SendError::StaleStream(text),
                Refusal::Failed(text) => Error::Database(libsql::Error::Hrana(text.into())).into(),
            });
        }
        let parsed: proto::PipelineRespBody =
            serde_json::from_slice(&bytes).map_err(|e| Error::internal("reading a Hrana response", e))?;
        let mut results = parsed.results;
        if fresh
            && !results.is_empty()
            && let proto::StreamResult::Error { error } = results.remove(0)
        {
            return Err(Error::Database(statement_error(error)).into());
        }
        Ok(Reply { baton: parsed.baton.map(Baton), url: parsed.base_url.as_deref().map(PipelineUrl::under), results })
    }

    /// One statement on a stream of its own.
    pub(super) async fn single(&self, stmt: proto::Stmt) -> Result<Set> {
        let mut attempts = Attempts::new(self.retry_budget);
        let (idle, results) = self.unit(&[encode(&request(stmt))?], false, &mut attempts).await?;
        let set = execute_result(results.into_iter().next())?;
        self.keep(idle);
        Ok(set)
    }

    /// One unit of work, on a stream this instance used within [`STREAM_REUSE`] (the server then opens no
    /// new connection for it: measured on sqld 0.24, a fresh stream per request cost it 0.9-1.2 ms of CPU
    /// against 0.3-0.5 ms on a kept one), else on a fresh stream. A kept stream the server no longer knows
    /// (expired, or the server restarted) is refused before anything runs, so the unit is sent again, once,
    /// on a fresh stream: safe for writes too. Answers the stream to keep, if the caller finds the unit clean.
    ///
    /// An answer that says nothing ran is retried ([`Attempts`]), on a fresh stream; so is no answer at all
    /// when the unit is `repeatable` (safe to run twice).
    async fn unit(
        &self,
        requests: &[serde_json::Value],
        repeatable: bool,
        attempts: &mut Attempts,
    ) -> Result<(Option<Idle>, Vec<proto::StreamResult>)> {
        let mut kept = self.idle_stream();
        loop {
            let (sent, url) = match kept.take() {
                Some(idle) => (self.send(idle.url.as_ref(), Some(idle.baton), requests).await, idle.url),
                None => (self.send(None, None, requests).await, None),
            };
            match sent {
                Ok(mut reply) => return Ok((reply.stream(url), reply.results)),
                Err(SendError::StaleStream(message)) => {
                    tracing::debug!(%message, "a kept database stream was gone; sending on a fresh one");
                }
                Err(SendError::NothingRan { why, retry_after }) => attempts.wait(&why, retry_after).await?,
                Err(SendError::Unknown(why)) if repeatable => attempts.wait(&why, None).await?,
                Err(other) => return Err(other.into_error()),
            }
        }
    }

    fn idle_stream(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(stream) = idle.pop() {
            if stream.at.elapsed() < STREAM_REUSE {
                return Some(stream);
            }
        }
        None
    }

    /// Keeps a stream whose unit of work ended cleanly (autocommit, no error) for the next one.
    fn keep(&self, stream: Option<Idle>) {
        let Some(stream) = stream else { return };
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_STREAMS {
            idle.push(stream);
        }
    }

    /// A batch in one request: a transaction ([`wire::transactional`]) when atomic; with the request's
    /// `lead` ahead of it, every step of the batch conditioned on the lead's success ([`wire::led`]).
    pub(super) async fn batch(&self, batch: Batch, mut lead: Option<super::lead::Lead>) -> Result<Outcomes> {
        let count = batch.steps.len();
        let stmts: Vec<proto::Stmt> = batch
            .steps
            .into_iter()
            .map(|step| {
                let mut stmt = proto::Stmt::new(step.sql, true);
                stmt.args = step.params.into_iter().map(wire::to_hrana).collect();
                stmt
            })
            .collect();
        let hrana = if batch.atomic {
            wire::transactional(stmts.into_iter())
        } else {
            let steps = stmts.into_iter().map(|stmt| proto::BatchStep { condition: None, stmt }).collect();
            proto::Batch { steps, replication_index: None }
        };
        let mut attempts = Attempts::new(self.retry_budget);
        let (idle, result) = loop {
            let sent = match &lead {
                Some(lead) => wire::led(hrana.clone(), wire::stmt(lead.sql, lead.params.clone(), true)?),
                None => hrana.clone(),
            };
            let request = encode(&proto::StreamRequest::Batch(proto::BatchStreamReq { batch: sent }))?;
            let (idle, results) = self.unit(std::slice::from_ref(&request), batch.repeatable, &mut attempts).await?;
            let mut result = results.into_iter().next();
            if let Some(lead) = lead.take() {
                match wire::split_lead(&mut result) {
                    // Refused: nothing else ran.
                    Some(outcome) => super::lead::settle(lead.settle, outcome)?,
                    None => super::lead::arm(lead),
                }
            }
            // The database was busy at `BEGIN IMMEDIATE`: nothing ran, the batch can go again (its lead, which
            // did run, is not sent twice).
            match wire::not_begun(&result, batch.atomic) {
                Some(why) => attempts.wait(&why, None).await?,
                None => break (idle, result),
            }
        };
        let out = wire::batch_outcomes(result, count, batch.atomic)?;
        // A stream is kept only after a batch with no failed step: it is certainly out of any transaction.
        if out.0.iter().all(|o| matches!(o, Outcome::Done(_))) {
            self.keep(idle);
        }
        Ok(out)
    }
}

/// A request that got no answer: never sent when the connection could not be made (nothing ran), else its
/// outcome is unknown.
fn unanswered(err: &reqwest::Error) -> SendError {
    if err.is_connect() {
        SendError::NothingRan { why: chain(err), retry_after: None }
    } else {
        SendError::Unknown(chain(err))
    }
}

/// An error with its causes, for the log line and the 503's logged reason.
fn chain(err: &reqwest::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// An interactive transaction on a stream of its own: `BEGIN` travels with the first statement, `COMMIT`
/// closes the stream. Dropped uncommitted, it is rolled back (in the background: a drop cannot wait).
pub(in crate::store) struct RemoteTx<'a> {
    remote: &'a Remote,
    stream: tokio::sync::Mutex<Stream>,
}

#[derive(Default)]
struct Stream {
    begun: bool,
    baton: Option<Baton>,
    url: Option<PipelineUrl>,
}

impl<'a> RemoteTx<'a> {
    pub(super) fn new(remote: &'a Remote) -> Self {
        Self { remote, stream: tokio::sync::Mutex::new(Stream::default()) }
    }

    async fn send(&self, request: proto::StreamRequest) -> Result<proto::StreamResult> {
        let mut stream = self.stream.lock().await;
        let mut requests = Vec::with_capacity(2);
        if !stream.begun {
            requests.push(wire::request(proto::Stmt::new("BEGIN", false)));
        }
        requests.push(request);
        let baton = stream.baton.take();
        let reply = self.remote.pipeline(stream.url.as_ref(), baton, requests).await?;
        let mut results = reply.results.into_iter();
        if !stream.begun {
            if let Some(proto::StreamResult::Error { error }) = results.next() {
                return Err(Error::Database(statement_error(error)));
            }
            stream.begun = true;
        }
        stream.baton = reply.baton;
        if reply.url.is_some() {
            stream.url = reply.url;
        }
        results.next().ok_or_else(|| Error::bug("Hrana answered no result"))
    }

    pub(super) async fn run(&self, stmt: proto::Stmt) -> Result<Set> {
        execute_result(Some(self.send(request(stmt)).await?))
    }

    pub(super) async fn script(&self, sql: &str) -> Result<()> {
        let request = proto::StreamRequest::Sequence(proto::SequenceStreamReq {
            sql: Some(sql.to_owned()),
            sql_id: None,
            replication_index: None,
        });
        match self.send(request).await? {
            proto::StreamResult::Ok { .. } => Ok(()),
            proto::StreamResult::Error { error } => Err(Error::Database(statement_error(error))),
            proto::StreamResult::None => Err(Error::bug("Hrana answered no result")),
        }
    }

    pub(super) async fn commit(self) -> Result<()> {
        let mut stream = self.stream.lock().await;
        if !stream.begun {
            return Ok(());
        }
        stream.begun = false;
        let requests = vec![request(proto::Stmt::new("COMMIT", false)), close()];
        let baton = stream.baton.take();
        let reply = self.remote.pipeline(stream.url.as_ref(), baton, requests).await?;
        execute_result(reply.results.into_iter().next()).map(drop)
    }
}

impl Drop for RemoteTx<'_> {
    fn drop(&mut self) {
        let stream = std::mem::take(self.stream.get_mut());
        let Some(baton) = stream.baton.filter(|_| stream.begun) else { return };
        let remote = self.remote.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let requests = vec![request(proto::Stmt::new("ROLLBACK", false)), close()];
                if let Err(err) = remote.pipeline(stream.url.as_ref(), Some(baton), requests).await {
                    tracing::warn!(error = %err.chain(), "rolling back an abandoned remote transaction failed");
                }
            });
        }
    }
}
