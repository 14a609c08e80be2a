ALTER TABLE trades DROP COLUMN book_version;
DROP TABLE book_triggers;
