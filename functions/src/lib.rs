//! # Lambent's AWS Lambda functions
//!
//! One binary per function under `src/bin/`; each only names its [`Function`] (`lambent::http::functions`
//! says which endpoint groups it serves). This library holds the wiring they share, so cold start is the same
//! everywhere: read the config, open the store once (no migrations: `lambent migrate` runs before a deploy),
//! then hand the router to the runtime.
//!
//! Telemetry (`lambent::telemetry`): logs are JSON lines (the template sets `LogFormat: JSON`), each with its
//! request's id — API Gateway's `requestContext.requestId`, also answered as `x-request-id` — and the
//! invocation's X-Ray trace (`_X_AMZN_TRACE_ID`, which the runtime sets per invocation) is the parent of the
//! request's span when the request brings no `traceparent`. With `OTEL_EXPORTER_OTLP_ENDPOINT` set, spans are
//! exported and flushed before each invocation ends ([`FlushLayer`]): at the response for a buffered function,
//! at the end of the stream body for a streaming one (its turn's spans close before the stream does).
//!
//! Secrets: when `OPENAI_API_KEY_PARAMETER` (any provider's `LAMBENT_PROVIDER_<NAME>_API_KEY_PARAMETER`) /
//! `DATABASE_AUTH_TOKEN_PARAMETER` name SSM SecureString parameters, they are read (decrypted) once at cold
//! start — a provider's key only by the functions that call the model; otherwise the plain variables are
//! used, and the AWS SDK is never touched.
//!
//! # Layout
//! - `src/lib.rs`: [`serve`] (the shared `main`, streaming or buffered as the function says), [`cold_start`],
//!   [`resolve_secrets`] (and [`secrets_for`] a function), [`aws_config`] / [`aws_http_client`] (the SDK over
//!   ring), [`service`] (the router as Lambda sees it: the stage off the path, and the invocation's deadline,
//!   client address, public path prefix and request id put in the request's extensions), [`FlushLayer`] (spans
//!   out before the invocation ends).
//! - `src/bin/<function>.rs`: `agents`, `tools`, `agent-tools`, `templates`, `sessions`, `docs`, `auth`,
//!   `agent-chat`, and the two streaming functions `agent-stream` and `tool-output`; `prune`, the scheduled
//!   housekeeping function (no HTTP: `src/prune.rs` has its handler).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_ssm::config::SharedHttpClient;
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{self, TlsContext, rustls_provider::CryptoMode};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Uri};
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use lambent::config::Secret;
use lambent::http::Function;
use lambent::http::extract::{ClientAddress, Deadline, PathPrefix, public_host};
use lambent::telemetry::{LogFormat, RequestId};
use lambent::{AppState, Config};
use std::time::{Duration, UNIX_EPOCH};
use tower::util::MapRequest;
use tower::{Layer, Service, ServiceBuilder};

/// The router as Lambda calls it: stage stripped, request id and trace taken from the invocation, spans
/// flushed before the invocation ends.
pub type Served = Flush<MapRequest<Router, fn(Request) -> Request>>;

mod prune;
pub use prune::{DEADLINE_MARGIN, prune};

/// Cold start, then serve the function's requests: streamed for the SSE functions, buffered for the rest.
pub async fn serve(function: Function) -> Result<(), lambda_http::Error> {
    // Before the exporter: its OTLP/HTTP client (reqwest) takes TLS from the process-wide provider.
    lambent::tls::install_crypto_provider();
    lambent::telemetry::init(LogFormat::Json);
    let state = cold_start(function).await?;
    let router = service(function.router(state.clone()), &state);
    if function.streams() { serve_streaming(router).await } else { lambda_http::run(router).await }
}

/// Everything a function does before its first request: configuration, secrets, one database connection.
pub async fn cold_start(function: Function) -> Result<AppState, lambent::Error> {
    AppState::open(secrets_for(function, Config::from_env()?, None).await?).await
}

