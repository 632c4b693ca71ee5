-- 0008_prune: indexes that keep housekeeping (`lambent prune`, the scheduled Prune function) cheap however much
-- history there is. Each turns a scan of a whole table into a range of an index:
-- * agent_turns (created_at): where the recent turns' frames begin, the scan bound of the frame deletes (turn
--   rows are kept for ever, so a scan of every turn would grow without end).
-- * idempotency_keys (created_at): the keys older than their lifetime.
-- * api_tokens (expires_at), login tokens only: the expired ones; API tokens are listed to their owners even
--   once expired, so they stay.
-- Each costs one index entry per row written (a turn, a keyed request, a login). Never edited once landed.

CREATE INDEX agent_turns_created ON agent_turns (created_at);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX api_tokens_login_expiry ON api_tokens (expires_at) WHERE kind = 'login';
