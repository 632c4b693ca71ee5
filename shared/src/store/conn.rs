//! The store's connection: an embedded SQLite file (libsql, statements kept prepared) or a remote libsql
//! server spoken to over Hrana's HTTP pipeline, one request per unit of work.
//!
//! # Layout
//! - [`Conn`]: what `Store::conn()` hands a store method: the local connection (under the store's lock) or
//!   the remote client. `sql()`, `query`, `execute`, `transaction`, [`Conn::batch`].
//! - [`Sql`]: where one statement runs (the connection, or a transaction).
//! - [`Batch`]: statements sent together: locally run in order (atomic ones in one transaction), remotely in
//!   ONE HTTP request whatever their number.
//! - [`Row`], [`Rows`]: a row as the decoders read it, from either backend.
//! - [`Remote`]: the Hrana client.
//!
//! # Local
//! libsql parses and plans every statement afresh on `Connection::query`; on the benchmarks' hot paths
//! that planning was a fifth of the server's CPU. A local connection therefore keeps each prepared statement,
//! keyed by its SQL text, and resets it when its rows are done with — a statement left mid-step would hold
//! its read snapshot open.
//!
//! # Remote (why not libsql's own remote `Connection`)
//! Measured against sqld 0.24 (issue 13): libsql 0.10's remote connection keeps one Hrana stream for the life
//! of the process. sqld and Turso expire an idle stream after ~10 s (`STREAM_EXPIRED`) and forget every stream
//! when they restart (`Received an invalid baton`); the connection never recovers, so a warm Lambda instance
//! that idled answered 500 until it was recycled. It also sends every statement — and BEGIN and COMMIT — as a
//! request of its own, and its batches take only SQL text, no parameters. Hrana itself has parameterised
//! batches with conditional steps, so here:
//! - every unit of work is one pipeline request. It goes on a stream a clean earlier unit left open less than
//!   5 s ago (sqld then opens no new connection: 0.3-0.5 ms of its CPU per request instead of 0.9-1.2 ms),
//!   else on a fresh one. A kept stream that expired or that a restarted server forgot is refused before any
//!   of the request runs (`STREAM_EXPIRED`, `BATON_*`), so the unit is sent again on a fresh stream — the one
//!   retry, safe for writes because nothing ran. Nothing depends on a stream surviving, so an idle instance or
//!   a restarted server costs at most that one extra request;
//! - a [`Batch`] (a whole transaction: `BEGIN`, the statements each conditioned on the one before, `COMMIT`,
//!   `ROLLBACK` if the commit did not run) is one round trip and holds the database's write lock only while the
//!   server executes it, not across network round trips;
//! - interactive transactions (migrations only need them) open a stream with their first statement and close it
//!   with `COMMIT`;
//! - `PRAGMA foreign_keys = ON` leads every pipeline (each stream is a new connection on the server), in the
//!   same request;
//! - a server that cannot be reached, or answers 5xx, is [`Error::DatabaseUnavailable`] (503 with
//!   `Retry-After`). Nothing is retried blindly: a request that failed after it was sent may have committed.
//!   Only a pooled keep-alive connection the server had already closed is retried, by hyper, before anything
//!   was written to it.
//!
//! Round trips are counted ([`Remote::round_trips`]) so the bench can report them; the tests count them
//! independently, with a proxy in front of sqld.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libsql::params::{IntoParams, Params};
use libsql::{Connection, Statement, Transaction, Value};
use libsql_hrana::proto;

use crate::error::{Error, Result};

/// More distinct statement texts than the store has; beyond it a statement is prepared and dropped as before.
const MAX_CACHED: usize = 256;

type Cache = Mutex<HashMap<String, Statement>>;

/// The local connection a `Store` serialises access to.
pub(super) struct Local {
    conn: Connection,
    cache: Cache,
}

impl Local {
    pub(super) fn new(conn: Connection) -> Self {
        Self { conn, cache: Mutex::new(HashMap::new()) }
    }
}

