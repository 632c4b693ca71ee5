//! # `lambent`: the local server and admin commands
//!
//! `cargo run` at the workspace root runs `lambent serve`: it creates the embedded SQLite database if needed,
//! applies migrations and serves every router on one port. The same binary migrates any `DATABASE_URL`,
//! local or remote, before a deploy, and prunes it (`lambent prune`, what the scheduled Prune function does).
//!
//! # Layout
//! - `lib.rs`: the commands, the logging and the shutdown signal, so tests drive the very server `main` runs
//!   (and the test binary that runs `main.rs` itself is that program).
//! - `parse_errors.rs`: a connection whose request hyper cannot parse (a control character in a header) is
//!   answered with a JSON 400 naming the header, not hyper's bare one.
//! - `main.rs`: the `lambent` binary: [`main`].

mod parse_errors;

use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use clap::{Parser, Subcommand};
use lambent::auth::{hash_password, random_hex};
use lambent::domain::{Mode, NewApiToken, UserWrite};
use lambent::store::User;
use lambent::{AppState, Config, Error, Store};
use tokio::net::TcpListener;
use tower_http::set_header::SetResponseHeaderLayer;

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
    /// Create a staff user. Asks for the username and password; with --username, reads the password from
    /// the first line of standard input instead.
    Createsuperuser {
        #[arg(long)]
        username: Option<String>,
    },
    /// Delete recorded frames of turns older than LAMBENT_EVENTS_RETENTION_DAYS, expired idempotency keys and
    /// expired login tokens, in short batches; print what was deleted.
    Prune {
        /// Rows per delete (each its own short write transaction).
        #[arg(long, default_value_t = lambent::store::PrunePlan::BATCH, value_parser = clap::value_parser!(u32).range(1..))]
        batch_size: u32,
    },
    /// API tokens: create one (printed once) or revoke one.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create an API token for a user and print it (it is not shown again).
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: String,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke tokens by the prefix shown in lists (e.g. lam_3f9a1c2b).
    Revoke {
        #[arg(long)]
        prefix: String,
    },
}

/// On a database without users, creates the staff user `admin` with a random password. Returns it (and the
/// password, for printing once) when it did.
pub async fn ensure_first_admin(store: &Store) -> Result<Option<(User, String)>, Error> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = random_hex(12);
    let hash = hash_password(&password)?;
    let user = store.create_user("admin", Some(&hash), true).await?;
    Ok(Some((user, password)))
}

/// Creates a staff user from a username and password, with the API's rules.
pub async fn create_superuser(store: &Store, username: &str, password: &str) -> Result<User, Error> {
    let write = UserWrite::parse(
        &serde_json::json!({"username": username, "password": password, "is_staff": true}),
        Mode::Create,
        &lambent::config::Limits::default(),
    )?;
    lambent::accounts::create_user(store, write).await
}

fn prompt(label: &str) -> Result<String, Error> {
    print!("{label}");
    std::io::stdout().flush().map_err(|e| Error::internal("writing a prompt", e))?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| Error::internal("reading standard input", e))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn createsuperuser(store: &Store, username: Option<String>) -> Result<(), Error> {
    let (username, password) = match username {
        // Non-interactive: the password is the first line of standard input.
        Some(username) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Error::internal("reading the password from standard input", e))?;
            (username, line.trim_end_matches(['\r', '\n']).to_owned())
        }
        None => {
            let username = prompt("Username: ")?;
            let password =
                rpassword::prompt_password("Password: ").map_err(|e| Error::internal("reading the password", e))?;
            let again = rpassword::prompt_password("Password (again): ")
                .map_err(|e| Error::internal("reading the password", e))?;
            if password != again {
                return Err(Error::field("password", "The two passwords didn't match."));
            }
            (username, password)
        }
    };
    let user = create_superuser(store, &username, &password).await?;
    println!("Superuser \"{}\" created (id {}).", user.username, user.id);
    Ok(())
}

