//! Running a turn: one upstream response after another (a round each), relayed frame by frame, each stored
//! when it ends, with server-side tool calls run between them; then the turn's end, recorded.
//!
//! # Concurrency
//! A turn runs in its own task ([`Turn::stream`], [`Turn::run`]): a client that goes away does not stop it
//! (the local server behaves as Lambda does), and everything it produces is stored whether or not anyone is
//! listening. Beside it runs its recorder (`recorder`). The turn stops at the next event when its
//! cancellation token fires: at once for a cancel request in this process, within the recorder's poll for
//! one from another.
//!
//! # Spans
//! Opened by `spans`: the turn's, each response's and each server-side tool run's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::frames::{CallFrame, Done, Frame, Frames, Notice, TextDelta, ToolResult, TurnError, TurnEvent, TurnStream};
use super::mcp::{McpListing, McpOffer};
use super::next::{AfterResponse, CANCELLED, NO_RESPONSE_ID, Next, ResponseCalls, Runnable, Runner, Then, next_step};
use super::recorder::{Sink, record};
use super::spans;
use crate::domain::{
    Agent, ApprovalRequest, ErrorCode, Message, ResponseStatus, SessionId, Tool, ToolCall, TurnId, Usage,
};
use crate::error::{Error, Result};
use crate::llm::events::{Observed, ResponseAccumulator, ResponseEnd};
use crate::llm::{ModelProvider, ModelRequest, STATELESS_INCLUDE, output_item, upstream_tool};
use crate::state::AppState;
use crate::store::{IdempotencyClaim, KeptAnswer, KeptReply, ResponseRecord, retrying_until};
use crate::telemetry::{self, Warning};
use serde::Deserialize;

/// A turn resolved and ready to go upstream: what its first response sends, and what every round needs.
#[derive(Debug)]
pub struct Turn {
    pub(super) provider: Arc<dyn ModelProvider>,
    /// This turn's lease on its session, given back when it ends.
    pub(super) turn_id: TurnId,
    /// When the lease ends: once the model has answered, the turn's writes retry a database that pushes back
    /// until then (an answer is not dropped while its session is held).
    pub(super) held_until: Instant,
    pub(super) session_id: SessionId,
    pub(super) agent: Agent,
    pub(super) instructions: Option<String>,
    pub(super) tools: Vec<Tool>,
    pub(super) input: Vec<Value>,
    pub(super) previous_response_id: Option<String>,
    pub(super) auto_execute: bool,
    /// The conversation so far, sent before `input` instead of `previous_response_id`: every round when the
    /// provider keeps no state (`stateless`), the first round only for a session that owes its provider the
    /// whole history (a fork).
    pub(super) history: Option<Vec<Value>>,
    /// Lambent keeps the conversation: `store: false`, reasoning items asked back with their encrypted content.
    pub(super) stateless: bool,
    /// How many of the oldest turns the agent's input budget left out of `history`.
    pub(super) dropped_turns: u32,
    /// The agent's MCP servers' tools, being listed since before the turn's first write.
    pub(super) mcp: McpListing,
    /// The agent's own tools whose calls wait for a person's decision.
    pub(super) approval_tools: HashSet<String>,
    /// Calls a person approved: run before the first request, their outputs taking their places in `input`.
    pub(super) approved: Vec<ToolCall>,
}

/// How a keyed chat's answer is kept for its key's retries: the claim, and how the turn's end becomes the
/// answer (the HTTP layer's reply; the turn only records it, in the same write as its end).
#[derive(Debug)]
pub struct KeepAnswer {
    pub claim: IdempotencyClaim,
    pub reply: fn(&TurnEnd) -> Result<KeptAnswer>,
}

/// What a whole turn came to: its `done` frame, the last assistant message, and why it ended early.
#[derive(Debug, Clone)]
pub struct TurnEnd {
    pub done: Done,
    pub message: Option<Message>,
    pub output_text: String,
    pub usage: Option<Value>,
    pub error: Option<TurnError>,
}

