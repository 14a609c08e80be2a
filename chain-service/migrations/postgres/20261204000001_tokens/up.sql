-- A token transfer's token (its contract) and amount in token units (the
-- transaction itself sends no ETH and calls the contract); NULL for native.
ALTER TABLE chain_txs ADD COLUMN token TEXT;
ALTER TABLE chain_txs ADD COLUMN token_amount TEXT;
