//! Writes to users and tokens, with Django's rules and messages.

use super::usage::TokenBudget;
use super::wire::{Bool, Text, WholeNumber, body};
use crate::config::Limits;

pub const MIN_PASSWORD_CHARS: usize = 8;

/// Django's username rule: letters, digits and @ . + - _, at most 150 characters.
pub fn check_username(username: &str) -> Result<(), String> {
    if username.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c)) {
        Ok(())
    } else {
        Err("Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.".into())
    }
}

/// The password rule's message.
fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("This password is too short. It must contain at least {MIN_PASSWORD_CHARS} characters."));
    }
    Ok(())
}

body! {
    /// `POST /api/auth/login/`.
    #[schema(name = "Credentials", example = {"username": "admin", "password": "s3cret-passw0rd"})]
    pub struct Credentials {
        username: String = Text::new().max(|_| Limits::USERNAME_CHARS).required(),
        password: String = Text::new().required(),
    }
}

body! {
    /// `POST /api/tokens/`.
    #[schema(name = "ApiTokenWrite", example = {"name": "CI", "expires_in_days": 90})]
    pub struct NewApiToken {
        /// A label to tell tokens apart; no control, bidi-override or zero-width character.
        name: String = Text::name(|_| Limits::TOKEN_NAME_CHARS).required(),
        /// Omit for a token that lasts until revoked.
        expires_in_days: u32 = WholeNumber { min: 1, max: 3650 },
    }
}

body! {
    /// `POST /api/users/` and `PATCH /api/users/{id}/` (staff only).
    #[schema(name = "UserWrite", example = {"username": "alice", "password": "a-long-passphrase",
        "is_staff": false, "is_active": true})]
    pub struct UserWrite {
        /// Required on create; letters, digits and `@.+-_`, at most 150 characters.
        username: String =
            Text::new().max(|_| Limits::USERNAME_CHARS).check(check_username, None).required_on_create(),
        /// Required on create; 8 to 1024 characters; stored only as an argon2id hash.
        password: String =
            Text::new().max(|_| Limits::PASSWORD_CHARS).min(MIN_PASSWORD_CHARS, check_password).required_on_create(),
        is_staff: bool = Bool,
        is_active: bool = Bool,
        /// Input plus output tokens the user's turns may spend per UTC day (0 or more); null removes the limit.
        /// A turn that would start with the day's spend at or over it is refused with 429 `budget_exceeded`.
        daily_token_budget: Option<i64> = TokenBudget,
        /// The same per calendar month (UTC).
        monthly_token_budget: Option<i64> = TokenBudget,
        /// Authenticated requests per UTC minute; null: the instance default (`LAMBENT_REQUESTS_PER_MINUTE`),
        /// 0: no limit. Over it: 429 `rate_limited` with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
        requests_per_minute: Option<i64> = TokenBudget,
        /// Turns running at once; null: the instance default (`LAMBENT_MAX_CONCURRENT_TURNS`), 0: no limit.
        /// A message turn past it is refused with 429 `too_many_turns` before anything is stored.
        max_concurrent_turns: Option<i64> = TokenBudget,
    }
}

/// A fresh token: the secret (shown once), its visible prefix and the hash the store keeps.
#[derive(Debug)]
pub struct NewToken {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}