impl TurnEnd {
    /// A turn that ends waiting for calls of a completed response, some of which wait for a person's
    /// decision: `requires_approval`, listing those.
    fn ask_approval(&mut self, requests: Vec<ApprovalRequest>) {
        if !requests.is_empty() && self.done.status == ResponseStatus::RequiresToolOutput {
            self.done.status = ResponseStatus::RequiresApproval;
            self.done.approval_requests = requests;
        }
    }

    /// Ends the turn failed with `error` instead of how it was going to end.
    fn fail(&mut self, error: TurnError) {
        self.error = Some(error);
        self.done.status = ResponseStatus::Failed;
    }
}

/// How one upstream response ended, with what the turn collected from it.
struct EndedResponse {
    response_id: Option<String>,
    text: String,
    calls: Vec<ToolCall>,
    /// The completed response's `output`, or why it did not complete.
    end: std::result::Result<Value, TurnError>,
    /// What the provider reported the response spent, however it ended (none when it was cut off first).
    usage: Option<Value>,
    /// The status a failure is stored with (`failed`, or `incomplete` for a cancel or a cut-short response).
    failed_status: ResponseStatus,
}

impl EndedResponse {
    /// A completed response's calls, with the id their outputs go back under (the relay fails a response
    /// that has calls and no id).
    fn calls_to_answer(&self) -> Option<ResponseCalls<'_>> {
        let response_id = self.response_id.as_deref().filter(|_| self.end.is_ok())?;
        Some(ResponseCalls { response_id, calls: &self.calls })
    }

    fn status(&self) -> ResponseStatus {
        match &self.end {
            Ok(_) if self.calls.is_empty() => ResponseStatus::Completed,
            Ok(_) => ResponseStatus::RequiresToolOutput,
            Err(_) => self.failed_status,
        }
    }
}

impl Turn {
    /// Runs the turn in its own task; its frames arrive on the returned stream, ending with `done`.
    pub fn stream(self, state: AppState) -> TurnStream {
        let (session_id, turn_id) = (self.session_id, Some(self.turn_id.clone()));
        let (tx, frames): (_, Frames) = mpsc::channel(256);
        let span = spans::invoke_agent(&self.agent, self.session_id, &self.turn_id);
        tokio::spawn(telemetry::in_scope(async move {
            // The stream ends when the last sender goes: only after the turn's span has closed, so a Lambda
            // function that flushes its spans at the end of the stream has them all.
            let last = tx.clone();
            self.drive(&state, Some(tx), None).instrument(span).await;
            drop(last);
        }));
        TurnStream { session_id, turn_id, frames }
    }

    /// Runs the turn in its own task (so a dropped request does not cut it short) and returns how it ended;
    /// a keyed chat's reply is recorded with that end.
    pub async fn run(self, state: AppState, keep: Option<KeepAnswer>) -> Result<TurnEnd> {
        let span = spans::invoke_agent(&self.agent, self.session_id, &self.turn_id);
        tokio::spawn(telemetry::in_scope(async move { self.drive(&state, None, keep).instrument(span).await }))
            .await
            .map_err(|e| Error::internal("the turn's task", e))
    }

    /// Runs every round of the turn, then ends it: `done` is recorded with the release of the session
    /// before the client sees it.
    async fn drive(
        self,
        state: &AppState,
        live: Option<mpsc::Sender<Arc<Frame>>>,
        keep: Option<KeepAnswer>,
    ) -> TurnEnd {
        let (session, turn_id) = (self.session_id, self.turn_id.clone());
        let cancel = state.register_turn(&turn_id);
        let (sink, inbox) = Sink::new(turn_id.clone(), live, state.metrics.clone());
        let recorder =
            record(state.store.clone(), state.metrics.clone(), session, turn_id.clone(), inbox, cancel.clone());
        // Every frame the recorder writes is the model's (or the turn's end): kept trying for the lease's life.
        let recorder = retrying_until(self.held_until, recorder);
        let recorder = tokio::spawn(telemetry::in_scope(recorder.in_current_span()));
        let mut end = self.rounds(state, &sink, &cancel).await;
        // A keyed chat's answer that cannot be built would be kept empty, or not at all: the turn fails instead.
        let reply = keep.map(|keep| (keep.reply)(&end).map(|answer| KeptReply { claim: keep.claim, answer }));
        let reply = match reply.transpose() {
            Ok(reply) => reply,
            Err(err) => {
                tracing::error!(error = %err.chain(), session = session.0, "could not build the answer a keyed chat keeps");
                end.fail(TurnError::not_stored("The answer could not be stored."));
                None
            }
        };
        if let Some(error) = &end.error {
            sink.send(TurnEvent::Error(error.clone())).await;
            let span = Span::current();
            span.set_attribute("error.type", error.code.as_str());
            if error.code.is_failure() {
                span.set_status(opentelemetry::trace::Status::error(error.message.clone()));
            }
        }
        sink.end(end.done.clone(), reply, end.error.as_ref()).await;
        state.forget_turn(&turn_id);
        // The recorder has ended the turn; waiting for its task makes sure its hold on the span is gone too.
        let _ = recorder.await;
        end
    }

