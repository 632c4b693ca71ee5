-- 0005_turn_lease: one turn at a time per session. A turn holds a lease on its session (its id and an
-- expiry); a second turn meanwhile is refused with 409. The expiry means a crashed turn (a killed process, a
-- Lambda timeout) cannot lock its session for ever. Never edited once landed.

ALTER TABLE agent_sessions ADD COLUMN turn_id TEXT;
ALTER TABLE agent_sessions ADD COLUMN turn_expires_at TEXT;
