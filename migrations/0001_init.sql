-- 0001_init: the original system's six tables, plus `users` so that every owner is a real foreign key.
--
-- Conventions
-- * Ids are INTEGER PRIMARY KEY AUTOINCREMENT: ids are never reused after a delete, like Django's BigAutoField.
-- * Timestamps are TEXT in RFC 3339 UTC with microseconds ("2026-11-25T20:14:11.123456Z"), written by the store
--   (from its clock) so that local SQLite and a remote libsql server agree byte for byte.
-- * Booleans are INTEGER 0/1; JSON columns are TEXT checked with json_valid().
-- * Ownership cascades: deleting a user deletes what it owns; deleting an agent deletes its tool links, sessions,
--   messages and agent-scoped templates; deleting a tool deletes its links. Needs PRAGMA foreign_keys=ON,
--   which the store sets on every connection it opens.
-- This file is never edited once landed: the runner records its checksum and refuses a changed file.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 150),
    password_hash TEXT,
    is_staff      INTEGER NOT NULL DEFAULT 0 CHECK (is_staff IN (0, 1)),
    is_active     INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);

CREATE TABLE agent_profiles (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    model         TEXT    NOT NULL DEFAULT 'gpt-4.1' CHECK (length(model) BETWEEN 1 AND 100),
    system_prompt TEXT    NOT NULL DEFAULT '',
    is_default    INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX agent_profiles_owner ON agent_profiles (owner_id);
-- At most one default agent per owner (owner NULL = the global scope). The store clears the previous
-- default in the same transaction; this index makes a lost race fail instead of leaving two defaults.
CREATE UNIQUE INDEX agent_profiles_one_default ON agent_profiles (ifnull(owner_id, 0)) WHERE is_default = 1;

CREATE TABLE agent_tools (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 120),
    owner_id    INTEGER REFERENCES users (id) ON DELETE CASCADE,
    description TEXT    NOT NULL DEFAULT '',
    tool_type   TEXT    NOT NULL DEFAULT 'function' CHECK (tool_type IN ('function', 'custom')),
    parameters  TEXT    NOT NULL DEFAULT '{}' CHECK (json_valid(parameters)),
    -- Custom (freeform) tools may constrain their input with a grammar: OpenAI's `format` object.
    format      TEXT    CHECK (format IS NULL OR json_valid(format)),
    is_active   INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at  TEXT    NOT NULL
);
CREATE INDEX agent_tools_owner ON agent_tools (owner_id);

CREATE TABLE agent_profile_tools (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id INTEGER NOT NULL REFERENCES agent_profiles (id) ON DELETE CASCADE,
    tool_id  INTEGER NOT NULL REFERENCES agent_tools (id) ON DELETE CASCADE,
    enabled  INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    UNIQUE (agent_id, tool_id)
);
CREATE INDEX agent_profile_tools_tool ON agent_profile_tools (tool_id);

CREATE TABLE agent_prompt_templates (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    template   TEXT    NOT NULL CHECK (length(template) >= 1),
    owner_id   INTEGER REFERENCES users (id) ON DELETE CASCADE,
    agent_id   INTEGER REFERENCES agent_profiles (id) ON DELETE CASCADE,
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at TEXT    NOT NULL
);
CREATE INDEX agent_prompt_templates_agent ON agent_prompt_templates (agent_id);
CREATE INDEX agent_prompt_templates_owner ON agent_prompt_templates (owner_id);
-- One default per scope: an agent's templates, or one owner's global (agent NULL) templates.
CREATE UNIQUE INDEX agent_prompt_templates_one_agent_default
    ON agent_prompt_templates (agent_id) WHERE is_default = 1 AND agent_id IS NOT NULL;
CREATE UNIQUE INDEX agent_prompt_templates_one_global_default
    ON agent_prompt_templates (ifnull(owner_id, 0)) WHERE is_default = 1 AND agent_id IS NULL;

CREATE TABLE agent_sessions (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id             INTEGER NOT NULL REFERENCES agent_profiles (id) ON DELETE CASCADE,
    owner_id             INTEGER REFERENCES users (id) ON DELETE CASCADE,
    previous_response_id TEXT    CHECK (previous_response_id IS NULL OR length(previous_response_id) <= 200),
    last_output          TEXT    CHECK (last_output IS NULL OR json_valid(last_output)),
    created_at           TEXT    NOT NULL,
    updated_at           TEXT    NOT NULL
);
CREATE INDEX agent_sessions_agent ON agent_sessions (agent_id);
CREATE INDEX agent_sessions_owner ON agent_sessions (owner_id);

CREATE TABLE agent_messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id INTEGER NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('user', 'assistant')),
    content    TEXT    NOT NULL DEFAULT '',
    created_at TEXT    NOT NULL
);
CREATE INDEX agent_messages_session ON agent_messages (session_id, id);
