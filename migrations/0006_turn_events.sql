-- 0006_turn_events: turns become rows, so they can be replayed, followed, cancelled and retried safely.
--
-- * agent_turns: one row per conversation turn (its id is the session lease's turn_id). `finished_at` is set
--   in the same transaction that records the turn's `done` frame and releases the lease, so "the lease is
--   free" and "every frame is recorded" are the same fact. `cancel_requested` lets a cancel reach a turn
--   running in another process (another Lambda instance).
-- * agent_turn_events: every SSE frame a turn sent, in order; a frame's id on the wire is `<turn_id>:<seq>`.
-- * idempotency_keys: a client's `Idempotency-Key` and what it started (a turn) or answered (a 202 of
--   tool-output, a chat reply), so a retried request is answered the same way instead of calling the model
--   twice. The fingerprint is the SHA-256 of the endpoint and the request body.
-- Never edited once landed.

CREATE TABLE agent_turns (
    id               TEXT    PRIMARY KEY,
    session_id       INTEGER NOT NULL REFERENCES agent_sessions (id) ON DELETE CASCADE,
    kind             TEXT    NOT NULL CHECK (kind IN ('message', 'tool_output')),
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    finished_at      TEXT
);
CREATE INDEX agent_turns_session ON agent_turns (session_id, created_at);

CREATE TABLE agent_turn_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    turn_id TEXT    NOT NULL REFERENCES agent_turns (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    event   TEXT    NOT NULL,
    data    TEXT    NOT NULL,
    UNIQUE (turn_id, seq)
);

CREATE TABLE idempotency_keys (
    owner_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key         TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    turn_id     TEXT    REFERENCES agent_turns (id) ON DELETE CASCADE,
    status_code INTEGER,
    response    TEXT,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (owner_id, key)
);
