-- Settlement windows: the trades of a window are netted per wallet and
-- asset and mirrored on the chain through the clearing wallet.
-- status: open (taking trades) -> collecting (payers -> clearing) ->
-- paying (clearing -> receivers, fee wallet) -> settled; or failed.
CREATE TABLE settlement_windows (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    trades INTEGER NOT NULL,
    reason TEXT,
    opened_at BIGINT NOT NULL,
    closed_at BIGINT,
    settled_at BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX settlement_windows_status ON settlement_windows (status, opened_at);

-- What each settled trade side moved in the ledger, in chain currencies
-- (`funds.settled`): the user paid (negative), received (positive), and
-- the fee (owner `fees`). Amounts in the ledger's decimals, signed.
CREATE TABLE settlement_legs (
    trade_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    currency TEXT NOT NULL,
    delta TEXT NOT NULL,
    window_id TEXT NOT NULL,
    PRIMARY KEY (trade_id, order_id, owner, currency)
);
CREATE INDEX settlement_legs_window ON settlement_legs (window_id);
