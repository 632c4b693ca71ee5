//! Users. Authentication (password hashes, tokens) arrives with the auth issue; for now users exist so that
//! every `owner` is a real foreign key and deleting a user takes what it owns with it.

use libsql::params;

use super::{Store, first, int};
use crate::error::{Error, Result};

impl Store {
    /// Creates a user and returns its id.
    pub async fn create_user(&self, username: &str, is_staff: bool) -> Result<i64> {
        let conn = self.conn().await;
        let rows = conn
            .query(
                "INSERT INTO users (username, is_staff, created_at, updated_at) VALUES (?1, ?2, ?3, ?3) RETURNING id",
                params![username, is_staff, self.now()],
            )
            .await?;
        first(rows, |r| int(r, 0)).await?.ok_or_else(|| Error::Internal("INSERT returned no row".into()))
    }

    /// Deletes the user and everything it owns (agents, tools, templates, sessions).
    pub async fn delete_user(&self, id: i64) -> Result<()> {
        let deleted = self.conn().await.execute("DELETE FROM users WHERE id = ?1", [id]).await?;
        if deleted == 0 { Err(Error::NotFound) } else { Ok(()) }
    }
}
