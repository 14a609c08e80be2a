DROP INDEX inbox_received_at;
DROP INDEX outbox_parked;
ALTER TABLE outbox DROP COLUMN returns;
ALTER TABLE outbox DROP COLUMN returned_at;
DROP TABLE relay_lease;
