//! Every setting Lambent reads, in one place. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

mod providers;
pub use providers::{DEFAULT_PROVIDER, ProviderConfig, StateMode, names_in as provider_names_in};

/// The embedded SQLite file used when `DATABASE_URL` is unset (relative to the working directory).
pub const DEFAULT_DATABASE_URL: &str = "file:local/lambent.db";
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// A value that must never reach a log line or a response.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The key that seals secrets at rest (`LAMBENT_SECRETS_KEY`): 32 bytes, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; 32]);

impl SecretsKey {
    pub fn parse(raw: &str) -> Result<Self> {
        let bytes = hex::decode(raw.trim()).ok().and_then(|b| <[u8; 32]>::try_from(b).ok());
        bytes.map(Self).ok_or_else(|| Error::config("LAMBENT_SECRETS_KEY must be 64 hex digits (32 bytes)"))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(***)")
    }
}

/// How MCP servers are used (see [`Config::mcp`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McpSettings {
    /// `LAMBENT_MCP_TOOLS_TTL` (seconds, default 300): a listed tool list is reused for this long on an
    /// instance, unless the server says it changed (`notifications/tools/list_changed`).
    pub tools_ttl: Duration,
    /// `LAMBENT_MCP_LIST_TIMEOUT` (seconds, default 5): connecting and listing; past it the server's tools are
    /// left out of the turn.
    pub list_timeout: Duration,
    /// `LAMBENT_MCP_CALL_TIMEOUT` (seconds, default 30): one `tools/call`; past it the call's output is an error.
    pub call_timeout: Duration,
}

/// `LAMBENT_PRICES`: US dollars per million tokens, per model, input and output. Cached and reasoning tokens
/// are priced as the input and output they are part of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices(std::collections::HashMap<String, (f64, f64)>);

