-- Orders and every transition of their saga, with the message that caused it.
CREATE TABLE orders (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    market TEXT NOT NULL,
    side TEXT NOT NULL,
    order_type TEXT NOT NULL,
    price TEXT,
    quantity TEXT NOT NULL,
    filled_quantity TEXT NOT NULL,
    status TEXT NOT NULL,
    time_in_force TEXT NOT NULL,
    reject_reason TEXT,
    idempotency_key TEXT,
    request_body TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key);
CREATE INDEX orders_user ON orders (user_id, created_at);

CREATE TABLE order_transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    cause_type TEXT NOT NULL,
    cause_id TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX order_transitions_order ON order_transitions (order_id, id);
