//! Forking a session: a new session, owned by the caller, holding copies of another's messages and tool calls
//! up to a point, from which the conversation goes on (on the same agent or another).

use super::ids::{AgentId, MessageId};
use super::wire::{KeyField, body};

body! {
    /// `POST /api/sessions/{id}/fork/`'s body.
    #[schema(name = "ForkWrite", example = {"message": 12, "agent": 3})]
    pub struct ForkRequest {
        /// The last message the fork keeps (a message of the session); default: the session's last message.
        message: MessageId = MessageId::PK,
        /// The agent the fork continues with; default: the session's. Another agent's first turn sends the copied
        /// history whole (a response id means nothing to another provider).
        agent: AgentId = AgentId::PK,
    }
}
