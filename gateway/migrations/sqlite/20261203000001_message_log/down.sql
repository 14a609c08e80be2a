DROP TABLE message_log_cursor;
DROP TABLE message_log;
