//! The Hrana client: a remote libsql server (sqld, Turso) over Hrana's HTTP pipeline (`/v3/pipeline`), one
//! request per unit of work. Why not libsql's own remote connection, and the rules it keeps, are in the
//! parent module's doc.
//!
//! # Layout
//! - [`Remote`]: the client. [`Remote::unit`] sends a unit of work on a kept stream (else a fresh one) and
//!   sends it again on a fresh stream when the kept one was refused; [`Remote::send`] is one HTTP request.
//! - [`Baton`], [`PipelineUrl`], [`Reply`], [`Idle`]: a stream's name, where its requests go, what a request
//!   answered, and a stream kept for the next unit.
//! - [`RemoteTx`]: an interactive transaction (migrations) on a stream of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libsql_hrana::proto;

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

/// Why [`Remote::send`] failed: a refused kept stream (which [`Remote::unit`] sends again on a fresh one) is
/// told apart by its variant, decided by the protocol's error code ([`wire::refusal`]).
enum SendError {
    /// The server did not know the kept stream (expired, or it restarted) and ran none of the request.
    StaleStream(String),
    Failed(Error),
}

impl SendError {
    /// Outside [`Remote::unit`] a stale stream is not retried: it is an error like any other.
    fn into_error(self) -> Error {
        match self {
            Self::StaleStream(text) => Error::internal("the database no longer knew the stream", text),
            Self::Failed(err) => err,
        }
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
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("pipeline", &self.pipeline.0).finish_non_exhaustive()
    }
}

impl Remote {
    pub(in crate::store) fn new(url: &str, token: Option<&str>, connect_timeout: Duration) -> Result<Self> {
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
    /// `baton` names (a new one without).
    async fn pipeline(
        &self,
        url: Option<&PipelineUrl>,
        baton: Option<Baton>,
        requests: Vec<proto::StreamRequest>,
    ) -> Result<Reply> {
        let requests = requests.iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.send(url, baton, &requests).await.map_err(SendError::into_error)
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
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        crate::telemetry::count_round_trip();
        let response = http.send().await.map_err(|e| unavailable(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| unavailable(&e))?;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(Error::DatabaseUnavailable(format!(
                "the database answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ))
            .into());
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
        let (idle, results) = self.unit(&[encode(&request(stmt))?]).await?;
        let set = execute_result(results.into_iter().next())?;
        self.keep(idle);
        Ok(set)
    }

    /// One unit of work, on a stream this instance used within [`STREAM_REUSE`] (the server then opens no
    /// new connection for it: measured on sqld 0.24, a fresh stream per request cost it 0.9-1.2 ms of CPU
    /// against 0.3-0.5 ms on a kept one), else on a fresh stream. A kept stream the server no longer knows
    /// (expired, or the server restarted) is refused before anything runs, so the unit is sent again, once,
    /// on a fresh stream: safe for writes too. Answers the stream to keep, if the caller finds the unit clean.
    async fn unit(&self, requests: &[serde_json::Value]) -> Result<(Option<Idle>, Vec<proto::StreamResult>)> {
        if let Some(idle) = self.idle_stream() {
            match self.send(idle.url.as_ref(), Some(idle.baton), requests).await {
                Ok(mut reply) => return Ok((reply.stream(idle.url), reply.results)),
                Err(SendError::StaleStream(message)) => {
                    tracing::debug!(%message, "a kept database stream was gone; sending on a fresh one");
                }
                Err(SendError::Failed(err)) => return Err(err),
            }
        }
        let mut reply = self.send(None, None, requests).await.map_err(SendError::into_error)?;
        Ok((reply.stream(None), reply.results))
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

    /// A batch in one request: a transaction ([`wire::transactional`]) when atomic.
    pub(super) async fn batch(&self, batch: Batch) -> Result<Outcomes> {
        let count = batch.steps.len();
        let stmts = batch.steps.into_iter().map(|step| {
            let mut stmt = proto::Stmt::new(step.sql, true);
            stmt.args = step.params.into_iter().map(wire::to_hrana).collect();
            stmt
        });
        let hrana = if batch.atomic {
            wire::transactional(stmts)
        } else {
            let steps = stmts.map(|stmt| proto::BatchStep { condition: None, stmt }).collect();
            proto::Batch { steps, replication_index: None }
        };
        let request = encode(&proto::StreamRequest::Batch(proto::BatchStreamReq { batch: hrana }))?;
        let (idle, results) = self.unit(&[request]).await?;
        let out = wire::batch_outcomes(results.into_iter().next(), count, batch.atomic)?;
        // A stream is kept only after a batch with no failed step: it is certainly out of any transaction.
        if out.0.iter().all(|o| matches!(o, Outcome::Done(_))) {
            self.keep(idle);
        }
        Ok(out)
    }
}

/// A request that did not get an answer: the server could not be reached, or the connection failed.
fn unavailable(err: &reqwest::Error) -> Error {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::DatabaseUnavailable(message)
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
