//! Account use cases: users created and changed (passwords hashed off the async threads), API tokens issued,
//! and the login that checks a password. The HTTP handlers and the `lambent` CLI share them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{hash_password, new_token, verify_password};
use crate::domain::{Caller, UserId, UserWrite};
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{LoginUser, Store, TokenInfo, User, UserChanges};

/// Hashes off the async threads: argon2 is deliberately slow.
async fn hash_off_thread(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::internal("hashing a password", e))?
}

/// A token with its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    /// Send it as `Authorization: Bearer <token>`. It is not shown again.
    pub token: String,
    // The token's fields, `expires_at` among them: once (a field of its own here would repeat it in the JSON,
    // and twice in the schema's `allOf`).
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// Creates an API token for a user; the secret is returned this once.
pub async fn issue_api_token(
    store: &Store,
    user: UserId,
    name: &str,
    expires_in_days: Option<u32>,
) -> Result<IssuedToken> {
    let expires = expires_in_days
        .map(|days| crate::clock::format_timestamp(store.clock().now() + time::Duration::days(days.into())));
    let token = new_token();
    let info = store.create_token(user, name, "api", expires.as_deref(), &token).await?;
    Ok(IssuedToken { token: token.secret, info })
}

/// Creates a user from a validated write (the API's staff endpoint and the CLI share it).
pub async fn create_user(store: &Store, write: UserWrite) -> Result<User> {
    let password_hash = match write.password {
        Some(password) => Some(hash_off_thread(password).await?),
        None => None,
    };
    let user = store
        .create_user(&write.username.unwrap_or_default(), password_hash.as_deref(), write.is_staff.unwrap_or(false))
        .await?;
    // What the insert does not set: a user created inactive, or with budgets.
    let rest = UserChanges {
        is_active: write.is_active.filter(|active| !active),
        daily_token_budget: write.daily_token_budget,
        monthly_token_budget: write.monthly_token_budget,
        requests_per_minute: write.requests_per_minute,
        max_concurrent_turns: write.max_concurrent_turns,
        ..Default::default()
    };
    let limited =
        [rest.daily_token_budget, rest.monthly_token_budget, rest.requests_per_minute, rest.max_concurrent_turns]
            .iter()
            .any(Option::is_some);
    if rest.is_active.is_some() || limited { store.update_user(user.id, rest).await } else { Ok(user) }
}

/// Changes a user from a validated write; a new password is hashed first.
pub async fn update_user(store: &Store, id: UserId, write: UserWrite) -> Result<User> {
    let password_hash = match write.password {
        Some(password) => Some(hash_off_thread(password).await?),
        None => None,
    };
    let changes = UserChanges {
        username: write.username,
        password_hash,
        is_staff: write.is_staff,
        is_active: write.is_active,
        daily_token_budget: write.daily_token_budget,
        monthly_token_budget: write.monthly_token_budget,
        requests_per_minute: write.requests_per_minute,
        max_concurrent_turns: write.max_concurrent_turns,
    };
    store.update_user(id, changes).await
}

/// Deletes a user and everything it owns; nobody deletes their own account.
pub async fn delete_user(store: &Store, caller: &Caller, id: UserId) -> Result<()> {
    if id == caller.id {
        return Err(Error::BadRequest("You cannot delete your own account.".into()));
    }
    store.delete_user(id).await
}

/// How long a token from `/api/auth/login/` lasts.
pub const LOGIN_TTL: time::Duration = time::Duration::hours(12);
const BAD_LOGIN: &str = "Unable to log in with provided credentials.";

/// Checks a username and password and issues a short-lived login token. Unknown users, wrong passwords and
/// inactive users get the same answer after the same work. Before any hashing, the throttle: too many
/// failures for the username or attempts from the address (`LAMBENT_LOGIN_*`) answer 429; it is read with
/// the user (one round trip), and a failure is counted in one more.
pub async fn login(state: &AppState, username: &str, password: &str, address: &str) -> Result<IssuedToken> {
    let limits = &state.config.login_throttle;
    let check = state.store.login_check(username, address, limits).await?;
    if let Some(until) = check.throttled_until {
        let wait = (until - state.store.clock().now()).as_seconds_f64().ceil().max(1.0);
        return Err(Error::Throttled(wait as u64));
    }
    let stored = check.found.as_ref().and_then(|found| found.password_hash.clone());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, stored.as_deref()))
        .await
        .map_err(|e| Error::internal("checking a password", e))?;
    let user = match check.found {
        Some(LoginUser { user, .. }) if ok && user.is_active => user,
        _ => {
            state.store.record_login_failure(username, address, limits).await?;
            return Err(Error::field("non_field_errors", BAD_LOGIN));
        }
    };
    let expires = crate::clock::format_timestamp(state.store.clock().now() + LOGIN_TTL);
    let token = new_token();
    let info = state.store.record_login(&user, address, &expires, &token, limits).await?;
    Ok(IssuedToken { token: token.secret, info })
}
