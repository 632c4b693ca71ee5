//! Credential crypto: passwords hashed with argon2id; API tokens, 32 random bytes shown once, of which the
//! store keeps only the SHA-256 and a short visible prefix. Who a request's token names is
//! `Store::authenticate`'s; the extractor that asks is HTTP's. Secrets Lambent must keep at rest (MCP servers'
//! header values) are sealed here with AES-256-GCM under `LAMBENT_SECRETS_KEY` ([`seal`], [`open_sealed`]).

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

/// What a sealed value starts with: the scheme's version (AES-256-GCM under `LAMBENT_SECRETS_KEY`).
const SEALED_V1: &str = "v1:";

/// Seals `plaintext` for the store with AES-256-GCM under `key`: `v1:` + hex(12-byte random nonce ‖ ciphertext
/// ‖ tag). `context` (e.g. the table and column) is the associated data: a sealed value copied into another
/// column does not open there.
pub fn seal(key: &crate::config::SecretsKey, context: &str, plaintext: &str) -> Result<String> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key.bytes()).map_err(|_| Error::bug("an AES-256 key of the wrong length"))?,
    );
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|e| Error::internal("the system's random source", e))?;
    let mut data = plaintext.as_bytes().to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut data)
        .map_err(|_| Error::bug("sealing failed"))?;
    Ok(format!("{SEALED_V1}{}{}", hex::encode(nonce), hex::encode(data)))
}

/// Opens what [`seal`] sealed with the same key and context; an error for anything else (another key, a
/// changed value), without saying more.
pub fn open_sealed(key: &crate::config::SecretsKey, context: &str, sealed: &str) -> Result<String> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let bad = || Error::bug("a sealed value does not open with LAMBENT_SECRETS_KEY");
    let raw = sealed.strip_prefix(SEALED_V1).and_then(|hexed| hex::decode(hexed).ok()).ok_or_else(bad)?;
    if raw.len() < 12 + 16 {
        return Err(bad());
    }
    let (nonce, rest) = raw.split_at(12);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.bytes()).map_err(|_| bad())?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
    let mut data = rest.to_vec();
    let opened = key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut data).map_err(|_| bad())?;
    String::from_utf8(opened.to_vec()).map_err(|_| bad())
}

#[cfg(test)]
mod sealing {
    use super::*;
    use crate::config::SecretsKey;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let key = SecretsKey::parse(&"11".repeat(32)).unwrap();
        let other = SecretsKey::parse(&"22".repeat(32)).unwrap();
        let sealed = seal(&key, "mcp_servers.headers", "{\"Authorization\":\"Bearer s3cret\"}").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("s3cret"), "{sealed}");
        assert_ne!(sealed, seal(&key, "mcp_servers.headers", "{\"Authorization\":\"Bearer s3cret\"}").unwrap());
        assert_eq!(open_sealed(&key, "mcp_servers.headers", &sealed).unwrap(), "{\"Authorization\":\"Bearer s3cret\"}");
        assert!(open_sealed(&other, "mcp_servers.headers", &sealed).is_err());
        assert!(open_sealed(&key, "another.column", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('0');
        assert!(open_sealed(&key, "mcp_servers.headers", &tampered).is_err() || tampered == sealed);
    }
}
