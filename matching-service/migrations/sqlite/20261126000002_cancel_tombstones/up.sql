-- Cancels that found no order in the book. One that came before its submit
-- (a retried submit arriving after its cancel) is honoured when the submit
-- comes: the order never enters the book and is `cancelled`. A cancel of an
-- order that has already left the book leaves one too; no submit follows it.
CREATE TABLE cancel_tombstones (
    order_id TEXT PRIMARY KEY NOT NULL,
    market TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
