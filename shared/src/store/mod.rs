//! libsql storage: opening the database, the migration runner, and (one file per aggregate) every SQL
//! statement Lambent runs.
//!
//! Locally: one connection per process, used under an async mutex: SQLite serialises writers anyway, and a
//! shared connection must never interleave two tasks' transactions (a second task's write would silently join
//! the first task's transaction). Each store method holds the lock only for its own statements.
//!
//! Remotely: no connection is kept at all (see `conn`): every unit of work is one HTTP request on a stream of
//! its own, so an idle instance or a restarted server costs nothing, and store methods send what they need in
//! as few requests as they can (a [`conn::Batch`] is one). The round-trip budgets are in `tests/round_trips.rs`.
//!
//! # Layout
//! - this file: opening, the row readers and list helpers every aggregate shares, unique constraints.
//! - `conn/`: the connection seam — an embedded libsql file, or Hrana pipelines to a remote server; batches.
//! - `migrate`: the migration runner and the schema check a cold start makes.
//! - `forks`: a session copied up to a message, in one read and one atomic write.
//! - one file per aggregate: `users` (and tokens), `logins` (what login throttling counts), `agents`, `tools`, `agent_tools`,
//!   `mcp_servers` (and agents' links to them), `templates`,
//!   `sessions`, `messages`, `tool_calls` (the ledger, and how a response's end is recorded).
//! - a turn's rows: `turn_context` (what a turn reads, in one batch; with `history`, the conversation a
//!   stateless provider is sent whole), `turns` (starting a turn or a continuation
//!   under the session's lease, ending it, cancel requests), `frames` (recorded SSE frames, for replay),
//!   `idempotency` (keys, claimed in the same batch as what their request writes).
//! - `usage`: token usage as an hourly aggregate (added to in the batch that ends a turn) and the budget read
//!   a turn's start carries.
//! - `limits`: rate limits per user — a request's count in its minute (carried by the request's first round
//!   trip, see `conn::lead`), the turn limit's quota.
//! - `prune`: housekeeping — old turns' frames, expired keys and login tokens, deleted in bounded batches.

mod agent_tools;
mod agents;
mod conn;
mod forks;
mod frames;
mod history;
mod idempotency;
mod limits;
mod logins;
mod mcp_servers;
mod messages;
mod migrate;
mod prune;
mod sessions;
mod templates;
mod tool_calls;
mod tools;
mod turn_context;
mod turns;
mod usage;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libsql::{Builder, Database, Value};
use tokio::sync::Mutex;

use crate::clock::{Clock, SystemClock, format_timestamp};
use crate::config::Config;
use crate::domain::{AgentId, Key, MessageId, SessionId, TurnId, UserId};
use crate::error::{Error, Result};

use conn::{Batch, Conn, Limits, Local, Remote, Row, Rows, Sql};

pub use conn::until as retrying_until;

pub use frames::{FramePage, NewFrame, StoredFrame};
pub use idempotency::{IdempotencyClaim, KEY_LIFETIME, KeptAnswer, KeptReply, KeyRecord};
pub use limits::Unsent;
pub use logins::{KNOWN_ADDRESS_LIFETIME, LoginCheck};
pub use mcp_servers::SealedHeaders;
pub use migrate::{MIGRATIONS, Migration};
pub use prune::{PrunePlan, Pruned};
pub use tool_calls::ResponseRecord;
pub use turn_context::{TurnContext, TurnRead};
pub use turns::{LeasedTurn, Submission, ToolOutputContext, TurnEnding, TurnLease, TurnSession, TurnStart};
pub use users::{LoginUser, TokenInfo, User, UserChanges};

pub struct Store {
    backend: Backend,
    clock: Arc<dyn Clock>,
    /// Callers of tokens checked recently (see `users::authenticate`).
    callers: std::sync::Mutex<std::collections::HashMap<String, users::Trusted>>,
    auth_cache: Duration,
    /// The instance defaults of the per-user rate limits.
    rate_limits: crate::config::RateLimits,
}

enum Backend {
    Local {
        // Kept alive for the connection's sake: a libsql Connection must not outlive its Database.
        _db: Database,
        conn: Mutex<Local>,
    },
    Remote(Remote),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("remote", &self.is_remote()).finish_non_exhaustive()
    }
}

/// Where `DATABASE_URL` points.
#[derive(Debug, PartialEq, Eq)]
enum Location<'a> {
    Memory,
    File(&'a str),
    Remote(&'a str),
}

fn locate(url: &str) -> Location<'_> {
    if url == ":memory:" || url == "file::memory:" {
        Location::Memory
    } else if ["libsql://", "https://", "http://"].iter().any(|p| url.starts_with(p)) {
        Location::Remote(url)
    } else {
        Location::File(url.strip_prefix("file://").or_else(|| url.strip_prefix("file:")).unwrap_or(url))
    }
}