impl Prices {
    /// Reads `model=in/out,model=in/out` or a JSON object `{"model": {"input": x, "output": y}}`.
    pub fn parse(raw: &str) -> std::result::Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let price = |model: &str, input: Option<f64>, output: Option<f64>| match (input, output) {
            (Some(i), Some(o)) if i.is_finite() && o.is_finite() && i >= 0.0 && o >= 0.0 => {
                Ok((model.to_owned(), (i, o)))
            }
            _ => Err(format!("the price of \"{model}\" must be two non-negative numbers, input and output")),
        };
        if raw.starts_with('{') {
            let map: std::collections::HashMap<String, serde_json::Value> =
                serde_json::from_str(raw).map_err(|e| format!("not a JSON object: {e}"))?;
            let prices = map.iter().map(|(model, p)| price(model, p["input"].as_f64(), p["output"].as_f64()));
            return prices.collect::<std::result::Result<_, _>>().map(Self);
        }
        raw.split(',')
            .map(|entry| {
                let (model, pair) = entry.split_once('=').ok_or_else(|| format!("\"{entry}\" is not model=in/out"))?;
                let (input, output) = pair.split_once('/').unwrap_or((pair, ""));
                price(model.trim(), input.trim().parse().ok(), output.trim().parse().ok())
            })
            .collect::<std::result::Result<_, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What these tokens of this model cost, if its price is configured.
    pub fn cost(&self, model: &str, input: i64, output: i64) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)] // token counts stay far below 2^52
        self.0.get(model).map(|(i, o)| (input as f64 * i + output as f64 * o) / 1_000_000.0)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `file:PATH` (or a bare path) for embedded SQLite; `libsql://`, `https://` or `http://` for a libsql server.
    pub database_url: String,
    /// Bearer token for a remote libsql server (Turso / sqld).
    pub database_auth_token: Option<Secret>,
    /// On Lambda: an SSM SecureString holding the database token, read once at cold start.
    pub database_auth_token_parameter: Option<String>,
    /// How long a request to the database answered "nothing ran" (429, 503, a refused connection, a busy
    /// database) is tried again before the request gives up with 503. A turn's writes after the model has
    /// answered keep trying until its lease ends instead.
    pub database_retry_budget: Duration,
    /// Requests to a remote database one instance has in flight at most; more wait their turn.
    pub database_max_in_flight: u32,
    /// Where the local server listens.
    pub bind: SocketAddr,
    /// The local server's cut-off for a request's headers (`LAMBENT_HEADER_TIMEOUT`, default 10 s): counted from
    /// when the connection opened or its previous response ended, so it is also how long an idle keep-alive
    /// connection is kept. A slow client holds a connection at most this long before sending a request.
    pub header_timeout: Duration,
    /// The local server's cut-off for a request's whole body, from when its headers arrived
    /// (`LAMBENT_BODY_TIMEOUT`, default 30 s): 408 after it.
    pub body_timeout: Duration,
    /// The model providers (`openai` first, always there; see [`ProviderConfig`]). Without a key, a turn on
    /// a provider answers 503.
    pub providers: Vec<ProviderConfig>,
    pub openai_connect_timeout: Duration,
    /// How long an upstream stream may stay silent before the turn ends with `upstream_timeout`.
    pub openai_read_timeout: Duration,
    /// Retries of an upstream request that failed before its stream opened (429, 5xx, no connection).
    pub upstream_retries: u32,
    /// The most time a request may spend in retries and their waits; a `Retry-After` beyond it is not waited.
    pub upstream_retry_budget: Duration,
    /// Silence on an SSE stream after which a `: ping` comment is sent.
    pub sse_keepalive: Duration,
    /// How long a turn may hold its session before another turn may take over (a crashed turn's lease).
    pub turn_lease: Duration,
    /// How long an instance trusts a token it has checked (0: checks on every request). A token revoked on
    /// another instance stops working there within this time; on the instance that revoked it, at once.
    pub auth_cache: Duration,
    /// Every bound on what one request may make the server hold, send upstream or repeat.
    pub limits: Limits,
    /// Hosts (or `host:port`) that `http` tool executors may call though private, loopback or link-local.
    pub tool_hosts: Vec<String>,
    /// Browser origins allowed to call the API cross-origin (CORS). None by default.
    pub cors_origins: Vec<String>,
    /// `LAMBENT_SECRETS_KEY` (64 hex digits, 32 bytes): seals what Lambent must keep secret at rest, an MCP
    /// server's header values (AES-256-GCM). Unset: a server with headers cannot be saved.
    pub secrets_key: Option<SecretsKey>,
    /// On Lambda: an SSM SecureString holding `LAMBENT_SECRETS_KEY`, read once at cold start
    /// (`LAMBENT_SECRETS_KEY_PARAMETER`).
    pub secrets_key_parameter: Option<String>,
    /// MCP servers (`LAMBENT_MCP_*`): how long a server's tool list is trusted, how long a `tools/call` or a
    /// listing may take.
    pub mcp: McpSettings,
    /// Peers of the local server whose `X-Forwarded-For` is believed (a reverse proxy in front of it); from
    /// anyone else the header is ignored. On Lambda the client is API Gateway's `sourceIp`.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often logins may fail or be tried before `/api/auth/login/` answers 429.
    pub login_throttle: LoginThrottle,
    /// How long recorded frames of a turn are kept (`LAMBENT_EVENTS_RETENTION_DAYS`, whole days, default 7):
    /// housekeeping deletes those of older turns; their messages, tool calls and usage stay.
    pub events_retention: Duration,
    /// Message content on trace spans (`LAMBENT_TRACE_CONTENT=true`): off by default, as the GenAI conventions
    /// advise (content may be personal).
    pub trace_content: bool,
    /// Where EMF metric lines go (`LAMBENT_METRICS`): on Lambda (`AWS_LAMBDA_FUNCTION_NAME` set) stdout, else off.
    /// Their `Service` dimension: `LAMBENT_METRICS_SERVICE` (the template sets the stack's name), else `lambent`.
    pub metrics: MetricsOutput,
    /// Token prices per model (`LAMBENT_PRICES`): usage reports show cost only for models priced here.
    pub prices: Prices,
    /// The rate limits of a user whose own are null (`LAMBENT_REQUESTS_PER_MINUTE`,
    /// `LAMBENT_MAX_CONCURRENT_TURNS`; unset or 0: none).
    pub rate_limits: RateLimits,
}