    /// One response after another until the next step is to end.
    async fn rounds(mut self, state: &AppState, sink: &Sink, cancel: &CancellationToken) -> TurnEnd {
        let offer = std::mem::take(&mut self.mcp).finish().await;
        for message in &offer.notices {
            sink.send(TurnEvent::Notice(Notice { message: message.clone() })).await;
        }
        let mut executors: HashMap<&str, Runner<'_>> =
            self.tools.iter().filter_map(|t| Some((t.name.as_str(), Runner::Executor(t.executor.as_ref()?)))).collect();
        executors.extend(offer.tools.iter().enumerate().map(|(i, o)| (o.name.as_str(), Runner::Mcp(i))));
        let approval_tools = std::mem::take(&mut self.approval_tools);
        // Approval holds back what the server would run: an agent tool without an executor is the client's to
        // run (and to ask about), whatever its link says.
        let needs_approval = |name: &str| {
            (approval_tools.contains(name) && executors.contains_key(name))
                || offer.tools.iter().any(|o| o.name == name && o.require_approval)
        };
        let mut tool_specs: Vec<Value> = self.tools.iter().map(upstream_tool).collect();
        tool_specs.extend(offer.tools.iter().map(|o| o.spec.clone()));
        if self.stateless {
            self.history.get_or_insert_with(Vec::new);
        }
        // Calls a person approved run first; their outputs replace the placeholders the input holds for them,
        // and are stored with the next response (no write of their own before the request upstream).
        let mut executed = Vec::new();
        for call in std::mem::take(&mut self.approved) {
            let output = match executors.get(call.name.as_str()) {
                Some(runner) => self.run_tool(state, &call, *runner, &offer).await,
                None => serde_json::json!({"error": "This tool is no longer available to the agent."}).to_string(),
            };
            executed.push((call.call_id.clone(), output.clone()));
            let item = Self::announce(sink, &call, output).await;
            if let Some(slot) = self.input.iter_mut().find(|i| i["call_id"].as_str() == Some(call.call_id.as_str())) {
                *slot = item;
            }
        }
        let mut rounds_run = 0;
        loop {
            let input = std::mem::take(&mut self.input);
            let (input, sent) = match &self.history {
                Some(history) => (history.iter().chain(&input).cloned().collect(), input),
                None => (input, Vec::new()),
            };
            let request = ModelRequest {
                model: self.agent.model.clone(),
                instructions: self.instructions.clone(),
                input,
                tools: tool_specs.clone(),
                previous_response_id: self.previous_response_id.clone().filter(|_| self.history.is_none()),
                store: !self.stateless,
                stream: true,
                include: if self.stateless { vec![STATELESS_INCLUDE] } else { Vec::new() },
            };
            let mut ended = self.one_response(request, sink, cancel, state.config.trace_content).await;
            if let Err(error) = &mut ended.end {
                self.explain_rejection(error);
            }
            let awaiting: Vec<&ToolCall> =
                ended.calls.iter().filter(|c| ended.end.is_ok() && needs_approval(&c.name)).collect();
            let awaiting_ids: Vec<String> = awaiting.iter().map(|c| c.call_id.clone()).collect();
            let approval_requests: Vec<ApprovalRequest> = awaiting
                .iter()
                .map(|c| ApprovalRequest {
                    call_id: c.call_id.clone(),
                    name: c.name.clone(),
                    arguments: c.arguments.clone(),
                })
                .collect();
            let mut end = TurnEnd {
                done: Done {
                    session_id: self.session_id,
                    response_id: ended.response_id.clone(),
                    status: ended.status(),
                    pending_tool_calls: Vec::new(),
                    approval_requests: Vec::new(),
                    dropped_turns: self.dropped_turns,
                },
                message: None,
                output_text: ended.text.clone(),
                usage: ended.end.as_ref().ok().and(ended.usage.clone()),
                error: ended.end.as_ref().err().cloned(),
            };
            let stored_outputs = std::mem::take(&mut executed);
            let record = self.record_of(&ended, &awaiting_ids, &stored_outputs);
            match retrying_until(self.held_until, state.store.record_response(record)).await {
                Ok(message) => end.message = Some(message),
                Err(err) => {
                    tracing::error!(error = %err.chain(), session = self.session_id.0, "could not store the response");
                    end.fail(TurnError::not_stored("The response could not be stored."));
                    return end;
                }
            }
            let after = AfterResponse {
                completed: ended.calls_to_answer(),
                auto_execute: self.auto_execute,
                rounds_run,
                cancelled: cancel.is_cancelled(),
            };
            let (calls, then) = match next_step(after, |name| executors.get(name).copied(), needs_approval) {
                Next::End { pending, error } => {
                    end.done.pending_tool_calls = pending;
                    end.error = end.error.or(error);
                    end.ask_approval(approval_requests);
                    return end;
                }
                Next::Run { calls, then } => (calls, then),
            };
            rounds_run += 1;
            let mut outputs = Vec::with_capacity(calls.len());
            for Runnable { call, executor } in calls {
                let output = self.run_tool(state, call, executor, &offer).await;
                outputs.push(self.tool_ran(state, sink, call, output).await);
            }
            match then {
                Then::End { pending } => {
                    end.done.pending_tool_calls = pending;
                    end.ask_approval(approval_requests);
                    return end;
                }
                // Every call of the response ran here: the next response's input is their outputs as they were
                // produced (no read back from the store, which a failed write could have left without them).
                Then::Continue { previous_response_id } => {
                    match (&mut self.history, &ended.end) {
                        (Some(history), Ok(output)) if self.stateless => {
                            history.extend(sent);
                            history.extend(output.as_array().into_iter().flatten().cloned());
                        }
                        // A stateful provider chains from here: it has the history now.
                        _ => self.history = None,
                    }
                    self.input = outputs;
                    self.previous_response_id = Some(previous_response_id.to_owned());
                }
            }
        }
    }

