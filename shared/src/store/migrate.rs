//! The migration runner: numbered `.sql` files from `migrations/`, applied in order, each inside its own
//! transaction, recorded by name and SHA-256 so that an edited file is refused instead of silently skipped.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{Conn, Store, text};
use crate::error::{Error, Result};

/// One numbered migration file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Every migration the code knows, in the order they apply. A test checks this matches `migrations/`.
pub const MIGRATIONS: &[Migration] = &[
    Migration { name: "0001_init.sql", sql: include_str!("../../../migrations/0001_init.sql") },
    Migration { name: "0002_tool_calls.sql", sql: include_str!("../../../migrations/0002_tool_calls.sql") },
    Migration { name: "0003_tool_executors.sql", sql: include_str!("../../../migrations/0003_tool_executors.sql") },
    Migration { name: "0004_auth.sql", sql: include_str!("../../../migrations/0004_auth.sql") },
    Migration { name: "0005_turn_lease.sql", sql: include_str!("../../../migrations/0005_turn_lease.sql") },
    Migration { name: "0006_turn_events.sql", sql: include_str!("../../../migrations/0006_turn_events.sql") },
    Migration { name: "0007_login_throttle.sql", sql: include_str!("../../../migrations/0007_login_throttle.sql") },
    Migration { name: "0008_prune.sql", sql: include_str!("../../../migrations/0008_prune.sql") },
    Migration { name: "0009_upstream_ids.sql", sql: include_str!("../../../migrations/0009_upstream_ids.sql") },
    Migration { name: "0010_providers.sql", sql: include_str!("../../../migrations/0010_providers.sql") },
    Migration { name: "0011_usage.sql", sql: include_str!("../../../migrations/0011_usage.sql") },
    Migration { name: "0012_mcp_servers.sql", sql: include_str!("../../../migrations/0012_mcp_servers.sql") },
    Migration { name: "0013_rate_limits.sql", sql: include_str!("../../../migrations/0013_rate_limits.sql") },
];

const LEDGER: &str = "CREATE TABLE IF NOT EXISTS lambent_migrations (
    name       TEXT PRIMARY KEY,
    checksum   TEXT NOT NULL,
    applied_at TEXT NOT NULL
)";

impl Store {
    /// Applies every migration of `MIGRATIONS` not yet recorded; returns the names it applied.
    pub async fn migrate(&self) -> Result<Vec<&'static str>> {
        self.migrate_with(MIGRATIONS).await
    }

    /// The runner itself, over any list (tests hand it edited lists).
    pub async fn migrate_with(&self, migrations: &[Migration]) -> Result<Vec<&'static str>> {
        let conn = self.conn().await;
        conn.execute(LEDGER, ()).await?;
        let recorded = recorded(&conn).await?.unwrap_or_default();
        let mut applied = Vec::new();
        for migration in migrations {
            let checksum = migration.checksum();
            match recorded.get(migration.name) {
                Some(seen) if *seen == checksum => continue,
                Some(seen) => {
                    return Err(Error::migration(format!(
                        "{} changed after it was applied (recorded sha256 {seen}, file now {checksum}); \
                         applied migrations are never edited: add a new numbered file instead",
                        migration.name
                    )));
                }
                None => {}
            }
            let tx = conn.transaction().await?;
            tx.execute_script(migration.sql)
                .await
                .map_err(|e| Error::migration_from(format!("{} failed", migration.name), e))?;
            tx.execute(
                "INSERT INTO lambent_migrations (name, checksum, applied_at) VALUES (?1, ?2, ?3)",
                libsql::params![migration.name, checksum, self.now()],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(migration = migration.name, "applied migration");
            applied.push(migration.name);
        }
        Ok(applied)
    }

    /// Fails with a message naming `lambent migrate` when the database lacks a migration this code needs,
    /// or holds a different version of one.
    pub async fn check_schema(&self) -> Result<()> {
        let behind = self.migrations_behind().await?;
        if behind.is_empty() {
            Ok(())
        } else {
            Err(Error::migration(format!(
                "the database schema is behind this code ({}); run `lambent migrate` against DATABASE_URL",
                behind.join(", ")
            )))
        }
    }
}

impl Store {
    /// The migrations of this code the database has not applied (or holds another version of), in order;
    /// empty when the schema is current. One statement (one round trip remotely): a database never migrated
    /// has no ledger table at all.
    pub async fn migrations_behind(&self) -> Result<Vec<&'static str>> {
        let recorded = recorded(&self.conn().await).await?.unwrap_or_default();
        Ok(MIGRATIONS.iter().filter(|m| recorded.get(m.name) != Some(&m.checksum())).map(|m| m.name).collect())
    }
}

/// The ledger; `None` when it does not exist yet.
async fn recorded(conn: &Conn<'_>) -> Result<Option<HashMap<String, String>>> {
    let mut rows = match conn.query("SELECT name, checksum FROM lambent_migrations", ()).await {
        Ok(rows) => rows,
        Err(Error::Database(err)) if err.to_string().contains("no such table") => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut out = HashMap::new();
    while let Some(row) = rows.next().await? {
        out.insert(text(&row, 0)?, text(&row, 1)?);
    }
    Ok(Some(out))
}
