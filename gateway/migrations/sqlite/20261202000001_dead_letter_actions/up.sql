-- What operators did with dead letters: each replay (one, or all of a queue)
-- and discard, who did it, when and why.
CREATE TABLE dead_letter_actions (
    id TEXT PRIMARY KEY NOT NULL,
    queue TEXT NOT NULL,
    action TEXT NOT NULL,
    message_id TEXT,
    message_type TEXT,
    reason TEXT,
    forced BOOLEAN NOT NULL,
    replayed BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX dead_letter_actions_by_time ON dead_letter_actions (at);