/// What a store method talks to: the local connection (locked) or the remote server (no lock: every unit of
/// work is a request of its own, and the server serialises writers).
pub(super) enum Conn<'a> {
    Local(tokio::sync::MutexGuard<'a, Local>),
    Remote(&'a Remote),
}

impl Conn<'_> {
    pub(super) fn sql(&self) -> Sql<'_> {
        match self {
            Self::Local(local) => Sql::Local { conn: &local.conn, cache: &local.cache },
            Self::Remote(remote) => Sql::Remote(remote),
        }
    }

    pub(super) async fn query(&self, sql: &str, params: impl IntoParams) -> Result<Rows<'_>> {
        self.sql().query(sql, params).await
    }

    pub(super) async fn execute(&self, sql: &str, params: impl IntoParams) -> Result<u64> {
        self.sql().execute(sql, params).await
    }

    /// An interactive transaction. Remotely every statement in it is a round trip: prefer [`Self::batch`].
    pub(super) async fn transaction(&self) -> Result<Tx<'_>> {
        Ok(match self {
            Self::Local(local) => {
                Tx::Local { tx: local.conn.transaction().await?, conn: &local.conn, cache: &local.cache }
            }
            Self::Remote(remote) => Tx::Remote(RemoteTx::new(remote)),
        })
    }

    /// Runs the batch's statements in order; atomic batches in one transaction. Remotely: one round trip.
    pub(super) async fn batch(&self, batch: Batch) -> Result<Outcomes> {
        match self {
            Self::Local(local) => local_batch(&local.conn, &local.cache, batch).await,
            Self::Remote(remote) => remote.batch(batch).await,
        }
    }
}

/// A transaction on the store's connection.
pub(super) enum Tx<'a> {
    Local { tx: Transaction, conn: &'a Connection, cache: &'a Cache },
    Remote(RemoteTx<'a>),
}

impl Tx<'_> {
    pub(super) fn sql(&self) -> Sql<'_> {
        match self {
            // A local transaction is the connection's own state: its statements are the connection's.
            Self::Local { conn, cache, .. } => Sql::Local { conn, cache },
            Self::Remote(tx) => Sql::RemoteTx(tx),
        }
    }

    pub(super) async fn query(&self, sql: &str, params: impl IntoParams) -> Result<Rows<'_>> {
        self.sql().query(sql, params).await
    }

    pub(super) async fn execute(&self, sql: &str, params: impl IntoParams) -> Result<u64> {
        self.sql().execute(sql, params).await
    }

    /// Several statements as one text, no parameters (migrations).
    pub(super) async fn execute_script(&self, sql: &str) -> Result<()> {
        match self {
            Self::Local { tx, .. } => {
                tx.execute_batch(sql).await?;
                Ok(())
            }
            Self::Remote(tx) => tx.script(sql).await,
        }
    }

    pub(super) async fn commit(self) -> Result<()> {
        match self {
            Self::Local { tx, .. } => Ok(tx.commit().await?),
            Self::Remote(tx) => tx.commit().await,
        }
    }
}

/// Where a statement runs.
#[derive(Clone, Copy)]
pub(super) enum Sql<'a> {
    Local { conn: &'a Connection, cache: &'a Cache },
    Remote(&'a Remote),
    RemoteTx(&'a RemoteTx<'a>),
}

impl<'a> Sql<'a> {
    pub(super) async fn query(self, sql: &str, params: impl IntoParams) -> Result<Rows<'a>> {
        match self {
            Self::Local { conn, cache } => {
                let (key, statement) = take(conn, cache, sql).await?;
                match statement.query(params).await {
                    Ok(rows) => Ok(Rows::Local { rows: Some(rows), back: Some(Back { cache, key, statement }) }),
                    Err(err) => {
                        Back { cache, key, statement }.give_back();
                        Err(err.into())
                    }
                }
            }
            Self::Remote(remote) => Ok(remote.single(stmt(sql, params, true)?).await?.into()),
            Self::RemoteTx(tx) => Ok(tx.run(stmt(sql, params, true)?).await?.into()),
        }
    }

    pub(super) async fn execute(self, sql: &str, params: impl IntoParams) -> Result<u64> {
        match self {
            Self::Local { conn, cache } => {
                let (key, statement) = take(conn, cache, sql).await?;
                let changed = statement.execute(params).await;
                Back { cache, key, statement }.give_back();
                Ok(changed? as u64)
            }
            Self::Remote(remote) => Ok(remote.single(stmt(sql, params, false)?).await?.affected),
            Self::RemoteTx(tx) => Ok(tx.run(stmt(sql, params, false)?).await?.affected),
        }
    }
}

