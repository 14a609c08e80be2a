DROP TABLE trades;
DROP TABLE book_versions;
DROP TABLE book_orders;
