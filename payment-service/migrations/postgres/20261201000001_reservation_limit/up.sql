-- The order's limit (a limit order's price, a market buy's cap), from its
-- `payment.reserve-funds`: a trade that settles it must respect it (a buy
-- never pays above it, a sell never receives below it). NULL for a market
-- sell and for reservations made before it was sent: not checked.
ALTER TABLE reservations ADD COLUMN limit_price TEXT;
