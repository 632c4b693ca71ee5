//! A session's conversation as the store keeps it, read back to rebuild a request's input when Lambent keeps
//! the conversation's state (a provider in `local` state mode, or a session that owes its provider the whole
//! history: a fork).

use serde_json::Value;

use super::{Message, ToolCallRecord};

/// A message, with its response's `output` items as the provider sent them (assistant messages stored since
/// migration 0010; older ones have only their text).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub message: Message,
    pub output: Option<Value>,
}

/// What a rebuild reads: the session's messages and its tool-call ledger, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredHistory {
    pub messages: Vec<StoredMessage>,
    pub calls: Vec<ToolCallRecord>,
}
