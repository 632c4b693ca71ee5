-- 0002_tool_calls: what a conversation turn records.
--
-- * Assistant messages carry how their response ended (`status`), its id and the token usage OpenAI
--   reported. User messages leave the three NULL.
-- * The tool-call ledger: every call a completed response asked for, and what became of it —
--   pending (waiting for an output), submitted (a client sent the output), executed (a server-side
--   executor produced it), expired (the user moved on with a new message instead).
-- * Sessions keep the instructions their last message turn sent, so a tool-output continuation (which
--   carries no template variables) sends the same instructions again.
-- Never edited once landed.

ALTER TABLE agent_messages ADD COLUMN status TEXT
    CHECK (status IS NULL OR status IN ('completed', 'requires_tool_output', 'failed', 'incomplete'));
ALTER TABLE agent_messages ADD COLUMN response_id TEXT;
ALTER TABLE agent_messages ADD COLUMN usage TEXT CHECK (usage IS NULL OR json_valid(usage));
ALTER TABLE agent_sessions ADD COLUMN instructions TEXT;

CREATE TABLE agent_tool_calls (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  INTEGER NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    response_id TEXT    NOT NULL,
    call_id     TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    call_type   TEXT    NOT NULL CHECK (call_type IN ('function', 'custom')),
    -- A function call's JSON arguments, or a custom call's free-form input.
    arguments   TEXT    NOT NULL DEFAULT '',
    status      TEXT    NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'submitted', 'executed', 'expired')),
    output      TEXT,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    UNIQUE (session_id, call_id)
);
CREATE INDEX agent_tool_calls_response ON agent_tool_calls (session_id, response_id);
