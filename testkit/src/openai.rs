//! A fake OpenAI Responses server on 127.0.0.1: replies come from a per-test script, frames are shaped
//! exactly like the recorded transcripts in `tests/fixtures/openai/`, and every request it receives is kept.
//! The bench's paced upstream (`bench/src/upstream.rs`) streams frames built by the same functions.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One piece of a scripted stream.
#[derive(Debug, Clone)]
pub enum Step {
    /// A whole SSE frame, as sent on the wire.
    Frame(String),
    Pause(Duration),
    /// Breaks the connection off mid-body.
    Cut,
    /// Goes silent, never ending the body.
    Stall,
    /// Waits until the test opens the gate: proves the client saw what came before while the upstream
    /// had not finished.
    Gate(Arc<tokio::sync::Notify>),
}

#[derive(Debug, Clone)]
pub enum Reply {
    Stream(Vec<Step>),
    Status { status: u16, body: String, retry_after: Option<&'static str> },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub body: Value,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct Inner {
    replies: VecDeque<Reply>,
    requests: Vec<Recorded>,
    /// Keeps no conversation state, as Ollama, Groq or OpenRouter: 400 to any `previous_response_id` or
    /// `store: true` (without using up a scripted reply).
    stateless: bool,
}

#[derive(Clone)]
pub struct FakeOpenAi {
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeOpenAi {
    pub async fn start() -> Self {
        Self::serve(Inner::default()).await
    }

    /// A server that keeps no conversation state: it refuses `previous_response_id` and `store: true`.
    pub async fn start_stateless() -> Self {
        Self::serve(Inner { stateless: true, ..Inner::default() }).await
    }

    async fn serve(inner: Inner) -> Self {
        let inner = Arc::new(Mutex::new(inner));
        let app = axum::Router::new().route("/v1/responses", post(responses)).with_state(inner.clone());
        let addr = crate::serve_forever(app, "the fake OpenAI").await;
        Self { base_url: format!("http://{addr}/v1"), inner }
    }

    /// The settings that point Lambent at this fake.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OPENAI_API_KEY", "sk-test-fake-key".to_owned()),
            ("OPENAI_BASE_URL", self.base_url.clone()),
            ("OPENAI_READ_TIMEOUT", "2".to_owned()),
        ]
    }

    pub fn push(&self, reply: Reply) {
        self.inner.lock().unwrap().replies.push_back(reply);
    }

    pub fn push_stream(&self, steps: Vec<Step>) {
        self.push(Reply::Stream(steps));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn request(&self, i: usize) -> Value {
        self.requests().get(i).unwrap_or_else(|| panic!("no upstream request #{i}")).body.clone()
    }
}

async fn responses(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut inner = inner.lock().unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let refused = inner.stateless
            && (!body["previous_response_id"].is_null() || body["store"].as_bool().unwrap_or(true))
            && !body.is_null();
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        inner.requests.push(Recorded { body, authorization });
        if refused {
            let error = json!({"error": {"message": "This server keeps no responses: previous_response_id and store are not supported.",
                                         "type": "invalid_request_error", "param": "previous_response_id", "code": null}});
            Some(Reply::Status { status: 400, body: error.to_string(), retry_after: None })
        } else {
            inner.replies.pop_front()
        }
    };
    match reply {
        None => (StatusCode::INTERNAL_SERVER_ERROR, "fake: no scripted reply left").into_response(),
        Some(Reply::Status { status, body, retry_after }) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            response.headers_mut().insert("content-type", "application/json".parse().unwrap());
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.parse().unwrap());
            }
            response
        }
        Some(Reply::Stream(steps)) => {
            let body = futures::stream::unfold(steps.into_iter(), |mut steps| async move {
                loop {
                    match steps.next()? {
                        Step::Frame(frame) => return Some((Ok::<_, std::io::Error>(Bytes::from(frame)), steps)),
                        Step::Pause(d) => tokio::time::sleep(d).await,
                        Step::Cut => return Some((Err(std::io::Error::other("fake: connection cut")), steps)),
                        Step::Stall => futures::future::pending::<()>().await,
                        Step::Gate(gate) => gate.notified().await,
                    }
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream; charset=utf-8")
                .body(Body::from_stream(body))
                .unwrap()
        }
    }
}

// ---- Scripts: events shaped like the recorded transcripts -------------------------------------------------

/// A full response object as `response.created` / `response.completed` carry it.
pub fn response_object(id: &str, status: &str, output: Value, usage: Value) -> Value {
    json!({
        "id": id, "object": "response", "created_at": 1764000000, "status": status, "background": false,
        "error": null, "incomplete_details": null, "instructions": null, "max_output_tokens": null,
        "max_tool_calls": null, "model": "gpt-4.1-2025-04-14", "output": output, "parallel_tool_calls": true,
        "previous_response_id": null, "prompt_cache_key": null, "reasoning": {"effort": null, "summary": null},
        "safety_identifier": null, "service_tier": "auto", "store": true, "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"}, "tool_choice": "auto", "tools": [],
        "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": null, "metadata": {}
    })
}

