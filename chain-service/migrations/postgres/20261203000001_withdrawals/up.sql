-- A user's withdrawal: what they asked (amount, fee, address) and where it
-- stands; the same Idempotency-Key and body return the same withdrawal.
CREATE TABLE withdrawals (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    fee TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    idempotency_key TEXT,
    request_body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX withdrawals_user ON withdrawals (user_id, created_at);
CREATE UNIQUE INDEX withdrawals_idempotency ON withdrawals (user_id, idempotency_key);

-- The outgoing transactions, one per intent (its id: a withdrawal's id;
-- `purpose`: what it is for, `withdrawal`): its nonce,
-- the signed bytes of its latest attempt (sent again as they are after a
-- restart), every attempt's hash (a replacement keeps the nonce), and where
-- it stands. Amounts in chain units (wei), as decimal text.
CREATE TABLE chain_txs (
    id TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    user_id TEXT NOT NULL,
    from_address TEXT NOT NULL,
    to_address TEXT NOT NULL,
    value TEXT NOT NULL,
    input TEXT NOT NULL,
    gas_limit BIGINT NOT NULL,
    nonce BIGINT,
    max_fee TEXT,
    priority_fee TEXT,
    raw TEXT,
    tx_hash TEXT,
    hashes TEXT NOT NULL,
    replacements INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    block_number BIGINT,
    block_hash TEXT,
    gas_cost TEXT,
    sent_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX chain_txs_status ON chain_txs (status, created_at);

-- The next nonce of each sending address, kept here (the node's count is
-- read only the first time, or when it is ahead).
CREATE TABLE chain_nonces (
    address TEXT PRIMARY KEY NOT NULL,
    next_nonce BIGINT NOT NULL
);
