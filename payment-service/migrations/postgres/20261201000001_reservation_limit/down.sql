ALTER TABLE reservations DROP COLUMN limit_price;
