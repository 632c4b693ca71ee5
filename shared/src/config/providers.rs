//! Named model providers, from the environment: `LAMBENT_PROVIDER_<NAME>_BASE_URL` defines the provider
//! `<name>` (lower case), with `_API_KEY` or `_API_KEY_PARAMETER` (an SSM SecureString that only the
//! model-calling functions read, at cold start), `_STATE` (`provider` | `local`) and `_DEFAULT_MODEL`.
//! `openai` is always configured and the default: it also reads today's `OPENAI_*` variables (a
//! `LAMBENT_PROVIDER_OPENAI_*` one wins over its `OPENAI_*` twin).
//!
//! # Layout
//! - [`StateMode`]: who keeps a conversation's state.
//! - [`ProviderConfig`]: one provider's settings; [`read`]: all of them from the variables' names and values.

use std::collections::BTreeSet;

use super::{DEFAULT_OPENAI_BASE_URL, Secret};
use crate::error::{Error, Result};

/// The provider an agent talks to unless it names another.
pub const DEFAULT_PROVIDER: &str = "openai";

const PREFIX: &str = "LAMBENT_PROVIDER_";
/// The suffixes a provider variable may end with, longest first (`_API_KEY_PARAMETER` before `_API_KEY`).
const SUFFIXES: [&str; 5] = ["_API_KEY_PARAMETER", "_DEFAULT_MODEL", "_BASE_URL", "_API_KEY", "_STATE"];

/// Who keeps a conversation's state between turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateMode {
    /// The provider does: each request sends only the new input, chained by `previous_response_id` with
    /// `store: true` (OpenAI, Azure).
    Provider,
    /// Lambent does: each request carries the whole history rebuilt from Lambent's store, with `store: false`
    /// (Ollama, OpenRouter, Groq, vLLM, llama.cpp, LiteLLM routing to chat completions).
    Local,
}

impl StateMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Local => "local",
        }
    }
}

/// One provider's settings. The key never prints (see [`Secret`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub name: String,
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// On Lambda: an SSM SecureString holding the key, read once at cold start by the model-calling functions.
    pub api_key_parameter: Option<String>,
    pub state: StateMode,
    /// The model an agent of this provider gets when it names none.
    pub default_model: Option<String>,
}

impl ProviderConfig {
    /// The base URL as it may be shown: without any credentials, query or fragment it may carry; `None` when
    /// it is not a URL with a host.
    pub fn public_base_url(&self) -> Option<String> {
        reqwest::Url::parse(&self.base_url).ok().filter(|u| u.has_host()).map(|mut url| {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string().trim_end_matches('/').to_owned()
        })
    }
}

