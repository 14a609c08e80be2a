-- The event log's index (common/src/logindex.rs): every message of the
-- `bourse.event-log` stream by its offset, with its saga, id, cause and type
-- indexed, so that a trace reads the saga's rows only; and how far it got.
CREATE TABLE message_log (
    log_offset BIGINT PRIMARY KEY NOT NULL,
    message_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    causation_id TEXT,
    producer TEXT NOT NULL,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    envelope TEXT NOT NULL
);
CREATE INDEX message_log_saga ON message_log (correlation_id, log_offset);
CREATE INDEX message_log_id ON message_log (message_id);
CREATE INDEX message_log_cause ON message_log (causation_id);
CREATE INDEX message_log_type ON message_log (message_type, log_offset);
CREATE INDEX message_log_time ON message_log (occurred_at);

CREATE TABLE message_log_cursor (
    name TEXT PRIMARY KEY NOT NULL,
    next_offset BIGINT NOT NULL
);