/// [`resolve_secrets`] for one function: only a function that calls the model reads the providers' keys.
/// The others keep the parameters' names (the health check, on `auth`, reports a key as configured) and never
/// ask SSM for them (they may not read them).
pub async fn secrets_for(function: Function, config: Config, sdk: Option<SdkConfig>) -> Result<Config, lambent::Error> {
    if function.calls_model() {
        return resolve_secrets(config, sdk).await;
    }
    let mut config = config;
    let unread: Vec<Option<String>> = config.providers.iter_mut().map(|p| p.api_key_parameter.take()).collect();
    let mut config = resolve_secrets(config, sdk).await?;
    for (provider, name) in config.providers.iter_mut().zip(unread) {
        provider.api_key_parameter = name;
    }
    Ok(config)
}

/// Fills secrets from SSM parameters when the configuration names them: every provider's key and the
/// database token. `sdk` overrides the AWS configuration (tests point it at a local emulator); by default it
/// comes from the environment.
pub async fn resolve_secrets(mut config: Config, sdk: Option<SdkConfig>) -> Result<Config, lambent::Error> {
    let keys_named = config.providers.iter().any(|p| p.api_key_parameter.is_some());
    if !keys_named && config.database_auth_token_parameter.is_none() && config.secrets_key_parameter.is_none() {
        return Ok(config);
    }
    let sdk = match sdk {
        Some(sdk) => sdk,
        None => aws_config().load().await,
    };
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    for provider in &mut config.providers {
        if let Some(name) = provider.api_key_parameter.clone() {
            provider.api_key = Some(parameter(&ssm, &name).await?);
        }
    }
    if let Some(name) = config.database_auth_token_parameter.clone() {
        config.database_auth_token = Some(parameter(&ssm, &name).await?);
    }
    if let Some(name) = config.secrets_key_parameter.clone() {
        config.secrets_key = Some(lambent::config::SecretsKey::parse(parameter(&ssm, &name).await?.expose())?);
    }
    Ok(config)
}

/// The AWS configuration from the environment, over [`aws_http_client`] with the system's root certificates.
pub fn aws_config() -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(aws_http_client(TlsContext::default()))
}

/// The AWS SDK's HTTPS client: rustls over ring, the one crypto library in the build. aws-config's own default
/// client (`default-https-client`) would use aws-lc. `tls` names the trusted roots (tests trust their own).
/// Unlike that default client, this one ignores `HTTPS_PROXY`: a Lambda function has no proxy.
pub fn aws_http_client(tls: TlsContext) -> SharedHttpClient {
    Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).tls_context(tls).build_https()
}

async fn parameter(ssm: &aws_sdk_ssm::Client, name: &str) -> Result<Secret, lambent::Error> {
    let output = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| lambent::Error::config_from(format!("cannot read SSM parameter {name}"), e))?;
    output
        .parameter
        .and_then(|p| p.value)
        .map(Secret::new)
        .ok_or_else(|| lambent::Error::config(format!("SSM parameter {name} has no value")))
}

/// Serves with Lambda response streaming: SSE frames leave as they are produced (plain `run` would buffer
/// the whole body). They reach the Runtime API without waiting on Nagle: the runtime's client
/// (`lambda_runtime_api_client`, patched in from `vendor/`; lambda_runtime takes no client of ours)
/// connects with `TCP_NODELAY`, else each frame would wait ~40 ms for the API's delayed ACK.
async fn serve_streaming(router: Served) -> Result<(), lambda_http::Error> {
    lambda_http::run_with_streaming_response(router).await
}

/// The router behind what every API Gateway REST request needs first (the path fix, and what the invocation
/// says that the routes read from the request's extensions), with what every request gets
/// (`lambent::http::observe`), fed the invocation's request id and trace.
pub fn service(router: Router, state: &AppState) -> Served {
    let router = lambent::http::observed(router, state);
    ServiceBuilder::new()
        .layer(FlushLayer)
        .map_request((|req| tag(from_api_gateway(req))) as fn(Request) -> Request)
        .service(router)
}

/// The stage off the path ([`strip_stage`]), and, for the routes, the invocation's deadline
/// ([`Deadline`], which bounds a turn's lease) and API Gateway's `sourceIp` ([`ClientAddress`], which login
/// throttling counts).
fn from_api_gateway(req: Request) -> Request {
    let mut req = strip_stage(req);
    // `Context::default()` (no invocation) has deadline 0: no deadline is known then.
    let deadline = req.lambda_context_ref().map(|ctx| ctx.deadline).filter(|ms| *ms > 0);
    if let Some(ms) = deadline {
        req.extensions_mut().insert(Deadline(UNIX_EPOCH + Duration::from_millis(ms)));
    }
    let source_ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.source_ip.clone(),
        // A function URL's (and an HTTP API's) event, as `cargo lambda watch` sends them.
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.clone(),
        _ => None,
    };
    if let Some(ip) = source_ip.filter(|ip| !ip.is_empty()) {
        req.extensions_mut().insert(ClientAddress(ip));
    }
    req
}

