DROP TABLE mails;
DROP TABLE recipients;
