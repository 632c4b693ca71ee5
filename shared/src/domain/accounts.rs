//! Writes to users and tokens, with Django's rules and messages.

use serde_json::Value;
use utoipa::ToSchema;

use super::input::{Input, Mode};
use crate::config::Limits;
use crate::error::Result;

pub const MIN_PASSWORD_CHARS: usize = 8;

/// Django's username rule: letters, digits and @ . + - _, at most 150 characters.
pub fn check_username(username: &str) -> Option<&'static str> {
    let valid = username.chars().all(|c| c.is_alphanumeric() || "@.+-_".contains(c));
    (!valid)
        .then_some("Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.")
}

/// `POST /api/auth/login/`.
#[derive(Debug, ToSchema)]
#[schema(example = json!({"username": "admin", "password": "s3cret-passw0rd"}))]
pub struct Credentials {
    #[schema(max_length = 150)]
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn parse(body: &Value) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let username = input.string("username", true, Some(Limits::USERNAME_CHARS), false);
        let password = input.string("password", true, None, false);
        input.finish()?;
        Ok(Self { username: username.unwrap_or_default(), password: password.unwrap_or_default() })
    }
}

/// `POST /api/tokens/`.
#[derive(Debug, ToSchema)]
#[schema(as = ApiTokenWrite, example = json!({"name": "CI", "expires_in_days": 90}))]
pub struct NewApiToken {
    /// A label to tell tokens apart; no control, bidi-override or zero-width character.
    #[schema(max_length = 100)]
    pub name: String,
    /// Omit for a token that lasts until revoked.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

impl NewApiToken {
    pub fn parse(body: &Value) -> Result<Self> {
        let mut input = Input::new(body, Mode::Create)?;
        let name = input.name("name", true, Limits::TOKEN_NAME_CHARS);
        let expires_in_days = match body.get("expires_in_days") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64().filter(|d| (1..=3650).contains(d)) {
                Some(days) => Some(days as u32),
                None => {
                    input.error("expires_in_days", "Ensure this value is a whole number from 1 to 3650.");
                    None
                }
            },
        };
        input.finish()?;
        Ok(Self { name: name.unwrap_or_default(), expires_in_days })
    }
}

/// `POST /api/users/` and `PATCH /api/users/{id}/` (staff only).
#[derive(Debug, Default, ToSchema)]
#[schema(example = json!({"username": "alice", "password": "a-long-passphrase", "is_staff": false, "is_active": true}))]
pub struct UserWrite {
    /// Required on create; letters, digits and `@.+-_`, at most 150 characters.
    #[schema(nullable = false, max_length = 150)]
    pub username: Option<String>,
    /// Required on create; 8 to 1024 characters; stored only as an argon2id hash.
    #[schema(nullable = false, min_length = 8, max_length = 1024)]
    pub password: Option<String>,
    #[schema(nullable = false)]
    pub is_staff: Option<bool>,
    #[schema(nullable = false)]
    pub is_active: Option<bool>,
    /// Input plus output tokens the user's turns may spend per UTC day (0 or more); null removes the limit.
    /// A turn that would start with the day's spend at or over it is refused with 429 `budget_exceeded`.
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub daily_token_budget: Option<Option<i64>>,
    /// The same per calendar month (UTC).
    #[schema(value_type = Option<i64>, minimum = 0)]
    pub monthly_token_budget: Option<Option<i64>>,
}

impl UserWrite {
    pub fn parse(body: &Value, mode: Mode) -> Result<Self> {
        let mut input = Input::new(body, mode)?;
        let username = input.string("username", true, Some(Limits::USERNAME_CHARS), false);
        if let Some(message) = username.as_deref().and_then(check_username) {
            input.error("username", message);
        }
        let password = input.string("password", true, Some(Limits::PASSWORD_CHARS), false);
        if password.as_ref().is_some_and(|p| p.chars().count() < MIN_PASSWORD_CHARS) {
            input.error(
                "password",
                format!("This password is too short. It must contain at least {MIN_PASSWORD_CHARS} characters."),
            );
        }
        let write = Self {
            username,
            password,
            is_staff: input.boolean("is_staff"),
            is_active: input.boolean("is_active"),
            daily_token_budget: crate::domain::usage::budget_field(&mut input, "daily_token_budget"),
            monthly_token_budget: crate::domain::usage::budget_field(&mut input, "monthly_token_budget"),
        };
        input.finish()?;
        Ok(write)
    }
}

/// A fresh token: the secret (shown once), its visible prefix and the hash the store keeps.
#[derive(Debug)]
pub struct NewToken {
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}
