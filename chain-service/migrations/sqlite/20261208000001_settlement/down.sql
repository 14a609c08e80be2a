DROP TABLE settlement_legs;
DROP TABLE settlement_windows;
