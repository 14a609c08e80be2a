-- One publisher per database: the relay that holds this lease publishes the
-- outbox; every other instance of the service stands by (see src/lease.rs).
CREATE TABLE relay_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
INSERT INTO relay_lease (name, holder, expires_at) VALUES ('outbox', '', 0);

-- A command that no queue took (returned by the broker) is parked on its row:
-- when it came back last and how often, and published again until routed.
ALTER TABLE outbox ADD COLUMN returned_at BIGINT;
ALTER TABLE outbox ADD COLUMN returns INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_parked ON outbox (id) WHERE sent_at IS NULL AND returned_at IS NOT NULL;

-- Retention: the inbox is pruned by age.
CREATE INDEX inbox_received_at ON inbox (received_at);
