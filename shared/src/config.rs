//! Every setting Lambent reads, in one place. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;

use crate::error::{Error, Result};

/// The embedded SQLite file used when `DATABASE_URL` is unset (relative to the working directory).
pub const DEFAULT_DATABASE_URL: &str = "file:local/lambent.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";

/// A value that must never reach a log line or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `file:PATH` (or a bare path) for embedded SQLite; `libsql://`, `https://` or `http://` for a libsql server.
    pub database_url: String,
    /// Bearer token for a remote libsql server (Turso / sqld).
    pub database_auth_token: Option<Secret>,
    /// Where the local server listens.
    pub bind: SocketAddr,
}

impl Config {
    /// Reads the process environment (a `.env` file is loaded by the local binary before this).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Same as [`Config::from_env`] over any lookup, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let bind = get("BIND").unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind.parse().map_err(|_| Error::Config(format!("BIND must be HOST:PORT, got {bind:?}")))?;
        Ok(Self {
            database_url: get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            database_auth_token: get("DATABASE_AUTH_TOKEN").map(Secret::new),
            bind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_embedded_database_and_loopback() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.bind.to_string(), DEFAULT_BIND);
        assert!(config.database_auth_token.is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let config = Config::from_lookup(|k| (k == "DATABASE_AUTH_TOKEN").then(|| "s3cr3t".to_owned())).unwrap();
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn a_bad_bind_address_is_named() {
        let err = Config::from_lookup(|k| (k == "BIND").then(|| "nope".to_owned())).unwrap_err();
        assert!(err.to_string().contains("BIND"), "{err}");
    }
}
