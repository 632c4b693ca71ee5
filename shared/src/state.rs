//! What every handler shares: built once per process (per Lambda cold start). Clients that a request may not
//! need (the model provider, the tool HTTP client) are built on first use, off the cold path.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::executors::ExecutorContext;
use crate::llm::{ModelProvider, OpenAiProvider};
use crate::store::Store;
use crate::telemetry::Metrics;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    llm: Arc<OnceLock<std::result::Result<Arc<dyn ModelProvider>, String>>>,
    executors: Arc<OnceLock<std::result::Result<ExecutorContext, Arc<reqwest::Error>>>>,
    schema_checked: Arc<AtomicBool>,
    /// The turns running in this process, so a cancel request stops one at once.
    turns: Arc<Mutex<HashMap<String, CancellationToken>>>,
    /// Where this process's EMF metric lines go (the config says; tests capture them).
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Self {
        let metrics = match &config.metrics {
            crate::config::MetricsOutput::Off => Metrics::off(),
            crate::config::MetricsOutput::Emf { service } => Metrics::stdout(service),
        };
        Self {
            metrics,
            config: Arc::new(config),
            store: Arc::new(store),
            llm: Arc::default(),
            executors: Arc::default(),
            schema_checked: Arc::default(),
            turns: Arc::default(),
        }
    }

    /// Uses this model provider instead of the one the config names (tests: a scripted provider).
    pub fn with_provider(self, provider: Arc<dyn ModelProvider>) -> Self {
        let llm = OnceLock::new();
        let _ = llm.set(Ok(provider));
        Self { llm: Arc::new(llm), ..self }
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

    /// The model provider, built on first use; 503 without `OPENAI_API_KEY`.
    pub fn llm(&self) -> Result<Arc<dyn ModelProvider>> {
        let built = self.llm.get_or_init(|| {
            let key = self.config.openai_api_key.as_ref().ok_or_else(|| {
                "The model provider is not configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for a compatible server)."
                    .to_owned()
            })?;
            OpenAiProvider::new(&self.config, key)
                .map(|p| Arc::new(p) as Arc<dyn ModelProvider>)
                .map_err(|e| e.chain().to_string())
        });
        built.clone().map_err(Error::Unavailable)
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

    /// A running turn's cancellation token, known to this process until [`Self::forget_turn`].
    pub fn register_turn(&self, turn_id: &str) -> CancellationToken {
        let token = CancellationToken::new();
        self.turns.lock().unwrap_or_else(|e| e.into_inner()).insert(turn_id.to_owned(), token.clone());
        token
    }

    pub fn forget_turn(&self, turn_id: &str) {
        self.turns.lock().unwrap_or_else(|e| e.into_inner()).remove(turn_id);
    }

    /// Stops the turn if it runs in this process (one elsewhere sees the store's flag).
    pub fn cancel_turn(&self, turn_id: &str) {
        if let Some(token) = self.turns.lock().unwrap_or_else(|e| e.into_inner()).get(turn_id) {
            token.cancel();
        }
    }
}
