-- Who is an administrator (from `user.role-granted`): they are told when the audit fails.
ALTER TABLE recipients ADD COLUMN administrator BOOLEAN NOT NULL DEFAULT FALSE;