async fn token(store: &Store, action: TokenAction) -> Result<(), Error> {
    match action {
        TokenAction::Create { user, name, expires_in_days } => {
            // The API's rules for the name (and the expiry), as `createsuperuser` takes the API's for users.
            let body = serde_json::json!({"name": name, "expires_in_days": expires_in_days});
            let request = NewApiToken::parse(&body, Mode::Create, &lambent::config::Limits::default())?;
            let name = lambent::domain::wire::present("name", request.name)?;
            let user = store.user_by_username(&user).await?;
            let issued = lambent::accounts::issue_api_token(store, user.id, &name, request.expires_in_days).await?;
            println!("{}", issued.token);
            eprintln!("Token \"{name}\" for {} created; it is shown only this once.", user.username);
        }
        TokenAction::Revoke { prefix } => {
            let revoked = store.revoke_token_by_prefix(&prefix).await?;
            if revoked == 0 {
                return Err(Error::Missing(format!("No active token starts with {prefix}.")));
            }
            println!("Revoked {revoked} token(s).");
        }
    }
    Ok(())
}

async fn prune(store: &Store, config: &Config, batch_size: u32) -> Result<(), Error> {
    let plan = lambent::store::PrunePlan { batch: batch_size, ..lambent::store::PrunePlan::new(config) };
    let (started, trips) = (Instant::now(), store.round_trips());
    let pruned = store.prune(&plan).await?;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    let remote = if store.is_remote() {
        format!(", {} database round trips", store.round_trips() - trips)
    } else {
        String::new()
    };
    println!(
        "Deleted {} recorded frame(s), {} idempotency key(s) and {} login token(s) in {} batch(es); \
         {:.1} ms in all{remote}, the longest batch {:.1} ms.",
        pruned.frames,
        pruned.idempotency_keys,
        pruned.login_tokens,
        pruned.batches,
        ms(started.elapsed()),
        ms(pruned.longest_batch),
    );
    Ok(())
}

/// Opens the configured database and brings its schema up to date.
pub async fn open(config: &Config) -> Result<Store, lambent::Error> {
    let store = Store::open(config).await?;
    let applied = store.migrate().await?;
    tracing::info!(applied = applied.len(), remote = store.is_remote(), "database is up to date");
    Ok(store)
}

/// The whole site (`lambent_site::files`) at the paths CloudFront serves it, from memory: the pages (`/`,
/// `/dashboard/`, …), `/static/`, `/vendor/` and `/favicon.ico`. Nothing is read from disk, so a fresh clone's
/// `cargo run` serves it from any working directory.
pub fn site() -> axum::Router {
    let mut router = axum::Router::new();
    for file in lambent_site::files() {
        let route = file.route();
        let content_type = HeaderValue::from_static(file.content_type);
        let body = match file.bytes {
            std::borrow::Cow::Borrowed(bytes) => Bytes::from_static(bytes),
            std::borrow::Cow::Owned(bytes) => Bytes::from(bytes),
        };
        router = router
            .route(&route, axum::routing::get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }));
    }
    router
}

/// Serves every router on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), lambent::Error> {
    let store = open(&config).await?;
    if !store.is_remote() {
        // A SQLite file has one server, this one: a turn still holding its session was cut off by a stop.
        let closed = lambent::turn::close_interrupted(&store).await?;
        if closed > 0 {
            tracing::warn!(turns = closed, "closed turns interrupted by the last stop; their sessions are free");
        }
    }
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| config.bind.to_string());
    if let Some((admin, password)) = ensure_first_admin(&store).await? {
        // Printed once, never logged: this is the only time the password exists in clear.
        println!(
            "\nFirst run: created the staff user \"{}\" with password {password}\n\
             Log in at http://{addr}/dashboard/ (or POST /api/auth/login/), then change it: Dashboard → Users.\n",
            admin.username
        );
    }
    let header_timeout = config.header_timeout;
    let app = app(AppState::new(config, store));
    tracing::info!("serving on http://{addr}");
    serve_app(listener, app, header_timeout, shutdown).await.map_err(|e| lambent::Error::internal("serving", e))?;
    tracing::info!("stopped");
    Ok(())
}