/// Instance defaults of the per-user rate limits (a user's own value, set by staff, wins; 0 there is no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// Authenticated requests per user per minute (UTC minute, counted in the database).
    pub requests_per_minute: Option<u32>,
    /// Turns one user may have running at once (counted from the sessions' leases).
    pub max_concurrent_turns: Option<u32>,
}

/// Every bound on what a user can make the server hold, send upstream or repeat, in one place (issue 22): a
/// request over one is refused with a 400 naming its field before any work. Counts are characters, as
/// Django's `max_length` counts. The four an operator may need to raise are settings (fields, read from the
/// environment); the rest are constants. The OpenAPI document states the defaults as `maxLength` (a test
/// holds the two together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A user message (`LAMBENT_MAX_MESSAGE_CHARS`, default 32000).
    pub message_chars: usize,
    /// An agent's system prompt, a template's text (`LAMBENT_MAX_PROMPT_CHARS`, default 32000).
    pub prompt_chars: usize,
    /// The instructions a turn sends: the system prompt and the default templates with their variables filled
    /// in (`LAMBENT_MAX_INSTRUCTIONS_CHARS`, default 100000). Rendering stops as soon as it would pass this,
    /// so a template that repeats a variable cannot make the server build more.
    pub instructions_chars: usize,
    /// One template variable's value (`LAMBENT_MAX_VARIABLE_CHARS`, default 4000).
    pub variable_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { message_chars: 32_000, prompt_chars: 32_000, instructions_chars: 100_000, variable_chars: 4_000 }
    }
}

impl Limits {
    /// Template variables in one request.
    pub const VARIABLES: usize = 50;
    /// A template variable's name.
    pub const VARIABLE_NAME_CHARS: usize = 100;
    /// The name of an agent or a template.
    pub const NAME_CHARS: usize = 200;
    /// An agent's model name.
    pub const MODEL_CHARS: usize = 100;
    /// A tool's name (OpenAI's rule: `^[a-zA-Z0-9_-]{1,64}$`).
    pub const TOOL_NAME_CHARS: usize = 64;
    /// A tool's description: sent upstream with every turn of every agent it is linked to.
    pub const TOOL_DESCRIPTION_CHARS: usize = 8_000;
    /// A tool's `parameters` or `format`, as JSON text: sent upstream with every turn, like the description.
    pub const TOOL_SCHEMA_CHARS: usize = 32_000;
    /// An API token's name.
    pub const TOKEN_NAME_CHARS: usize = 100;
    /// A username (Django's).
    pub const USERNAME_CHARS: usize = 150;
    /// A password: argon2 hashes all of it, so its cost grows with it.
    pub const PASSWORD_CHARS: usize = 1_024;
    /// A tool call's id in a tool-output submission.
    pub const CALL_ID_CHARS: usize = 200;
    /// One tool output a client submits: what an `http` executor may return (64 KiB), in characters.
    pub const TOOL_OUTPUT_CHARS: usize = 65_536;
    /// Tool outputs in one submission.
    pub const TOOL_OUTPUTS: usize = 64;
    /// Tools linked to one agent: each goes upstream (name, description, schema) with every turn. OpenAI's
    /// own limit on a request's tools is 128.
    pub const TOOLS_PER_AGENT: usize = 128;
}

/// Login limits, counted in the database so they hold across instances: failed logins per username, and
/// attempts (failed or not) per client address, within one sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// `LAMBENT_LOGIN_FAILURES_PER_USERNAME`, default 10.
    pub failures_per_username: u32,
    /// `LAMBENT_LOGIN_ATTEMPTS_PER_ADDRESS`, default 50.
    pub attempts_per_address: u32,
    /// `LAMBENT_LOGIN_THROTTLE_WINDOW` (seconds), default 900.
    pub window: Duration,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self { failures_per_username: 10, attempts_per_address: 50, window: Duration::from_secs(900) }
    }
}