impl Store {
    pub async fn open(config: &Config) -> Result<Self> {
        let limits = Limits {
            retry_budget: config.database_retry_budget,
            max_in_flight: usize::try_from(config.database_max_in_flight).unwrap_or(usize::MAX),
        };
        let token = config.database_auth_token.as_ref().map(|s| s.expose());
        let store = Self::open_with(&config.database_url, token, limits).await?;
        Ok(Self { auth_cache: config.auth_cache, rate_limits: config.rate_limits, ..store })
    }

    /// A store on `url` with the default limits of a remote database's requests.
    pub async fn open_url(url: &str, auth_token: Option<&str>) -> Result<Self> {
        Self::open_with(url, auth_token, Limits::default()).await
    }

    async fn open_with(url: &str, auth_token: Option<&str>, limits: Limits) -> Result<Self> {
        let path = match locate(url) {
            Location::Remote(url) => {
                let remote = Remote::new(url, auth_token, Duration::from_secs(5), limits)?;
                // A first statement: a wrong URL or token fails here, at start, not on the first request.
                remote.probe().await?;
                return Ok(Self::over(Backend::Remote(remote)));
            }
            Location::Memory => ":memory:",
            Location::File(path) => {
                if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::config_from(format!("cannot create the database folder {}", parent.display()), e)
                    })?;
                }
                path
            }
        };
        let db = Builder::new_local(path).build().await?;
        let conn = db.connect()?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mut rows = conn.query("PRAGMA journal_mode = WAL", ()).await?;
        while rows.next().await?.is_some() {}
        drop(rows);
        // In WAL mode NORMAL survives a killed process (only a power loss can drop the last commits) and
        // spares an fsync per commit, which matters now that every frame of a turn is recorded.
        conn.execute("PRAGMA synchronous = NORMAL", ()).await?;
        conn.execute("PRAGMA foreign_keys = ON", ()).await?;
        Ok(Self::over(Backend::Local { _db: db, conn: Mutex::new(Local::new(conn)) }))
    }

    fn over(backend: Backend) -> Self {
        Self {
            backend,
            clock: Arc::new(SystemClock),
            callers: std::sync::Mutex::default(),
            auth_cache: Duration::from_secs(60),
            rate_limits: crate::config::RateLimits::default(),
        }
    }

    /// Replaces the clock (tests that need fixed or ordered time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }

    /// HTTP requests sent to a remote database so far (0 for a local file).
    pub fn round_trips(&self) -> u64 {
        match &self.backend {
            Backend::Remote(remote) => remote.round_trips(),
            Backend::Local { .. } => 0,
        }
    }

    async fn conn(&self) -> Conn<'_> {
        match &self.backend {
            Backend::Local { conn, .. } => Conn::Local(conn.lock().await),
            Backend::Remote(remote) => Conn::Remote(remote),
        }
    }

    fn now(&self) -> String {
        format_timestamp(self.clock.now())
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Raw access for tests and admin tooling that must inspect what is stored.
    pub async fn query_json(&self, sql: &str) -> Result<Vec<serde_json::Value>> {
        let conn = self.conn().await;
        let mut rows = conn.query(sql, ()).await?;
        let mut out = Vec::new();
        let names = rows.column_names();
        while let Some(row) = rows.next().await? {
            let mut obj = serde_json::Map::new();
            for (i, name) in (0..).zip(&names) {
                let name = name.clone();
                let value = match row.get_value(i)? {
                    Value::Null => serde_json::Value::Null,
                    Value::Integer(n) => n.into(),
                    Value::Real(f) => f.into(),
                    Value::Text(s) => s.into(),
                    Value::Blob(b) => hex::encode(b).into(),
                };
                obj.insert(name, value);
            }
            out.push(obj.into());
        }
        Ok(out)
    }
}

/// A page of rows plus the total the list would have without paging.
#[derive(Debug)]
pub struct Listed<T> {
    pub count: u64,
    pub items: Vec<T>,
}

#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub limit: u64,
    pub offset: u64,
}

