//! What a turn does after one of its responses ends: a pure decision, so every branch has a unit test.

use super::frames::TurnError;
use crate::domain::{ErrorCode, Executor, ToolCall};

/// Tool rounds one turn may run on the server before it stops and hands the calls to the client.
pub const MAX_TOOL_ROUNDS: usize = 8;

/// The `error` message of a cancelled turn.
pub const CANCELLED: &str = "The turn was cancelled (POST /api/sessions/{id}/cancel/).";

/// The `error` message of a response that asked for tool calls without an id: their outputs could never be
/// sent back (`previous_response_id`), so the response fails.
pub const NO_RESPONSE_ID: &str = "The upstream asked for tool calls in a response without an id.";

/// Where a turn stands when a response has ended and been stored.
#[derive(Debug, Clone, Copy)]
pub(super) struct AfterResponse<'a> {
    /// The calls of a completed response; `None` when it failed or stopped early (a failed response's calls
    /// are never run).
    pub completed: Option<ResponseCalls<'a>>,
    /// The request asked for `auto_execute_tools`.
    pub auto_execute: bool,
    /// Tool rounds already run on the server in this turn.
    pub rounds_run: usize,
    /// Someone asked the turn to stop.
    pub cancelled: bool,
}

/// A completed response's tool calls, and its upstream id: what their outputs are sent back under. (A response
/// with calls and no id is not completed: the relay fails it, as its calls could never be answered.)
#[derive(Debug, Clone, Copy)]
pub(super) struct ResponseCalls<'a> {
    pub response_id: &'a str,
    pub calls: &'a [ToolCall],
}

/// What the turn does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Next<'a> {
    /// The turn ends: these calls wait for the client's outputs, and the turn ended early if `error` is set.
    End { pending: Vec<String>, error: Option<TurnError> },
    /// Run these calls on the server (the turn's next tool round); then [`Then`].
    Run { calls: Vec<Runnable<'a>>, then: Then<'a> },
}

/// A call the server runs, with what runs it: found where the decision is made, so that the run cannot miss it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Runnable<'a> {
    pub call: &'a ToolCall,
    pub executor: Runner<'a>,
}

/// What runs a tool on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Runner<'a> {
    /// One of the agent's tools with an executor: runs when the request asked for `auto_execute_tools`.
    Executor(&'a Executor),
    /// An MCP server's tool (the index of the turn's offered MCP tool): always runs on its server.
    Mcp(usize),
}

/// After a server-side tool round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Then<'a> {
    /// Every call of the response ran: send their outputs upstream in a new response chained to this one.
    Continue { previous_response_id: &'a str },
    /// Some calls have no executor: the turn ends with these waiting for the client.
    End { pending: Vec<String> },
}

