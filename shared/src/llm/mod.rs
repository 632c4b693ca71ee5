//! The model seam: what Lambent asks of a model provider, and the OpenAI Responses implementation.
//!
//! Upstream events travel as raw JSON (`serde_json::Value`): the relay passes every event through unchanged,
//! including types that did not exist when this was written, and only reads the few fields it needs
//! ([`events`]).

pub mod events;
mod openai;
mod retry;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;

pub use openai::OpenAiProvider;

/// One `POST /v1/responses` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRequest {
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    pub input: Vec<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    pub store: bool,
    pub stream: bool,
}

/// Why an upstream call produced no (more) events. `code` is one of the documented error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub code: &'static str,
    pub message: String,
}

impl UpstreamError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The raw event stream of one response, each event's JSON exactly as received; an `Err` item ends it.
pub type EventStream = BoxStream<'static, Result<Box<RawValue>, UpstreamError>>;

/// A model provider: opens one streamed response. Implemented for OpenAI; any Responses-compatible server
/// works through `OPENAI_BASE_URL`.
pub trait ModelProvider: Send + Sync + std::fmt::Debug {
    fn stream(&self, request: ModelRequest) -> BoxFuture<'_, Result<EventStream, UpstreamError>>;

    /// How long the stream may stay silent before the turn gives up on it.
    fn read_timeout(&self) -> Duration;
}
