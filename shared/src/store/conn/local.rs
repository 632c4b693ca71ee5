//! The embedded connection: a libsql file under the store's lock, its prepared statements kept.
//!
//! libsql parses and plans every statement afresh on `Connection::query`; on the benchmarks' hot paths that
//! planning was a fifth of the server's CPU. A local connection therefore keeps each prepared statement, keyed
//! by its SQL text, and resets it when its rows are done with — a statement left mid-step would hold its read
//! snapshot open.
//!
//! # Layout
//! - [`Local`]: the connection and its statement cache, what the store's mutex guards.
//! - [`Prepared`]: a borrowed view of both, where a statement runs (`query`, `execute`).
//! - [`Cached`]: a statement out of the cache while in use; given back (reset) when done.
//! - [`batch`]: a [`Batch`] run statement by statement, atomic ones in one transaction.

use std::collections::HashMap;
use std::sync::Mutex;

use libsql::params::{IntoParams, Params};
use libsql::{Connection, Statement};

use super::{Batch, Outcome, Outcomes, Row, Rows, Set, Step};
use crate::error::{Error, Result};

/// More distinct statement texts than the store has; beyond it a statement is prepared and dropped as before.
const MAX_CACHED: usize = 256;

type Cache = Mutex<HashMap<String, Statement>>;

/// The local connection a `Store` serialises access to.
pub(in crate::store) struct Local {
    pub(super) conn: Connection,
    cache: Cache,
}

impl Local {
    pub(in crate::store) fn new(conn: Connection) -> Self {
        Self { conn, cache: Mutex::new(HashMap::new()) }
    }

    pub(super) fn prepared(&self) -> Prepared<'_> {
        Prepared { conn: &self.conn, cache: &self.cache }
    }
}

/// The connection with its statement cache: where a local statement runs (a local transaction is the
/// connection's own state, so its statements are the connection's too).
#[derive(Clone, Copy)]
pub(in crate::store) struct Prepared<'a> {
    conn: &'a Connection,
    cache: &'a Cache,
}

/// A statement taken out of the cache while it is in use (so a nested use of the same text gets a statement
/// of its own rather than resetting this one); [`Cached::give_back`] resets it and returns it.
pub(in crate::store) struct Cached<'a> {
    cache: &'a Cache,
    sql: String,
    statement: Statement,
}

impl<'a> Prepared<'a> {
    async fn take(self, sql: &str) -> libsql::Result<Cached<'a>> {
        let cached = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_entry(sql);
        let (sql, statement) = match cached {
            Some(entry) => entry,
            None => (sql.to_owned(), self.conn.prepare(sql).await?),
        };
        Ok(Cached { cache: self.cache, sql, statement })
    }

    pub(super) async fn query(self, sql: &str, params: impl IntoParams) -> Result<Rows<'a>> {
        let cached = self.take(sql).await?;
        match cached.statement.query(params).await {
            Ok(rows) => Ok(Rows::Local { rows: Some(rows), back: Some(cached) }),
            Err(err) => {
                cached.give_back();
                Err(err.into())
            }
        }
    }

    pub(super) async fn execute(self, sql: &str, params: impl IntoParams) -> Result<u64> {
        let cached = self.take(sql).await?;
        let changed = cached.statement.execute(params).await;
        cached.give_back();
        Ok(changed? as u64)
    }

    /// One statement of a batch, its rows read out.
    pub(super) async fn step(self, step: Step) -> Result<Set> {
        let cached = self.take(&step.sql).await?;
        let statement = &cached.statement;
        let result = async {
            let columns = statement.column_count();
            if columns == 0 {
                let affected = statement.execute(Params::Positional(step.params)).await?;
                return Ok(Set { columns: Vec::new(), rows: Vec::new(), affected: affected as u64 });
            }
            let mut rows = statement.query(Params::Positional(step.params)).await?;
            let mut out = Vec::new();
            let columns = i32::try_from(columns).unwrap_or(i32::MAX);
            while let Some(row) = rows.next().await? {
                out.push(Row::Live(row).into_values(columns)?);
            }
            drop(rows);
            Ok(Set { columns: Vec::new(), rows: out, affected: self.conn.changes() })
        };
        let result: Result<Set> = result.await;
        cached.give_back();
        result
    }
}

impl Cached<'_> {
    pub(super) fn give_back(self) {
        self.statement.reset();
        let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() < MAX_CACHED || cache.contains_key(&self.sql) {
            cache.insert(self.sql, self.statement);
        }
    }
}

/// Runs the batch's statements in order; an atomic batch in one transaction, rolled back at its first failure
/// (the statements after it are not run).
pub(super) async fn batch(local: &Local, batch: Batch) -> Result<Outcomes> {
    let prepared = local.prepared();
    let tx = if batch.atomic { Some(local.conn.transaction().await?) } else { None };
    let mut out = Vec::with_capacity(batch.steps.len());
    let mut failed = false;
    for step in batch.steps {
        if failed && batch.atomic {
            out.push(Outcome::Skipped);
            continue;
        }
        match prepared.step(step).await {
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
