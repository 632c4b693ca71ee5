//! Users and their API tokens.

use libsql::params;

use std::collections::HashMap;

use super::{Batch, Row, listed, vals};
use serde::Serialize;
use utoipa::ToSchema;

use super::{
    Listed, Slice, Sql, Store, Unique, count, first, flag, int, opt_int, opt_int_value, opt_text, opt_text_value, text,
};
use crate::domain::{Caller, NewToken, UserId};
use crate::error::{Error, Result};

/// A user as the API shows it (never its password hash).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"id": 1, "username": "admin", "is_staff": true, "is_active": true,
    "created_at": "2026-11-25T20:14:11.000000Z", "updated_at": "2026-11-25T20:14:11.000000Z",
    "daily_token_budget": null, "monthly_token_budget": 5000000, "requests_per_minute": 120,
    "max_concurrent_turns": null}))]
pub struct User {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub username: String,
    pub is_staff: bool,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
    /// Input plus output tokens the user's turns may spend per UTC day; null: no limit.
    pub daily_token_budget: Option<i64>,
    /// The same per calendar month (UTC); null: no limit.
    pub monthly_token_budget: Option<i64>,
    /// Authenticated requests per UTC minute; null: the instance default, 0: no limit.
    pub requests_per_minute: Option<i64>,
    /// Turns running at once; null: the instance default, 0: no limit.
    pub max_concurrent_turns: Option<i64>,
}

/// A token as its owner sees it: the secret itself is shown only once, at creation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ApiToken, example = json!({"id": 3, "name": "CI", "kind": "api", "prefix": "lam_3f9a1c2b", "created_at":
    "2026-11-25T20:14:11.000000Z", "last_used_at": null, "expires_at": null}))]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    /// `api` (made by a user or the CLI) or `login` (from /api/auth/login/).
    pub kind: String,
    /// The first characters of the token.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
}

const USER_COLUMNS: &str = "id, username, is_staff, is_active, created_at, updated_at, daily_token_budget, \
    monthly_token_budget, requests_per_minute, max_concurrent_turns";
const TOKEN_COLUMNS: &str = "id, name, kind, prefix, created_at, last_used_at, expires_at";
const USERNAME_TAKEN: &str = "A user with that username already exists.";
/// `users.username ... UNIQUE`.
const USERNAME: Unique = Unique::new("users", &["username"]);

fn user(row: &Row) -> Result<User> {
    Ok(User {
        id: int(row, 0)?,
        username: text(row, 1)?,
        is_staff: flag(row, 2)?,
        is_active: flag(row, 3)?,
        created_at: text(row, 4)?,
        updated_at: text(row, 5)?,
        daily_token_budget: opt_int(row, 6)?,
        monthly_token_budget: opt_int(row, 7)?,
        requests_per_minute: opt_int(row, 8)?,
        max_concurrent_turns: opt_int(row, 9)?,
    })
}

fn token(row: &Row) -> Result<TokenInfo> {
    Ok(TokenInfo {
        id: int(row, 0)?,
        name: text(row, 1)?,
        kind: text(row, 2)?,
        prefix: text(row, 3)?,
        created_at: text(row, 4)?,
        last_used_at: opt_text(row, 5)?,
        expires_at: opt_text(row, 6)?,
    })
}

/// Adds the insert of a new token to `batch`; read its row back with [`created_token`].
pub(super) fn push_token_insert(
    batch: &mut Batch,
    user: UserId,
    name: &str,
    kind: &str,
    expires_at: Option<&str>,
    new: &NewToken,
    now: &str,
) -> Result<usize> {
    batch.push(
        format!(
            "INSERT INTO api_tokens (user_id, name, kind, prefix, token_hash, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING {TOKEN_COLUMNS}"
        ),
        params![
            user,
            name,
            kind,
            new.prefix.as_str(),
            new.hash.as_str(),
            now,
            opt_text_value(expires_at.map(str::to_owned))
        ],
    )
}

