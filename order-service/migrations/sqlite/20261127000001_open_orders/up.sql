-- How many orders each user has that have not ended (not filled, cancelled or
-- rejected), kept with every status change: the open-order cap reads one row
-- instead of counting the user's orders (which on PostgreSQL also walks the
-- dead index entries every status change leaves, until a vacuum).
CREATE TABLE open_orders (
    user_id TEXT PRIMARY KEY,
    open BIGINT NOT NULL
);
INSERT INTO open_orders (user_id, open)
SELECT user_id, COUNT(*) FROM orders
WHERE status IN ('pending', 'open', 'partially_filled', 'cancel_requested')
GROUP BY user_id;