/// The statement for `sql`, out of the cache while it is in use (so a nested use of the same text gets a
/// statement of its own rather than resetting this one).
async fn take(conn: &Connection, cache: &Cache, sql: &str) -> libsql::Result<(String, Statement)> {
    let cached = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_entry(sql);
    match cached {
        Some(entry) => Ok(entry),
        None => Ok((sql.to_owned(), conn.prepare(sql).await?)),
    }
}

pub(super) struct Back<'a> {
    cache: &'a Cache,
    key: String,
    statement: Statement,
}

impl Back<'_> {
    fn give_back(self) {
        self.statement.reset();
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() < MAX_CACHED || cache.contains_key(&self.key) {
            cache.insert(self.key, self.statement);
        }
    }
}

/// A row: read in place from a local statement, or values already received.
pub(super) enum Row {
    Live(libsql::Row),
    Values(Vec<Value>),
}

impl Row {
    pub(super) fn get_value(&self, i: i32) -> Result<Value> {
        match self {
            Self::Live(row) => Ok(row.get_value(i)?),
            Self::Values(values) => usize::try_from(i)
                .ok()
                .and_then(|i| values.get(i))
                .cloned()
                .ok_or_else(|| Error::bug(format!("column {i} out of range"))),
        }
    }

    fn into_values(self, columns: i32) -> Result<Vec<Value>> {
        match self {
            Self::Live(row) => (0..columns).map(|i| Ok(row.get_value(i)?)).collect(),
            Self::Values(values) => Ok(values),
        }
    }
}

/// A statement's rows. Locally the statement goes back to the cache, reset, when they are dropped.
pub(super) enum Rows<'a> {
    Local { rows: Option<libsql::Rows>, back: Option<Back<'a>> },
    Remote { rows: std::vec::IntoIter<Vec<Value>>, columns: Vec<String> },
}

impl Rows<'_> {
    pub(super) async fn next(&mut self) -> Result<Option<Row>> {
        match self {
            Self::Local { rows: Some(rows), .. } => Ok(rows.next().await?.map(Row::Live)),
            Self::Local { rows: None, .. } => Ok(None),
            Self::Remote { rows, .. } => Ok(rows.next().map(Row::Values)),
        }
    }

    pub(super) fn column_names(&self) -> Vec<String> {
        match self {
            Self::Local { rows: Some(rows), .. } => {
                (0..rows.column_count()).map(|i| rows.column_name(i).unwrap_or_default().to_owned()).collect()
            }
            Self::Local { rows: None, .. } => Vec::new(),
            Self::Remote { columns, .. } => columns.clone(),
        }
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        if let Self::Local { rows, back } = self {
            // The rows hold the statement too: they go first, then the statement is reset and kept.
            rows.take();
            if let Some(back) = back.take() {
                back.give_back();
            }
        }
    }
}

/// Statements sent together. `write()` batches are atomic: all of them or none.
#[derive(Debug, Default)]
pub(super) struct Batch {
    atomic: bool,
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    sql: String,
    params: Vec<Value>,
}

impl Batch {
    /// Reads (or independent writes): each statement runs on its own, a failed one does not stop the others.
    pub(super) fn read() -> Self {
        Self { atomic: false, steps: Vec::new() }
    }

    /// One transaction: a statement runs only if every one before it succeeded; a failure rolls all back.
    pub(super) fn write() -> Self {
        Self { atomic: true, steps: Vec::new() }
    }