/// Decides the step after a response; `executor_of` names what the server runs a tool with, if anything, and
/// `needs_approval` whether a tool's calls wait for a person's decision (they never run here: they stay
/// pending until `POST /api/agent/approvals/`).
pub(super) fn next_step<'a>(
    after: AfterResponse<'a>,
    executor_of: impl Fn(&str) -> Option<Runner<'a>>,
    needs_approval: impl Fn(&str) -> bool,
) -> Next<'a> {
    let Some(ResponseCalls { response_id, calls }) = after.completed.filter(|c| !c.calls.is_empty()) else {
        return Next::End { pending: Vec::new(), error: None };
    };
    let all = || calls.iter().map(|c| c.call_id.clone()).collect::<Vec<_>>();
    let mut runnable = Vec::new();
    let mut rest = Vec::new();
    for call in calls {
        let runs = |runner: &Runner<'_>| matches!(runner, Runner::Mcp(_)) || after.auto_execute;
        match executor_of(&call.name).filter(runs).filter(|_| !needs_approval(&call.name)) {
            Some(executor) => runnable.push(Runnable { call, executor }),
            None => rest.push(call.call_id.clone()),
        }
    }
    if runnable.is_empty() {
        return Next::End { pending: all(), error: None };
    }
    if after.cancelled {
        return Next::End {
            pending: all(),
            error: Some(TurnError { code: ErrorCode::Cancelled, message: CANCELLED.into() }),
        };
    }
    if after.rounds_run == MAX_TOOL_ROUNDS {
        return Next::End {
            pending: all(),
            error: Some(TurnError {
                code: ErrorCode::ToolRoundLimit,
                message: format!(
                    "Stopped after {MAX_TOOL_ROUNDS} rounds of server-side tool calls; submit the pending outputs to go on."
                ),
            }),
        };
    }
    let then = if rest.is_empty() {
        Then::Continue { previous_response_id: response_id }
    } else {
        Then::End { pending: rest }
    };
    Next::Run { calls: runnable, then }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ToolType;

    fn call(id: &str, name: &str) -> ToolCall {
        ToolCall { call_id: id.into(), name: name.into(), kind: ToolType::Function, arguments: "{}".into() }
    }

    fn after(calls: &[ToolCall]) -> AfterResponse<'_> {
        let completed = Some(ResponseCalls { response_id: "resp_1", calls });
        AfterResponse { completed, auto_execute: true, rounds_run: 0, cancelled: false }
    }

    /// Only `echo` has an executor.
    fn echo_only<'a>(name: &str) -> Option<Runner<'a>> {
        (name == "echo").then_some(Runner::Executor(&Executor::Echo))
    }

    /// `echo` has an executor, `mcp__1__sum` is an MCP server's tool.
    fn with_mcp<'a>(name: &str) -> Option<Runner<'a>> {
        if name == "mcp__1__sum" { Some(Runner::Mcp(0)) } else { echo_only(name) }
    }

    fn none(_: &str) -> bool {
        false
    }

    fn ids(calls: &[Runnable<'_>]) -> Vec<String> {
        calls.iter().map(|r| r.call.call_id.clone()).collect()
    }

    #[test]
    fn a_response_without_calls_ends_the_turn_with_nothing_pending() {
        assert_eq!(next_step(after(&[]), echo_only, none), Next::End { pending: vec![], error: None });
    }

    #[test]
    fn a_failed_response_ends_the_turn_even_with_calls_and_executors() {
        let calls = [call("a", "echo")];
        let failed = AfterResponse { completed: None, ..after(&calls) };
        assert_eq!(next_step(failed, echo_only, none), Next::End { pending: vec![], error: None });
    }

    #[test]
    fn without_auto_execute_every_call_waits_for_the_client() {
        let calls = [call("a", "echo"), call("b", "lookup")];
        let manual = AfterResponse { auto_execute: false, ..after(&calls) };
        assert_eq!(
            next_step(manual, echo_only, none),
            Next::End { pending: vec!["a".into(), "b".into()], error: None }
        );
    }

    #[test]
    fn calls_without_executors_wait_for_the_client() {
        let calls = [call("a", "lookup")];
        assert_eq!(next_step(after(&calls), echo_only, none), Next::End { pending: vec!["a".into()], error: None });
    }

    #[test]
    fn calls_with_executors_run_and_the_turn_continues() {
        let calls = [call("a", "echo"), call("b", "echo")];
        let Next::Run { calls: run, then } = next_step(after(&calls), echo_only, none) else {
            panic!("expected a run")
        };
        assert_eq!(
            (ids(&run), then),
            (vec!["a".to_owned(), "b".to_owned()], Then::Continue { previous_response_id: "resp_1" })
        );
        assert!(run.iter().all(|r| r.executor == Runner::Executor(&Executor::Echo)));
    }

    #[test]
    fn mcp_tools_run_without_auto_execute_and_approval_holds_any_call_back() {
        let calls = [call("a", "mcp__1__sum"), call("b", "echo")];
        let manual = AfterResponse { auto_execute: false, ..after(&calls) };
        let Next::Run { calls: run, then } = next_step(manual, with_mcp, none) else { panic!("expected a run") };
        assert_eq!((ids(&run), then), (vec!["a".to_owned()], Then::End { pending: vec!["b".into()] }));
        let approval = |name: &str| name == "mcp__1__sum";
        let Next::Run { calls: run, then } = next_step(after(&calls), with_mcp, approval) else { panic!() };
        assert_eq!((ids(&run), then), (vec!["b".to_owned()], Then::End { pending: vec!["a".into()] }));
        let everything = |_: &str| true;
        assert_eq!(
            next_step(after(&calls), with_mcp, everything),
            Next::End { pending: vec!["a".into(), "b".into()], error: None }
        );
    }

    #[test]
    fn a_mixed_response_runs_what_it_can_and_ends_with_the_rest_pending() {
        let calls = [call("a", "echo"), call("b", "lookup"), call("c", "echo")];
        let Next::Run { calls: run, then } = next_step(after(&calls), echo_only, none) else {
            panic!("expected a run")
        };
        assert_eq!(ids(&run), ["a", "c"]);
        assert_eq!(then, Then::End { pending: vec!["b".into()] });
    }

    #[test]
    fn a_cancelled_turn_runs_nothing_and_ends_cancelled_with_every_call_pending() {
        let calls = [call("a", "echo"), call("b", "lookup")];
        let cancelled = AfterResponse { cancelled: true, ..after(&calls) };
        let Next::End { pending, error: Some(error) } = next_step(cancelled, echo_only, none) else { panic!() };
        assert_eq!(
            (pending, error.code, error.message.as_str()),
            (vec!["a".into(), "b".into()], ErrorCode::Cancelled, CANCELLED)
        );
    }

    #[test]
    fn cancelling_does_not_matter_when_nothing_would_run() {
        let calls = [call("a", "lookup")];
        let cancelled = AfterResponse { cancelled: true, ..after(&calls) };
        assert_eq!(next_step(cancelled, echo_only, none), Next::End { pending: vec!["a".into()], error: None });
    }

    #[test]
    fn the_round_limit_stops_the_turn_with_every_call_pending() {
        let calls = [call("a", "echo")];
        let last = AfterResponse { rounds_run: MAX_TOOL_ROUNDS, ..after(&calls) };
        let Next::End { pending, error: Some(error) } = next_step(last, echo_only, none) else { panic!() };
        assert_eq!((pending, error.code), (vec!["a".into()], ErrorCode::ToolRoundLimit));
        let one_before = AfterResponse { rounds_run: MAX_TOOL_ROUNDS - 1, ..after(&calls) };
        assert!(matches!(next_step(one_before, echo_only, none), Next::Run { then: Then::Continue { .. }, .. }));
    }
}
