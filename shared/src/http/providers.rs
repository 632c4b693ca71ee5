//! `/api/providers/`: the model providers this deployment is configured with (never their keys).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{ProviderConfig, StateMode};
use crate::domain::Caller;
use crate::state::AppState;

pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// One configured provider, as agents name it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({"name": "openai", "state": "provider", "base_url": "https://api.openai.com/v1",
    "default_model": null}))]
pub struct ProviderInfo {
    /// What an agent's `provider` field names (`LAMBENT_PROVIDER_<NAME>_BASE_URL` defines `<name>`).
    pub name: String,
    /// Who keeps a conversation's state: the provider (`previous_response_id`) or Lambent (`local`: the whole
    /// history in every request, `store: false`).
    pub state: StateMode,
    /// Where requests go, without any credentials, query or fragment the setting may carry.
    pub base_url: Option<String>,
    /// The model an agent of this provider gets when it is created without one.
    pub default_model: Option<String>,
}

impl From<&ProviderConfig> for ProviderInfo {
    fn from(p: &ProviderConfig) -> Self {
        Self {
            name: p.name.clone(),
            state: p.state,
            base_url: p.public_base_url(),
            default_model: p.default_model.clone(),
        }
    }
}

/// List the configured model providers, `openai` (the default) first.
#[utoipa::path(operation_id = "providers_list", get, path = "/api/providers/", tag = "providers",
    responses((status = 200, description = "Every configured provider; never a key.", body = Vec<ProviderInfo>)))]
async fn list(State(state): State<AppState>, _caller: Caller) -> Json<Vec<ProviderInfo>> {
    Json(state.config.providers.iter().map(ProviderInfo::from).collect())
}