/// The request's id from API Gateway (`requestContext.requestId`, what it logs and answers as
/// `x-amzn-requestid`), else the invocation's; and the invocation's X-Ray trace as `X-Amzn-Trace-Id` when the
/// request did not bring one (the runtime sets `_X_AMZN_TRACE_ID` per invocation).
fn tag(mut req: Request) -> Request {
    let id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    let id = id.or_else(|| req.lambda_context_ref().map(|ctx| ctx.request_id.clone()).filter(|id| !id.is_empty()));
    let trace = req.lambda_context_ref().and_then(|ctx| ctx.xray_trace_id.clone());
    let trace = trace.or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok());
    if let Some(id) = id {
        req.extensions_mut().insert(RequestId(id));
    }
    if let Some(trace) = trace.and_then(|t| HeaderValue::from_str(&t).ok())
        && !req.headers().contains_key("x-amzn-trace-id")
    {
        req.headers_mut().insert("x-amzn-trace-id", trace);
    }
    req
}

/// Flushes the spans before an invocation ends (a frozen environment sends nothing): once the response's body
/// has ended, before the runtime sees its end. Without an exporter it does nothing and wraps nothing.
#[derive(Debug, Clone, Copy)]
pub struct FlushLayer;

impl<S> Layer<S> for FlushLayer {
    type Service = Flush<S>;

    fn layer(&self, inner: S) -> Flush<S> {
        Flush(inner)
    }
}

/// See [`FlushLayer`].
#[derive(Debug, Clone)]
pub struct Flush<S>(S);

impl<S> Service<Request> for Flush<S>
where
    S: Service<Request, Response = axum::response::Response>,
    S::Future: Send + 'static,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let response = self.0.call(req);
        Box::pin(async move {
            let response = response.await?;
            if !lambent::telemetry::exporting() {
                return Ok(response);
            }
            Ok(response.map(|body| Body::new(FlushAtEnd { body, flush: None, done: false })))
        })
    }
}

/// A body that flushes the spans after its last frame, before it reports its end.
struct FlushAtEnd {
    body: Body,
    flush: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    done: bool,
}

impl http_body::Body for FlushAtEnd {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.flush.is_none() {
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(frame) => return Poll::Ready(Some(frame)),
                None => self.flush = Some(Box::pin(lambent::telemetry::flush())),
            }
        }
        if let Some(flush) = self.flush.as_mut() {
            ready!(flush.as_mut().poll(cx));
        }
        self.done = true;
        Poll::Ready(None)
    }
}

/// lambda_http puts the REST API's stage in front of the path (`/prod/api/agents/`); our routes are the
/// seed's paths (`/api/agents/`), so the stage comes off again before routing. A client that called the
/// `execute-api` host itself had the stage in its URL, so links back to the API need it ([`PathPrefix`]);
/// through CloudFront (the template's `OriginPath`) or a custom domain it had not.
fn strip_stage(mut req: Request) -> Request {
    let stage = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(ctx)) => ctx.stage.clone(),
        _ => None,
    };
    let Some(stage) = stage else { return req };
    let prefix = format!("/{stage}");
    let path_and_query = req.uri().path_and_query().map(|pq| pq.as_str()).unwrap_or("/");
    let Some(rest) = path_and_query.strip_prefix(&prefix).filter(|rest| rest.starts_with("/api/")) else {
        return req;
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = rest.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    if is_execute_api(public_host(req.headers())) {
        req.extensions_mut().insert(PathPrefix(prefix));
    }
    req
}

/// `{api}.execute-api.{region}.amazonaws.com` (`.com.cn` in China): a REST API's default endpoint, whose
/// URLs start with the stage.
fn is_execute_api(host: &str) -> bool {
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    host.contains(".execute-api.") && (host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn"))
}
