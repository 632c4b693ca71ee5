-- 0004_auth: API tokens. A token is shown once; only its SHA-256 is stored (tokens are 32 random bytes, so a
-- fast hash is enough — passwords, which are not random, use argon2id in users.password_hash), with a short
-- visible prefix so people can tell their tokens apart.
-- kind: 'api' (created by a user or the CLI, optional expiry) or 'login' (from /api/auth/login/, short-lived).
-- Never edited once landed.

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    kind         TEXT    NOT NULL CHECK (kind IN ('api', 'login')),
    prefix       TEXT    NOT NULL,
    token_hash   TEXT    NOT NULL UNIQUE,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
