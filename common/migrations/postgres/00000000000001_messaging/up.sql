-- Messaging machinery shared by every service: the transactional outbox and inbox.
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_correlation ON outbox (correlation_id);

CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_correlation ON inbox (correlation_id);
