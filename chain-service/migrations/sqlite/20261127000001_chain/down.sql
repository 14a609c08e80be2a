DROP TABLE deposits;
DROP TABLE chain_head;
DROP TABLE chain_blocks;
DROP TABLE wallets;