/// The token a [`push_token_insert`] created.
pub(super) fn created_token(set: super::conn::Set) -> Result<TokenInfo> {
    set.rows().next().map(|row| token(&row)).unwrap_or_else(|| Err(Error::bug("INSERT returned no row")))
}

/// The columns of a user, then its password hash: what a login is checked against.
pub(super) const LOGIN_COLUMNS: &str = "id, username, is_staff, is_active, created_at, updated_at, \
    daily_token_budget, monthly_token_budget, requests_per_minute, max_concurrent_turns, password_hash";

/// A user and its password hash: what a login is checked against.
#[derive(Debug, Clone)]
pub struct LoginUser {
    pub user: User,
    pub password_hash: Option<String>,
}

/// A user and its password hash, from [`LOGIN_COLUMNS`].
pub(super) fn login_row(row: &Row) -> Result<LoginUser> {
    Ok(LoginUser { user: user(row)?, password_hash: opt_text(row, 10)? })
}

async fn find(conn: Sql<'_>, id: UserId) -> Result<Option<User>> {
    first(conn.query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"), [id]).await?, user).await
}

/// Usernames are unique; the store's one connection serialises writers, so checking first is race-free here
/// (the UNIQUE index still guards a remote database shared by several functions).
async fn check_username_free(conn: Sql<'_>, username: &str, except: Option<UserId>) -> Result<()> {
    let rows =
        conn.query("SELECT id FROM users WHERE username = ?1 AND id IS NOT ?2", params![username, except]).await?;
    if first(rows, |r| int::<i64>(r, 0)).await?.is_some() {
        Err(Error::field("username", USERNAME_TAKEN))
    } else {
        Ok(())
    }
}

/// Changes to a user (staff only, or the CLI).
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub username: Option<String>,
    /// An argon2id hash, already computed (hashing is slow; it happens outside the store's lock).
    pub password_hash: Option<String>,
    pub is_staff: Option<bool>,
    pub is_active: Option<bool>,
    /// `Some(None)` removes the budget.
    pub daily_token_budget: Option<Option<i64>>,
    pub monthly_token_budget: Option<Option<i64>>,
    pub requests_per_minute: Option<Option<i64>>,
    pub max_concurrent_turns: Option<Option<i64>>,
}

/// A caller this instance checked recently, trusted until `until`.
#[derive(Debug, Clone)]
pub(super) struct Trusted {
    caller: Caller,
    until: String,
    /// The caller's requests per minute (its own, else the default), if limited.
    requests_per_minute: Option<i64>,
}

/// Trusted callers kept at most; past it the map starts again (it holds one entry per token in use).
const MAX_TRUSTED: usize = 10_000;

/// Tokens are touched at most this often, so authenticating is a read, not a write, on most requests.
const LAST_USED_GRANULARITY_SECS: i64 = 60;

impl Store {
    pub async fn create_user(&self, username: &str, password_hash: Option<&str>, is_staff: bool) -> Result<User> {
        let conn = self.conn().await;
        check_username_free(conn.sql(), username, None).await?;
        let rows = conn
            .query(
                &format!(
                    "INSERT INTO users (username, password_hash, is_staff, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?4) RETURNING {USER_COLUMNS}"
                ),
                params![username, opt_text_value(password_hash.map(str::to_owned)), is_staff, self.now()],
            )
            .await
            .map_err(|e| if USERNAME.violated_by(&e) { Error::field("username", USERNAME_TAKEN) } else { e })?;
        first(rows, user).await?.ok_or_else(|| Error::bug("INSERT returned no row"))
    }

    pub async fn count_users(&self) -> Result<u64> {
        count(self.conn().await.sql(), "SELECT COUNT(*) FROM users", ()).await
    }

