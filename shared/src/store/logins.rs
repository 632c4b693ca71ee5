//! Login throttling's rows: the attempts within the window (failures per username, every attempt per client
//! address) and the addresses each user logged in from. A login reads its user and the throttle in one round
//! trip, and writes its outcome in one: a successful login still costs two, as it did before the throttle.

use libsql::params;
use time::OffsetDateTime;

use super::users::{LOGIN_COLUMNS, LoginUser, User, created_token, login_row, push_token_insert};
use super::{Batch, Store, TokenInfo, opt_text};
use crate::clock::{format_timestamp, parse_timestamp};
use crate::config::LoginThrottle;
use crate::domain::NewToken;
use crate::error::Result;

/// How long an address a user logged in from keeps them clear of the per-username limit.
pub const KNOWN_ADDRESS_LIFETIME: time::Duration = time::Duration::days(30);

/// Expired rows each login write deletes at most: the tables stay near their window's size without one
/// write ever deleting a long backlog.
const PRUNE_BATCH: u32 = 100;

/// What a login reads before it hashes anything.
#[derive(Debug)]
pub struct LoginCheck {
    /// The user and its password hash, when the username exists.
    pub found: Option<LoginUser>,
    /// When the throttle lets this username and address try again, if it holds them back now.
    pub throttled_until: Option<OffsetDateTime>,
}

impl Store {
    /// The user a login names and whether the throttle holds the attempt back, in one round trip. The limit
    /// is reached when the `limit`-th latest counted attempt is still inside the window, and lifts when that
    /// attempt leaves it. Failures of a username do not hold back an address the user logged in from lately.
    pub async fn login_check(&self, username: &str, address: &str, limits: &LoginThrottle) -> Result<LoginCheck> {
        let now = self.clock().now();
        let window = time::Duration::try_from(limits.window).unwrap_or(time::Duration::MAX);
        let since = format_timestamp(now - window);
        let mut batch = Batch::read();
        let found = batch.push(format!("SELECT {LOGIN_COLUMNS} FROM users WHERE username = ?1"), [username])?;
        let throttle = batch.push(
            "SELECT
                (SELECT created_at FROM login_attempts WHERE username = ?1 AND succeeded = 0 AND created_at > ?3
                 ORDER BY created_at DESC LIMIT 1 OFFSET ?4),
                (SELECT created_at FROM login_attempts WHERE address = ?2 AND created_at > ?3
                 ORDER BY created_at DESC LIMIT 1 OFFSET ?5),
                EXISTS (SELECT 1 FROM login_addresses k JOIN users u ON u.id = k.user_id
                        WHERE u.username = ?1 AND k.address = ?2 AND k.last_login_at > ?6)",
            params![
                username,
                address,
                since,
                limits.failures_per_username.saturating_sub(1),
                limits.attempts_per_address.saturating_sub(1),
                format_timestamp(now - KNOWN_ADDRESS_LIFETIME)
            ],
        )?;
        let mut out = self.conn().await.batch(batch).await?;
        let found = out.take(found)?.rows().next().map(|row| login_row(&row)).transpose()?;
        let row = out.take(throttle)?.rows().next();
        let (by_username, by_address, known) = match row {
            Some(row) => (opt_text(&row, 0)?, opt_text(&row, 1)?, super::flag(&row, 2)?),
            None => (None, None, false),
        };
        let until = |at: Option<String>| at.as_deref().and_then(parse_timestamp).map(|at| at + window);
        let by_username = if known { None } else { until(by_username) };
        let throttled_until = by_username.into_iter().chain(until(by_address)).max().filter(|at| *at > now);
        Ok(LoginCheck { found, throttled_until })
    }

    /// Counts a failed login against its username and address (one round trip).
    pub async fn record_login_failure(&self, username: &str, address: &str, limits: &LoginThrottle) -> Result<()> {
        let mut batch = Batch::write();
        push_attempt(&mut batch, username, address, false, &self.now())?;
        self.push_prune(&mut batch, limits)?;
        self.conn().await.batch(batch).await?.take(0)?;
        Ok(())
    }

    /// A successful login's one write: its token, the attempt (counted against the address), and the
    /// address remembered as the user's.
    pub async fn record_login(
        &self,
        user: &User,
        address: &str,
        expires_at: &str,
        token: &NewToken,
        limits: &LoginThrottle,
    ) -> Result<TokenInfo> {
        let now = self.now();
        let mut batch = Batch::write();
        let inserted = push_token_insert(&mut batch, user.id, "login", "login", Some(expires_at), token, &now)?;
        push_attempt(&mut batch, &user.username, address, true, &now)?;
        batch.push(
            "INSERT INTO login_addresses (user_id, address, last_login_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (user_id, address) DO UPDATE SET last_login_at = excluded.last_login_at",
            params![user.id, address, now],
        )?;
        self.push_prune(&mut batch, limits)?;
        created_token(self.conn().await.batch(batch).await?.take(inserted)?)
    }

    /// Deletes a bounded number of attempts past the window and addresses past their lifetime.
    fn push_prune(&self, batch: &mut Batch, limits: &LoginThrottle) -> Result<()> {
        let now = self.clock().now();
        let window = time::Duration::try_from(limits.window).unwrap_or(time::Duration::MAX);
        batch.push(
            "DELETE FROM login_attempts WHERE id IN
                (SELECT id FROM login_attempts WHERE created_at <= ?1 ORDER BY created_at LIMIT ?2)",
            params![format_timestamp(now - window), PRUNE_BATCH],
        )?;
        batch.push(
            "DELETE FROM login_addresses WHERE rowid IN
                (SELECT rowid FROM login_addresses WHERE last_login_at <= ?1 ORDER BY last_login_at LIMIT ?2)",
            params![format_timestamp(now - KNOWN_ADDRESS_LIFETIME), PRUNE_BATCH],
        )?;
        Ok(())
    }
}

fn push_attempt(batch: &mut Batch, username: &str, address: &str, succeeded: bool, now: &str) -> Result<usize> {
    batch.push(
        "INSERT INTO login_attempts (username, address, succeeded, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![username, address, succeeded, now],
    )
}
