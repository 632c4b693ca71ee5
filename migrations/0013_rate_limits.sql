-- 0013_rate_limits: rate limits per user (issue 27), held in the database so they hold across instances.
-- users gains the limits staff set: requests_per_minute (every authenticated request) and max_concurrent_turns
-- (turns holding a session's lease at once). NULL: the instance default (LAMBENT_REQUESTS_PER_MINUTE,
-- LAMBENT_MAX_CONCURRENT_TURNS); 0: no limit for this user.
-- request_windows holds one row per limited user: the current minute (UTC, `YYYY-MM-DDTHH:MM`) and the
-- requests admitted in it. A request's first database round trip upserts it (a new minute starts again at 1),
-- and the CHECK refuses the upsert that would pass the quota, so no background job ever cleans it and
-- instances racing each other are serialised by the database's write. Concurrent turns are counted from the
-- sessions' leases (0005_turn_lease); the partial index keeps that count to the user's leased sessions.
-- Never edited once landed.

ALTER TABLE users ADD COLUMN requests_per_minute INTEGER CHECK (requests_per_minute IS NULL OR requests_per_minute >= 0);
ALTER TABLE users ADD COLUMN max_concurrent_turns INTEGER CHECK (max_concurrent_turns IS NULL OR max_concurrent_turns >= 0);

CREATE TABLE request_windows (
    user_id  INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    minute   TEXT    NOT NULL,
    requests INTEGER NOT NULL,
    quota    INTEGER NOT NULL,
    CHECK (requests <= quota)
);

CREATE INDEX agent_sessions_leased ON agent_sessions (owner_id, turn_expires_at) WHERE turn_id IS NOT NULL;
