-- 0012_mcp_servers: Model Context Protocol servers as tool sources, and a person's approval before a tool runs
-- (issue 26).
-- mcp_servers are owned objects: a Streamable HTTP `url`, `headers` sent with every request to it (stored
-- sealed: `headers_sealed` is AES-256-GCM ciphertext under LAMBENT_SECRETS_KEY, see README; never returned),
-- `allowed_tools` (a JSON array of tool names; empty = all) and `is_active`.
-- agent_mcp_servers links agents to servers as agent_profile_tools links them to tools; both kinds of link
-- gain `require_approval`: a call of such a tool waits for a decision (POST /api/agent/approvals/).
-- agent_tool_calls gains `approval`: NULL for a call that needs none, else 'required' (waiting for a
-- decision), 'approved' (to run in the continuation) or 'denied' (answered with the reason). A call waiting
-- for a decision stays `pending`, so what expires and what completes a response stays as it was.
-- Never edited once landed.

CREATE TABLE mcp_servers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    owner_id       INTEGER REFERENCES users (id) ON DELETE CASCADE,
    url            TEXT    NOT NULL,
    headers_sealed TEXT,
    header_names   TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(header_names)),
    allowed_tools  TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_tools)),
    is_active      INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at     TEXT    NOT NULL
);
CREATE INDEX mcp_servers_owner ON mcp_servers (owner_id);

CREATE TABLE agent_mcp_servers (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id         INTEGER NOT NULL REFERENCES agent_profiles (id) ON DELETE CASCADE,
    mcp_server_id    INTEGER NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    enabled          INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    require_approval INTEGER NOT NULL DEFAULT 0 CHECK (require_approval IN (0, 1)),
    UNIQUE (agent_id, mcp_server_id)
);
CREATE INDEX agent_mcp_servers_server ON agent_mcp_servers (mcp_server_id);

ALTER TABLE agent_profile_tools ADD COLUMN require_approval INTEGER NOT NULL DEFAULT 0
    CHECK (require_approval IN (0, 1));

ALTER TABLE agent_tool_calls ADD COLUMN approval TEXT
    CHECK (approval IS NULL OR approval IN ('required', 'approved', 'denied'));
