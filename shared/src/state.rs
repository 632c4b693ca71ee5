//! What every handler shares: built once per process (per Lambda cold start).

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::executors::ExecutorContext;
use crate::llm::{ModelProvider, OpenAiProvider};
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    /// None without `OPENAI_API_KEY`: the agent endpoints then answer 503.
    pub llm: Option<Arc<dyn ModelProvider>>,
    pub executors: ExecutorContext,
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Result<Self> {
        let llm = match &config.openai_api_key {
            Some(key) => Some(Arc::new(OpenAiProvider::new(
                key,
                &config.openai_base_url,
                config.openai_connect_timeout,
                config.openai_read_timeout,
            )?) as Arc<dyn ModelProvider>),
            None => None,
        };
        let executors = ExecutorContext {
            http: reqwest::Client::builder()
                .connect_timeout(config.openai_connect_timeout)
                .build()
                .map_err(|e| crate::Error::Config(format!("cannot build the tool HTTP client: {e}")))?,
            allowed_hosts: config.tool_hosts.clone(),
        };
        Ok(Self { config: Arc::new(config), store: Arc::new(store), llm, executors })
    }

    /// Opens the store named by the config. Runs no migrations: the local binary does that explicitly, and a
    /// Lambda cold start must not.
    pub async fn open(config: Config) -> Result<Self> {
        let store = Store::open(&config).await?;
        Self::new(config, store)
    }
}
