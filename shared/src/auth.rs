//! Who is calling, and what they may touch.
//!
//! Passwords are hashed with argon2id. API tokens are 32 random bytes shown once; the store keeps only
//! their SHA-256 and a short visible prefix. Every `/api/` handler that needs a user takes a [`Caller`],
//! which reads `Authorization: Bearer <token>` (DRF's `Token <token>` works too).

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::domain::UserWrite;
use crate::error::{Error, Result};
use crate::state::AppState;
use crate::store::{Store, TokenInfo, User, UserChanges};

pub const TOKEN_PREFIX: &str = "lam_";
/// Characters of a token shown in lists, so people can tell their tokens apart.
pub const VISIBLE_PREFIX_LEN: usize = 12;

/// An authenticated user, as one request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: i64,
    pub username: String,
    pub is_staff: bool,
    /// The token this request came with (logout revokes it).
    pub token_id: Option<i64>,
}

impl Caller {
    /// Lambent itself (the CLI, migrations, tests): sees and changes everything.
    pub fn system() -> Self {
        Self { id: 0, username: "system".into(), is_staff: true, token_id: None }
    }

    /// Agents, tools and templates: one's own, plus the global ones (no owner).
    pub fn sees(&self, owner: Option<i64>) -> bool {
        self.is_staff || owner.is_none() || owner == Some(self.id)
    }

    /// Sessions and what hangs off them: one's own only.
    pub fn sees_private(&self, owner: Option<i64>) -> bool {
        self.is_staff || owner == Some(self.id)
    }

    pub fn may_change(&self, owner: Option<i64>) -> bool {
        self.is_staff || owner == Some(self.id)
    }

    /// 404 for what the caller cannot see (no existence leak), 403 for what it sees but may not change.
    pub fn check_change(&self, owner: Option<i64>) -> Result<()> {
        if !self.sees(owner) {
            Err(Error::NotFound)
        } else if !self.may_change(owner) {
            Err(Error::Forbidden)
        } else {
            Ok(())
        }
    }

    /// Who owns what the caller creates: itself, unless staff named an owner (`null` = global).
    pub fn owner_for(&self, requested: Option<Option<i64>>) -> Option<i64> {
        match requested {
            Some(owner) if self.is_staff => owner,
            _ => Some(self.id).filter(|_| self.id != 0),
        }
    }

    pub fn require_staff(&self) -> Result<()> {
        if self.is_staff { Ok(()) } else { Err(Error::Forbidden) }
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::internal("hashing a password", e))
}

/// Checks a password against a stored hash. Without a hash (unknown user, or no password set) it still does
/// the same work against a throwaway hash, so the answer takes as long either way.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    static DECOY: OnceLock<String> = OnceLock::new();
    let decoy = DECOY.get_or_init(|| hash_password(&random_hex(16)).unwrap_or_default());
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (decoy.as_str(), false),
    };
    let matches = PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false);
    matches && real
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    hex::encode(buf)
}

/// A fresh token: the secret (shown once), its visible prefix and the hash the store keeps.
#[derive(Debug)]
pub struct NewToken {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn new_token() -> NewToken {
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32));
    NewToken { prefix: secret[..VISIBLE_PREFIX_LEN].to_owned(), hash: token_hash(&secret), secret }
}

pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The token in `Authorization: Bearer <token>` or `Token <token>`.
fn bearer(parts: &Parts) -> Result<&str> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(Error::Unauthenticated("Authentication credentials were not provided."))?;
    let value = header.to_str().map_err(|_| Error::Unauthenticated("Invalid token header."))?;
    let (scheme, token) =
        value.trim().split_once(' ').ok_or(Error::Unauthenticated("Invalid token header. No credentials provided."))?;
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token")) {
        return Err(Error::Unauthenticated("Authentication credentials were not provided."));
    }
    let token = token.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(Error::Unauthenticated("Invalid token header. Token string should not contain spaces."));
    }
    Ok(token)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let secret = bearer(parts)?;
        let caller =
            state.store.authenticate(&token_hash(secret)).await?.ok_or(Error::Unauthenticated("Invalid token."))?;
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Hashes off the async threads: argon2 is deliberately slow.
async fn hash_off_thread(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::internal("hashing a password", e))?
}

/// Creates an API token for a user; the secret is returned this once.
pub async fn issue_api_token(
    store: &Store,
    user: i64,
    name: &str,
    expires_in_days: Option<u32>,
) -> Result<(TokenInfo, String)> {
    let expires = expires_in_days
        .map(|days| crate::clock::format_timestamp(store.clock().now() + time::Duration::days(days.into())));
    let token = new_token();
    let info = store.create_token(user, name, "api", expires.as_deref(), &token).await?;
    Ok((info, token.secret))
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
    match write.is_active {
        Some(false) => store.update_user(user.id, UserChanges { is_active: Some(false), ..Default::default() }).await,
        _ => Ok(user),
    }
}

/// Changes a user from a validated write; a new password is hashed first.
pub async fn update_user(store: &Store, id: i64, write: UserWrite) -> Result<User> {
    let password_hash = match write.password {
        Some(password) => Some(hash_off_thread(password).await?),
        None => None,
    };
    let changes =
        UserChanges { username: write.username, password_hash, is_staff: write.is_staff, is_active: write.is_active };
    store.update_user(id, changes).await
}

/// Deletes a user and everything it owns; nobody deletes their own account.
pub async fn delete_user(store: &Store, caller: &Caller, id: i64) -> Result<()> {
    if id == caller.id {
        return Err(Error::BadRequest("You cannot delete your own account.".into()));
    }
    store.delete_user(id).await
}

/// How long a token from `/api/auth/login/` lasts.
pub const LOGIN_TTL: time::Duration = time::Duration::hours(12);
const BAD_LOGIN: &str = "Unable to log in with provided credentials.";

/// Checks a username and password and issues a short-lived login token. Unknown users, wrong passwords and
/// inactive users get the same answer after the same work.
pub async fn login(state: &AppState, username: &str, password: &str) -> Result<(TokenInfo, String)> {
    let found = state.store.find_login(username).await?;
    let stored = found.as_ref().and_then(|(_, hash)| hash.clone());
    let password = password.to_owned();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, stored.as_deref()))
        .await
        .map_err(|e| Error::internal("checking a password", e))?;
    let user = match found {
        Some((user, _)) if ok && user.is_active => user,
        _ => return Err(Error::field("non_field_errors", BAD_LOGIN)),
    };
    let expires = crate::clock::format_timestamp(state.store.clock().now() + LOGIN_TTL);
    let token = new_token();
    let info = state.store.create_token(user.id, "login", "login", Some(&expires), &token).await?;
    Ok((info, token.secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", Some(&hash)));
        assert!(!verify_password("wrong", Some(&hash)));
        assert!(!verify_password("correct horse", None));
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(TOKEN_PREFIX) && a.secret.len() == TOKEN_PREFIX.len() + 64);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.hash, token_hash(&a.secret));
        assert!(!a.hash.contains(&a.secret));
    }

    #[test]
    fn visibility_follows_ownership() {
        let alice = Caller { id: 1, username: "alice".into(), is_staff: false, token_id: None };
        assert!(alice.sees(None) && alice.sees(Some(1)) && !alice.sees(Some(2)));
        assert!(!alice.sees_private(None));
        assert!(matches!(alice.check_change(None), Err(Error::Forbidden)));
        assert!(matches!(alice.check_change(Some(2)), Err(Error::NotFound)));
        assert!(alice.check_change(Some(1)).is_ok());
        assert!(Caller::system().check_change(Some(2)).is_ok());
    }
}
