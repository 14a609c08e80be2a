-- What a withdrawal holds (its amount and the exchange's fee, reserved) until
-- the chain confirms it (debited) or it fails (released); refused when it
-- could not be held. One row per withdrawal: its commands and events act once.
CREATE TABLE withdrawal_holds (
    withdrawal_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount TEXT NOT NULL,
    fee TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
