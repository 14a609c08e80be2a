ALTER TABLE orders DROP COLUMN book_stage;