/// Where EMF metric lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsOutput {
    Off,
    /// To stdout (CloudWatch Logs extracts them from a Lambda function's log), with this `Service` dimension.
    Emf {
        service: String,
    },
}

impl Config {
    /// Reads the process environment (a `.env` file is loaded by the local binary before this).
    pub fn from_env() -> Result<Self> {
        Self::from_vars(std::env::vars())
    }

    /// Same as [`Config::from_env`] over any set of variables, so tests need not touch the process
    /// environment. Named providers are found by their variables' names, so they need the whole set.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let vars: std::collections::HashMap<String, String> = vars.into_iter().collect();
        let names = providers::names_in(vars.keys().map(String::as_str));
        Self::read(&|key| vars.get(key).cloned(), &names)
    }

    /// Same over a lookup: every setting but named providers (only `openai`, which needs no enumeration).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Self::read(&lookup, &Default::default())
    }

    fn read(
        lookup: &dyn Fn(&str) -> Option<String>,
        provider_names: &std::collections::BTreeSet<String>,
    ) -> Result<Self> {
        let get = |key: &str| lookup(key).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let bind = get("BIND").unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = bind.parse().map_err(|e| Error::config_from(format!("BIND must be HOST:PORT, got {bind:?}"), e))?;
        let seconds = |key: &str, default: f64| -> Result<Duration> {
            match get(key) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(raw) => raw
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| Error::config(format!("{key} must be a positive number of seconds, got {raw:?}"))),
            }
        };
        let chars = |key: &str, default: usize| positive(get(key), key, default);
        let defaults = Limits::default();
        let limits = Limits {
            message_chars: chars("LAMBENT_MAX_MESSAGE_CHARS", defaults.message_chars)?,
            prompt_chars: chars("LAMBENT_MAX_PROMPT_CHARS", defaults.prompt_chars)?,
            instructions_chars: chars("LAMBENT_MAX_INSTRUCTIONS_CHARS", defaults.instructions_chars)?,
            variable_chars: chars("LAMBENT_MAX_VARIABLE_CHARS", defaults.variable_chars)?,
        };
        let upstream_retries = match get("LAMBENT_UPSTREAM_RETRIES") {
            None => 3,
            Some(raw) => raw.parse().ok().filter(|n| *n <= 10).ok_or_else(|| {
                Error::config(format!("LAMBENT_UPSTREAM_RETRIES must be an integer from 0 to 10, got {raw:?}"))
            })?,
        };
        let limit = |key: &str, default: u32| positive(get(key), key, default);
        let defaults = LoginThrottle::default();
        let login_throttle = LoginThrottle {
            failures_per_username: limit("LAMBENT_LOGIN_FAILURES_PER_USERNAME", defaults.failures_per_username)?,
            attempts_per_address: limit("LAMBENT_LOGIN_ATTEMPTS_PER_ADDRESS", defaults.attempts_per_address)?,
            window: seconds("LAMBENT_LOGIN_THROTTLE_WINDOW", defaults.window.as_secs_f64())?,
        };
        if login_throttle.window > Duration::from_secs(7 * 86_400) {
            return Err(Error::config("LAMBENT_LOGIN_THROTTLE_WINDOW must be at most 604800 seconds (7 days)"));
        }
        let trusted_proxies = list(get("LAMBENT_TRUSTED_PROXIES"))
            .iter()
            .map(|raw| {
                raw.parse().map_err(|e| {
                    Error::config_from(format!("LAMBENT_TRUSTED_PROXIES must list IP addresses, got {raw:?}"), e)
                })
            })
            .collect::<Result<_>>()?;
        let events_retention = match get("LAMBENT_EVENTS_RETENTION_DAYS") {
            None => 7,
            Some(raw) => raw.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::config(format!(
                    "LAMBENT_EVENTS_RETENTION_DAYS must be a whole number of days from 1, got {raw:?}"
                ))
            })?,
        };
        let service = get("LAMBENT_METRICS_SERVICE").unwrap_or_else(|| "lambent".to_owned());
        let metrics = match get("LAMBENT_METRICS").as_deref() {
            None if get("AWS_LAMBDA_FUNCTION_NAME").is_some() => MetricsOutput::Emf { service },
            None | Some("off") => MetricsOutput::Off,
            Some("emf") => MetricsOutput::Emf { service },
            Some(other) => return Err(Error::config(format!("LAMBENT_METRICS must be emf or off, got {other:?}"))),
        };
        let trace_content = match get("LAMBENT_TRACE_CONTENT").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(Error::config(format!("LAMBENT_TRACE_CONTENT must be true or false, got {other:?}")));
            }
        };
        Ok(Self {
            database_url: get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            database_auth_token: get("DATABASE_AUTH_TOKEN").map(Secret::new),
            database_auth_token_parameter: get("DATABASE_AUTH_TOKEN_PARAMETER"),
            database_retry_budget: seconds("LAMBENT_DATABASE_RETRY_BUDGET", 5.0)?,
            database_max_in_flight: limit("LAMBENT_DATABASE_MAX_IN_FLIGHT", 16)?,
            bind,
            header_timeout: seconds("LAMBENT_HEADER_TIMEOUT", 10.0)?,
            body_timeout: seconds("LAMBENT_BODY_TIMEOUT", 30.0)?,
            providers: providers::read(&get, provider_names)?,
            openai_connect_timeout: seconds("OPENAI_CONNECT_TIMEOUT", 10.0)?,
            openai_read_timeout: seconds("OPENAI_READ_TIMEOUT", 120.0)?,
            upstream_retries,
            upstream_retry_budget: seconds("LAMBENT_UPSTREAM_RETRY_BUDGET", 30.0)?,
            sse_keepalive: seconds("LAMBENT_SSE_KEEPALIVE", 15.0)?,
            turn_lease: seconds("LAMBENT_TURN_LEASE", 900.0)?,
            auth_cache: seconds("LAMBENT_AUTH_CACHE", 60.0)?,
            limits,
            tool_hosts: list(get("LAMBENT_TOOL_HOSTS")),
            cors_origins: list(get("LAMBENT_CORS_ORIGINS")),
            secrets_key: get("LAMBENT_SECRETS_KEY").map(|raw| SecretsKey::parse(&raw)).transpose()?,
            secrets_key_parameter: get("LAMBENT_SECRETS_KEY_PARAMETER").filter(|name| !name.is_empty()),
            mcp: McpSettings {
                tools_ttl: seconds("LAMBENT_MCP_TOOLS_TTL", 300.0)?,
                list_timeout: seconds("LAMBENT_MCP_LIST_TIMEOUT", 5.0)?,
                call_timeout: seconds("LAMBENT_MCP_CALL_TIMEOUT", 30.0)?,
            },
            trusted_proxies,
            login_throttle,
            events_retention: Duration::from_secs(u64::from(events_retention) * 24 * 3600),
            trace_content,
            metrics,
            prices: Prices::parse(&get("LAMBENT_PRICES").unwrap_or_default())
                .map_err(|e| Error::config(format!("LAMBENT_PRICES: {e}")))?,
            rate_limits: RateLimits {
                requests_per_minute: optional_limit(get("LAMBENT_REQUESTS_PER_MINUTE"), "LAMBENT_REQUESTS_PER_MINUTE")?,
                max_concurrent_turns: optional_limit(
                    get("LAMBENT_MAX_CONCURRENT_TURNS"),
                    "LAMBENT_MAX_CONCURRENT_TURNS",
                )?,
            },
        })
    }
}

