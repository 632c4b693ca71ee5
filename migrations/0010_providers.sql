-- 0010_providers: named model providers, conversation state kept by Lambent, and forks.
--
-- * An agent names its provider (`openai` by default; the names come from the configuration, so the column
--   holds any name and the API checks it against what is configured) and, for a provider whose conversation
--   state Lambent keeps, the most tokens of history a request may carry (NULL: no limit).
-- * An assistant message keeps its response's `output` items exactly as the provider sent them (reasoning
--   items with their `encrypted_content`), so a request can carry the conversation rebuilt item for item
--   when the provider keeps no state. Messages stored before this have none: their text stands in.
-- * A session may owe its provider the whole history on its next turn (a fork that continues on another
--   agent, or from a point no response id stands for): the next completed response clears it.
-- Never edited once landed.

ALTER TABLE agent_profiles ADD COLUMN provider TEXT NOT NULL DEFAULT 'openai'
    CHECK (length(provider) BETWEEN 1 AND 40);
ALTER TABLE agent_profiles ADD COLUMN input_budget INTEGER CHECK (input_budget IS NULL OR input_budget > 0);
ALTER TABLE agent_messages ADD COLUMN output TEXT CHECK (output IS NULL OR json_valid(output));
ALTER TABLE agent_sessions ADD COLUMN resend_history INTEGER NOT NULL DEFAULT 0 CHECK (resend_history IN (0, 1));
