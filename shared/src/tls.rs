//! The process's TLS crypto provider.
//!
//! rustls 0.23 is built with ring only (see the workspace `Cargo.toml`), and reqwest with `rustls-no-provider`:
//! every reqwest client in the process takes the provider installed here, and building one before it is
//! installed panics. [`AppState::new`](crate::AppState::new) and the constructors of Lambent's own clients call
//! it, so the functions, the local server and the tests need do nothing else; code that builds a reqwest client
//! without an `AppState` calls it first.

/// Installs ring as rustls' process-wide default provider. Idempotent: a provider installed already (by an
/// earlier call) stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
