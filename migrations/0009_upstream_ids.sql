-- 0009_upstream_ids: a provider's ids are the provider's, not ours to limit. 0001 capped
-- agent_sessions.previous_response_id at 200 characters; LiteLLM's response ids are ~460 (it encodes the route
-- into them), so every turn through it failed at the write that records its end: the answer the user had
-- already seen was lost with `storage_error`. The column is rebuilt without the cap by ALTER TABLE alone (add,
-- copy, drop, rename): a whole-table rebuild would need `foreign_keys` off, which cannot change inside the
-- migration's transaction, and dropping the old table with it on would cascade into every message. SQLite allows
-- DROP COLUMN here because the column's only CHECK is its own. The column moves to the end of the row; every
-- query names its columns. No other upstream id (response_id, call_id, item ids) had a length cap.
-- Never edited once landed.

ALTER TABLE agent_sessions ADD COLUMN previous_response_id_uncapped TEXT;
UPDATE agent_sessions SET previous_response_id_uncapped = previous_response_id;
ALTER TABLE agent_sessions DROP COLUMN previous_response_id;
ALTER TABLE agent_sessions RENAME COLUMN previous_response_id_uncapped TO previous_response_id;
