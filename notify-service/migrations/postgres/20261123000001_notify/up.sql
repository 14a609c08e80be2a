-- Where each user's e-mail goes: kept from `user.registered`, never taken from
-- the event that causes a mail.
CREATE TABLE recipients (
    user_id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL,
    registered_at BIGINT NOT NULL
);

-- Every e-mail the SMTP server accepted, with its reply. One per event and
-- recipient; `message_id` is the Message-ID header, derived from the event id.
CREATE TABLE mails (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    smtp_reply TEXT NOT NULL,
    sent_at BIGINT NOT NULL,
    UNIQUE (event_id, recipient)
);
CREATE INDEX mails_by_user ON mails (user_id, id);
