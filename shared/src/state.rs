//! What every handler shares: built once per process (per Lambda cold start).

use std::sync::Arc;

use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
}

impl AppState {
    pub fn new(config: Config, store: Store) -> Self {
        Self { config: Arc::new(config), store: Arc::new(store) }
    }

    /// Opens the store named by the config. Runs no migrations: the local binary does that explicitly, and a
    /// Lambda cold start must not.
    pub async fn open(config: Config) -> Result<Self> {
        let store = Store::open(&config).await?;
        Ok(Self::new(config, store))
    }
}
