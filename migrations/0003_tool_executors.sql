-- 0003_tool_executors: a tool may name a server-side executor, so `auto_execute_tools` can run it:
-- {"type": "echo"}, {"type": "now"} or {"type": "http", "url": "...", "timeout_ms": 5000}. NULL = the client
-- runs the tool. Never edited once landed.

ALTER TABLE agent_tools ADD COLUMN executor TEXT CHECK (executor IS NULL OR json_valid(executor));
