//! What a turn reads before it writes, in one batch: the session named, the agent it talks to, that agent's
//! templates, active tools and MCP servers, what the request's `Idempotency-Key` recorded, and the caller's budgets.

use libsql::params;

use super::conn::Batch;
use super::idempotency::{IdempotencyClaim, KeyRecord};
use super::{Store, agents, history, opt_int_value};
use crate::domain::{Agent, AgentId, LinkedMcpServer, Session, SessionId, StoredHistory, Template, Tool, UserId};
use crate::error::Result;

/// What a message turn reads before it writes: the session named, the agent the turn talks to (the one
/// named, else the session's, else the caller's default), its default templates and its active tools.
#[derive(Debug)]
pub struct TurnContext {
    pub session: Option<Session>,
    pub agent: Option<Agent>,
    /// The agent's own default templates if it has any, otherwise the global defaults.
    pub templates: Vec<Template>,
    pub tools: Vec<Tool>,
    /// The names of the tools whose link says `require_approval`.
    pub approval_tools: Vec<String>,
    /// The MCP servers the agent uses (enabled links of active servers).
    pub mcp_servers: Vec<LinkedMcpServer>,
    /// The session's conversation, when the turn sends it whole (see `store::history`).
    pub history: Option<StoredHistory>,
}

/// A turn's context, and what the request's `Idempotency-Key` recorded if an key_record request claimed it
/// (read in the same batch, for an idempotent replay; an `Err` is a key reused for another request, 422).
#[derive(Debug)]
pub struct TurnRead<T> {
    pub key_record: Result<Option<KeyRecord>>,
    pub context: T,
    /// The caller's token budgets and what the current day and month spent, read in the same batch: a turn
    /// checks them before it writes anything (no round trip of their own).
    pub budget: Result<crate::domain::Budget>,
}

pub(super) const TOOLS: &str =
    "SELECT t.id, t.name, t.owner_id, t.description, t.tool_type, t.parameters, t.format, t.is_active,
        t.created_at, t.executor, l.require_approval
 FROM agent_profile_tools l JOIN agent_tools t ON t.id = l.tool_id
 WHERE l.agent_id = ?1 AND l.enabled = 1 AND t.is_active = 1 ORDER BY l.id";

/// The agent's tools, which of them need approval, and its MCP servers, as read by [`TOOLS`] and
/// `mcp_servers::LINKED` (the rest of the context left empty).
pub(super) fn linked_tools(out: &mut super::conn::Outcomes, tools: usize, servers: usize) -> Result<TurnContext> {
    let mut context = TurnContext {
        session: None,
        agent: None,
        templates: Vec::new(),
        tools: Vec::new(),
        approval_tools: Vec::new(),
        mcp_servers: Vec::new(),
        history: None,
    };
    for row in out.take(tools)?.rows() {
        let tool = super::tools::tool(&row)?;
        if super::flag(&row, 10)? {
            context.approval_tools.push(tool.name.clone());
        }
        context.tools.push(tool);
    }
    context.mcp_servers = out.take(servers)?.rows().map(|r| super::mcp_servers::linked(&r)).collect::<Result<_>>()?;
    Ok(context)
}

impl Store {
    /// Reads a turn's context in one batch (one round trip remotely). `agent` and `session` are what the
    /// request named; `owner` whose default agent applies when it named neither; `locals` the providers whose
    /// conversations Lambent keeps (their sessions' history is read too).
    pub async fn turn_context(
        &self,
        agent: Option<AgentId>,
        session: Option<SessionId>,
        owner: Option<UserId>,
        claim: Option<&IdempotencyClaim>,
        locals: &[&str],
    ) -> Result<TurnRead<TurnContext>> {
        // The agent the turn talks to, as an expression over ?1 (agent), ?2 (session), ?3 (owner).
        let which = "coalesce(?1, (SELECT agent_id FROM agent_sessions WHERE id = ?2),
            (SELECT id FROM agent_profiles WHERE is_default = 1 AND (owner_id IS ?3 OR owner_id IS NULL)
             ORDER BY owner_id IS NULL, id LIMIT 1))";
        let named = || params![opt_int_value(agent), opt_int_value(session), opt_int_value(owner)];
        let tpl = super::templates::COLUMNS;
        let mut batch = Batch::read();
        let found_session = batch.push(
            format!("SELECT {} FROM agent_sessions WHERE id = ?1", super::sessions::COLUMNS),
            [opt_int_value(session)],
        )?;
        let found_agent =
            batch.push(format!("SELECT {} FROM agent_profiles WHERE id = {which}", agents::COLUMNS), named())?;
        let scoped = batch.push(
            format!("SELECT {tpl} FROM agent_prompt_templates WHERE is_default = 1 AND agent_id = {which} ORDER BY id"),
            named(),
        )?;
        let global = batch.push(
            format!(
                "SELECT {tpl} FROM agent_prompt_templates WHERE is_default = 1 AND agent_id IS NULL
                 AND (owner_id IS (SELECT owner_id FROM agent_profiles WHERE id = {which}) OR owner_id IS NULL) ORDER BY id"
            ),
            named(),
        )?;
        let tools = batch.push(TOOLS.replace("?1", &format!("({which})")), named())?;
        let servers = batch.push(super::mcp_servers::LINKED.replace("?1", &format!("({which})")), named())?;
        let with_locals =
            [opt_int_value(agent), opt_int_value(session), opt_int_value(owner), history::locals_param(locals)];
        let history = history::push_read(&mut batch, "?2", &format!("({which})"), "?4", &with_locals)?;
        let key_read = super::idempotency::push_key_read(&mut batch, claim, &self.now())?;
        let budget = super::usage::push_budget_read(&mut batch, owner, self.clock().now())?;
        let mut out = self.conn().await.batch(batch).await?;
        let key_record = super::idempotency::take_key_record(&mut out, key_read);
        let budget = super::usage::take_budget(&mut out, budget);
        let scoped: Vec<Template> =
            out.take(scoped)?.rows().map(|r| super::templates::template(&r)).collect::<Result<_>>()?;
        let templates = if scoped.is_empty() {
            out.take(global)?.rows().map(|r| super::templates::template(&r)).collect::<Result<_>>()?
        } else {
            scoped
        };
        let context = TurnContext {
            session: out.take(found_session)?.rows().next().map(|r| super::sessions::session(&r)).transpose()?,
            agent: out.take(found_agent)?.rows().next().map(|r| agents::agent(&r)).transpose()?,
            templates,
            history: history::take(&mut out, history)?,
            ..linked_tools(&mut out, tools, servers)?
        };
        Ok(TurnRead { key_record, context, budget })
    }
}
