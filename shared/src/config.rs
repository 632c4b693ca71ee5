//! Every setting Lambent reads, in one place. Secrets are wrapped so they never print.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

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
    /// The OpenAI API key; without one the agent endpoints answer 503.
    pub openai_api_key: Option<Secret>,
    /// On Lambda: an SSM SecureString holding the OpenAI key, read once at cold start.
    pub openai_api_key_parameter: Option<String>,
    /// Any Responses-compatible server (`OPENAI_BASE_URL`), default OpenAI's.
    pub openai_base_url: String,
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
    /// Longest accepted user message, in characters.
    pub max_message_chars: usize,
    /// Hosts (or `host:port`) that `http` tool executors may call though private, loopback or link-local.
    pub tool_hosts: Vec<String>,
    /// Browser origins allowed to call the API cross-origin (CORS). None by default.
    pub cors_origins: Vec<String>,
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
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Same as [`Config::from_env`] over any lookup, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
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
        let max_message_chars = match get("LAMBENT_MAX_MESSAGE_CHARS") {
            None => 32_000,
            Some(raw) => raw.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Error::config(format!("LAMBENT_MAX_MESSAGE_CHARS must be a positive integer, got {raw:?}"))
            })?,
        };
        let upstream_retries = match get("LAMBENT_UPSTREAM_RETRIES") {
            None => 3,
            Some(raw) => raw.parse().ok().filter(|n| *n <= 10).ok_or_else(|| {
                Error::config(format!("LAMBENT_UPSTREAM_RETRIES must be an integer from 0 to 10, got {raw:?}"))
            })?,
        };
        let limit = |key: &str, default: u32| -> Result<u32> {
            match get(key) {
                None => Ok(default),
                Some(raw) => raw
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| Error::config(format!("{key} must be a positive integer, got {raw:?}"))),
            }
        };
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
            openai_api_key: get("OPENAI_API_KEY").map(Secret::new),
            openai_api_key_parameter: get("OPENAI_API_KEY_PARAMETER"),
            openai_base_url: get("OPENAI_BASE_URL").unwrap_or_else(|| DEFAULT_OPENAI_BASE_URL.to_owned()),
            openai_connect_timeout: seconds("OPENAI_CONNECT_TIMEOUT", 10.0)?,
            openai_read_timeout: seconds("OPENAI_READ_TIMEOUT", 120.0)?,
            upstream_retries,
            upstream_retry_budget: seconds("LAMBENT_UPSTREAM_RETRY_BUDGET", 30.0)?,
            sse_keepalive: seconds("LAMBENT_SSE_KEEPALIVE", 15.0)?,
            turn_lease: seconds("LAMBENT_TURN_LEASE", 900.0)?,
            auth_cache: seconds("LAMBENT_AUTH_CACHE", 60.0)?,
            max_message_chars,
            tool_hosts: list(get("LAMBENT_TOOL_HOSTS")),
            cors_origins: list(get("LAMBENT_CORS_ORIGINS")),
            trusted_proxies,
            login_throttle,
            events_retention: Duration::from_secs(u64::from(events_retention) * 24 * 3600),
            trace_content,
            metrics,
        })
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
        assert!(config.openai_api_key.is_some());
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
    fn a_bad_bind_address_is_named() {
        let err = Config::from_lookup(|k| (k == "BIND").then(|| "nope".to_owned())).unwrap_err();
        assert!(err.to_string().contains("BIND"), "{err}");
    }
}
