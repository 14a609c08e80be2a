-- Token versions (a password reset or a role change revokes older tokens)
-- and when each reset token was issued (reset e-mails per hour are counted).
ALTER TABLE users ADD COLUMN token_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE password_resets ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX password_resets_by_user ON password_resets (user_id, created_at);