    /// Adds a statement; answers its index in the [`Outcomes`].
    pub(super) fn push(&mut self, sql: impl Into<String>, params: impl IntoParams) -> Result<usize> {
        let params = positional(params)?;
        self.steps.push(Step { sql: sql.into(), params });
        Ok(self.steps.len() - 1)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// What each statement of a batch gave, by the index `push` answered.
#[derive(Debug)]
pub(super) struct Outcomes(Vec<Outcome>);

#[derive(Debug)]
enum Outcome {
    Done(Set),
    Failed(libsql::Error),
    /// Not run: an earlier statement of the atomic batch failed.
    Skipped,
}

/// A statement's rows and how many rows it changed.
#[derive(Debug, Default)]
pub(super) struct Set {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
    pub affected: u64,
}

impl Set {
    pub(super) fn rows(self) -> impl Iterator<Item = Row> {
        self.rows.into_iter().map(Row::Values)
    }
}

impl From<Set> for Rows<'_> {
    fn from(set: Set) -> Self {
        Rows::Remote { rows: set.rows.into_iter(), columns: set.columns }
    }
}

impl Outcomes {
    /// The statement's result: its error if it failed, [`Error::Internal`] if it never ran.
    pub(super) fn take(&mut self, index: usize) -> Result<Set> {
        match self.0.get_mut(index).map(|o| std::mem::replace(o, Outcome::Skipped)) {
            Some(Outcome::Done(set)) => Ok(set),
            Some(Outcome::Failed(err)) => Err(err.into()),
            Some(Outcome::Skipped) | None => Err(Error::bug(format!("batch statement {index} did not run"))),
        }
    }

    /// Which statement failed first, if one did.
    pub(super) fn failed_at(&self) -> Option<usize> {
        self.0.iter().position(|o| matches!(o, Outcome::Failed(_)))
    }

