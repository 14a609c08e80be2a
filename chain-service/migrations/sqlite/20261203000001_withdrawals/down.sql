DROP TABLE chain_nonces;
DROP TABLE chain_txs;
DROP TABLE withdrawals;
