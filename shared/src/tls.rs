//! The process's TLS crypto provider.
//!
//! rustls 0.23 is built with ring only (see the workspace `Cargo.toml`), and reqwest with `rustls-no-provider`:
//! every reqwest client in the process takes the provider installed here, and building one before it is
//! installed panics. The constructors of Lambent's two clients (the OpenAI provider, the tool executors) call
//! it, so the functions and the local server need do nothing else; other code that builds a reqwest client
//! (tests, the bench) calls it first.

/// Installs ring as rustls' process-wide default provider. Idempotent: a provider installed already (by an
/// earlier call) stays.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
