-- The observable effect of the test handler: one row per application of a message.
CREATE TABLE effects (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    seq BIGINT NOT NULL
);
