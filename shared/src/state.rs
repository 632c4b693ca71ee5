//! What every handler shares: built once per process (per Lambda cold start). Clients that a request may not
//! need (the model provider, the tool HTTP client) are built on first use, off the cold path.
//!
//! # Layout
//! - [`AppState`]: the config, the store, the lazily built clients, the schema check, the running turns.
//! - [`Health`]: what `/api/health/` reports, from [`AppState::health`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::config::Config;
use crate::domain::{DEFAULT_MODEL, TurnId};
use crate::error::{Error, Result};
use crate::executors::ExecutorContext;
use crate::llm::{ModelProvider, OpenAiProvider};
use crate::store::Store;
use crate::telemetry::Metrics;

/// A provider's client, built on first use (or why it could not be).
type LazyClient = OnceLock<std::result::Result<Arc<dyn ModelProvider>, String>>;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    /// One client per configured provider, each built on first use.
    llms: Arc<HashMap<String, LazyClient>>,
    /// Answers for every provider instead (tests: a scripted provider).
    scripted: Option<Arc<dyn ModelProvider>>,
    executors: Arc<OnceLock<std::result::Result<ExecutorContext, Arc<reqwest::Error>>>>,
    /// This instance's MCP connections and the tool lists they cache.
    mcp: Arc<crate::executors::mcp::McpClients>,
    schema_checked: Arc<AtomicBool>,
    /// The turns running in this process, so a cancel request stops one at once.
    turns: Arc<Mutex<HashMap<TurnId, CancellationToken>>>,
    /// Where this process's EMF metric lines go (the config says; tests capture them).
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Self {
        let metrics = match &config.metrics {
            crate::config::MetricsOutput::Off => Metrics::off(),
            crate::config::MetricsOutput::Emf { service } => Metrics::stdout(service),
        };
        let llms = config.providers.iter().map(|p| (p.name.clone(), OnceLock::new())).collect();
        Self {
            metrics,
            config: Arc::new(config),
            store: Arc::new(store),
            llms: Arc::new(llms),
            scripted: None,
            executors: Arc::default(),
            mcp: Arc::default(),
            schema_checked: Arc::default(),
            turns: Arc::default(),
        }
    }

    /// Uses this model provider instead of the ones the config names (tests: a scripted provider).
    pub fn with_provider(self, provider: Arc<dyn ModelProvider>) -> Self {
        Self { scripted: Some(provider), ..self }
    }

    /// Writes metric lines to `metrics` instead (tests: [`Metrics::capture`]).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        Self { metrics, ..self }
    }

    /// The clock rows are stamped from and leases expire by. It is the store's: a state is built on a given
    /// clock with `AppState::new(config, store.with_clock(clock))` (see [`Store::with_clock`]).
    pub fn clock(&self) -> &dyn crate::clock::Clock {
        self.store.clock()
    }

    /// Opens the store named by the config. Runs no migrations: the local binary does that explicitly, and a
    /// Lambda cold start must not.
    pub async fn open(config: Config) -> Result<Self> {
        let store = Store::open(&config).await?;
        Ok(Self::new(config, store))
    }

    /// The named model provider's client, built on first use; 503 when the provider is not configured or has
    /// no key.
    pub fn llm(&self, name: &str) -> Result<Arc<dyn ModelProvider>> {
        if let Some(scripted) = &self.scripted {
            return Ok(scripted.clone());
        }
        let (Some(slot), Some(provider)) = (self.llms.get(name), self.config.provider(name)) else {
            return Err(Error::Unavailable(format!(
                "The model provider \"{name}\" is not configured: set LAMBENT_PROVIDER_{}_BASE_URL.",
                name.to_ascii_uppercase()
            )));
        };
        let built = slot.get_or_init(|| {
            let key = provider.api_key.as_ref().ok_or_else(|| missing_key(name))?;
            OpenAiProvider::new(&self.config, provider, key)
                .map(|p| Arc::new(p) as Arc<dyn ModelProvider>)
                .map_err(|e| e.chain().to_string())
        });
        built.clone().map_err(Error::Unavailable)
    }

    /// This instance's MCP connections (one per server, kept across turns).
    pub fn mcp(&self) -> &crate::executors::mcp::McpClients {
        &self.mcp
    }

    /// What server-side tool executors use, built on first use.
    pub fn executors(&self) -> Result<&ExecutorContext> {
        let built = self.executors.get_or_init(|| {
            ExecutorContext::new(self.config.tool_hosts.clone(), self.config.openai_connect_timeout).map_err(Arc::new)
        });
        built.as_ref().map_err(|e| Error::internal("cannot build the tool HTTP client", Arc::clone(e)))
    }

    /// Fails (naming `lambent migrate`) while the database lacks a migration this code needs. Checked on the
    /// first request rather than at cold start; once it passes it is not checked again.
    pub async fn ensure_schema(&self) -> Result<()> {
        if self.schema_checked.load(Ordering::Acquire) {
            return Ok(());
        }
        self.store.check_schema().await?;
        self.schema_checked.store(true, Ordering::Release);
        Ok(())
    }

    /// What `/api/health/` reports: the database (reachable, its schema current) in one statement, and the
    /// model provider's configuration (read, not called: a health check must stay cheap, and a key's secret
    /// never leaves the config). A current schema also spares the next request its schema check.
    pub async fn health(&self) -> Health {
        let (database, schema) = match self.store.migrations_behind().await {
            Ok(behind) if behind.is_empty() => {
                self.schema_checked.store(true, Ordering::Release);
                (HealthCheck::ok(), HealthCheck::ok())
            }
            Ok(behind) => (
                HealthCheck::ok(),
                HealthCheck::failing(format!(
                    "The database lacks migrations of this version: {}. Run `lambent migrate`.",
                    behind.join(", ")
                )),
            ),
            Err(err) => {
                tracing::warn!(error = %err.chain(), "health check: the database did not answer");
                (
                    HealthCheck::failing("The database did not answer."),
                    HealthCheck::failing("Not checked: no database."),
                )
            }
        };
        let model_provider = ProviderHealth::of(&self.config);
        let ready = [database.status, schema.status, model_provider.status].iter().all(|s| *s == HealthStatus::Ok);
        Health {
            status: if ready { HealthStatus::Ok } else { HealthStatus::Unavailable },
            checks: HealthChecks { database, schema, model_provider },
        }
    }

    /// A running turn's cancellation token, known to this process until [`Self::forget_turn`].
    pub fn register_turn(&self, turn_id: &TurnId) -> CancellationToken {
        let token = CancellationToken::new();
        self.turns.lock().unwrap_or_else(|e| e.into_inner()).insert(turn_id.clone(), token.clone());
        token
    }

    pub fn forget_turn(&self, turn_id: &TurnId) {
        self.turns.lock().unwrap_or_else(|e| e.into_inner()).remove(turn_id);
    }

    /// Stops the turn if it runs in this process (one elsewhere sees the store's flag).
    pub fn cancel_turn(&self, turn_id: &TurnId) {
        if let Some(token) = self.turns.lock().unwrap_or_else(|e| e.into_inner()).get(turn_id) {
            token.cancel();
        }
    }
}

