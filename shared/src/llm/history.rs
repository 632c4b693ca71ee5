//! A conversation rebuilt from Lambent's store as Responses input items, for a provider that keeps no state:
//! user messages, each completed response's output items exactly as the provider sent them (messages,
//! function and custom tool calls, reasoning items with their `encrypted_content`), and the outputs of its
//! calls. A response stored before its items were kept stands in as its text and its ledger calls.
//!
//! The history is cut in whole turns (a user message and everything up to the next one), so a call never
//! travels without its output. Over the agent's input budget, the oldest turns are left out first.
//!
//! # Token estimates
//! What the provider will count is unknown before the request, so it is estimated: a response's items are its
//! stored `usage.output_tokens` (what the provider counted when it produced them), everything else is its
//! JSON length / 4 (the usual characters-per-token rule for English text; code and JSON run nearer 3, so
//! the estimate errs on the side of sending a little more).

use serde_json::{Value, json};

use super::request::{EXPIRED_OUTPUT, output_item, user_message};
use crate::domain::{ResponseStatus, Role, StoredHistory, ToolCallRecord, ToolType};

/// A history ready to send, and how many of the oldest turns the budget left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rebuilt {
    pub items: Vec<Value>,
    pub dropped_turns: u32,
}

/// Characters per token in the estimate of anything without a stored usage.
const CHARS_PER_TOKEN: usize = 4;

/// The estimated tokens of input items.
pub fn estimate(items: &[Value]) -> i64 {
    let chars: usize = items.iter().map(|i| i.to_string().len()).sum();
    i64::try_from(chars / CHARS_PER_TOKEN).unwrap_or(i64::MAX)
}

/// One turn of the history, with its estimated size.
#[derive(Default)]
struct Group {
    items: Vec<Value>,
    tokens: i64,
}

/// Rebuilds `history` as input items. The calls of `answered_by_input` (the response whose outputs the turn's
/// own input carries) are left without outputs here. With a `budget`, the oldest whole turns are dropped
/// until the history and `input` fit; the turn holding `answered_by_input`'s calls is never dropped.
pub fn rebuild(
    history: &StoredHistory,
    answered_by_input: Option<&str>,
    budget: Option<i64>,
    input: &[Value],
) -> Rebuilt {
    let mut groups: Vec<Group> = Vec::new();
    for stored in &history.messages {
        let message = &stored.message;
        match message.role {
            Role::User => {
                let item = user_message(&message.content);
                groups.push(Group { tokens: estimate(std::slice::from_ref(&item)), items: vec![item] });
            }
            Role::Assistant => {
                let completed =
                    matches!(message.status, Some(ResponseStatus::Completed | ResponseStatus::RequiresToolOutput));
                if !completed {
                    continue;
                }
                if groups.is_empty() {
                    groups.push(Group::default());
                }
                let group = groups.last_mut().expect("a group was pushed");
                let response = message.response_id.as_deref().unwrap_or_default();
                let calls: Vec<&ToolCallRecord> =
                    history.calls.iter().filter(|c| !response.is_empty() && c.response_id == response).collect();
                let items = response_items(stored.output.as_ref(), &message.content, &calls);
                let counted = message.usage.as_ref().and_then(|u| u.get("output_tokens")).and_then(Value::as_i64);
                group.tokens += counted.unwrap_or_else(|| estimate(&items));
                group.items.extend(items);
                if Some(response) != answered_by_input {
                    let outputs: Vec<Value> = calls
                        .iter()
                        .map(|c| output_item(c.kind, &c.call_id, c.output.as_deref().unwrap_or(EXPIRED_OUTPUT)))
                        .collect();
                    group.tokens += estimate(&outputs);
                    group.items.extend(outputs);
                }
            }
        }
    }
    let mut dropped_turns = 0;
    if let Some(budget) = budget {
        let mut total: i64 = groups.iter().map(|g| g.tokens).sum::<i64>() + estimate(input);
        // The last turn holds the calls the input answers: it goes with them or not at all.
        let keep = usize::from(answered_by_input.is_some());
        while total > budget && groups.len() > keep {
            total -= groups.remove(0).tokens;
            dropped_turns += 1;
        }
    }
    Rebuilt { items: groups.into_iter().flat_map(|g| g.items).collect(), dropped_turns }
}

