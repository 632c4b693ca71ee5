//! # `lambent`: the local server and admin commands
//!
//! `cargo run` at the workspace root runs `lambent serve`: it creates the embedded SQLite database if needed,
//! applies migrations and serves every router on one port. The same binary migrates any `DATABASE_URL`,
//! local or remote, before a deploy.
//!
//! # Layout
//! - `lib.rs`: the commands, so tests drive the very server `main` runs.
//! - `main.rs`: the command line, logging, and the shutdown signal.

use std::future::Future;

use clap::{Parser, Subcommand};
use lambent::{AppState, Config, Store};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "lambent", version, about = "Lambent: chat agents on the OpenAI Responses API")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Migrate the database, then serve the API on BIND (the default command).
    Serve,
    /// Apply pending migrations to DATABASE_URL and exit.
    Migrate,
}

/// Opens the configured database and brings its schema up to date.
pub async fn open(config: &Config) -> Result<Store, lambent::Error> {
    let store = Store::open(config).await?;
    let applied = store.migrate().await?;
    tracing::info!(applied = applied.len(), remote = store.is_remote(), "database is up to date");
    Ok(store)
}

/// Serves every router on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), lambent::Error> {
    let store = open(&config).await?;
    let app = lambent::http::router(AppState::new(config, store)?);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("serving on http://{addr}");
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| lambent::Error::Internal(format!("server error: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs one command with the given configuration.
pub async fn run(
    command: Command,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), lambent::Error> {
    match command {
        Command::Migrate => open(&config).await.map(drop),
        Command::Serve => {
            let listener = TcpListener::bind(config.bind)
                .await
                .map_err(|e| lambent::Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
            serve(config, listener, shutdown).await
        }
    }
}
