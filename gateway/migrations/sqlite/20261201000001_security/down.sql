DROP INDEX password_resets_by_user;
ALTER TABLE password_resets DROP COLUMN created_at;
ALTER TABLE users DROP COLUMN token_version;