/// Why a provider's turns answer 503: the variables that would give it a key.
fn missing_key(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if name == crate::config::DEFAULT_PROVIDER {
        "The model provider is not configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server)."
            .to_owned()
    } else {
        format!("The model provider \"{name}\" has no key: set LAMBENT_PROVIDER_{upper}_API_KEY.")
    }
}

/// `/api/health/`'s answer: `ok` when every check passes (200), `unavailable` naming the failing ones (503).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "checks": {"database": {"status": "ok"}, "schema": {"status": "ok"},
    "model_provider": {"status": "ok", "api_key": true, "base_url": "https://api.openai.com/v1"}}}))]
pub struct Health {
    pub status: HealthStatus,
    pub checks: HealthChecks,
}

impl Health {
    pub fn is_ready(&self) -> bool {
        self.status == HealthStatus::Ok
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HealthChecks {
    /// The database answered.
    pub database: HealthCheck,
    /// Every migration of this version is applied, unchanged.
    pub schema: HealthCheck,
    /// The `openai` provider: an API key is configured, and the base URL is one. Without an OpenAI key, a
    /// named provider with a key is enough.
    pub model_provider: ProviderHealth,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HealthCheck {
    pub status: HealthStatus,
    /// What failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl HealthCheck {
    fn ok() -> Self {
        Self { status: HealthStatus::Ok, detail: None }
    }

    fn failing(detail: impl Into<String>) -> Self {
        Self { status: HealthStatus::Unavailable, detail: Some(detail.into()) }
    }
}

/// The model provider's configuration: whether a key is set (never the key), and where requests go.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProviderHealth {
    pub status: HealthStatus,
    /// An API key is configured: `OPENAI_API_KEY`, or `OPENAI_API_KEY_PARAMETER` naming the SSM parameter the
    /// agent functions read at cold start.
    pub api_key: bool,
    /// `OPENAI_BASE_URL` without any credentials or query it may carry.
    pub base_url: Option<String>,
    /// The model an agent is given when its `model` is left out (what the dashboard prefills).
    #[schema(example = "gpt-4.1")]
    pub default_model: String,
    /// What is missing, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ProviderHealth {
    fn of(config: &Config) -> Self {
        // A function that does not call the model (on Lambda, `auth`, which serves this check) only knows the
        // SSM parameter's name; the functions that do read it at cold start and fail there without it.
        let keyed = |p: &crate::config::ProviderConfig| p.api_key.is_some() || p.api_key_parameter.is_some();
        let openai = config.default_provider();
        let api_key = keyed(openai);
        let base_url = openai.public_base_url();
        // A deployment whose agents all use named providers is ready without an OpenAI key.
        let others = config.providers.iter().filter(|p| p.name != openai.name).any(keyed);
        let detail = match (api_key, &base_url) {
            (true, Some(_)) => None,
            (false, _) if others => None,
            (false, _) => Some("No API key: set OPENAI_API_KEY (or OPENAI_API_KEY_PARAMETER on Lambda).".to_owned()),
            (true, None) => Some("OPENAI_BASE_URL is not a URL.".to_owned()),
        };
        let status = if detail.is_none() { HealthStatus::Ok } else { HealthStatus::Unavailable };
        let default_model = openai.default_model.clone().unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        Self { status, api_key, base_url, default_model, detail }
    }
}
