//! The states a response, a tool call and a message are in, and the codes a turn ends with: enums on the
//! Rust side, their snake_case names on the wire and in SQL. Stored text is parsed back once, in the store.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An enum of unit variants, each with its wire and SQL name: `ALL`, `as_str`, `parse` and `Display`.
macro_rules! states {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name on the wire and in SQL.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The variant of that name, if there is one.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some(Self::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states! {
    /// How a response ended.
    ResponseStatus {
        /// The response finished without asking for a tool.
        Completed => "completed",
        /// The response finished asking for tool outputs (`pending_tool_calls`).
        RequiresToolOutput => "requires_tool_output",
        /// A turn's `done` only (its message is stored `requires_tool_output`): some calls wait for a person's
        /// decision (`approval_requests`, `POST /api/agent/approvals/`).
        RequiresApproval => "requires_approval",
        /// The upstream failed the response, or it could not be stored.
        Failed => "failed",
        /// The response was cut short: cancelled, or `response.incomplete`.
        Incomplete => "incomplete",
    }
}

states! {
    /// What became of a tool call a response asked for.
    ToolCallStatus {
        /// Waiting for an output.
        Pending => "pending",
        /// The client sent its output.
        Submitted => "submitted",
        /// A server-side executor produced its output.
        Executed => "executed",
        /// The user moved on with a new message before any output came.
        Expired => "expired",
    }
}

states! {
    /// Where a call that needs a person's decision stands (the ledger's `approval`; none for other calls).
    Approval {
        /// Waiting for a decision.
        Required => "required",
        /// Approved: it runs on the server when the response's every call is answered or decided.
        Approved => "approved",
        /// Denied: the model is told so, with the reason.
        Denied => "denied",
    }
}

states! {
    /// Who wrote a message.
    Role {
        User => "user",
        Assistant => "assistant",
    }
}

states! {
    /// Why a turn ended early: the `error.code` of its `error` frame (README's table lists each).
    ErrorCode {
        /// 429 after the retries (or a `Retry-After` beyond the budget).
        UpstreamRateLimited => "upstream_rate_limited",
        /// 5xx after the retries, or no connection.
        UpstreamUnavailable => "upstream_unavailable",
        /// Another 4xx (bad key, bad model, bad request); not retried.
        UpstreamRejected => "upstream_rejected",
        /// No answer, or the stream went silent past the read timeout.
        UpstreamTimeout => "upstream_timeout",
        /// The stream broke off or ended without `response.completed`.
        UpstreamDisconnected => "upstream_disconnected",
        /// An event that was not JSON, or a response asking for tool calls without an id.
        UpstreamMalformed => "upstream_malformed",
        /// An `error` event in the stream.
        UpstreamError => "upstream_error",
        /// `response.failed`.
        ResponseFailed => "response_failed",
        /// `response.incomplete`.
        ResponseIncomplete => "response_incomplete",
        /// The turn ran its last server-side tool round.
        ToolRoundLimit => "tool_round_limit",
        /// Someone cancelled the turn.
        Cancelled => "cancelled",
        /// The server stopped mid-turn (recorded at its next start, seen on replay).
        Interrupted => "interrupted",
        /// The answer could not be stored.
        StorageError => "storage_error",
    }
}

impl ErrorCode {
    /// Whether a turn that ended with this code failed (a chat answers 502 with the message as `detail`), as
    /// opposed to stopping where it was asked or allowed to (`tool_round_limit`, `cancelled`: 200).
    pub fn is_failure(self) -> bool {
        !matches!(self, Self::ToolRoundLimit | Self::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each variant's name survives `as_str` → `parse`, and serde writes and reads that same name.
    fn round_trips<T>(all: &[T], as_str: fn(T) -> &'static str, parse: fn(&str) -> Option<T>)
    where
        T: Copy + PartialEq + std::fmt::Debug + Serialize + for<'de> Deserialize<'de>,
    {
        for &state in all {
            let name = as_str(state);
            assert_eq!(parse(name), Some(state), "{name}");
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::Value::from(name), "{name}");
            assert_eq!(serde_json::from_value::<T>(name.into()).unwrap(), state, "{name}");
        }
        assert_eq!(parse("no_such_state"), None);
    }

    #[test]
    fn response_statuses_round_trip() {
        round_trips(ResponseStatus::ALL, ResponseStatus::as_str, ResponseStatus::parse);
        let names: Vec<_> = ResponseStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["completed", "requires_tool_output", "requires_approval", "failed", "incomplete"]);
    }

    #[test]
    fn approvals_round_trip() {
        round_trips(Approval::ALL, Approval::as_str, Approval::parse);
        let names: Vec<_> = Approval::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["required", "approved", "denied"]);
    }

    #[test]
    fn tool_call_statuses_round_trip() {
        round_trips(ToolCallStatus::ALL, ToolCallStatus::as_str, ToolCallStatus::parse);
        let names: Vec<_> = ToolCallStatus::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["pending", "submitted", "executed", "expired"]);
    }

    #[test]
    fn roles_round_trip() {
        round_trips(Role::ALL, Role::as_str, Role::parse);
        let names: Vec<_> = Role::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(names, ["user", "assistant"]);
    }

    #[test]
    fn error_codes_round_trip() {
        round_trips(ErrorCode::ALL, ErrorCode::as_str, ErrorCode::parse);
    }

    #[test]
    fn only_the_round_limit_and_a_cancel_are_not_failures() {
        let fine: Vec<_> = ErrorCode::ALL.iter().filter(|c| !c.is_failure()).copied().collect();
        assert_eq!(fine, [ErrorCode::ToolRoundLimit, ErrorCode::Cancelled]);
        assert!(ErrorCode::UpstreamRateLimited.is_failure());
        assert!(ErrorCode::StorageError.is_failure());
    }

    /// README's `error.code` table names exactly the enum's codes.
    #[test]
    fn the_readme_documents_every_error_code() {
        let readme = include_str!("../../../README.md");
        let table = readme.split("| `error.code` |").nth(1).expect("the error.code table");
        let mut documented: Vec<&str> = table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .collect();
        let mut codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        documented.sort_unstable();
        codes.sort_unstable();
        assert_eq!(documented, codes);
    }
}
