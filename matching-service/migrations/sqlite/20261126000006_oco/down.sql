ALTER TABLE book_triggers DROP COLUMN limit_leg_price;
