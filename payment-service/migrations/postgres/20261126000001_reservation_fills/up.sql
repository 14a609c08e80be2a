-- What a reservation knows of its order's fills, so that it closes only when
-- both the order's end and every fill that end implies are settled, in
-- whatever order they arrive:
-- `settled`: the order's quantity (base) its settled trades filled so far.
--   NULL on reservations made before it was counted: they end as before,
--   released at their order's end.
-- `final_filled`: the order's filled quantity as its book's end said, once
--   seen (status `ending` until the last of those fills settles).
ALTER TABLE reservations ADD COLUMN settled TEXT;
ALTER TABLE reservations ADD COLUMN final_filled TEXT;
