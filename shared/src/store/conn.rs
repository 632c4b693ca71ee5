//! The store's connection, with the statements prepared on it kept for reuse.
//!
//! libsql parses and plans every statement afresh on `Connection::query`; on the benchmarks' hot paths
//! (a list request runs three statements, a streamed turn about twenty) that planning was a fifth of the
//! server's CPU. A local connection therefore keeps each prepared statement, keyed by its SQL text, and resets
//! it when its rows are done with — a statement left mid-step would hold its read snapshot open. Remote
//! connections (Hrana over HTTP) are not cached: there a statement is text sent per request anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use libsql::params::IntoParams;
use libsql::{Connection, Row, Statement, Transaction};

/// More distinct statement texts than the store has (frame batches of different sizes are the only
/// generated SQL); beyond it a statement is prepared and dropped as before.
const MAX_CACHED: usize = 256;

type Cache = Mutex<HashMap<String, Statement>>;

/// The connection a `Store` serialises access to.
pub(super) struct Db {
    conn: Connection,
    /// `None` for a remote database.
    cache: Option<Cache>,
}

impl Db {
    pub(super) fn new(conn: Connection, remote: bool) -> Self {
        Self { conn, cache: (!remote).then(|| Mutex::new(HashMap::new())) }
    }

    /// The connection itself, for what is not a cached statement (migrations' batches, pragmas).
    pub(super) fn raw(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn sql(&self) -> Sql<'_> {
        Sql { conn: &self.conn, cache: self.cache.as_ref() }
    }

    pub(super) async fn query(&self, sql: &str, params: impl IntoParams) -> libsql::Result<Rows<'_>> {
        self.sql().query(sql, params).await
    }

    pub(super) async fn execute(&self, sql: &str, params: impl IntoParams) -> libsql::Result<u64> {
        self.sql().execute(sql, params).await
    }

    pub(super) async fn transaction(&self) -> libsql::Result<Tx<'_>> {
        Ok(Tx { tx: self.conn.transaction().await?, db: self })
    }
}

/// A transaction on the store's connection.
pub(super) struct Tx<'a> {
    tx: Transaction,
    db: &'a Db,
}

impl Tx<'_> {
    pub(super) fn sql(&self) -> Sql<'_> {
        match &self.db.cache {
            // A local transaction is the connection's own state: its statements are the connection's.
            Some(cache) => Sql { conn: &self.db.conn, cache: Some(cache) },
            // A remote transaction is a stream of its own; statements must go through it.
            None => Sql { conn: &self.tx, cache: None },
        }
    }

    pub(super) async fn query(&self, sql: &str, params: impl IntoParams) -> libsql::Result<Rows<'_>> {
        self.sql().query(sql, params).await
    }

    pub(super) async fn execute(&self, sql: &str, params: impl IntoParams) -> libsql::Result<u64> {
        self.sql().execute(sql, params).await
    }

    pub(super) async fn commit(self) -> libsql::Result<()> {
        self.tx.commit().await
    }
}

/// Where a statement runs: the connection (or a remote transaction's stream) and, locally, its statements.
#[derive(Clone, Copy)]
pub(super) struct Sql<'a> {
    conn: &'a Connection,
    cache: Option<&'a Cache>,
}

impl<'a> Sql<'a> {
    pub(super) async fn query(self, sql: &str, params: impl IntoParams) -> libsql::Result<Rows<'a>> {
        let Some(cache) = self.cache else {
            return Ok(Rows { rows: Some(self.conn.query(sql, params).await?), back: None });
        };
        let (key, statement) = self.take(cache, sql).await?;
        match statement.query(params).await {
            Ok(rows) => Ok(Rows { rows: Some(rows), back: Some(Back { cache, key, statement }) }),
            Err(err) => {
                Back { cache, key, statement }.give_back();
                Err(err)
            }
        }
    }

    pub(super) async fn execute(self, sql: &str, params: impl IntoParams) -> libsql::Result<u64> {
        let Some(cache) = self.cache else { return self.conn.execute(sql, params).await };
        let (key, statement) = self.take(cache, sql).await?;
        let changed = statement.execute(params).await;
        Back { cache, key, statement }.give_back();
        changed.map(|n| n as u64)
    }

    /// The statement for `sql`, out of the cache while it is in use (so a nested use of the same text gets a
    /// statement of its own rather than resetting this one).
    async fn take(self, cache: &Cache, sql: &str) -> libsql::Result<(String, Statement)> {
        let cached = cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove_entry(sql);
        match cached {
            Some(entry) => Ok(entry),
            None => Ok((sql.to_owned(), self.conn.prepare(sql).await?)),
        }
    }
}

struct Back<'a> {
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

/// A statement's rows; the statement goes back to the cache, reset, when they are dropped.
pub(super) struct Rows<'a> {
    rows: Option<libsql::Rows>,
    back: Option<Back<'a>>,
}

impl Rows<'_> {
    pub(super) async fn next(&mut self) -> libsql::Result<Option<Row>> {
        match &mut self.rows {
            Some(rows) => rows.next().await,
            None => Ok(None),
        }
    }

    pub(super) fn column_count(&self) -> i32 {
        self.rows.as_ref().map_or(0, libsql::Rows::column_count)
    }

    pub(super) fn column_name(&self, i: i32) -> Option<&str> {
        self.rows.as_ref().and_then(|rows| rows.column_name(i))
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        // The rows hold the statement too: they go first, then the statement is reset and kept.
        self.rows.take();
        if let Some(back) = self.back.take() {
            back.give_back();
        }
    }
}
