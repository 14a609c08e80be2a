-- The observable effect of the test handler: one row per application of a message.
CREATE TABLE effects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    seq BIGINT NOT NULL
);
