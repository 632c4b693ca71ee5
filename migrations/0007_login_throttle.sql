-- 0007_login_throttle: what login throttling counts, kept in the database so the limits hold across Lambda
-- instances (each attempt costs an argon2 hash).
--
-- * login_attempts: one row per login attempt within the throttle's window: failures count against their
--   username, every attempt against its client address. Rows older than the window are deleted, a bounded
--   number at a time, by the logins that write new ones.
-- * login_addresses: the addresses a user logged in from (the last time): the per-username limit does not
--   hold those back, so failures from elsewhere cannot lock a user out from where they usually log in.
-- Never edited once landed.

CREATE TABLE login_attempts (
    id         INTEGER PRIMARY KEY,
    username   TEXT    NOT NULL,
    address    TEXT    NOT NULL,
    succeeded  INTEGER NOT NULL CHECK (succeeded IN (0, 1)),
    created_at TEXT    NOT NULL
);
CREATE INDEX login_attempts_failed_username ON login_attempts (username, created_at) WHERE succeeded = 0;
CREATE INDEX login_attempts_address ON login_attempts (address, created_at);
CREATE INDEX login_attempts_created ON login_attempts (created_at);

CREATE TABLE login_addresses (
    user_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    address       TEXT    NOT NULL,
    last_login_at TEXT    NOT NULL,
    PRIMARY KEY (user_id, address)
);
CREATE INDEX login_addresses_last_login ON login_addresses (last_login_at);