// Row decoding helpers: libsql returns loosely typed values, these name the column on failure.
//
// Text that may hold U+0000 (what a model or a tool endpoint wrote: the edge refuses it in what users send) is
// selected as `CAST(column AS BLOB) AS column` (the column lists of `messages` and `tool_calls`) and read here from the blob: SQLite stores text with its
// length, NULs included, but libsql 0.10 reads a TEXT value through a C string (`CStr::from_ptr`), which stops
// at the first NUL; a BLOB it copies whole. Over Hrana the blob travels as base64, exact too.
fn text(row: &Row, i: i32) -> Result<String> {
    opt_text(row, i)?.ok_or_else(|| Error::bug(format!("column {i}: expected text, got NULL")))
}

fn opt_text(row: &Row, i: i32) -> Result<Option<String>> {
    match row.get_value(i)? {
        Value::Null => Ok(None),
        Value::Text(s) => Ok(Some(s)),
        Value::Blob(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("column {i}: stored text is not UTF-8"), e)),
        other => Err(Error::bug(format!("column {i}: expected text, got {other:?}"))),
    }
}

/// An integer column, as a plain number or as the id type it holds (an id's edge: see `domain::Key`).
fn int<T: Key>(row: &Row, i: i32) -> Result<T> {
    match row.get_value(i)? {
        Value::Integer(n) => Ok(T::from_pk(n)),
        other => Err(Error::bug(format!("column {i}: expected integer, got {other:?}"))),
    }
}

fn opt_int<T: Key>(row: &Row, i: i32) -> Result<Option<T>> {
    match row.get_value(i)? {
        Value::Null => Ok(None),
        Value::Integer(n) => Ok(Some(T::from_pk(n))),
        other => Err(Error::bug(format!("column {i}: expected integer, got {other:?}"))),
    }
}

fn flag(row: &Row, i: i32) -> Result<bool> {
    Ok(int::<i64>(row, i)? != 0)
}

fn json_col(row: &Row, i: i32) -> Result<serde_json::Value> {
    let raw = text(row, i)?;
    serde_json::from_str(&raw).map_err(|e| Error::internal(format!("column {i}: reading stored JSON"), e))
}

fn opt_json_col(row: &Row, i: i32) -> Result<Option<serde_json::Value>> {
    opt_text(row, i)?
        .map(|raw| serde_json::from_str(&raw))
        .transpose()
        .map_err(|e| Error::internal(format!("column {i}: reading stored JSON"), e))
}

/// A stored state (a status, a role, a type) parsed into its enum: an unknown name is a bug, a 500 naming it.
fn state<T>(row: &Row, i: i32, column: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parsed(column, text(row, i)?, parse)
}

fn opt_state<T>(row: &Row, i: i32, column: &str, parse: fn(&str) -> Option<T>) -> Result<Option<T>> {
    opt_text(row, i)?.map(|stored| parsed(column, stored, parse)).transpose()
}

fn parsed<T>(column: &str, stored: String, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(&stored).ok_or_else(|| Error::bug(format!("{column}: unknown stored value {stored:?}")))
}

fn opt_int_value(v: Option<impl Key>) -> Value {
    v.map_or(Value::Null, |v| Value::Integer(v.pk()))
}

/// Ids are bound as the integers (or, a turn's, the text) they are.
macro_rules! bound_as_integer {
    ($($id:ty),*) => {$(
        impl From<$id> for Value {
            fn from(id: $id) -> Self {
                Value::Integer(id.pk())
            }
        }
    )*};
}

bound_as_integer!(UserId, AgentId, SessionId, MessageId);

impl From<&TurnId> for Value {
    fn from(id: &TurnId) -> Self {
        Value::Text(id.as_str().to_owned())
    }
}

fn opt_text_value(v: Option<String>) -> Value {
    v.map_or(Value::Null, Value::Text)
}

/// A UNIQUE index or PRIMARY KEY, as SQLite names it when it is violated: its table and columns, in the
/// index's order (see `migrations/`).
#[derive(Debug, Clone, Copy)]
struct Unique {
    table: &'static str,
    columns: &'static [&'static str],
}

