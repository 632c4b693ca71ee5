-- 0011_usage: token usage as an aggregate, and budgets per user (issue 27).
-- usage_hourly holds one row per owner, hour, agent, model and provider: the turn that ends adds its tokens to its row in
-- the same atomic batch that records its end (no extra round trip), so `GET /api/usage/` reads at most
-- hours x agents x models x providers rows for a range instead of scanning messages. An hour is the finest grouping the API
-- offers; a day is 24 of them. owner_id 0 is a session without an owner (authentication off). No foreign keys:
-- usage is an account of what was spent, kept when the agent or session that spent it is deleted.
-- users gains the budgets staff set (NULL: none); a turn's start reads them with the day's and month's usage
-- in the batch it already runs. Never edited once landed.

CREATE TABLE usage_hourly (
    owner_id         INTEGER NOT NULL,
    hour             TEXT    NOT NULL,
    agent_id         INTEGER NOT NULL,
    model            TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    input_tokens     INTEGER NOT NULL DEFAULT 0,
    output_tokens    INTEGER NOT NULL DEFAULT 0,
    cached_tokens    INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    turns            INTEGER NOT NULL DEFAULT 0,
    failed_turns     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner_id, hour, agent_id, model, provider)
) WITHOUT ROWID;
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

ALTER TABLE users ADD COLUMN daily_token_budget INTEGER CHECK (daily_token_budget IS NULL OR daily_token_budget >= 0);
ALTER TABLE users ADD COLUMN monthly_token_budget INTEGER CHECK (monthly_token_budget IS NULL OR monthly_token_budget >= 0);
