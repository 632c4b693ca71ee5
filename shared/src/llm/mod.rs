//! The model seam: what Lambent asks of a model provider, and the OpenAI Responses implementation.
//!
//! Upstream events travel as raw JSON (`serde_json::Value`): the relay passes every event through unchanged,
//! including types that did not exist when this was written, and only reads the few fields it needs
//! ([`events`]).
//!
//! # Layout
//! - this file: the [`ModelProvider`] trait (the seam tests script), [`UpstreamError`], [`EventStream`].
//! - `request`: the `POST /v1/responses` body — [`ModelRequest`], tool specs, tool outputs as input items.
//! - [`events`]: reading a response's events — text, tool calls, and how it ended.
//! - [`history`]: a conversation rebuilt from the store as input items, for a provider that keeps no state.
//! - `openai`: the OpenAI provider over async-openai; `retry`: its retry policy for a refused request.

pub mod events;
pub mod history;
mod openai;
mod request;
mod retry;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::value::RawValue;

use crate::domain::ErrorCode;

pub use openai::OpenAiProvider;
pub use request::{
    EXPIRED_OUTPUT, ModelRequest, STATELESS_INCLUDE, output_item, outputs_of, upstream_tool, user_message,
};

/// Why an upstream call produced no (more) events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub code: ErrorCode,
    pub message: String,
}

impl UpstreamError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The raw event stream of one response, each event's JSON exactly as received; an `Err` item ends it.
pub type EventStream = BoxStream<'static, Result<Box<RawValue>, UpstreamError>>;

/// A model provider: opens one streamed response. Implemented for OpenAI's Responses API; every configured
/// provider (`config::ProviderConfig`) is one, at its own base URL with its own key.
pub trait ModelProvider: Send + Sync + std::fmt::Debug {
    fn stream(&self, request: ModelRequest) -> BoxFuture<'_, Result<EventStream, UpstreamError>>;

    /// How long the stream may stay silent before the turn gives up on it.
    fn read_timeout(&self) -> Duration;
}
