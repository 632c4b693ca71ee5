//! In-process tests of the engine and the recorder: a real store (an in-memory SQLite database, migrated),
//! a scripted model provider through `AppState::with_provider`, and no HTTP anywhere. The fake OpenAI server
//! and the real routers are the integration tests'; these run in milliseconds and reach the branches the
//! wire cannot (a dropped sink, the recorder's cancel poll).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::recorder::{Sink, record};
use super::{Frame, TurnEvent, TurnStream};
use crate::config::Config;
use crate::domain::{AgentFields, AgentId, Caller, LinkFields, MessageRequest, SessionId, ToolChanges, TurnId};
use crate::llm::{EventStream, ModelProvider, ModelRequest, UpstreamError};
use crate::state::AppState;
use crate::store::Store;

/// One scripted upstream response: its events in order, an `Err` ending it as a broken stream would.
type Script = Vec<Result<Value, UpstreamError>>;

/// Answers each `stream` call with the next script, and keeps every request it was sent.
#[derive(Debug, Default)]
struct Scripted {
    scripts: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<ModelRequest>>,
}

impl Scripted {
    fn new(scripts: impl IntoIterator<Item = Script>) -> Arc<Self> {
        Arc::new(Self { scripts: Mutex::new(scripts.into_iter().collect()), requests: Mutex::default() })
    }

    fn requests(&self) -> Vec<ModelRequest> {
        self.requests.lock().unwrap().clone()
    }
}

impl ModelProvider for Scripted {
    fn stream(&self, request: ModelRequest) -> BoxFuture<'_, Result<EventStream, UpstreamError>> {
        self.requests.lock().unwrap().push(request);
        let script = self.scripts.lock().unwrap().pop_front().expect("a script for every response");
        Box::pin(async move {
            let events = script.into_iter().map(|event| event.map(|v| RawValue::from_string(v.to_string()).unwrap()));
            Ok(Box::pin(futures::stream::iter(events)) as EventStream)
        })
    }

    fn read_timeout(&self) -> Duration {
        Duration::from_secs(5)
    }
}

fn text_response(id: &str, parts: &[&str]) -> Script {
    let mut events = vec![Ok(json!({"type": "response.created", "response": {"id": id}}))];
    events.extend(parts.iter().map(|delta| Ok(json!({"type": "response.output_text.delta", "delta": delta}))));
    let text = parts.concat();
    events.push(Ok(json!({"type": "response.completed", "response": {"id": id, "usage": {"total_tokens": 7},
        "output": [{"type": "message", "content": [{"type": "output_text", "text": text}]}]}})));
    events
}

fn call_response(id: &str, call_id: &str, name: &str) -> Script {
    let item = json!({"type": "function_call", "call_id": call_id, "name": name, "arguments": "{\"x\":1}"});
    vec![
        Ok(json!({"type": "response.created", "response": {"id": id}})),
        Ok(json!({"type": "response.output_item.done", "item": item})),
        Ok(json!({"type": "response.completed", "response": {"id": id, "output": [item]}})),
    ]
}

/// A migrated in-memory store with a default agent, behind a state that talks to `provider`.
async fn state(provider: Arc<Scripted>) -> AppState {
    state_at(provider, Arc::new(crate::clock::SystemClock)).await
}

/// The same on a given clock (the store's: it stamps every row and lease).
async fn state_at(provider: Arc<Scripted>, clock: Arc<dyn crate::clock::Clock>) -> AppState {
    let store = Store::open_url(":memory:", None).await.unwrap().with_clock(clock);
    store.migrate().await.unwrap();
    let fields = AgentFields { name: "helper".into(), is_default: true, ..AgentFields::default() };
    store.create_agent(None, fields).await.unwrap();
    AppState::new(Config::from_lookup(|_| None).unwrap(), store).with_provider(provider)
}