pub fn usage(input: u64, output: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": output,
           "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output})
}

fn opening(id: &str) -> Vec<Value> {
    let response = response_object(id, "in_progress", json!([]), Value::Null);
    vec![
        json!({"type": "response.created", "response": response}),
        json!({"type": "response.in_progress", "response": response}),
    ]
}

/// The events of a message item streaming `deltas`, at `output_index`.
fn message_events(id: &str, index: usize, deltas: &[&str]) -> (Vec<Value>, Value) {
    let item_id = format!("msg_{id}_{index}");
    let text: String = deltas.concat();
    let part = json!({"type": "output_text", "annotations": [], "logprobs": [], "text": text});
    let item = json!({"id": item_id, "type": "message", "status": "completed", "content": [part], "role": "assistant"});
    let mut events = vec![
        json!({"type": "response.output_item.added", "output_index": index,
               "item": {"id": item_id, "type": "message", "status": "in_progress", "content": [], "role": "assistant"}}),
        json!({"type": "response.content_part.added", "item_id": item_id, "output_index": index, "content_index": 0,
               "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
    ];
    for delta in deltas {
        events.push(json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": index,
                           "content_index": 0, "delta": delta, "logprobs": [], "obfuscation": "x"}));
    }
    events.push(json!({"type": "response.output_text.done", "item_id": item_id, "output_index": index,
                       "content_index": 0, "text": text, "logprobs": []}));
    events.push(json!({"type": "response.content_part.done", "item_id": item_id, "output_index": index,
                       "content_index": 0, "part": part}));
    events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
    (events, item)
}

/// A plain text answer.
pub fn text_events(id: &str, deltas: &[&str]) -> Vec<Value> {
    let mut events = opening(id);
    let (message, item) = message_events(id, 0, deltas);
    events.extend(message);
    events.push(json!({"type": "response.completed",
                       "response": response_object(id, "completed", json!([item]), usage(12, 9))}));
    events
}

/// One or more (parallel) function calls: `(call_id, name, arguments)`.
pub fn function_call_events(id: &str, calls: &[(&str, &str, &str)]) -> Vec<Value> {
    let mut events = opening(id);
    let mut output = Vec::new();
    for (index, (call_id, name, arguments)) in calls.iter().enumerate() {
        let item_id = format!("fc_{id}_{index}");
        events.push(json!({"type": "response.output_item.added", "output_index": index,
            "item": {"id": item_id, "type": "function_call", "status": "in_progress", "arguments": "",
                     "call_id": call_id, "name": name}}));
        events.push(json!({"type": "response.function_call_arguments.delta", "item_id": item_id,
                           "output_index": index, "delta": arguments, "obfuscation": "Q"}));
        events.push(json!({"type": "response.function_call_arguments.done", "item_id": item_id,
                           "output_index": index, "arguments": arguments}));
        let item = json!({"id": item_id, "type": "function_call", "status": "completed", "arguments": arguments,
                          "call_id": call_id, "name": name});
        events.push(json!({"type": "response.output_item.done", "output_index": index, "item": item}));
        output.push(item);
    }
    events.push(json!({"type": "response.completed",
                       "response": response_object(id, "completed", Value::Array(output), usage(40, 20))}));
    events
}

/// Text deltas, then the stream ends with `last` (an error / failed / incomplete event) instead of completing.
pub fn failing_events(id: &str, deltas: &[&str], last: Value) -> Vec<Value> {
    let mut events = opening(id);
    let (message, _) = message_events(id, 0, deltas);
    events.extend(message.into_iter().take(2 + deltas.len()));
    events.push(last);
    events
}

/// Numbers events and frames them as the wire does: `event: <type>` + `data: <json>` + blank line.
pub fn frames(events: Vec<Value>) -> Vec<Step> {
    events
        .into_iter()
        .enumerate()
        .map(|(seq, mut event)| {
            event["sequence_number"] = json!(seq);
            let kind = event["type"].as_str().unwrap_or("message").to_owned();
            Step::Frame(format!("event: {kind}\ndata: {event}\n\n"))
        })
        .collect()
}

/// A recorded transcript's text, frame by frame, byte for byte.
pub fn transcript_frames(text: &str) -> Vec<Step> {
    text.split_inclusive("\n\n").filter(|f| !f.trim().is_empty()).map(|f| Step::Frame(f.to_owned())).collect()
}
