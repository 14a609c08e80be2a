-- Price triggers armed in a market's book, with the order each places when
-- it fires. `status`: armed, fired, disarmed. A trailing stop's best price
-- is stored as it was when armed; after a restart it is brought up to date
-- from the trades made since (`trades.book_version` > `armed_version`).
CREATE TABLE book_triggers (
    trigger_id TEXT PRIMARY KEY NOT NULL,
    market TEXT NOT NULL,
    user_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    fires_when TEXT NOT NULL,
    stop_price TEXT,
    trail_amount TEXT,
    trail_percent TEXT,
    best TEXT,
    armed_version BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    expires_at BIGINT,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    price TEXT,
    quantity TEXT NOT NULL,
    time_in_force TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE INDEX book_triggers_market ON book_triggers (market, status);

-- The book version whose command made the trade (NULL: made before triggers).
ALTER TABLE trades ADD COLUMN book_version BIGINT;