/// A tool named `name` with the `echo` executor, linked to agent 1.
async fn echo_tool(state: &AppState, name: &str) {
    let body = json!({"name": name, "executor": {"type": "echo"}});
    let tool = state
        .store
        .create_tool(None, ToolChanges::parse(&body, crate::domain::Mode::Create, &state.config.limits).unwrap());
    let tool = tool.await.unwrap();
    let link = LinkFields { agent: AgentId(1), tool: tool.id, enabled: true, require_approval: false };
    state.store.create_agent_tool(&Caller::system(), link).await.unwrap();
}

fn message(text: &str, auto_execute_tools: bool) -> MessageRequest {
    MessageRequest { message: text.into(), auto_execute_tools, ..MessageRequest::default() }
}

/// Every frame of a stream, as (event, data JSON).
async fn drain(mut stream: TurnStream) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    while let Some(frame) = stream.frames.recv().await {
        out.push((frame.event.to_string(), serde_json::from_str(&frame.data).unwrap()));
    }
    out
}

/// Every frame of a "Go" message turn with `auto_execute_tools`.
async fn auto_execute_turn(state: &AppState) -> Vec<(String, Value)> {
    let request = message("Go", true);
    let stream = super::stream(state, &Caller::system(), request, state.config.turn_lease, None, &json!({})).await;
    drain(stream.unwrap()).await
}

fn names(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(event, _)| event.as_str()).collect()
}

#[tokio::test]
async fn a_turn_relays_every_event_and_ends_with_done_recorded_and_its_session_free() {
    let provider = Scripted::new([text_response("resp_1", &["Hel", "lo"])]);
    let state = state(provider.clone()).await;
    let stream =
        super::stream(&state, &Caller::system(), message("Hi", false), state.config.turn_lease, None, &json!({}))
            .await
            .unwrap();
    let (session, turn_id) = (stream.session_id, stream.turn_id.clone().unwrap());
    let frames = drain(stream).await;
    assert_eq!(
        names(&frames),
        ["openai_event", "openai_event", "text_delta", "openai_event", "text_delta", "openai_event", "done"]
    );
    let done = &frames.last().unwrap().1;
    assert_eq!(
        done,
        &json!({"session_id": session, "response_id": "resp_1", "status": "completed",
        "pending_tool_calls": []})
    );
    // `done` reached the client after the turn's end was recorded: the session is free and every frame stored.
    assert_eq!(state.store.running_turn(session).await.unwrap(), None);
    let stored = state.store.frames_after(session, 0, Some(&turn_id), 100).await.unwrap().frames;
    assert_eq!(stored.iter().map(|f| f.event.as_str()).collect::<Vec<_>>(), names(&frames));
    assert_eq!(stored.iter().map(|f| f.seq).collect::<Vec<_>>(), (1..=7).collect::<Vec<i64>>());
    let request = &provider.requests()[0];
    assert_eq!(request.input, [json!({"type": "message", "role": "user", "content": "Hi"})]);
    assert_eq!(request.previous_response_id, None);
}

#[tokio::test]
async fn a_server_side_tool_round_answers_the_call_upstream_in_the_next_response() {
    let provider = Scripted::new([call_response("resp_1", "call_1", "echo"), text_response("resp_2", &["Done"])]);
    let state = state(provider.clone()).await;
    echo_tool(&state, "echo").await;
    let frames = auto_execute_turn(&state).await;
    let result = frames.iter().find(|(event, _)| event == "tool_result").unwrap();
    assert_eq!(result.1, json!({"call_id": "call_1", "output": "{\"x\":1}"}));
    assert_eq!(frames.last().unwrap().1["status"], "completed");
    let requests = provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].previous_response_id.as_deref(), Some("resp_1"));
    assert_eq!(
        requests[1].input,
        [json!({"type": "function_call_output", "call_id": "call_1", "output": "{\"x\":1}"})]
    );
    assert_eq!(requests[0].tools[0]["name"], "echo");
}