/// A limit that is off when unset or 0.
fn optional_limit(raw: Option<String>, key: &str) -> Result<Option<u32>> {
    let Some(raw) = raw else { return Ok(None) };
    let n: u32 = raw
        .trim()
        .parse()
        .map_err(|_| Error::config(format!("{key} must be a whole number (0: no limit), got {raw:?}")))?;
    Ok((n > 0).then_some(n))
}

impl Config {
    /// The provider of this name, if configured.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// `openai`, the default provider (always configured).
    pub fn default_provider(&self) -> &ProviderConfig {
        self.provider(DEFAULT_PROVIDER).unwrap_or(&self.providers[0])
    }

    /// Whether Lambent keeps the conversations of this provider (`_STATE=local`).
    pub fn is_local(&self, name: &str) -> bool {
        self.provider(name).is_some_and(|p| p.state == StateMode::Local)
    }

    /// The names of the providers whose conversations Lambent keeps.
    pub fn local_providers(&self) -> Vec<&str> {
        self.providers.iter().filter(|p| p.state == StateMode::Local).map(|p| p.name.as_str()).collect()
    }
}

/// A positive whole-number setting: `default` when unset.
fn positive<T: std::str::FromStr + PartialOrd + Default>(raw: Option<String>, key: &str, default: T) -> Result<T> {
    match raw {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .ok()
            .filter(|n| *n > T::default())
            .ok_or_else(|| Error::config(format!("{key} must be a positive integer, got {raw:?}"))),
    }
}