    /// A stateful provider's refusal may mean it keeps no state: the error names the setting to change. Not
    /// for a refusal of the key (401, 403), which says what it is by itself; a refusal that names neither the
    /// chain nor `store` gets the hint only when the request was chained.
    fn explain_rejection(&self, error: &mut TurnError) {
        if self.stateless || error.code != ErrorCode::UpstreamRejected {
            return;
        }
        let text = error.message.as_str();
        if text.contains("HTTP 401") || text.contains("HTTP 403") {
            return;
        }
        let about_state = text.contains("previous_response") || text.contains("store");
        if !about_state && self.previous_response_id.is_none() {
            return;
        }
        let name = &self.agent.provider;
        error.message = format!(
            "{} The provider \"{name}\" may keep no conversation state (it refused a request with store: true{}): \
             set LAMBENT_PROVIDER_{}_STATE=local to have Lambent send the whole conversation instead.",
            error.message,
            if self.previous_response_id.is_some() { " and previous_response_id" } else { "" },
            name.to_ascii_uppercase()
        );
    }

    /// Runs one call on the server in its `execute_tool` span — with its executor, or on its MCP server with
    /// `tools/call` — and answers its output.
    async fn run_tool(&self, state: &AppState, call: &ToolCall, runner: Runner<'_>, offer: &McpOffer) -> String {
        let span = spans::execute_tool(call, state.config.trace_content);
        let output = match (state.executors(), runner) {
            (Err(err), _) => serde_json::json!({"error": err.chain().to_string()}).to_string(),
            (Ok(context), Runner::Executor(executor)) => {
                context.run(executor, call, state.clock()).instrument(span.clone()).await
            }
            (Ok(context), Runner::Mcp(i)) => {
                let tool = &offer.tools[i];
                let timeout = state.config.mcp.call_timeout;
                let called = state.mcp().call(context, &tool.server, &tool.tool, &call.arguments, timeout);
                called.instrument(span.clone()).await
            }
        };
        if state.config.trace_content {
            span.set_attribute("gen_ai.tool.call.result", output.clone());
        }
        drop(span);
        output
    }