#[tokio::test]
async fn a_call_without_auto_execute_ends_the_turn_with_it_pending_for_the_client() {
    let provider = Scripted::new([call_response("resp_1", "call_1", "echo")]);
    let state = state(provider.clone()).await;
    echo_tool(&state, "echo").await;
    let end = super::chat(
        &state,
        &Caller::system(),
        message("Go", false),
        state.config.turn_lease,
        None,
        &json!({}),
        |_| unreachable!(),
    )
    .await
    .unwrap();
    let super::ChatOutcome::Ran(end) = end else { panic!("a first request runs") };
    assert_eq!(json!(end.done)["status"], "requires_tool_output");
    assert_eq!(end.done.pending_tool_calls, ["call_1"]);
    assert_eq!(provider.requests().len(), 1);
}

#[tokio::test]
async fn a_broken_upstream_stream_ends_with_its_error_and_a_failed_message_stored() {
    let mut script = text_response("resp_1", &["Par"]);
    script.truncate(2);
    script.push(Err(UpstreamError::new(crate::domain::ErrorCode::UpstreamDisconnected, "the connection broke")));
    let state = state(Scripted::new([script])).await;
    let stream =
        super::stream(&state, &Caller::system(), message("Hi", false), state.config.turn_lease, None, &json!({}))
            .await
            .unwrap();
    let session = stream.session_id;
    let frames = drain(stream).await;
    assert_eq!(names(&frames)[frames.len() - 2..], ["error", "done"]);
    assert_eq!(frames[frames.len() - 2].1, json!({"code": "upstream_disconnected", "message": "the connection broke"}));
    assert_eq!(frames.last().unwrap().1["status"], "failed");
    let stored = state.store.query_json("SELECT role, content, status FROM agent_messages ORDER BY id").await.unwrap();
    assert_eq!(
        stored,
        [
            json!({"role": "user", "content": "Hi", "status": null}),
            json!({"role": "assistant", "content": "Par", "status": "failed"})
        ]
    );
    assert_eq!(state.store.running_turn(session).await.unwrap(), None);
}

/// A turn row holding session 1's lease, as `begin_turn` leaves it, for the recorder to end.
async fn leased_turn(state: &AppState) -> (SessionId, TurnId) {
    let lease = super::start::new_lease(state, state.config.turn_lease);
    let target = crate::store::TurnSession::New { agent: AgentId(1), owner: None };
    let started = state.store.begin_turn(target, &lease, "Hi", None, None).await.unwrap();
    (started.created.unwrap().id, lease.turn_id)
}