impl Unique {
    const fn new(table: &'static str, columns: &'static [&'static str]) -> Self {
        Self { table, columns }
    }

    /// Whether a failed statement violated this constraint (and not another one). Locally the result code is
    /// the extended one (`SQLITE_CONSTRAINT_UNIQUE`, `SQLITE_CONSTRAINT_PRIMARYKEY`); sqld sends only the
    /// primary one (`SQLITE_CONSTRAINT`, which CHECK, NOT NULL and foreign keys share). Which index it was,
    /// SQLite says only in the message's column list ("UNIQUE constraint failed: users.username"), the same
    /// on both.
    fn violated_by(&self, err: &Error) -> bool {
        use libsql::ffi::{SQLITE_CONSTRAINT, SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        let Error::Database(libsql::Error::SqliteFailure(code, message)) = err else { return false };
        if !matches!(*code, SQLITE_CONSTRAINT_UNIQUE | SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT) {
            return false;
        }
        let Some(named) = message.strip_prefix("UNIQUE constraint failed: ") else { return false };
        let mut named = named.split(", ");
        self.columns.iter().all(|column| {
            named.next().and_then(|n| n.strip_prefix(self.table)).and_then(|n| n.strip_prefix('.')) == Some(column)
        }) && named.next().is_none()
    }
}

/// Adds the read of a staff-chosen owner to a batch (None when there is no owner to check).
fn push_owner_check(batch: &mut Batch, owner: Option<UserId>) -> Result<Option<usize>> {
    owner.map(|owner| batch.push("SELECT id FROM users WHERE id = ?1", [owner])).transpose()
}

/// The field error for an owner that does not exist, from the batch's check.
fn owner_exists(out: &mut conn::Outcomes, check: Option<usize>, owner: Option<UserId>) -> Result<()> {
    let (Some(check), Some(owner)) = (check, owner) else { return Ok(()) };
    if out.take(check)?.rows().next().is_none() {
        return Err(Error::field("owner", crate::domain::missing_pk(owner)));
    }
    Ok(())
}

async fn count(conn: Sql<'_>, sql: &str, params: impl libsql::params::IntoParams) -> Result<u64> {
    let mut rows = conn.query(sql, params).await?;
    let row = rows.next().await?.ok_or_else(|| Error::bug("COUNT returned no row"))?;
    Ok(u64::try_from(int::<i64>(&row, 0)?).unwrap_or(0))
}

/// A query's text and parameters.
type Query<'a> = (&'a str, Vec<Value>);

/// A parent's read and the judge of its row (see [`listed_under`]).
type Guard<'a> = (Query<'a>, &'a (dyn Fn(&Row) -> Result<bool> + Sync));

/// Parameters as values, for queries put together before they run.
fn vals(params: impl libsql::params::IntoParams) -> Result<Vec<Value>> {
    conn::positional(params)
}

/// A page and the list's total, read together: one round trip remotely.
async fn listed<T>(
    conn: &Conn<'_>,
    count: Query<'_>,
    page: Query<'_>,
    map: impl Fn(&Row) -> Result<T>,
) -> Result<Listed<T>> {
    list_batch(conn, None, count, page, map).await
}

/// As [`listed`], for a list under a parent the viewer must see: `guard` reads the parent in the same batch
/// and `sees` judges its row; no row, or one the viewer does not see, is 404.
async fn listed_under<T>(
    conn: &Conn<'_>,
    guard: Guard<'_>,
    count: Query<'_>,
    page: Query<'_>,
    map: impl Fn(&Row) -> Result<T>,
) -> Result<Listed<T>> {
    list_batch(conn, Some(guard), count, page, map).await
}

async fn list_batch<T>(
    conn: &Conn<'_>,
    guard: Option<Guard<'_>>,
    count: Query<'_>,
    page: Query<'_>,
    map: impl Fn(&Row) -> Result<T>,
) -> Result<Listed<T>> {
    let mut batch = Batch::read();
    let guarded = guard.as_ref().map(|((sql, params), _)| batch.push(*sql, params.clone())).transpose()?;
    let total = batch.push(count.0, count.1)?;
    let items = batch.push(page.0, page.1)?;
    let mut out = conn.batch(batch).await?;
    if let (Some(index), Some((_, sees))) = (guarded, guard) {
        let row = out.take(index)?.rows().next();
        if !row.map(|r| sees(&r)).transpose()?.unwrap_or(false) {
            return Err(Error::NotFound);
        }
    }
    let total = out.take(total)?.rows().next().map(|r| int(&r, 0)).transpose()?.unwrap_or(0);
    let items = out.take(items)?.rows().map(|r| map(&r)).collect::<Result<Vec<T>>>()?;
    Ok(Listed { count: u64::try_from(total).unwrap_or(0), items })
}

async fn collect<T>(mut rows: Rows<'_>, map: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next().await? {
        out.push(map(&row)?);
    }
    Ok(out)
}

