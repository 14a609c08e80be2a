DROP TABLE cancel_tombstones;
