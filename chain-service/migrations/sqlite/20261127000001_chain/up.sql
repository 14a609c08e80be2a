-- One custodial wallet per user: its address and its private key, sealed
-- with the service's master key (never stored or logged in clear).
CREATE TABLE wallets (
    user_id TEXT PRIMARY KEY NOT NULL,
    address TEXT NOT NULL UNIQUE,
    sealed_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The blocks read so far (the recent ones: a reorg is found by comparing
-- their hashes with the chain's), and the head last seen.
CREATE TABLE chain_blocks (
    number BIGINT PRIMARY KEY NOT NULL,
    hash TEXT NOT NULL,
    parent_hash TEXT NOT NULL
);
CREATE TABLE chain_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    number BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Transfers to a user's wallet, from the block they were seen in.
CREATE TABLE deposits (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    address TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    dust TEXT NOT NULL,
    tx_hash TEXT NOT NULL,
    block_number BIGINT NOT NULL,
    block_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    seen_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX deposits_user ON deposits (user_id, seen_at);
CREATE INDEX deposits_status ON deposits (status, block_number);
