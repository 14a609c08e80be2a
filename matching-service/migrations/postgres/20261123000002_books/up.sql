-- The resting orders of every book (the book is rebuilt from them), a version
-- per market bumped by every command, and the trades.
CREATE TABLE book_orders (
    order_id TEXT PRIMARY KEY NOT NULL,
    market TEXT NOT NULL,
    user_id TEXT NOT NULL,
    side TEXT NOT NULL,
    price TEXT NOT NULL,
    quantity TEXT NOT NULL,
    filled TEXT NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX book_orders_market ON book_orders (market);

CREATE TABLE book_versions (
    market TEXT PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL
);

CREATE TABLE trades (
    id TEXT PRIMARY KEY NOT NULL,
    market TEXT NOT NULL,
    price TEXT NOT NULL,
    quantity TEXT NOT NULL,
    taker_side TEXT NOT NULL,
    taker_order_id TEXT NOT NULL,
    maker_order_id TEXT NOT NULL,
    executed_at BIGINT NOT NULL
);
CREATE INDEX trades_market ON trades (market, executed_at);
