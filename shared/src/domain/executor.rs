//! How the server runs a tool when a conversation asks for `auto_execute_tools`: parsed once, when a tool is
//! written, and stored and loaded as the same value (the JSON the API shows).

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

/// What stands for a hidden part of an executor URL (see [`Executor::redacted`]).
pub const REDACTED: &str = "REDACTED";

/// An `http` executor's timeout when the tool names none.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout an `http` executor may ask for.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

// Serialised (the JSON the API shows and the store keeps) and documented by its derives; read by
// `Executor::parse`, whose messages name what is wrong.
/// How the server runs a tool when a conversation asks for `auto_execute_tools`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[schema(as = ToolExecutor)]
pub enum Executor {
    /// Answers with the call's arguments (or input), unchanged.
    Echo,
    /// Answers with the current UTC time.
    Now,
    /// POSTs `{name, call_id, arguments}` to `url` (http or https); the response body is the output.
    Http {
        url: String,
        /// 1 to 60000; 10000 when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        timeout_ms: Option<u64>,
    },
}

/// Adds the executor's schema to a document's (for a body that refers to it).
pub(super) fn document(schemas: &mut super::wire::Schemas) {
    use utoipa::{PartialSchema, ToSchema};
    schemas.push((Executor::name().into_owned(), Executor::schema()));
}

impl Executor {
    /// Reads a tool's `executor` JSON; the error names what is wrong, for the field error.
    pub fn parse(value: &Value) -> Result<Self, String> {
        match value.get("type").and_then(Value::as_str) {
            Some("echo") => Ok(Self::Echo),
            Some("now") => Ok(Self::Now),
            Some("http") => {
                let url = value.get("url").and_then(Value::as_str).unwrap_or_default();
                let parsed =
                    url::Url::parse(url).map_err(|_| "An http executor needs an absolute \"url\".".to_owned())?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err("An http executor's \"url\" must be http:// or https:// with a host.".into());
                }
                let max = u64::try_from(MAX_HTTP_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
                let timeout_ms = match value.get("timeout_ms") {
                    None | Some(Value::Null) => None,
                    Some(ms) => Some(
                        ms.as_u64()
                            .filter(|ms| (1..=max).contains(ms))
                            .ok_or_else(|| format!("\"timeout_ms\" must be 1 to {max}."))?,
                    ),
                };
                Ok(Self::Http { url: url.to_owned(), timeout_ms })
            }
            _ => Err("Must be {\"type\": \"echo\"}, {\"type\": \"now\"} or {\"type\": \"http\", \"url\": ...}.".into()),
        }
    }

    /// The executor as shown to someone who may use the tool but not change it (an ordinary user reading a
    /// global tool, or another's through staff-made links): an `http` URL keeps its scheme, host, port and
    /// path, and loses what may be a credential — its userinfo (which reqwest sends as Basic auth) and the
    /// value of every query parameter — each replaced by [`REDACTED`]. The owner and staff see it whole.
    pub fn redacted(&self) -> Self {
        let Self::Http { url, timeout_ms } = self else { return self.clone() };
        let Ok(mut parsed) = url::Url::parse(url) else { return self.clone() };
        if !parsed.username().is_empty() {
            let _ = parsed.set_username(REDACTED);
        }
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some(REDACTED));
        }
        if parsed.query().is_some() {
            let names: Vec<String> = parsed.query_pairs().map(|(name, _)| name.into_owned()).collect();
            parsed.query_pairs_mut().clear().extend_pairs(names.iter().map(|name| (name.as_str(), REDACTED)));
        }
        parsed.set_fragment(None);
        Self::Http { url: parsed.to_string(), timeout_ms: *timeout_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_executor_reads_back_from_the_json_it_writes() {
        for executor in [
            Executor::Echo,
            Executor::Now,
            Executor::Http { url: "https://tools.example.com/run".into(), timeout_ms: None },
            Executor::Http { url: "http://10.0.0.5:8080/".into(), timeout_ms: Some(2500) },
        ] {
            assert_eq!(Executor::parse(&serde_json::to_value(&executor).unwrap()), Ok(executor.clone()));
        }
    }

    #[test]
    fn executors_serialise_as_the_api_shows_them() {
        assert_eq!(serde_json::to_value(Executor::Now).unwrap(), json!({"type": "now"}));
        let http = Executor::Http { url: "https://x.io/".into(), timeout_ms: None };
        assert_eq!(serde_json::to_value(&http).unwrap(), json!({"type": "http", "url": "https://x.io/"}));
        let timed = Executor::Http { url: "https://x.io/".into(), timeout_ms: Some(5) };
        assert_eq!(
            serde_json::to_value(&timed).unwrap(),
            json!({"type": "http", "url": "https://x.io/", "timeout_ms": 5})
        );
    }

    #[test]
    fn executors_parse_and_explain_mistakes() {
        assert_eq!(Executor::parse(&json!({"type": "echo"})), Ok(Executor::Echo));
        assert_eq!(
            Executor::parse(&json!({"type": "http", "url": "https://tools.example/run", "timeout_ms": 500})),
            Ok(Executor::Http { url: "https://tools.example/run".into(), timeout_ms: Some(500) })
        );
        assert!(Executor::parse(&json!({"type": "http", "url": "ftp://x"})).is_err());
        assert!(Executor::parse(&json!({"type": "http", "url": "https://x", "timeout_ms": 0})).is_err());
        assert!(Executor::parse(&json!({"type": "shell"})).is_err());
    }

    #[test]
    fn a_bad_executor_is_refused_with_what_is_wrong() {
        let refused = |value: Value| Executor::parse(&value).unwrap_err();
        assert!(refused(json!({"type": "shell"})).starts_with("Must be"));
        assert!(refused(json!({"type": "http"})).contains("absolute \"url\""));
        assert!(refused(json!({"type": "http", "url": "ftp://example.com/"})).contains("http:// or https://"));
        assert_eq!(
            refused(json!({"type": "http", "url": "https://x.io/", "timeout_ms": 0})),
            "\"timeout_ms\" must be 1 to 60000."
        );
    }

    #[test]
    fn a_redacted_url_keeps_its_host_and_path_and_hides_userinfo_and_query_values() {
        let http = |url: &str| Executor::Http { url: url.into(), timeout_ms: Some(500) };
        assert_eq!(
            http("https://svc:S3cretPass@hooks.example.com/run?api_key=abc&mode=x#frag").redacted(),
            http("https://REDACTED:REDACTED@hooks.example.com/run?api_key=REDACTED&mode=REDACTED")
        );
        assert_eq!(http("https://tok@h.example:8443/a/b").redacted(), http("https://REDACTED@h.example:8443/a/b"));
        assert_eq!(http("http://h.example/run").redacted(), http("http://h.example/run"));
        assert_eq!(Executor::Echo.redacted(), Executor::Echo);
    }
}