async fn first<T>(mut rows: Rows<'_>, map: impl Fn(&Row) -> Result<T>) -> Result<Option<T>> {
    match rows.next().await? {
        Some(row) => Ok(Some(map(&row)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_choose_the_right_backend() {
        assert_eq!(locate(":memory:"), Location::Memory);
        assert_eq!(locate("file:local/lambent.db"), Location::File("local/lambent.db"));
        assert_eq!(locate("/tmp/x.db"), Location::File("/tmp/x.db"));
        assert_eq!(locate("libsql://db.turso.io"), Location::Remote("libsql://db.turso.io"));
        assert_eq!(locate("http://127.0.0.1:8080"), Location::Remote("http://127.0.0.1:8080"));
    }

    #[test]
    fn an_unknown_stored_state_is_a_bug_naming_it() {
        use crate::domain::{ResponseStatus, ToolCallStatus};
        let parse = ToolCallStatus::parse;
        assert_eq!(parsed("agent_tool_calls.status", "pending".into(), parse).unwrap(), ToolCallStatus::Pending);
        let err = parsed("agent_tool_calls.status", "lost".into(), parse).unwrap_err();
        assert!(matches!(err, Error::Internal { .. }), "{err:?}");
        assert_eq!(err.to_string(), "agent_tool_calls.status: unknown stored value \"lost\"");
        let err = parsed("agent_messages.status", "Completed".into(), ResponseStatus::parse).unwrap_err();
        assert!(err.to_string().contains("\"Completed\""), "{err}");
    }

    /// The error a statement gave, from an embedded database with two unique constraints on one table, a
    /// composite primary key and a CHECK.
    async fn local_failures() -> Vec<(&'static str, Error)> {
        let db = Builder::new_local(":memory:").build().await.unwrap();
        let conn = db.connect().unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, a INTEGER, b INTEGER, CHECK (a >= 0),
                             UNIQUE (a, b));
             CREATE TABLE k (owner_id INTEGER, key TEXT, PRIMARY KEY (owner_id, key));
             INSERT INTO t VALUES (1, 'x', 1, 1);
             INSERT INTO k VALUES (1, 'x');",
        )
        .await
        .unwrap();
        let mut out = Vec::new();
        for (what, sql) in [
            ("name", "INSERT INTO t VALUES (2, 'x', 2, 2)"),
            ("pair", "INSERT INTO t VALUES (2, 'y', 1, 1)"),
            ("rowid", "INSERT INTO t VALUES (1, 'y', 2, 2)"),
            ("key", "INSERT INTO k VALUES (1, 'x')"),
            ("check", "INSERT INTO t VALUES (2, 'y', -1, 2)"),
        ] {
            out.push((what, Error::from(conn.execute(sql, ()).await.unwrap_err())));
        }
        out
    }

    #[tokio::test]
    async fn a_unique_violation_is_recognised_by_its_constraint_only() {
        use libsql::ffi::{SQLITE_CONSTRAINT_CHECK, SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        let name = Unique::new("t", &["name"]);
        let pair = Unique::new("t", &["a", "b"]);
        let key = Unique::new("k", &["owner_id", "key"]);
        for (what, err) in local_failures().await {
            // Locally libsql reports the extended result code.
            let Error::Database(libsql::Error::SqliteFailure(code, _)) = &err else { panic!("{err:?}") };
            let expected = match what {
                "name" | "pair" => SQLITE_CONSTRAINT_UNIQUE,
                "rowid" | "key" => SQLITE_CONSTRAINT_PRIMARYKEY,
                _ => SQLITE_CONSTRAINT_CHECK,
            };
            assert_eq!(*code, expected, "{what}: {err:?}");
            assert_eq!(name.violated_by(&err), what == "name", "{what}: {err:?}");
            assert_eq!(pair.violated_by(&err), what == "pair", "{what}: {err:?}");
            assert_eq!(key.violated_by(&err), what == "key", "{what}: {err:?}");
        }
        // What a remote statement gives (see conn::wire::statement_error): sqld's primary code, the same message.
        let remote = |message: &str| {
            Error::Database(libsql::Error::SqliteFailure(libsql::ffi::SQLITE_CONSTRAINT, message.to_owned()))
        };
        assert!(key.violated_by(&remote("UNIQUE constraint failed: k.owner_id, k.key")));
        assert!(!key.violated_by(&remote("UNIQUE constraint failed: k.owner_id")));
        assert!(!key.violated_by(&remote("UNIQUE constraint failed: k.owner_id, k.key, k.other")));
        assert!(!name.violated_by(&remote("UNIQUE constraint failed: tt.name")));
        assert!(!name.violated_by(&remote("CHECK constraint failed: name")));
        // Not a constraint error, whatever its text.
        assert!(!name.violated_by(&Error::bug("UNIQUE constraint failed: t.name")));
        let other = libsql::Error::SqliteFailure(libsql::ffi::SQLITE_ERROR, "UNIQUE constraint failed: t.name".into());
        assert!(!name.violated_by(&Error::from(other)));
    }
}
