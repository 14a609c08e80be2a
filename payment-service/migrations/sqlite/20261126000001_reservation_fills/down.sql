-- Back to the words the older code knows: an ending reservation still holds.
UPDATE reservations SET status = 'active' WHERE status = 'ending';
DELETE FROM reservations WHERE status = 'void';
ALTER TABLE reservations DROP COLUMN final_filled;
ALTER TABLE reservations DROP COLUMN settled;