/// A comma-separated setting.
fn list(raw: Option<String>) -> Vec<String> {
    raw.map(|items| items.split(',').map(|h| h.trim().to_owned()).filter(|h| !h.is_empty()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_both_forms_and_refuse_what_is_not_a_price() {
        let list = Prices::parse("gpt-4o=2.5/10, gpt-4o-mini=0.15/0.6").unwrap();
        assert_eq!(list.cost("gpt-4o", 1_000_000, 100_000), Some(3.5));
        assert_eq!(list.cost("other", 1, 1), None);
        let json = Prices::parse(r#"{"gpt-4o": {"input": 2.5, "output": 10}}"#).unwrap();
        assert_eq!(json.cost("gpt-4o", 2_000_000, 0), Some(5.0));
        assert!(Prices::parse("gpt-4o=2.5").is_err());
        assert!(Prices::parse("gpt-4o=-1/2").is_err());
        assert!(Prices::parse("").unwrap().is_empty());
    }

    #[test]
    fn defaults_point_at_the_embedded_database_and_loopback() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.bind.to_string(), DEFAULT_BIND);
        assert!(config.database_auth_token.is_none());
    }

    #[test]
    fn secrets_do_not_print() {
        let config =
            Config::from_lookup(|k| matches!(k, "DATABASE_AUTH_TOKEN" | "OPENAI_API_KEY").then(|| "s3cr3t".to_owned()))
                .unwrap();
        assert!(config.default_provider().api_key.is_some());
        assert!(!format!("{config:?}").contains("s3cr3t"));
    }

    #[test]
    fn runtime_settings_parse_and_bad_ones_are_named() {
        let config = Config::from_lookup(|k| match k {
            "OPENAI_READ_TIMEOUT" => Some("0.5".into()),
            "LAMBENT_TOOL_HOSTS" => Some(" tools.example , 127.0.0.1:9000 ,".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.openai_read_timeout, Duration::from_millis(500));
        assert_eq!(config.tool_hosts, ["tools.example", "127.0.0.1:9000"]);
        assert_eq!(config.sse_keepalive, Duration::from_secs(15));
        let err = Config::from_lookup(|k| (k == "OPENAI_READ_TIMEOUT").then(|| "soon".into())).unwrap_err();
        assert!(err.to_string().contains("OPENAI_READ_TIMEOUT"), "{err}");
    }

    #[test]
    fn login_limits_default_to_ten_failures_and_fifty_attempts_in_fifteen_minutes() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(
            config.login_throttle,
            LoginThrottle { failures_per_username: 10, attempts_per_address: 50, window: Duration::from_secs(900) }
        );
        assert!(config.trusted_proxies.is_empty());
        let err = Config::from_lookup(|k| (k == "LAMBENT_TRUSTED_PROXIES").then(|| "proxy.local".into())).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_TRUSTED_PROXIES"), "{err}");
        let err =
            Config::from_lookup(|k| (k == "LAMBENT_LOGIN_FAILURES_PER_USERNAME").then(|| "0".into())).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_LOGIN_FAILURES_PER_USERNAME"), "{err}");
    }

    #[test]
    fn events_are_kept_seven_days_unless_told_and_a_bad_retention_is_named() {
        let days = |n: u64| Duration::from_secs(n * 24 * 3600);
        assert_eq!(Config::from_lookup(|_| None).unwrap().events_retention, days(7));
        let config = Config::from_lookup(|k| (k == "LAMBENT_EVENTS_RETENTION_DAYS").then(|| "30".into())).unwrap();
        assert_eq!(config.events_retention, days(30));
        for bad in ["0", "-1", "1.5", "week"] {
            let err = Config::from_lookup(|k| (k == "LAMBENT_EVENTS_RETENTION_DAYS").then(|| bad.into())).unwrap_err();
            assert!(err.to_string().contains("LAMBENT_EVENTS_RETENTION_DAYS"), "{bad}: {err}");
        }
    }

    #[test]
    fn metrics_are_emf_on_lambda_and_off_elsewhere_unless_asked() {
        let on_lambda = Config::from_lookup(|k| (k == "AWS_LAMBDA_FUNCTION_NAME").then(|| "agents".into())).unwrap();
        assert_eq!(on_lambda.metrics, MetricsOutput::Emf { service: "lambent".into() });
        assert_eq!(Config::from_lookup(|_| None).unwrap().metrics, MetricsOutput::Off);
        let asked = Config::from_lookup(|k| match k {
            "LAMBENT_METRICS" => Some("emf".into()),
            "LAMBENT_METRICS_SERVICE" => Some("prod-stack".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(asked.metrics, MetricsOutput::Emf { service: "prod-stack".into() });
        let err = Config::from_lookup(|k| (k == "LAMBENT_METRICS").then(|| "statsd".into())).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_METRICS"), "{err}");
        let err = Config::from_lookup(|k| (k == "LAMBENT_TRACE_CONTENT").then(|| "yes".into())).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_TRACE_CONTENT"), "{err}");
    }

    #[test]
    fn limits_and_the_local_servers_timeouts_default_and_can_be_raised_and_a_bad_one_is_named() {
        let config = Config::from_lookup(|_| None).unwrap();
        assert_eq!(config.limits, Limits::default());
        assert_eq!((config.header_timeout, config.body_timeout), (Duration::from_secs(10), Duration::from_secs(30)));
        let raised = Config::from_lookup(|k| match k {
            "LAMBENT_MAX_PROMPT_CHARS" => Some("64000".into()),
            "LAMBENT_MAX_INSTRUCTIONS_CHARS" => Some("200000".into()),
            "LAMBENT_HEADER_TIMEOUT" => Some("2.5".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!((raised.limits.prompt_chars, raised.limits.instructions_chars), (64_000, 200_000));
        assert_eq!(raised.header_timeout, Duration::from_millis(2500));
        for key in ["LAMBENT_MAX_MESSAGE_CHARS", "LAMBENT_MAX_PROMPT_CHARS", "LAMBENT_MAX_VARIABLE_CHARS"] {
            let err = Config::from_lookup(|k| (k == key).then(|| "0".into())).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = Config::from_lookup(|k| (k == "LAMBENT_BODY_TIMEOUT").then(|| "never".into())).unwrap_err();
        assert!(err.to_string().contains("LAMBENT_BODY_TIMEOUT"), "{err}");
    }

    #[test]
    fn a_bad_bind_address_is_named() {
        let err = Config::from_lookup(|k| (k == "BIND").then(|| "nope".to_owned())).unwrap_err();
        assert!(err.to_string().contains("BIND"), "{err}");
    }
}
