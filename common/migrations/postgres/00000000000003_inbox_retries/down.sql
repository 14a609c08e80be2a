DROP TABLE inbox_retries;