    /// The first failure of the batch, if any (an atomic batch with one wrote nothing).
    pub(super) fn first_error(&mut self) -> Option<libsql::Error> {
        let index = self.0.iter().position(|o| matches!(o, Outcome::Failed(_)))?;
        match std::mem::replace(&mut self.0[index], Outcome::Skipped) {
            Outcome::Failed(err) => Some(err),
            _ => None,
        }
    }
}

pub(super) fn positional(params: impl IntoParams) -> Result<Vec<Value>> {
    match params.into_params()? {
        Params::None => Ok(Vec::new()),
        Params::Positional(values) => Ok(values),
        Params::Named(_) => Err(Error::bug("named parameters are not used by the store")),
    }
}

async fn local_batch(conn: &Connection, cache: &Cache, batch: Batch) -> Result<Outcomes> {
    let sql = Sql::Local { conn, cache };
    let tx = if batch.atomic { Some(conn.transaction().await?) } else { None };
    let mut out = Vec::with_capacity(batch.steps.len());
    let mut failed = false;
    for step in batch.steps {
        if failed && batch.atomic {
            out.push(Outcome::Skipped);
            continue;
        }
        match local_step(sql, step).await {
            Ok(set) => out.push(Outcome::Done(set)),
            Err(Error::Database(err)) => {
                failed = true;
                out.push(Outcome::Failed(err));
            }
            Err(other) => return Err(other),
        }
    }
    if let Some(tx) = tx {
        if failed { tx.rollback().await? } else { tx.commit().await? }
    }
    Ok(Outcomes(out))
}

async fn local_step(sql: Sql<'_>, step: Step) -> Result<Set> {
    let Sql::Local { conn, cache } = sql else { unreachable!("local batches run on the local connection") };
    let (key, statement) = take(conn, cache, &step.sql).await?;
    let params = step.params;
    let result = async {
        let columns = statement.column_count();
        if columns == 0 {
            let affected = statement.execute(Params::Positional(params)).await?;
            return Ok(Set { columns: Vec::new(), rows: Vec::new(), affected: affected as u64 });
        }
        let mut rows = statement.query(Params::Positional(params)).await?;
        let mut out = Vec::new();
        let columns = i32::try_from(columns).unwrap_or(i32::MAX);
        while let Some(row) = rows.next().await? {
            out.push(Row::Live(row).into_values(columns)?);
        }
        drop(rows);
        Ok(Set { columns: Vec::new(), rows: out, affected: conn.changes() })
    };
    let result: Result<Set> = result.await;
    Back { cache, key, statement }.give_back();
    result
}

fn stmt(sql: &str, params: impl IntoParams, want_rows: bool) -> Result<proto::Stmt> {
    let mut stmt = proto::Stmt::new(sql, want_rows);
    stmt.args = positional(params)?.into_iter().map(to_hrana).collect();
    Ok(stmt)
}

fn to_hrana(value: Value) -> proto::Value {
    match value {
        Value::Null => proto::Value::Null,
        Value::Integer(value) => proto::Value::Integer { value },
        Value::Real(value) => proto::Value::Float { value },
        Value::Text(value) => proto::Value::Text { value: value.into() },
        Value::Blob(value) => proto::Value::Blob { value: value.into() },
    }
}

fn from_hrana(value: proto::Value) -> Value {
    match value {
        proto::Value::None | proto::Value::Null => Value::Null,
        proto::Value::Integer { value } => Value::Integer(value),
        proto::Value::Float { value } => Value::Real(value),
        proto::Value::Text { value } => Value::Text(value.to_string()),
        proto::Value::Blob { value } => Value::Blob(value.to_vec()),
    }
}

fn set_of(result: proto::StmtResult) -> Set {
    Set {
        columns: result.cols.into_iter().map(|c| c.name.unwrap_or_default()).collect(),
        rows: result.rows.into_iter().map(|row| row.values.into_iter().map(from_hrana).collect()).collect(),
        affected: result.affected_row_count,
    }
}

/// A statement error as the rest of the store reads it, the same as a local one: SQLite's result code and
/// message (e.g. 19, "UNIQUE constraint failed: users.username"). sqld sends the primary code's name
/// (`SQLITE_CONSTRAINT` for every constraint; measured on sqld 0.24) and prefixes the message with
/// "SQLite error: ". A code this does not know stays in the message, with 0 as the code.
fn statement_error(error: proto::Error) -> libsql::Error {
    let message = error.message.strip_prefix("SQLite error: ").unwrap_or(&error.message);
    match result_code(&error.code) {
        Some(code) => libsql::Error::SqliteFailure(code, message.to_owned()),
        None => libsql::Error::SqliteFailure(0, format!("{message} ({})", error.code)),
    }
}

/// The SQLite result code a Hrana error code names (sqld: the primary codes; extended ones accepted too).
fn result_code(name: &str) -> Option<std::ffi::c_int> {
    use libsql::ffi;
    Some(match name {
        "SQLITE_ERROR" => ffi::SQLITE_ERROR,
        "SQLITE_BUSY" => ffi::SQLITE_BUSY,
        "SQLITE_LOCKED" => ffi::SQLITE_LOCKED,
        "SQLITE_READONLY" => ffi::SQLITE_READONLY,
        "SQLITE_FULL" => ffi::SQLITE_FULL,
        "SQLITE_TOOBIG" => ffi::SQLITE_TOOBIG,
        "SQLITE_MISMATCH" => ffi::SQLITE_MISMATCH,
        "SQLITE_RANGE" => ffi::SQLITE_RANGE,
        "SQLITE_CONSTRAINT" => ffi::SQLITE_CONSTRAINT,
        "SQLITE_CONSTRAINT_UNIQUE" => ffi::SQLITE_CONSTRAINT_UNIQUE,
        "SQLITE_CONSTRAINT_PRIMARYKEY" => ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
        "SQLITE_CONSTRAINT_CHECK" => ffi::SQLITE_CONSTRAINT_CHECK,
        "SQLITE_CONSTRAINT_NOTNULL" => ffi::SQLITE_CONSTRAINT_NOTNULL,
        "SQLITE_CONSTRAINT_FOREIGNKEY" => ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
        _ => return None,
    })
}

fn request(stmt: proto::Stmt) -> proto::StreamRequest {
    proto::StreamRequest::Execute(proto::ExecuteStreamReq { stmt })
}

/// A remote libsql server (sqld, Turso) over Hrana's HTTP pipeline (`/v3/pipeline`).
#[derive(Clone)]
pub struct Remote {
    client: reqwest::Client,
    pipeline: String,
    token: Option<String>,
    round_trips: Arc<AtomicU64>,
    /// Streams of finished units of work, newest last (see [`Remote::unit`]).
    idle: Arc<Mutex<Vec<Idle>>>,
}

/// A server-side stream left open after a clean unit of work.
struct Idle {
    baton: String,
    url: Option<String>,
    at: std::time::Instant,
}

fn kept(baton: Option<String>, url: Option<String>) -> Option<Idle> {
    baton.map(|baton| Idle { baton, url, at: std::time::Instant::now() })
}

/// How long an idle stream is reused: well inside sqld's and Turso's ~10 s expiry, so a kept stream is
/// rarely gone when used (and when it is, [`Remote::unit`] sends the work again on a fresh one).
const STREAM_REUSE: Duration = Duration::from_secs(5);

/// Idle streams kept at most (each holds a connection on the server).
const MAX_IDLE_STREAMS: usize = 8;

/// Why [`Remote::send`] failed: a refused kept stream (which [`Remote::unit`] sends again on a fresh one) is
/// told apart by its variant, not by an error's text.
enum Refused {
    /// The server did not know the kept stream (expired, or it restarted) and ran none of the request; its
    /// answer's text.
    StaleStream(String),
    Failed(Error),
}

impl Refused {
    /// Outside [`Remote::unit`] a stale stream is not retried: it is an error like any other.
    fn into_error(self) -> Error {
        match self {
            Self::StaleStream(text) => Error::internal("the database no longer knew the stream", text),
            Self::Failed(err) => err,
        }
    }
}

impl From<Error> for Refused {
    fn from(err: Error) -> Self {
        Self::Failed(err)
    }
}

fn encode(request: &proto::StreamRequest) -> Result<serde_json::Value> {
    serde_json::to_value(request).map_err(|e| Error::internal("encoding a Hrana request", e))
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("pipeline", &self.pipeline).finish_non_exhaustive()
    }
}