    pub async fn user_by_username(&self, username: &str) -> Result<User> {
        let conn = self.conn().await;
        let rows = conn.query(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"), [username]).await?;
        first(rows, user).await?.ok_or_else(|| Error::Missing(format!("No user named \"{username}\".")))
    }

    pub async fn get_user(&self, id: UserId) -> Result<User> {
        find(self.conn().await.sql(), id).await?.ok_or(Error::NotFound)
    }

    pub async fn list_users(&self, slice: Slice) -> Result<Listed<User>> {
        let conn = self.conn().await;
        listed(
            &conn,
            ("SELECT COUNT(*) FROM users", vals(())?),
            (
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT ?1 OFFSET ?2"),
                vals(params![slice.limit, slice.offset])?,
            ),
            user,
        )
        .await
    }

    pub async fn update_user(&self, id: UserId, changes: UserChanges) -> Result<User> {
        self.forget_callers();
        let conn = self.conn().await;
        let existing = find(conn.sql(), id).await?.ok_or(Error::NotFound)?;
        if let Some(username) = &changes.username {
            check_username_free(conn.sql(), username, Some(id)).await?;
        }
        let rows = conn
            .query(
                &format!(
                    "UPDATE users SET username = ?1, password_hash = coalesce(?2, password_hash), is_staff = ?3,
                     is_active = ?4, updated_at = ?5, daily_token_budget = ?7, monthly_token_budget = ?8,
                     requests_per_minute = ?9, max_concurrent_turns = ?10
                     WHERE id = ?6 RETURNING {USER_COLUMNS}"
                ),
                params![
                    changes.username.unwrap_or(existing.username),
                    opt_text_value(changes.password_hash),
                    changes.is_staff.unwrap_or(existing.is_staff),
                    changes.is_active.unwrap_or(existing.is_active),
                    self.now(),
                    id,
                    opt_int_value(changes.daily_token_budget.unwrap_or(existing.daily_token_budget)),
                    opt_int_value(changes.monthly_token_budget.unwrap_or(existing.monthly_token_budget)),
                    opt_int_value(changes.requests_per_minute.unwrap_or(existing.requests_per_minute)),
                    opt_int_value(changes.max_concurrent_turns.unwrap_or(existing.max_concurrent_turns))
                ],
            )
            .await
            .map_err(|e| if USERNAME.violated_by(&e) { Error::field("username", USERNAME_TAKEN) } else { e })?;
        let updated = first(rows, user).await?.ok_or(Error::NotFound)?;
        if !updated.is_active {
            // A deactivated user's tokens stop working at once (authentication checks is_active too).
            conn.execute(
                "UPDATE api_tokens SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
                params![self.now(), id],
            )
            .await?;
        }
        Ok(updated)
    }

    /// Deletes the user and everything it owns (agents, tools, templates, sessions, tokens).
    pub async fn delete_user(&self, id: UserId) -> Result<()> {
        self.forget_callers();
        let deleted = self.conn().await.execute("DELETE FROM users WHERE id = ?1", [id]).await?;
        if deleted == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    pub async fn create_token(
        &self,
        user: UserId,
        name: &str,
        kind: &str,
        expires_at: Option<&str>,
        new: &NewToken,
    ) -> Result<TokenInfo> {
        let mut batch = Batch::write();
        let inserted = push_token_insert(&mut batch, user, name, kind, expires_at, new, &self.now())?;
        created_token(self.conn().await.batch(batch).await?.take(inserted)?)
    }

    /// The caller behind a token hash: unknown, revoked and expired tokens and inactive users give None.
    ///
    /// A caller found is trusted for `LAMBENT_AUTH_CACHE` (default 60 s) or until its token expires, whichever
    /// is sooner, so a warm instance authenticates without a database round trip. Revoking a token, changing
    /// or deleting a user forgets every trusted caller of this instance at once; other instances (other
    /// Lambda instances) notice within that time. A lookup is one round trip: the `last_used_at` touch (at
    /// most once a minute per token) travels in the same batch, before the read.
    pub async fn authenticate(&self, token_hash: &str) -> Result<Option<Caller>> {
        let now_at = self.clock().now();
        let now = self.now();
        if let Some(trusted) = self.trusted().get(token_hash).filter(|t| t.until > now) {
            if let Some(quota) = trusted.requests_per_minute {
                // Counted in the request's first round trip (see `limits`).
                self.arm_admission(trusted.caller.id, quota);
            }
            return Ok(Some(trusted.caller.clone()));
        }
        let stale = crate::clock::format_timestamp(now_at - time::Duration::seconds(LAST_USED_GRANULARITY_SECS));
        let live = "t.token_hash = ?1 AND t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > ?2)";
        let mut batch = Batch::read();
        batch.push(
            format!(
                "UPDATE api_tokens AS t SET last_used_at = ?2 WHERE {live}
                   AND (t.last_used_at IS NULL OR t.last_used_at < ?3)"
            ),
            params![token_hash, now.clone(), stale],
        )?;
        let default = self.rate_limits.requests_per_minute.map(i64::from);
        let found = batch.push(
            format!(
                "SELECT t.id, u.id, u.username, u.is_staff, t.expires_at, nullif(coalesce(u.requests_per_minute, ?3), 0)
                 FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE {live} AND u.is_active = 1"
            ),
            params![token_hash, now, opt_int_value(default)],
        )?;
        // The request is counted in this same round trip.
        let (admitted, reset) = self.push_token_admission(&mut batch, token_hash)?;
        let mut out = self.conn().await.batch(batch).await?;
        let row = out.take(found)?.rows().next();
        let Some(row) = row else { return Ok(None) };
        let caller = Caller {
            token_id: Some(int(&row, 0)?),
            id: int(&row, 1)?,
            username: text(&row, 2)?,
            is_staff: flag(&row, 3)?,
        };
        let requests_per_minute = opt_int(&row, 5)?;
        // Timestamps are fixed-width UTC text: they order as strings.
        let mut until = crate::clock::format_timestamp(now_at + self.auth_cache);
        if let Some(expires) = opt_text(&row, 4)? {
            until = until.min(expires);
        }
        {
            let mut trusted = self.trusted();
            if trusted.len() >= MAX_TRUSTED {
                trusted.clear();
            }
            trusted.insert(token_hash.to_owned(), Trusted { caller: caller.clone(), until, requests_per_minute });
        }
        Self::settle_token_admission(out.take(admitted), requests_per_minute.unwrap_or(0), reset)?;
        Ok(Some(caller))
    }

    fn trusted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Trusted>> {
        self.callers.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets every trusted caller: after a revocation or a change to a user.
    fn forget_callers(&self) {
        self.trusted().clear();
    }

    /// The user's API tokens (not its short-lived login tokens), revoked ones left out.
    pub async fn list_tokens(&self, user: UserId, slice: Slice) -> Result<Listed<TokenInfo>> {
        let conn = self.conn().await;
        let filter = "user_id = ?1 AND kind = 'api' AND revoked_at IS NULL";
        listed(
            &conn,
            (&format!("SELECT COUNT(*) FROM api_tokens WHERE {filter}"), vals([user])?),
            (
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE {filter} ORDER BY id LIMIT ?2 OFFSET ?3"),
                vals(params![user, slice.limit, slice.offset])?,
            ),
            token,
        )
        .await
    }

    /// Revokes one of the user's tokens (None: any user's, for the CLI). Unknown or already revoked: 404.
    pub async fn revoke_token(&self, user: Option<UserId>, id: i64) -> Result<()> {
        self.forget_callers();
        let revoked = self
            .conn()
            .await
            .execute(
                "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2 AND (?3 IS NULL OR user_id = ?3) AND revoked_at IS NULL",
                params![self.now(), id, user],
            )
            .await?;
        self.forget_callers();
        if revoked == 0 { Err(Error::NotFound) } else { Ok(()) }
    }

    /// The CLI's way to name a token: its visible prefix.
    pub async fn revoke_token_by_prefix(&self, prefix: &str) -> Result<u64> {
        let revoked = self
            .conn()
            .await
            .execute(
                "UPDATE api_tokens SET revoked_at = ?1 WHERE prefix = ?2 AND revoked_at IS NULL",
                params![self.now(), prefix],
            )
            .await;
        // After the write: a lookup racing it could otherwise trust the token again.
        self.forget_callers();
        revoked
    }
}
