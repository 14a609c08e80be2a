ALTER TABLE chain_txs DROP COLUMN token_amount;
ALTER TABLE chain_txs DROP COLUMN token;
