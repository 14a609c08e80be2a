ALTER TABLE orders DROP COLUMN trigger_id;
DROP TABLE triggers;