/// The names of the providers the variables define (every `LAMBENT_PROVIDER_<NAME>_<SUFFIX>` names one).
pub fn names_in<'a>(variables: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    variables
        .into_iter()
        .filter_map(|key| {
            let rest = key.strip_prefix(PREFIX)?;
            SUFFIXES.iter().find_map(|suffix| rest.strip_suffix(suffix)).filter(|name| !name.is_empty())
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Every provider: `openai` first, then those `names` defines, in name order.
pub(super) fn read(get: &dyn Fn(&str) -> Option<String>, names: &BTreeSet<String>) -> Result<Vec<ProviderConfig>> {
    let mut providers = vec![one(get, DEFAULT_PROVIDER)?];
    for name in names.iter().filter(|n| *n != DEFAULT_PROVIDER) {
        providers.push(one(get, name)?);
    }
    Ok(providers)
}

fn one(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<ProviderConfig> {
    let var = |suffix: &str| format!("{PREFIX}{}{suffix}", name.to_ascii_uppercase());
    if name.len() > 40 || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(Error::config(format!(
            "{} names the provider {name:?}: a provider's name is at most 40 letters, digits or underscores",
            var("_BASE_URL")
        )));
    }
    let openai = name == DEFAULT_PROVIDER;
    // `openai` also reads the variables it had before providers had names.
    let setting = |suffix: &str, legacy: &str| get(&var(suffix)).or_else(|| if openai { get(legacy) } else { None });
    let base_url = match setting("_BASE_URL", "OPENAI_BASE_URL") {
        Some(url) => url,
        None if openai => DEFAULT_OPENAI_BASE_URL.to_owned(),
        None => return Err(Error::config(format!("{} is required to define the provider {name:?}", var("_BASE_URL")))),
    };
    if !base_url.starts_with("http://") && !base_url.starts_with("https://") {
        return Err(Error::config(format!("{} must be an http(s) URL, got {base_url:?}", var("_BASE_URL"))));
    }
    let state = match get(&var("_STATE")).as_deref() {
        None | Some("provider") => StateMode::Provider,
        Some("local") => StateMode::Local,
        Some(other) => {
            return Err(Error::config(format!("{} must be provider or local, got {other:?}", var("_STATE"))));
        }
    };
    Ok(ProviderConfig {
        name: name.to_owned(),
        base_url,
        api_key: setting("_API_KEY", "OPENAI_API_KEY").map(Secret::new),
        api_key_parameter: setting("_API_KEY_PARAMETER", "OPENAI_API_KEY_PARAMETER"),
        state,
        default_model: get(&var("_DEFAULT_MODEL")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Vec<ProviderConfig>> {
        let names = names_in(vars.iter().map(|(k, _)| *k));
        read(&|key| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned()), &names)
    }

    #[test]
    fn openai_is_always_there_and_reads_the_old_variables() {
        let providers = from(&[("OPENAI_API_KEY", "sk-old"), ("OPENAI_BASE_URL", "http://proxy/v1")]).unwrap();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].name, "openai");
        assert_eq!(providers[0].base_url, "http://proxy/v1");
        assert_eq!(providers[0].api_key.as_ref().map(Secret::expose), Some("sk-old"));
        assert_eq!(providers[0].state, StateMode::Provider);
        let named = from(&[("OPENAI_API_KEY", "sk-old"), ("LAMBENT_PROVIDER_OPENAI_API_KEY", "sk-new")]).unwrap();
        assert_eq!(named[0].api_key.as_ref().map(Secret::expose), Some("sk-new"), "the named variable wins");
        assert_eq!(named[0].base_url, DEFAULT_OPENAI_BASE_URL);
    }

    #[test]
    fn a_named_provider_takes_its_name_from_its_variables() {
        let providers = from(&[
            ("LAMBENT_PROVIDER_MY_OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1"),
            ("LAMBENT_PROVIDER_MY_OLLAMA_STATE", "local"),
            ("LAMBENT_PROVIDER_MY_OLLAMA_DEFAULT_MODEL", "qwen3:8b"),
            ("LAMBENT_PROVIDER_GROQ_API_KEY_PARAMETER", "/lambent/groq"),
            ("LAMBENT_PROVIDER_GROQ_BASE_URL", "https://api.groq.com/openai/v1"),
        ])
        .unwrap();
        let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["openai", "groq", "my_ollama"]);
        assert_eq!(providers[1].api_key_parameter.as_deref(), Some("/lambent/groq"));
        assert!(providers[1].api_key.is_none(), "_API_KEY_PARAMETER is not read as _API_KEY");
        assert_eq!(providers[2].state, StateMode::Local);
        assert_eq!(providers[2].default_model.as_deref(), Some("qwen3:8b"));
    }

    #[test]
    fn a_provider_without_a_base_url_or_with_a_bad_setting_is_named() {
        let err = from(&[("LAMBENT_PROVIDER_GROQ_API_KEY", "k")]).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_PROVIDER_GROQ_BASE_URL"), "{err}");
        let err =
            from(&[("LAMBENT_PROVIDER_X_BASE_URL", "http://x/v1"), ("LAMBENT_PROVIDER_X_STATE", "none")]).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_PROVIDER_X_STATE"), "{err}");
        let err = from(&[("LAMBENT_PROVIDER_X_BASE_URL", "x.example")]).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_PROVIDER_X_BASE_URL"), "{err}");
        let err = from(&[("LAMBENT_PROVIDER_A-B_BASE_URL", "http://x/v1")]).unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn a_base_url_is_shown_without_credentials() {
        let providers = from(&[("LAMBENT_PROVIDER_X_BASE_URL", "https://user:pw@llm.example/v1/?key=k#f")]).unwrap();
        assert_eq!(providers[1].public_base_url().as_deref(), Some("https://llm.example/v1"));
    }

    #[test]
    fn keys_do_not_print() {
        let providers =
            from(&[("LAMBENT_PROVIDER_X_BASE_URL", "http://x/v1"), ("LAMBENT_PROVIDER_X_API_KEY", "sk-secret")])
                .unwrap();
        assert!(!format!("{providers:?}").contains("sk-secret"));
    }
}
