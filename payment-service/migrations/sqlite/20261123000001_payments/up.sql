-- Balances per user and currency; every change is also a pair of ledger entries.
CREATE TABLE accounts (
    user_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    available TEXT NOT NULL,
    reserved TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, currency)
);

-- The double-entry ledger: the entries of one transaction sum to zero.
CREATE TABLE ledger_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    txn_id TEXT NOT NULL,
    account TEXT NOT NULL,
    user_id TEXT,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    kind TEXT NOT NULL,
    reference TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_entries_user ON ledger_entries (user_id, id);

-- Funds held for an order until it is settled or released.
CREATE TABLE reservations (
    order_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    remaining TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
