-- How far an order got with its book, as the saga knows it, so that a
-- message that arrives early (a retry brings one back after later ones)
-- waits for the one it needs instead of being lost: `unsent` (not sent to
-- its book), `sent` (submitted, the book's last word not seen yet),
-- `sent_released` (sent, and its funds were released already: the book's
-- last word is on its way), `ended` (the book said filled or cancelled).
ALTER TABLE orders ADD COLUMN book_stage TEXT NOT NULL DEFAULT 'unsent';
-- Orders saved before: what their status says. A `cancel_requested` order
-- stays `unsent`: `funds.released` ends it, as it did before.
UPDATE orders SET book_stage = 'sent' WHERE status IN ('open', 'partially_filled');
UPDATE orders SET book_stage = 'ended' WHERE status IN ('filled', 'cancelled');