/// A response's items: as stored, or for a response stored before its items were kept, its text and calls.
fn response_items(output: Option<&Value>, text: &str, calls: &[&ToolCallRecord]) -> Vec<Value> {
    if let Some(items) = output.and_then(Value::as_array) {
        return items.clone();
    }
    let mut items = Vec::new();
    if !text.is_empty() {
        items.push(json!({"type": "message", "role": "assistant", "content": text}));
    }
    for call in calls {
        items.push(match call.kind {
            ToolType::Function => json!({"type": "function_call", "call_id": call.call_id, "name": call.name,
                                          "arguments": call.arguments}),
            ToolType::Custom => json!({"type": "custom_tool_call", "call_id": call.call_id, "name": call.name,
                                        "input": call.arguments}),
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Message, MessageId, SessionId, StoredMessage, ToolCallStatus};

    fn message(id: i64, role: Role, content: &str, response: Option<&str>, output: Option<Value>) -> StoredMessage {
        let status = (role == Role::Assistant).then_some(ResponseStatus::Completed);
        StoredMessage {
            message: Message {
                id: MessageId(id),
                session: SessionId(1),
                role,
                content: content.into(),
                status,
                response_id: response.map(str::to_owned),
                usage: None,
                created_at: String::new(),
            },
            output,
        }
    }

    fn call(response: &str, call_id: &str, output: Option<&str>) -> ToolCallRecord {
        ToolCallRecord {
            id: 1,
            session: SessionId(1),
            response_id: response.into(),
            call_id: call_id.into(),
            name: "lookup".into(),
            kind: ToolType::Function,
            arguments: "{}".into(),
            status: if output.is_some() { ToolCallStatus::Submitted } else { ToolCallStatus::Expired },
            output: output.map(str::to_owned),
            approval: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    fn history() -> StoredHistory {
        let reasoning = json!({"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"});
        let fc = json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "lookup", "arguments": "{}"});
        StoredHistory {
            messages: vec![
                message(1, Role::User, "first", None, None),
                message(2, Role::Assistant, "", Some("r1"), Some(json!([reasoning, fc]))),
                message(3, Role::Assistant, "found it", Some("r2"), None),
                message(4, Role::User, "second", None, None),
                message(5, Role::Assistant, "ok", Some("r3"), None),
            ],
            calls: vec![call("r1", "c1", Some("42"))],
        }
    }

    #[test]
    fn items_are_rebuilt_in_order_with_stored_output_items_whole_and_calls_with_their_outputs() {
        let rebuilt = rebuild(&history(), None, None, &[]);
        let types: Vec<&str> = rebuilt.items.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["message", "reasoning", "function_call", "function_call_output", "message", "message", "message"]
        );
        assert_eq!(rebuilt.items[1]["encrypted_content"], "gAAA", "reasoning travels with its encrypted content");
        assert_eq!(rebuilt.items[3], json!({"type": "function_call_output", "call_id": "c1", "output": "42"}));
        assert_eq!(rebuilt.items[4], json!({"type": "message", "role": "assistant", "content": "found it"}));
        assert_eq!(rebuilt.dropped_turns, 0);
    }

    #[test]
    fn the_calls_the_input_answers_get_no_output_here() {
        let rebuilt = rebuild(&history(), Some("r1"), None, &[]);
        assert!(rebuilt.items.iter().all(|i| i["type"] != "function_call_output"));
    }

    #[test]
    fn over_budget_the_oldest_whole_turns_go_first() {
        let all = rebuild(&history(), None, None, &[]);
        let second_turn = estimate(&all.items[5..]);
        let rebuilt = rebuild(&history(), None, Some(second_turn + 1), &[]);
        assert_eq!(rebuilt.dropped_turns, 1);
        assert_eq!(rebuilt.items[0], user_message("second"), "{:?}", rebuilt.items);
        let none = rebuild(&history(), None, Some(1), &[]);
        assert_eq!((none.dropped_turns, none.items.len()), (2, 0));
        let kept = rebuild(&history(), Some("r1"), Some(1), &[]);
        assert_eq!(kept.dropped_turns, 1, "the turn whose calls the input answers stays");
    }
}
