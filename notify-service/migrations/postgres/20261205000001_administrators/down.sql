ALTER TABLE recipients DROP COLUMN administrator;
