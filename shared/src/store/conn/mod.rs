//! The store's connection: an embedded SQLite file (libsql, statements kept prepared) or a remote libsql
//! server spoken to over Hrana's HTTP pipeline, one request per unit of work.
//!
//! # Layout
//! - this file, the facade: [`Conn`] (what `Store::conn()` hands a store method: the local connection under
//!   the store's lock, or the remote client; `sql()`, `query`, `execute`, `transaction`, [`Conn::batch`]),
//!   [`Tx`], [`Sql`] (where one statement runs: the connection, or a transaction), [`Batch`] (statements sent
//!   together: locally run in order, atomic ones in one transaction; remotely ONE HTTP request whatever their
//!   number) and its [`Outcomes`], [`Row`] and [`Rows`] (a row as the decoders read it, from either backend).
//! - `local`: the embedded file and its prepared-statement cache.
//! - `remote`: the Hrana client ([`Remote`]) and its interactive transactions.
//! - `retry`: when a remote request is sent again (nothing ran; or no answer, for work safe to repeat), how
//!   long it waits, and for how long it keeps trying ([`until`] a turn's lease ends, else a short budget).
//! - `wire`: Hrana's wire format, pure: statements and conditional batches out, results and errors back.
//! - `lead`: the statement a request's first unit of work carries ahead of its own (the rate limit's count).
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
//! - an answer that says nothing ran (429, 503, a refused connection, `SQLITE_BUSY` at a batch's `BEGIN`) is
//!   sent again after a jittered wait, within a budget (`retry`); past it, or on another 5xx, the request is
//!   [`Error::DatabaseUnavailable`] (503 with `Retry-After`). A request that got no answer after it was sent
//!   may have committed: it is sent again only if its batch is [`Batch::repeatable`]. (A pooled keep-alive
//!   connection the server had already closed is retried by hyper, before anything was written to it.)
//! - at most `LAMBENT_DATABASE_MAX_IN_FLIGHT` requests are in flight per instance; more wait for a slot.
//!
//! Round trips are counted ([`Remote::round_trips`]) so the bench can report them; the tests count them
//! independently, with a proxy in front of sqld.

pub(super) mod lead;
mod local;
mod remote;
mod retry;
mod wire;

use libsql::params::{IntoParams, Params};
use libsql::{Transaction, Value};

use crate::error::{Error, Result};

pub(super) use local::Local;
use local::{Cached, Prepared};
pub(super) use remote::Limits;
pub use remote::Remote;
use remote::RemoteTx;
pub use retry::until;

/// What a store method talks to: the local connection (locked) or the remote server (no lock: every unit of
/// work is a request of its own, and the server serialises writers).
pub(super) enum Conn<'a> {
    Local(tokio::sync::MutexGuard<'a, Local>),
    Remote(&'a Remote),
}

impl Conn<'_> {
    pub(super) fn sql(&self) -> Sql<'_> {
        match self {
            Self::Local(local) => Sql::Local(local.prepared()),
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
            Self::Local(local) => Tx::Local { tx: local.conn.transaction().await?, prepared: local.prepared() },
            Self::Remote(remote) => Tx::Remote(RemoteTx::new(remote)),
        })
    }

    /// Runs the batch's statements in order; atomic batches in one transaction. Remotely: one round trip
    /// (carrying the request's [`lead`], if armed).
    pub(super) async fn batch(&self, batch: Batch) -> Result<Outcomes> {
        match self {
            Self::Local(local) => {
                run_local_lead(local.prepared()).await?;
                local::batch(local, batch).await
            }
            Self::Remote(remote) => remote.batch(batch, lead::take()).await,
        }
    }
}

/// A transaction on the store's connection.
pub(super) enum Tx<'a> {
    Local { tx: Transaction, prepared: Prepared<'a> },
    Remote(RemoteTx<'a>),
}

impl Tx<'_> {
    pub(super) fn sql(&self) -> Sql<'_> {
        match self {
            // A local transaction is the connection's own state: its statements are the connection's.
            Self::Local { prepared, .. } => Sql::Local(*prepared),
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
    Local(Prepared<'a>),
    Remote(&'a Remote),
    RemoteTx(&'a RemoteTx<'a>),
}

impl<'a> Sql<'a> {
    pub(super) async fn query(self, sql: &str, params: impl IntoParams) -> Result<Rows<'a>> {
        match self {
            Self::Local(prepared) => {
                run_local_lead(prepared).await?;
                prepared.query(sql, params).await
            }
            Self::Remote(remote) => match lead::take() {
                None => Ok(remote.single(wire::stmt(sql, params, true)?).await?.into()),
                Some(lead) => Ok(led_single(remote, lead, sql, params).await?.into()),
            },
            Self::RemoteTx(tx) => Ok(tx.run(wire::stmt(sql, params, true)?).await?.into()),
        }
    }

    pub(super) async fn execute(self, sql: &str, params: impl IntoParams) -> Result<u64> {
        match self {
            Self::Local(prepared) => {
                run_local_lead(prepared).await?;
                prepared.execute(sql, params).await
            }
            Self::Remote(remote) => match lead::take() {
                None => Ok(remote.single(wire::stmt(sql, params, false)?).await?.affected),
                Some(lead) => Ok(led_single(remote, lead, sql, params).await?.affected),
            },
            Self::RemoteTx(tx) => Ok(tx.run(wire::stmt(sql, params, false)?).await?.affected),
        }
    }
}

/// Locally the request's lead is simply run first (there is no round trip to share).
async fn run_local_lead(prepared: Prepared<'_>) -> Result<()> {
    let Some(lead) = lead::take() else { return Ok(()) };
    let outcome = prepared.step(Step { sql: lead.sql.to_owned(), params: lead.params }).await;
    lead::settle(lead.settle, outcome)
}

/// One statement sent remotely with the request's lead ahead of it, in one request.
async fn led_single(remote: &Remote, lead: lead::Lead, sql: &str, params: impl IntoParams) -> Result<Set> {
    let mut batch = Batch::read();
    let at = batch.push(sql, params)?;
    remote.batch(batch, Some(lead)).await?.take(at)
}

/// Runs a lead that no unit of work of its request took, alone (a request that reads nothing else).
pub(super) async fn run_lead(conn: &Conn<'_>, lead: lead::Lead) -> Result<()> {
    match conn {
        Conn::Local(local) => {
            let outcome = local.prepared().step(Step { sql: lead.sql.to_owned(), params: lead.params }).await;
            lead::settle(lead.settle, outcome)
        }
        Conn::Remote(remote) => remote.batch(Batch::read(), Some(lead)).await.map(drop),
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
    Local { rows: Option<libsql::Rows>, back: Option<Cached<'a>> },
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
    /// Safe to run twice: sent again when a request got no answer (see `retry`).
    repeatable: bool,
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
        Self { atomic: false, repeatable: false, steps: Vec::new() }
    }

    /// One transaction: a statement runs only if every one before it succeeded; a failure rolls all back.
    pub(super) fn write() -> Self {
        Self { atomic: true, repeatable: false, steps: Vec::new() }
    }

    /// Marks the batch safe to run twice (its writes are conditioned so that a second run changes nothing):
    /// remotely, a request that was sent but got no answer (a timeout) is then sent again instead of failing.
    pub(super) fn repeatable(mut self) -> Self {
        self.repeatable = true;
        self
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
