//! The turn's OpenTelemetry spans.
//!
//! # GenAI conventions
//! A turn is `invoke_agent {agent}` (`gen_ai.agent.id`, `gen_ai.agent.name`, `gen_ai.conversation.id` = the
//! session), opened in the request's span and carried into the turn's tasks, so their log lines keep the
//! request id and add `session_id` and `turn_id`. Under it, each upstream response is `chat {model}` (kind
//! client: `gen_ai.request.model`, `gen_ai.response.id`/`.model`, `gen_ai.usage.*_tokens`,
//! `lambent.time_to_first_chunk_ms`, `error.type` = our error code) and each server-side tool run is
//! `execute_tool {name}` (`gen_ai.tool.call.id`). Message content (`gen_ai.input.messages`,
//! `gen_ai.output.messages`, tool arguments and results) only with `LAMBENT_TRACE_CONTENT=true`. Attributes
//! that only a trace needs are set on the OpenTelemetry span, not as fields: log lines stay short.
//!
//! # Layout
//! [`invoke_agent`], the turn's; [`execute_tool`], a server-side tool run's. Each response's `chat {model}` span
//! is opened where the response is read (`engine`), as its attributes arrive with its events.

use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::{Agent, SessionId, ToolCall, TurnId};
use crate::telemetry;

/// The turn's span, a child of the request's: `invoke_agent {agent}`.
pub(super) fn invoke_agent(agent: &Agent, session: SessionId, turn: &TurnId) -> Span {
    let name = format!("invoke_agent {}", telemetry::escaped(&agent.name));
    let span = tracing::info_span!("turn", otel.name = %name, session_id = session.0, turn_id = %turn);
    span.set_attribute("gen_ai.operation.name", "invoke_agent");
    span.set_attribute("gen_ai.provider.name", agent.provider.clone());
    span.set_attribute("gen_ai.agent.id", agent.id.to_string());
    span.set_attribute("gen_ai.agent.name", agent.name.clone());
    span.set_attribute("gen_ai.conversation.id", session.to_string());
    span.set_attribute("gen_ai.request.model", agent.model.clone());
    span
}

/// A server-side tool run's span: `execute_tool {name}`.
pub(super) fn execute_tool(call: &ToolCall, content: bool) -> Span {
    let span =
        tracing::info_span!("execute_tool", otel.name = %format!("execute_tool {}", telemetry::escaped(&call.name)));
    span.set_attribute("gen_ai.operation.name", "execute_tool");
    span.set_attribute("gen_ai.tool.name", call.name.clone());
    span.set_attribute("gen_ai.tool.call.id", call.call_id.clone());
    span.set_attribute("gen_ai.tool.type", "function");
    if content {
        span.set_attribute("gen_ai.tool.call.arguments", call.arguments.clone());
    }
    span
}