/// How long a pooled connection to the database may sit idle before it is dropped rather than reused: under
/// the keep-alive limits of the proxies in front of hosted databases, and short enough that a Lambda instance
/// thawed after a long pause opens a fresh one instead of writing into a connection the network forgot.
const POOL_IDLE: Duration = Duration::from_secs(20);

impl Remote {
    pub(super) fn new(url: &str, token: Option<&str>, connect_timeout: Duration) -> Result<Self> {
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
            pipeline: format!("{}/v3/pipeline", base.trim_end_matches('/')),
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
            round_trips: Arc::default(),
            idle: Arc::default(),
        })
    }

    /// One trivial statement: a wrong URL or a refused token shows at start.
    pub(super) async fn probe(&self) -> Result<()> {
        self.single(proto::Stmt::new("SELECT 1", true)).await.map(drop)
    }

    /// HTTP requests sent to the database so far.
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// One pipeline request: `PRAGMA foreign_keys = ON`, then `requests`, on the stream `baton` names (a new
    /// one without). Answers the stream's baton (None once closed), its base URL, and the results of
    /// `requests` (the pragma's left out).
    async fn pipeline(
        &self,
        url: Option<&str>,
        baton: Option<String>,
        requests: Vec<proto::StreamRequest>,
    ) -> Result<(Option<String>, Option<String>, Vec<proto::StreamResult>)> {
        let requests = requests.iter().map(encode).collect::<Result<Vec<_>>>()?;
        self.send(url, baton, &requests).await.map_err(Refused::into_error)
    }

    /// [`Self::pipeline`] for requests already encoded (a unit of work may be sent twice, see [`Self::unit`]).
    async fn send(
        &self,
        url: Option<&str>,
        baton: Option<String>,
        requests: &[serde_json::Value],
    ) -> Result<(Option<String>, Option<String>, Vec<proto::StreamResult>), Refused> {
        let fresh = baton.is_none();
        let mut all = Vec::with_capacity(requests.len() + 1);
        if fresh {
            all.push(encode(&request(proto::Stmt::new("PRAGMA foreign_keys = ON", false)))?);
        }
        all.extend_from_slice(requests);
        let body = serde_json::to_vec(&serde_json::json!({"baton": baton, "requests": all}))
            .map_err(|e| Error::internal("encoding a Hrana request", e))?;
        let mut http = self
            .client
            .post(url.unwrap_or(&self.pipeline))
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
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            // The server does not know the stream (it expired: `STREAM_EXPIRED`; or the server restarted:
            // "Received an invalid baton", sqld 0.24): it refused the request before running any of it.
            if !fresh
                && status == reqwest::StatusCode::BAD_REQUEST
                && (text.contains("STREAM_EXPIRED") || text.to_ascii_lowercase().contains("baton"))
            {
                return Err(Refused::StaleStream(text));
            }
            return Err(Error::Database(libsql::Error::Hrana(format!("status={status}: {text}").into())).into());
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
        let base = parsed.base_url.map(|b| format!("{}/v3/pipeline", b.trim_end_matches('/')));
        Ok((parsed.baton, base, results))
    }

    /// One statement on a stream of its own.
    async fn single(&self, stmt: proto::Stmt) -> Result<Set> {
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
            match self.send(idle.url.as_deref(), Some(idle.baton), requests).await {
                Ok((baton, url, results)) => return Ok((kept(baton, url.or(idle.url)), results)),
                Err(Refused::StaleStream(message)) => {
                    tracing::debug!(%message, "a kept database stream was gone; sending on a fresh one");
                }
                Err(Refused::Failed(err)) => return Err(err),
            }
        }
        let (baton, url, results) = self.send(None, None, requests).await.map_err(Refused::into_error)?;
        Ok((kept(baton, url), results))
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

    async fn batch(&self, batch: Batch) -> Result<Outcomes> {
        let count = batch.steps.len();
        let stmts = batch.steps.into_iter().map(|step| {
            let mut stmt = proto::Stmt::new(step.sql, true);
            stmt.args = step.params.into_iter().map(to_hrana).collect();
            stmt
        });
        let (hrana, offset) = if batch.atomic {
            (transactional(stmts), 1)
        } else {
            let steps = stmts.map(|stmt| proto::BatchStep { condition: None, stmt }).collect();
            (proto::Batch { steps, replication_index: None }, 0)
        };
        let request = encode(&proto::StreamRequest::Batch(proto::BatchStreamReq { batch: hrana }))?;
        let (idle, results) = self.unit(&[request]).await?;
        let result = match results.into_iter().next() {
            Some(proto::StreamResult::Ok { response: proto::StreamResponse::Batch(resp) }) => resp.result,
            Some(proto::StreamResult::Error { error }) => return Err(Error::Database(statement_error(error))),
            other => return Err(Error::bug(format!("unexpected Hrana batch result: {other:?}"))),
        };
        let mut results = result.step_results.into_iter();
        let mut errors = result.step_errors.into_iter();
        if offset == 1 {
            // BEGIN IMMEDIATE: if it failed (the database is busy), nothing ran.
            results.next();
            if let Some(error) = errors.next().flatten() {
                return Err(Error::Database(statement_error(error)));
            }
        }
        let mut out = Vec::with_capacity(count);
        for _ in 0..count {
            out.push(match (results.next().flatten(), errors.next().flatten()) {
                (_, Some(error)) => Outcome::Failed(statement_error(error)),
                (Some(set), None) => Outcome::Done(set_of(set)),
                (None, None) => Outcome::Skipped,
            });
        }
        if batch.atomic && out.iter().all(|o| matches!(o, Outcome::Done(_))) {
            // Every statement ran; the COMMIT step must have too, or nothing was written.
            if let Some(error) = errors.next().flatten() {
                return Err(Error::Database(statement_error(error)));
            }
        }
        // A stream is kept only after a batch with no failed step: it is certainly out of any transaction.
        if out.iter().all(|o| matches!(o, Outcome::Done(_))) {
            self.keep(idle);
        }
        Ok(Outcomes(out))
    }
}

