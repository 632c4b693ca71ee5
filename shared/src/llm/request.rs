//! Building the `POST /v1/responses` body: the request itself, tool specs as the Responses API takes them,
//! and tool outputs as input items.

use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::{Tool, ToolCallRecord, ToolType};

/// What an expired call answers upstream, so the conversation can go on without it.
pub const EXPIRED_OUTPUT: &str = "{\"error\": \"The user sent a new message instead of this tool's output.\"}";

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
    /// `["reasoning.encrypted_content"]` when Lambent keeps the conversation: reasoning items come back with
    /// what replaying them under `store: false` needs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<&'static str>,
}

/// What a request asks to get back when Lambent keeps the conversation's state.
pub const STATELESS_INCLUDE: &str = "reasoning.encrypted_content";

/// The user's message as an input item.
pub fn user_message(content: &str) -> Value {
    json!({"type": "message", "role": "user", "content": content})
}

/// One tool output as an input item: `function_call_output` or `custom_tool_call_output`.
pub fn output_item(kind: ToolType, call_id: &str, output: &str) -> Value {
    let kind = match kind {
        ToolType::Function => "function_call_output",
        ToolType::Custom => "custom_tool_call_output",
    };
    json!({"type": kind, "call_id": call_id, "output": output})
}

/// The outputs of a response's calls, in call order; a call that never got one answers [`EXPIRED_OUTPUT`].
pub fn outputs_of(calls: &[ToolCallRecord]) -> Vec<Value> {
    calls.iter().map(|c| output_item(c.kind, &c.call_id, c.output.as_deref().unwrap_or(EXPIRED_OUTPUT))).collect()
}

/// A tool as the Responses API's `tools` list takes it.
pub fn upstream_tool(tool: &Tool) -> Value {
    match tool.tool_type {
        ToolType::Function => json!({
            "type": "function", "name": tool.name, "description": tool.description, "parameters": tool.parameters,
        }),
        ToolType::Custom => {
            let mut spec = json!({"type": "custom", "name": tool.name, "description": tool.description});
            if let Some(format) = &tool.format {
                spec["format"] = format.clone();
            }
            spec
        }
    }
}
