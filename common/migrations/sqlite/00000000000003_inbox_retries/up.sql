-- A message a consumer sent to a retry tier, until it is applied, parked or
-- pruned with the inbox: where it stands in a trace (`GET /api/admin/trace/{id}`).
CREATE TABLE inbox_retries (
    consumer TEXT NOT NULL,
    message_id TEXT NOT NULL,
    message_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    error TEXT NOT NULL,
    retry_at BIGINT NOT NULL,
    PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_retries_correlation ON inbox_retries (correlation_id);