    /// Stores a call's output and sends its `tool_result`; answers the output as the next response's input
    /// item. A store that could not keep the output is a logged and counted warning: the output still goes
    /// upstream, and the model's answer is not lost.
    async fn tool_ran(&self, state: &AppState, sink: &Sink, call: &ToolCall, output: String) -> Value {
        let executed = state.store.record_executed(self.session_id, &call.call_id, &output);
        if let Err(err) = retrying_until(self.held_until, executed).await {
            tracing::warn!(error = %err.chain(), call_id = %call.call_id, "could not store a tool result");
            state.metrics.warning(Warning::ToolResultNotStored);
        }
        Self::announce(sink, call, output).await
    }

    /// Sends a call's `tool_result`; answers the output as the next response's input item.
    async fn announce(sink: &Sink, call: &ToolCall, output: String) -> Value {
        let item = output_item(call.kind, &call.call_id, &output);
        sink.send(TurnEvent::ToolResult(ToolResult { call_id: call.call_id.clone(), output })).await;
        item
    }

    /// What the store keeps of an ended response: only a completed one moves the session on and enters its
    /// calls in the ledger.
    fn record_of<'a>(
        &self,
        ended: &'a EndedResponse,
        awaiting_approval: &'a [String],
        executed: &'a [(String, String)],
    ) -> ResponseRecord<'a> {
        let completed = ended.end.as_ref().ok();
        ResponseRecord {
            session: self.session_id,
            response_id: ended.response_id.as_deref(),
            status: ended.status(),
            text: &ended.text,
            usage: ended.usage.as_ref(),
            completed_output: completed,
            calls: if completed.is_some() { &ended.calls } else { &[] },
            awaiting_approval,
            executed,
        }
    }

    /// One upstream response in its `chat {model}` span, which says how it ended.
    async fn one_response(
        &self,
        request: ModelRequest,
        sink: &Sink,
        cancel: &CancellationToken,
        content: bool,
    ) -> EndedResponse {
        let span = tracing::info_span!("chat", otel.name = %format!("chat {}", telemetry::escaped(&request.model)), otel.kind = "client");
        span.set_attribute("gen_ai.operation.name", "chat");
        span.set_attribute("gen_ai.provider.name", self.agent.provider.clone());
        span.set_attribute("gen_ai.request.model", request.model.clone());
        if content {
            span.set_attribute("gen_ai.input.messages", Value::from(request.input.clone()).to_string());
            if let Some(instructions) = &request.instructions {
                span.set_attribute("gen_ai.system_instructions", instructions.clone());
            }
        }
        let ended = self.relay(request, sink, cancel).instrument(span.clone()).await;
        if let Some(id) = &ended.response_id {
            span.set_attribute("gen_ai.response.id", id.clone());
        }
        if let Some(usage) = &ended.usage {
            sink.count_tokens(usage);
        }
        match &ended.end {
            Ok(_) => {
                let counts = match ended.usage.as_ref().map(Usage::deserialize).transpose() {
                    Ok(counts) => counts.unwrap_or_default(),
                    Err(err) => {
                        tracing::warn!(error = %err, "the upstream's usage has counts that are not whole numbers");
                        Usage::default()
                    }
                };
                let attribute = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
                if let Some(n) = attribute(counts.input_tokens) {
                    span.set_attribute("gen_ai.usage.input_tokens", n);
                }
                if let Some(n) = attribute(counts.output_tokens) {
                    span.set_attribute("gen_ai.usage.output_tokens", n);
                }
            }
            Err(error) => {
                span.set_attribute("error.type", error.code.as_str());
                span.set_status(opentelemetry::trace::Status::error(error.message.clone()));
            }
        }
        if content {
            span.set_attribute("gen_ai.output.messages", ended.text.clone());
        }
        ended
    }

    /// Opens one upstream response and relays it until it ends, one way or another.
    async fn relay(&self, request: ModelRequest, sink: &Sink, cancel: &CancellationToken) -> EndedResponse {
        let opened_at = Instant::now();
        let mut first_chunk = true;
        let mut model_seen = false;
        let mut acc = ResponseAccumulator::default();
        let mut announced = 0;
        let fail = |acc: &ResponseAccumulator, code: ErrorCode, message: String, status| EndedResponse {
            response_id: acc.response_id.clone(),
            text: acc.text().to_owned(),
            calls: Vec::new(),
            end: Err(TurnError { code, message }),
            usage: None,
            failed_status: status,
        };
        let cancelled = |acc: &ResponseAccumulator| {
            fail(acc, ErrorCode::Cancelled, CANCELLED.to_owned(), ResponseStatus::Incomplete)
        };
        let opened = tokio::select! {
            biased;
            () = cancel.cancelled() => return cancelled(&acc),
            opened = self.provider.stream(request) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => return fail(&acc, e.code, e.message, ResponseStatus::Failed),
        };
        let timeout = self.provider.read_timeout();
        loop {
            let next = tokio::select! {
                biased;
                // Dropping the stream closes the upstream connection.
                () = cancel.cancelled() => return cancelled(&acc),
                next = tokio::time::timeout(timeout, stream.next()) => next,
            };
            let raw = match next {
                Err(_) => {
                    let message = format!("the upstream sent nothing for {} s", timeout.as_secs_f64());
                    return fail(&acc, ErrorCode::UpstreamTimeout, message, ResponseStatus::Failed);
                }
                Ok(None) => {
                    let message = "the upstream stream ended before response.completed".to_owned();
                    return fail(&acc, ErrorCode::UpstreamDisconnected, message, ResponseStatus::Failed);
                }
                Ok(Some(Err(e))) => return fail(&acc, e.code, e.message, ResponseStatus::Failed),
                Ok(Some(Ok(raw))) => raw,
            };
            if first_chunk {
                first_chunk = false;
                let ms = opened_at.elapsed().as_secs_f64() * 1000.0;
                Span::current().set_attribute("lambent.time_to_first_chunk_ms", ms);
            }
            let observed = match acc.observe_raw(raw.get()) {
                Ok(observed) => {
                    if !model_seen && let Some(model) = &acc.model {
                        model_seen = true;
                        Span::current().set_attribute("gen_ai.response.model", model.clone());
                    }
                    observed
                }
                Err(e) => {
                    let message = format!("unreadable upstream event: {e}");
                    return fail(&acc, ErrorCode::UpstreamMalformed, message, ResponseStatus::Failed);
                }
            };
            sink.send(TurnEvent::OpenAi(raw)).await;
            match observed {
                Observed::Nothing => {}
                Observed::TextDelta(delta) => sink.send(TurnEvent::TextDelta(TextDelta { delta })).await,
                Observed::ToolCall(call) => {
                    announced += 1;
                    sink.send(TurnEvent::ToolCall(CallFrame::from(&call))).await;
                }
                Observed::Ended(ResponseEnd::Completed { .. })
                    if acc.response_id.is_none() && !acc.calls().is_empty() =>
                {
                    let message = NO_RESPONSE_ID.to_owned();
                    return fail(&acc, ErrorCode::UpstreamMalformed, message, ResponseStatus::Failed);
                }
                Observed::Ended(ResponseEnd::Completed { output, usage }) => {
                    // Calls that only the completed response listed are announced now.
                    for call in &acc.calls()[announced..] {
                        sink.send(TurnEvent::ToolCall(CallFrame::from(call))).await;
                    }
                    return EndedResponse {
                        response_id: acc.response_id.clone(),
                        text: acc.text().to_owned(),
                        calls: acc.calls().to_vec(),
                        end: Ok(output),
                        usage,
                        failed_status: ResponseStatus::Failed,
                    };
                }
                Observed::Ended(ResponseEnd::Failed { code, message, status, usage }) => {
                    return EndedResponse { usage, ..fail(&acc, code, message, status) };
                }
            }
        }
    }
}
