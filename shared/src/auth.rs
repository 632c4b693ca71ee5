//! Credential crypto: passwords hashed with argon2id; API tokens, 32 random bytes shown once, of which the
//! store keeps only the SHA-256 and a short visible prefix. Who a request's token names is
//! `Store::authenticate`'s; the extractor that asks is HTTP's.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use crate::domain::NewToken;
use crate::error::{Error, Result};

pub const TOKEN_PREFIX: &str = "lam_";
/// Characters of a token shown in lists, so people can tell their tokens apart.
pub const VISIBLE_PREFIX_LEN: usize = 12;

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

pub fn new_token() -> NewToken {
    let secret = format!("{TOKEN_PREFIX}{}", random_hex(32));
    NewToken { prefix: secret[..VISIBLE_PREFIX_LEN].to_owned(), hash: token_hash(&secret), secret }
}

pub fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
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
}