/// Every router, the site, the headers every page and answer carries, and what every request gets
/// (`lambent::http::observe`: its id, span and INFO line on the target `lambent::request`, `GET /dashboard/ 200
/// 0.41ms` — the time to the response's head, a stream goes on after it; only the path, a query string stays
/// out of the log): what [`serve`] serves.
pub fn app(state: AppState) -> axum::Router {
    let router = lambent::http::router(state.clone())
        .merge(site())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(lambent_site::CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ));
    let router = router
        .layer(axum::middleware::from_fn_with_state(state.config.body_timeout, lambent::http::extract::body_deadline));
    lambent::http::observed(router, &state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
///
/// Each connection is HTTP/1.1 through hyper's builder with a timer, so a slow client is cut off:
/// `header_timeout` (`LAMBENT_HEADER_TIMEOUT`) bounds how long a request's headers may take, counted from when
/// the connection opened or its previous response ended (so an idle keep-alive connection is closed after it
/// too); the body's own deadline is the app's (`body_deadline` in [`app`]). axum::serve gives hyper no timer,
/// so before this a connection that sent nothing, or a header a byte at a time, was held open for ever. A
/// request hyper cannot parse is answered in the API's JSON shape ([`parse_errors`]).
///
/// Every accepted connection gets `TCP_NODELAY`: hyper writes a response head and each SSE frame as separate
/// small writes, and with Nagle on, a frame waits for the client's ACK of what went before it; a client on a
/// keep-alive connection (a browser, an SDK, any pooled client) delays that ACK by ~40 ms, so every streamed
/// turn after the first on a connection would start 40 ms late.
pub async fn serve_app(
    listener: TcpListener,
    app: axum::Router,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: say so, and let the moment pass.
                    tracing::warn!("cannot accept a connection: {err}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY on an accepted connection: {err}");
        }
        // The peer's address reaches the routes (login throttling counts it; see `ClientAddress`).
        let router = app.clone();
        let service = tower::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            tower::ServiceExt::oneshot(router.clone(), request.map(axum::body::Body::new))
        });
        let connection = http.serve_connection(
            hyper_util::rt::TokioIo::new(parse_errors::ParseErrors::new(tcp)),
            hyper_util::service::TowerToHyperService::new(service),
        );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection from {peer} ended: {err}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
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
        Command::Createsuperuser { username } => createsuperuser(&open(&config).await?, username).await,
        Command::Token { action } => token(&open(&config).await?, action).await,
        Command::Prune { batch_size } => prune(&open(&config).await?, &config, batch_size).await,
        Command::Serve => {
            let listener = TcpListener::bind(config.bind)
                .await
                .map_err(|e| lambent::Error::config_from(format!("cannot listen on {}", config.bind), e))?;
            serve(config, listener, shutdown).await
        }
    }
}

/// Logs go to stderr (stdout carries what commands print for scripts: a new token, the first-run password), at
/// `RUST_LOG` (`info` by default: one line per request, see [`app`]), in colour only on a terminal and without
/// `NO_COLOR`: redirected to a file, a log is plain text. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are
/// exported too (`lambent::telemetry`). Call it inside the runtime.
pub fn init_logging() {
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Before the exporter: its OTLP/HTTP client (reqwest) takes TLS from the process-wide provider.
    lambent::tls::install_crypto_provider();
    lambent::telemetry::init(lambent::telemetry::LogFormat::Text { ansi: colour });
}

/// The `lambent` binary: `.env`, logging, the command line (`serve` by default), until Ctrl-C / SIGTERM.
pub async fn main() -> ExitCode {
    // A missing .env is normal; a malformed one is worth saying.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("lambent: ignoring .env: {err}");
    }
    init_logging();
    let cli = Cli::parse();
    let result = match Config::from_env() {
        Ok(config) => run(cli.command.unwrap_or(Command::Serve), config, shutdown_signal()).await,
        Err(err) => Err(err),
    };
    // The batch exporter would send what is left on its next tick; a stopping process has none.
    lambent::telemetry::flush().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err.chain(), "lambent failed");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