/// `BEGIN IMMEDIATE` (the write lock is taken up front, so two batches never deadlock upgrading a read), each
/// statement conditioned on the one before, `COMMIT` if the last ran, `ROLLBACK` if the commit did not.
fn transactional(stmts: impl Iterator<Item = proto::Stmt>) -> proto::Batch {
    let mut steps = vec![proto::BatchStep { condition: None, stmt: proto::Stmt::new("BEGIN IMMEDIATE", false) }];
    for stmt in stmts {
        let step = u32::try_from(steps.len() - 1).unwrap_or(u32::MAX);
        steps.push(proto::BatchStep { condition: Some(proto::BatchCond::Ok { step }), stmt });
    }
    let last = u32::try_from(steps.len() - 1).unwrap_or(u32::MAX);
    steps.push(proto::BatchStep {
        condition: Some(proto::BatchCond::Ok { step: last }),
        stmt: proto::Stmt::new("COMMIT", false),
    });
    steps.push(proto::BatchStep {
        condition: Some(proto::BatchCond::Not { cond: Box::new(proto::BatchCond::Ok { step: last + 1 }) }),
        stmt: proto::Stmt::new("ROLLBACK", false),
    });
    proto::Batch { steps, replication_index: None }
}

fn close() -> proto::StreamRequest {
    proto::StreamRequest::Close(proto::CloseStreamReq {})
}

