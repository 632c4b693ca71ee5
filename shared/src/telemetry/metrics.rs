//! CloudWatch embedded-metric-format (EMF) lines: one JSON object per line on stdout, which CloudWatch Logs
//! turns into metrics in the namespace `Lambent` without a collector or an API call. Each line has a `Service`
//! dimension (the stack's name on Lambda); turn errors also have `Service` + `ErrorCode`.
//!
//! - per turn (when its end is recorded): `Turns` (1), `TurnErrors` (0 or 1), `UpstreamErrors` (0 or 1: the
//!   turn ended with an `upstream_*` code), `UpstreamRetries`, `TimeToFirstEvent` (ms), `InputTokens`,
//!   `OutputTokens`.
//! - per request (when its last task ends): `DbRoundTrips` (requests to a remote database; 0 on a file),
//!   `DbRetries` (of those, sent again because the database answered that nothing ran: 429, 503, a refused
//!   connection, a busy database), `DbGiveUps` (requests that stopped retrying: their budget ran out).
//! - per warning (a failure the turn carries on past, logged where it happens): `Warnings` (1), with `Service`
//!   and `Service` + `Warning` (its [`Warning`] name).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The metrics' namespace in CloudWatch.
pub const NAMESPACE: &str = "Lambent";

/// Where metric lines go: nowhere, stdout, or a buffer (tests).
#[derive(Debug, Clone, Default)]
pub struct Metrics(Output);

#[derive(Debug, Clone, Default)]
enum Output {
    #[default]
    Off,
    Stdout {
        service: Arc<str>,
    },
    Capture {
        service: Arc<str>,
        lines: Arc<Mutex<Vec<String>>>,
    },
}

/// How one turn went, as its metrics count it.
#[derive(Debug, Clone, Default)]
pub struct TurnMetrics {
    /// The error code the turn ended with (`upstream_rate_limited`, `cancelled`, ...).
    pub error_code: Option<String>,
    pub upstream_retries: u64,
    pub time_to_first_event: Option<Duration>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A failure a turn carries on past, because stopping would lose more than it saves: logged as a warning
/// where it happens, and counted here so that a rising count is seen without reading logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// The recorder's poll for a cancel request from another process failed; it polls again.
    CancelPollFailed,
    /// A batch of a running turn's frames could not be written (the client had them live; a replay misses
    /// them); the turn goes on, and its end is still recorded.
    FramesNotRecorded,
    /// A server-side tool's output could not be stored; it still goes upstream in the next response.
    ToolResultNotStored,
    /// A frame's payload could not be serialised; the turn goes on without that frame.
    FrameNotSerialised,
}

impl Warning {
    /// The `Warning` dimension's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CancelPollFailed => "cancel_poll_failed",
            Self::FramesNotRecorded => "frames_not_recorded",
            Self::ToolResultNotStored => "tool_result_not_stored",
            Self::FrameNotSerialised => "frame_not_serialised",
        }
    }
}

/// What one request's database work came to, as its metric line counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetrics {
    pub db_round_trips: u64,
    pub db_retries: u64,
    pub db_give_ups: u64,
}

impl Metrics {
    pub fn off() -> Self {
        Self(Output::Off)
    }

    pub fn stdout(service: &str) -> Self {
        Self(Output::Stdout { service: service.into() })
    }

    /// Lines kept in memory, for [`Self::lines`].
    pub fn capture(service: &str) -> Self {
        Self(Output::Capture { service: service.into(), lines: Arc::default() })
    }

    /// The captured lines, parsed (empty unless built by [`Self::capture`]).
    pub fn lines(&self) -> Vec<Value> {
        match &self.0 {
            Output::Capture { lines, .. } => {
                let lines = lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                lines.iter().map(|l| serde_json::from_str(l).expect("an EMF line is JSON")).collect()
            }
            _ => Vec::new(),
        }
    }

    pub fn is_on(&self) -> bool {
        !matches!(self.0, Output::Off)
    }

    /// The metric lines of one ended turn.
    pub fn turn(&self, turn: &TurnMetrics) {
        let Some(service) = self.service() else { return };
        let upstream_error = turn.error_code.as_deref().is_some_and(|code| code.starts_with("upstream_"));
        let mut metrics = vec![
            ("Turns", "Count"),
            ("TurnErrors", "Count"),
            ("UpstreamErrors", "Count"),
            ("UpstreamRetries", "Count"),
            ("InputTokens", "Count"),
            ("OutputTokens", "Count"),
        ];
        let mut values = json!({
            "Service": service,
            "Turns": 1,
            "TurnErrors": u8::from(turn.error_code.is_some()),
            "UpstreamErrors": u8::from(upstream_error),
            "UpstreamRetries": turn.upstream_retries,
            "InputTokens": turn.input_tokens,
            "OutputTokens": turn.output_tokens,
        });
        if let Some(first) = turn.time_to_first_event {
            metrics.push(("TimeToFirstEvent", "Milliseconds"));
            values["TimeToFirstEvent"] = json!((first.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0);
        }
        let mut directives = vec![directive(&[&["Service"]], &metrics)];
        if let Some(code) = &turn.error_code {
            values["ErrorCode"] = json!(code);
            directives.push(directive(&[&["Service", "ErrorCode"]], &[("TurnErrors", "Count")]));
        }
        self.write(values, directives);
    }

    /// The metric line of one ended request.
    pub fn request(&self, request: RequestMetrics) {
        let Some(service) = self.service() else { return };
        let values = json!({
            "Service": service,
            "DbRoundTrips": request.db_round_trips,
            "DbRetries": request.db_retries,
            "DbGiveUps": request.db_give_ups,
        });
        let metrics = [("DbRoundTrips", "Count"), ("DbRetries", "Count"), ("DbGiveUps", "Count")];
        self.write(values, vec![directive(&[&["Service"]], &metrics)]);
    }

    /// The metric line of one warning.
    pub fn warning(&self, warning: Warning) {
        let Some(service) = self.service() else { return };
        let values = json!({"Service": service, "Warning": warning.as_str(), "Warnings": 1});
        self.write(values, vec![directive(&[&["Service"], &["Service", "Warning"]], &[("Warnings", "Count")])]);
    }

    fn service(&self) -> Option<&str> {
        match &self.0 {
            Output::Off => None,
            Output::Stdout { service } | Output::Capture { service, .. } => Some(service),
        }
    }

    fn write(&self, mut values: Value, directives: Vec<Value>) {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        values["_aws"] = json!({"Timestamp": timestamp, "CloudWatchMetrics": directives});
        let line = values.to_string();
        match &self.0 {
            Output::Off => {}
            // One write of the whole line (stdout's lock held for it): lines never interleave.
            Output::Stdout { .. } => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            Output::Capture { lines, .. } => {
                lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
            }
        }
    }
}

/// One `CloudWatchMetrics` entry: its dimension sets and metrics (name, unit).
fn directive(dimensions: &[&[&str]], metrics: &[(&str, &str)]) -> Value {
    json!({
        "Namespace": NAMESPACE,
        "Dimensions": dimensions,
        "Metrics": metrics.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit})).collect::<Vec<_>>(),
    })
}
