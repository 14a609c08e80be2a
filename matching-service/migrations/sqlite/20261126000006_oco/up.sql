-- An OCO's limit leg: the price of the limit order it rests in the book
-- under its order id while its stop is armed (NULL: not an OCO).
ALTER TABLE book_triggers ADD COLUMN limit_leg_price TEXT;
