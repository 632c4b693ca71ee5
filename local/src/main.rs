//! # `lambent`: the local server and admin commands
//!
//! `cargo run` at the workspace root runs `lambent serve`: it creates the embedded SQLite database if needed,
//! applies migrations and serves every router on one port. The same binary migrates any `DATABASE_URL`,
//! local or remote, before a deploy.
//!
//! # Layout
//! - `main.rs`: the command line, logging and the server's lifecycle (graceful shutdown on Ctrl-C / SIGTERM).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lambent::{AppState, Config, Store};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(name = "lambent", version, about = "Lambent: chat agents on the OpenAI Responses API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the database, then serve the API on BIND (the default command).
    Serve,
    /// Apply pending migrations to DATABASE_URL and exit.
    Migrate,
}

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("lambent: ignoring .env: {err}");
    }
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Migrate => migrate().await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "lambent failed");
            ExitCode::FAILURE
        }
    }
}

async fn open() -> Result<(Config, Store), lambent::Error> {
    let config = Config::from_env()?;
    let store = Store::open(&config).await?;
    let applied = store.migrate().await?;
    tracing::info!(applied = applied.len(), remote = store.is_remote(), "database is up to date");
    Ok((config, store))
}

async fn migrate() -> Result<(), lambent::Error> {
    open().await.map(drop)
}

async fn serve() -> Result<(), lambent::Error> {
    let (config, store) = open().await?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .map_err(|e| lambent::Error::Config(format!("cannot listen on {}: {e}", config.bind)))?;
    tracing::info!("serving on http://{}", config.bind);
    let app = lambent::http::router(AppState::new(config, store)?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| lambent::Error::Internal(format!("server error: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
