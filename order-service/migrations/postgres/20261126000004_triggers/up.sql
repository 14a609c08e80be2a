-- Price triggers: what each asks, the order it places when it fires (its
-- funds are reserved under `order_id` from placement) and where it is in
-- its life. `ending`: a cancel or an expiry asked while it was pending or
-- armed, decided when its funds' answer or its book's word comes.
CREATE TABLE triggers (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    market TEXT NOT NULL,
    side TEXT NOT NULL,
    kind TEXT NOT NULL,
    stop_price TEXT,
    limit_price TEXT,
    trail_amount TEXT,
    trail_percent TEXT,
    quantity TEXT NOT NULL,
    expires_at BIGINT,
    order_id TEXT NOT NULL,
    order_type TEXT NOT NULL,
    order_price TEXT,
    order_time_in_force TEXT NOT NULL,
    reserve_currency TEXT NOT NULL,
    reserve_amount TEXT NOT NULL,
    status TEXT NOT NULL,
    ending TEXT,
    reject_reason TEXT,
    fired_stop_price TEXT,
    fired_trade_price TEXT,
    fired_at BIGINT,
    idempotency_key TEXT,
    request_body TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX triggers_order ON triggers (order_id);
CREATE UNIQUE INDEX triggers_idempotency ON triggers (user_id, idempotency_key);
CREATE INDEX triggers_user ON triggers (user_id, created_at);
CREATE INDEX triggers_expiry ON triggers (status, expires_at);

-- The trigger that placed an order, if one did.
ALTER TABLE orders ADD COLUMN trigger_id TEXT;