#[tokio::test]
async fn the_recorder_writes_frames_in_order_and_done_with_the_release_of_the_session() {
    let state = state(Scripted::new([])).await;
    let (session, turn_id) = leased_turn(&state).await;
    let (tx, mut live) = tokio::sync::mpsc::channel::<Arc<Frame>>(16);
    let (sink, inbox) = Sink::new(turn_id.clone(), Some(tx), state.metrics.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    let recorder =
        tokio::spawn(record(state.store.clone(), state.metrics.clone(), session, turn_id.clone(), inbox, cancel));
    for delta in ["a", "b", "c"] {
        sink.send(TurnEvent::TextDelta(super::TextDelta { delta: delta.into() })).await;
    }
    assert_eq!(state.store.running_turn(session).await.unwrap(), Some(turn_id.clone()));
    let done = super::Done {
        session_id: session,
        response_id: None,
        status: crate::domain::ResponseStatus::Completed,
        pending_tool_calls: vec![],
        approval_requests: vec![],
        dropped_turns: 0,
    };
    sink.end(done, None, None).await;
    // `end` returns once the recorder has written `done` and freed the session.
    assert_eq!(state.store.running_turn(session).await.unwrap(), None);
    let stored = state.store.frames_after(session, 0, Some(&turn_id), 100).await.unwrap().frames;
    let seen: Vec<(i64, &str)> = stored.iter().map(|f| (f.seq, f.event.as_str())).collect();
    assert_eq!(seen, [(1, "text_delta"), (2, "text_delta"), (3, "text_delta"), (4, "done")]);
    let mut live_ids = Vec::new();
    while let Ok(frame) = live.try_recv() {
        live_ids.push(frame.id.clone());
    }
    assert_eq!(live_ids, (1..=4).map(|seq| format!("{turn_id}:{seq}")).collect::<Vec<_>>());
    recorder.await.unwrap();
}

#[tokio::test]
async fn a_turn_that_goes_away_without_done_still_has_its_frames_recorded_and_its_session_freed() {
    let state = state(Scripted::new([])).await;
    let (session, turn_id) = leased_turn(&state).await;
    let (sink, inbox) = Sink::new(turn_id.clone(), None, state.metrics.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    let recorder =
        tokio::spawn(record(state.store.clone(), state.metrics.clone(), session, turn_id.clone(), inbox, cancel));
    sink.send(TurnEvent::TextDelta(super::TextDelta { delta: "partial".into() })).await;
    drop(sink);
    tokio::time::timeout(Duration::from_secs(5), recorder).await.expect("the recorder stops").unwrap();
    assert_eq!(state.store.running_turn(session).await.unwrap(), None);
    let stored = state.store.frames_after(session, 0, Some(&turn_id), 100).await.unwrap().frames;
    assert_eq!(stored.iter().map(|f| f.event.as_str()).collect::<Vec<_>>(), ["text_delta"]);
}

#[tokio::test]
async fn the_recorder_stops_the_turn_when_the_store_says_someone_asked_it_to() {
    let state = state(Scripted::new([])).await;
    let (session, turn_id) = leased_turn(&state).await;
    let (sink, inbox) = Sink::new(turn_id.clone(), None, state.metrics.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    tokio::spawn(record(state.store.clone(), state.metrics.clone(), session, turn_id.clone(), inbox, cancel.clone()));
    // Another process's cancel request: only the flag in the store.
    assert_eq!(state.store.request_cancel(&Caller::system(), session).await.unwrap(), turn_id);
    assert!(!cancel.is_cancelled());
    // Quiet upstream: the poll finds it within CANCEL_POLL.
    tokio::time::timeout(super::CANCEL_POLL * 2, cancel.cancelled()).await.expect("cancelled by the poll");
    drop(sink);
}

/// Always the same instant.
struct Fixed(time::OffsetDateTime);

impl crate::clock::Clock for Fixed {
    fn now(&self) -> time::OffsetDateTime {
        self.0
    }
}

#[tokio::test]
async fn a_turn_stamps_its_rows_and_lease_from_the_clock_it_was_given() {
    let at = time::macros::datetime!(2026-11-25 20:00:00 UTC);
    let state = state_at(Scripted::new([text_response("resp_1", &["Hi"])]), Arc::new(Fixed(at))).await;
    let (_, turn_id) = leased_turn(&state).await;
    let lease = state.store.query_json("SELECT turn_id, turn_expires_at FROM agent_sessions").await.unwrap();
    assert_eq!(lease, [json!({"turn_id": turn_id, "turn_expires_at": "2026-11-25T20:15:00.000000Z"})]);
    let stream =
        super::stream(&state, &Caller::system(), message("Hello", false), state.config.turn_lease, None, &json!({}))
            .await
            .unwrap();
    drain(stream).await;
    let stamped = state.store.query_json("SELECT DISTINCT created_at FROM agent_messages").await.unwrap();
    assert_eq!(stamped, [json!({"created_at": "2026-11-25T20:00:00.000000Z"})]);
}

/// The warnings a state's captured metric lines counted, by name.
fn warnings(state: &AppState) -> Vec<String> {
    let lines = state.metrics.lines();
    lines.iter().filter(|l| l.get("Warnings").is_some()).map(|l| l["Warning"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_tool_result_the_store_cannot_keep_still_goes_upstream_and_is_logged_and_counted() {
    let provider = Scripted::new([call_response("resp_1", "call_1", "echo"), text_response("resp_2", &["Done"])]);
    let state = state(provider.clone()).await.with_metrics(crate::telemetry::Metrics::capture("test"));
    echo_tool(&state, "echo").await;
    state
        .store
        .query_json(
            "CREATE TRIGGER refuse_outputs BEFORE UPDATE OF output ON agent_tool_calls
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .await
        .unwrap();
    let frames = auto_execute_turn(&state).await;
    assert_eq!(frames.last().unwrap().1["status"], "completed");
    // The next response answers the call with the output the executor gave, not a stand-in.
    assert_eq!(
        provider.requests()[1].input,
        [json!({"type": "function_call_output", "call_id": "call_1", "output": "{\"x\":1}"})]
    );
    assert_eq!(warnings(&state), ["tool_result_not_stored"]);
}

#[tokio::test]
async fn a_response_asking_for_tools_without_an_id_fails_malformed_and_runs_nothing() {
    let item = json!({"type": "function_call", "call_id": "call_1", "name": "echo", "arguments": "{}"});
    let script = vec![
        Ok(json!({"type": "response.created", "response": {}})),
        Ok(json!({"type": "response.output_item.done", "item": item})),
        Ok(json!({"type": "response.completed", "response": {"output": [item]}})),
    ];
    let provider = Scripted::new([script]);
    let state = state(provider.clone()).await;
    echo_tool(&state, "echo").await;
    let frames = auto_execute_turn(&state).await;
    assert_eq!(names(&frames)[frames.len() - 2..], ["error", "done"]);
    assert_eq!(
        frames[frames.len() - 2].1,
        json!({"code": "upstream_malformed", "message": super::next::NO_RESPONSE_ID})
    );
    assert_eq!(
        frames.last().unwrap().1,
        json!({"session_id": 1, "response_id": null, "status": "failed", "pending_tool_calls": []})
    );
    assert!(!names(&frames).contains(&"tool_result"));
    assert_eq!(provider.requests().len(), 1, "no continuation with an empty previous_response_id");
}

#[tokio::test]
async fn a_failed_poll_for_a_cancel_request_is_logged_and_counted_and_the_turn_goes_on() {
    let state = state(Scripted::new([])).await.with_metrics(crate::telemetry::Metrics::capture("test"));
    let (session, turn_id) = leased_turn(&state).await;
    let (sink, inbox) = Sink::new(turn_id.clone(), None, state.metrics.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    let recorder = tokio::spawn(record(
        state.store.clone(),
        state.metrics.clone(),
        session,
        turn_id.clone(),
        inbox,
        cancel.clone(),
    ));
    state.store.query_json("ALTER TABLE agent_turns RENAME COLUMN cancel_requested TO cancel_flag").await.unwrap();
    tokio::time::sleep(super::CANCEL_POLL + Duration::from_millis(300)).await;
    assert!(!cancel.is_cancelled());
    assert!(!recorder.is_finished(), "the recorder still runs");
    assert_eq!(warnings(&state)[0], "cancel_poll_failed");
    drop(sink);
    tokio::time::timeout(Duration::from_secs(5), recorder).await.expect("the recorder stops").unwrap();
}

#[tokio::test]
async fn a_keyed_chat_whose_answer_cannot_be_kept_ends_failed_with_error_and_done_recorded() {
    let state = state(Scripted::new([text_response("resp_1", &["Hi"])])).await;
    let user = state.store.create_user("keyed", None, true).await.unwrap();
    let caller = Caller { id: user.id, username: user.username, is_staff: true, token_id: None };
    let refuse = |_: &super::TurnEnd| Err(crate::error::Error::internal("a test's reply", std::io::Error::other("no")));
    let outcome =
        super::chat(&state, &caller, message("Hi", false), state.config.turn_lease, Some("k1"), &json!({}), refuse)
            .await
            .unwrap();
    let super::ChatOutcome::Ran(end) = outcome else { panic!("a first request runs") };
    let error = end.error.clone().unwrap();
    assert_eq!(
        (error.code, error.message.as_str()),
        (crate::domain::ErrorCode::StorageError, "The answer could not be stored.")
    );
    assert_eq!(json!(end.done)["status"], "failed");
    let stored = state.store.frames_after(end.done.session_id, 0, None, 100).await.unwrap().frames;
    let events: Vec<&str> = stored.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(events[events.len() - 2..], ["error", "done"]);
    assert_eq!(state.store.running_turn(end.done.session_id).await.unwrap(), None);
}
