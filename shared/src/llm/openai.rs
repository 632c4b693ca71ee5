//! The OpenAI Responses API through async-openai ("bring your own types" mode, so events stay raw JSON).

use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::value::RawValue;

use async_openai::middleware::ReqwestService;

use super::retry::RetryPolicy;
use super::{EventStream, ModelProvider, ModelRequest, UpstreamError};
use crate::config::Secret;
use crate::domain::ErrorCode;

#[derive(Clone)]
pub struct OpenAiProvider {
    client: Client<OpenAIConfig>,
    read_timeout: Duration,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiProvider").field("read_timeout", &self.read_timeout).finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    pub fn new(
        config: &crate::config::Config,
        provider: &crate::config::ProviderConfig,
        api_key: &Secret,
    ) -> Result<Self, crate::error::Error> {
        let (connect_timeout, read_timeout) = (config.openai_connect_timeout, config.openai_read_timeout);
        crate::tls::install_crypto_provider();
        // async-openai sets no read timeout of its own: without one an upstream that never answers would hold
        // a turn forever. The turn enforces `read_timeout` between events itself (and names it
        // `upstream_timeout`); this looser socket timeout covers the wait for response headers.
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout + Duration::from_secs(1))
            .build()
            .map_err(|e| crate::error::Error::config_from("cannot build the OpenAI HTTP client", e))?;
        let service = tower::ServiceBuilder::new()
            .retry(RetryPolicy::new(config.upstream_retries, config.upstream_retry_budget))
            .service(ReqwestService::new(http));
        let openai =
            OpenAIConfig::new().with_api_key(api_key.expose()).with_api_base(provider.base_url.trim_end_matches('/'));
        Ok(Self { client: Client::with_config(openai).with_http_service(service), read_timeout })
    }
}

impl ModelProvider for OpenAiProvider {
    fn stream(&self, request: ModelRequest) -> BoxFuture<'_, Result<EventStream, UpstreamError>> {
        async move {
            let stream = self
                .client
                .responses()
                .create_stream_byot::<ModelRequest, Box<RawValue>>(request)
                .await
                .map_err(|e| classify(&e))?;
            Ok(stream.map(|item| item.map_err(|e| classify(&e))).boxed())
        }
        .boxed()
    }

    fn read_timeout(&self) -> Duration {
        self.read_timeout
    }
}

/// Maps a client error to one of Lambent's upstream error codes. The message keeps the upstream's words
/// (never our API key: async-openai does not echo request headers).
fn classify(error: &OpenAIError) -> UpstreamError {
    match error {
        OpenAIError::ApiError(api) => {
            let status = api.status_code.as_u16();
            let code = match status {
                429 => ErrorCode::UpstreamRateLimited,
                500..=599 => ErrorCode::UpstreamUnavailable,
                _ => ErrorCode::UpstreamRejected,
            };
            let message = if api.api_error.message.trim().is_empty() {
                format!("upstream answered HTTP {status}")
            } else {
                format!("upstream answered HTTP {status}: {}", api.api_error.message)
            };
            UpstreamError::new(code, message)
        }
        OpenAIError::Reqwest(e) if e.is_timeout() => {
            UpstreamError::new(ErrorCode::UpstreamTimeout, format!("upstream did not answer in time: {e}"))
        }
        OpenAIError::Reqwest(e) if e.is_connect() => {
            UpstreamError::new(ErrorCode::UpstreamUnavailable, format!("cannot connect to the upstream: {e}"))
        }
        OpenAIError::Reqwest(e) => {
            UpstreamError::new(ErrorCode::UpstreamDisconnected, format!("upstream connection failed: {e}"))
        }
        OpenAIError::JSONDeserialize(e, _) => {
            UpstreamError::new(ErrorCode::UpstreamMalformed, format!("upstream sent an event that is not JSON: {e}"))
        }
        OpenAIError::StreamError(e) => {
            let text = e.to_string();
            if text.contains("timed out") || text.contains("timeout") {
                UpstreamError::new(ErrorCode::UpstreamTimeout, format!("upstream stream stalled: {text}"))
            } else {
                UpstreamError::new(ErrorCode::UpstreamDisconnected, format!("upstream stream broke off: {text}"))
            }
        }
        other => UpstreamError::new(ErrorCode::UpstreamError, other.to_string()),
    }
}
