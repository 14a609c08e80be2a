DROP TABLE open_orders;
