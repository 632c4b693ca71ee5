//! A fake chat-completions server (`POST /v1/chat/completions`) on 127.0.0.1, for a third-party proxy
//! (LiteLLM) to route a model to: replies are scripted per model, so tests sharing one proxy do not take each
//! other's, and every request is kept, per model. Streams (`stream: true`) as OpenAI's chunks, ending with
//! `data: [DONE]`; otherwise one JSON completion.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One scripted completion.
#[derive(Debug, Clone)]
pub enum ChatReply {
    Text(String),
    /// Tool calls (parallel when more than one): `(id, name, arguments)`.
    Calls(Vec<(String, String, String)>),
}

#[derive(Default)]
struct Inner {
    replies: HashMap<String, VecDeque<ChatReply>>,
    requests: HashMap<String, Vec<Value>>,
}

#[derive(Clone)]
pub struct FakeChat {
    /// `http://127.0.0.1:<port>/v1`
    pub base_url: String,
    inner: Arc<Mutex<Inner>>,
}

impl FakeChat {
    pub async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().route("/v1/chat/completions", post(completions)).with_state(inner.clone());
        let addr = crate::serve_forever(app, "the fake chat completions").await;
        Self { base_url: format!("http://{addr}/v1"), inner }
    }

    pub fn push(&self, model: &str, reply: ChatReply) {
        self.inner.lock().unwrap().replies.entry(model.to_owned()).or_default().push_back(reply);
    }

    /// The requests made for `model`, oldest first.
    pub fn requests(&self, model: &str) -> Vec<Value> {
        self.inner.lock().unwrap().requests.get(model).cloned().unwrap_or_default()
    }
}

async fn completions(State(inner): State<Arc<Mutex<Inner>>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let reply = {
        let mut inner = inner.lock().unwrap();
        inner.requests.entry(model.clone()).or_default().push(body.clone());
        inner.replies.get_mut(&model).and_then(VecDeque::pop_front)
    };
    let Some(reply) = reply else {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("fake chat: no scripted reply left for {model}"))
            .into_response();
    };
    let (delta, message, finish) = match &reply {
        ChatReply::Text(text) => {
            (json!({"role": "assistant", "content": text}), json!({"role": "assistant", "content": text}), "stop")
        }
        ChatReply::Calls(calls) => {
            let list = |indexed: bool| -> Vec<Value> {
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, (id, name, arguments))| {
                        let mut call = json!({"id": id, "type": "function",
                                              "function": {"name": name, "arguments": arguments}});
                        if indexed {
                            call["index"] = json!(i);
                        }
                        call
                    })
                    .collect()
            };
            (
                json!({"role": "assistant", "content": null, "tool_calls": list(true)}),
                json!({"role": "assistant", "content": null, "tool_calls": list(false)}),
                "tool_calls",
            )
        }
    };
    let usage = json!({"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28});
    let head = |object: &str| json!({"id": "chatcmpl-fake", "object": object, "created": 1764000000, "model": model});
    if body["stream"].as_bool() != Some(true) {
        let mut completion = head("chat.completion");
        completion["choices"] = json!([{"index": 0, "message": message, "finish_reason": finish}]);
        completion["usage"] = usage;
        return axum::Json(completion).into_response();
    }
    let mut chunks = Vec::new();
    let mut first = head("chat.completion.chunk");
    first["choices"] = json!([{"index": 0, "delta": delta, "finish_reason": null}]);
    chunks.push(first);
    let mut last = head("chat.completion.chunk");
    last["choices"] = json!([{"index": 0, "delta": {}, "finish_reason": finish}]);
    last["usage"] = usage;
    chunks.push(last);
    let mut text: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    text.push_str("data: [DONE]\n\n");
    ([("content-type", "text/event-stream")], text).into_response()
}
