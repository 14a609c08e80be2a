DROP TABLE order_transitions;
DROP TABLE orders;