fn execute_result(result: Option<proto::StreamResult>) -> Result<Set> {
    match result {
        Some(proto::StreamResult::Ok { response: proto::StreamResponse::Execute(resp) }) => Ok(set_of(resp.result)),
        Some(proto::StreamResult::Error { error }) => Err(Error::Database(statement_error(error))),
        other => Err(Error::bug(format!("unexpected Hrana result: {other:?}"))),
    }
}

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
pub(super) struct RemoteTx<'a> {
    remote: &'a Remote,
    stream: tokio::sync::Mutex<Stream>,
}

#[derive(Default)]
struct Stream {
    begun: bool,
    baton: Option<String>,
    url: Option<String>,
}

impl<'a> RemoteTx<'a> {
    fn new(remote: &'a Remote) -> Self {
        Self { remote, stream: tokio::sync::Mutex::new(Stream::default()) }
    }

    async fn send(&self, request: proto::StreamRequest) -> Result<proto::StreamResult> {
        let mut stream = self.stream.lock().await;
        let mut requests = Vec::with_capacity(2);
        if !stream.begun {
            requests.push(self::request(proto::Stmt::new("BEGIN", false)));
        }
        requests.push(request);
        let baton = stream.baton.take();
        let (baton, url, results) = self.remote.pipeline(stream.url.as_deref(), baton, requests).await?;
        let mut results = results.into_iter();
        if !stream.begun {
            if let Some(proto::StreamResult::Error { error }) = results.next() {
                return Err(Error::Database(statement_error(error)));
            }
            stream.begun = true;
        }
        stream.baton = baton;
        if url.is_some() {
            stream.url = url;
        }
        results.next().ok_or_else(|| Error::bug("Hrana answered no result"))
    }

    async fn run(&self, stmt: proto::Stmt) -> Result<Set> {
        execute_result(Some(self.send(request(stmt)).await?))
    }

    async fn script(&self, sql: &str) -> Result<()> {
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

    async fn commit(self) -> Result<()> {
        let mut stream = self.stream.lock().await;
        if !stream.begun {
            return Ok(());
        }
        stream.begun = false;
        let requests = vec![request(proto::Stmt::new("COMMIT", false)), close()];
        let baton = stream.baton.take();
        let (_, _, results) = self.remote.pipeline(stream.url.as_deref(), baton, requests).await?;
        execute_result(results.into_iter().next()).map(drop)
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
                if let Err(err) = remote.pipeline(stream.url.as_deref(), Some(baton), requests).await {
                    tracing::warn!(error = %err.chain(), "rolling back an abandoned remote transaction failed");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_statement_error_keeps_sqlds_result_code() {
        // As sqld 0.24 answers a UNIQUE (or PRIMARY KEY) violation.
        let error = proto::Error {
            message: "SQLite error: UNIQUE constraint failed: users.username".into(),
            code: "SQLITE_CONSTRAINT".into(),
        };
        let libsql::Error::SqliteFailure(code, message) = statement_error(error) else { panic!() };
        assert_eq!(
            (code, message.as_str()),
            (libsql::ffi::SQLITE_CONSTRAINT, "UNIQUE constraint failed: users.username")
        );
        let error = proto::Error { message: "something else".into(), code: "SQLITE_SOMETHING".into() };
        let libsql::Error::SqliteFailure(code, message) = statement_error(error) else { panic!() };
        assert_eq!((code, message.as_str()), (0, "something else (SQLITE_SOMETHING)"));
    }
}
