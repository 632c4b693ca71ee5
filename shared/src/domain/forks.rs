//! Forking a session: a new session, owned by the caller, holding copies of another's messages and tool calls
//! up to a point, from which the conversation goes on (on the same agent or another).

use serde_json::Value;
use utoipa::ToSchema;

use super::input::{Input, Mode};
use crate::error::Result;

/// `POST /api/sessions/{id}/fork/`'s body.
#[derive(Debug, Clone, Default, PartialEq, ToSchema)]
#[schema(as = ForkWrite, example = json!({"message": 12, "agent": 3}))]
pub struct ForkRequest {
    /// The last message the fork keeps (a message of the session); default: the session's last message.
    #[schema(nullable = false)]
    pub message: Option<i64>,
    /// The agent the fork continues with; default: the session's. Another agent's first turn sends the copied
    /// history whole (a response id means nothing to another provider).
    #[schema(nullable = false)]
    pub agent: Option<i64>,
}

impl ForkRequest {
    pub fn parse(body: &Value) -> Result<Self> {
        let mut input = Input::new(body, Mode::Patch)?;
        let message = input.pk("message", false, false).flatten();
        let agent = input.pk("agent", false, false).flatten();
        input.finish()?;
        Ok(Self { message, agent })
    }
}
