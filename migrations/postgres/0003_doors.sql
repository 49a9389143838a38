-- Locked doors (issue 7), PostgreSQL dialect. Same version, tables and constraints on both engines.

-- The login throttle. Kept in the database, not in one process, so that every instance of a
-- shared deployment counts the same guesses and a restart forgets nothing.
--
-- One row per counter, in a fixed window: an attempt is counted (reserved) by one atomic
-- INSERT … ON CONFLICT DO UPDATE … RETURNING before the password is checked, so concurrent
-- guesses cannot all pass a check made before any of them was counted. Two counters per
-- attempt:
--   'account <address> <username>'  guesses at one account from one address (limit 10);
--   'address <address>'             guesses at any account from one address (limit 30),
--                                   so spraying many usernames is slowed too.
-- A successful login deletes its account counter and gives back its address reservation.
-- Rows whose window has passed are swept with expired sessions.
CREATE TABLE login_attempts (
    throttle_key TEXT PRIMARY KEY,
    attempts     BIGINT NOT NULL CHECK (attempts >= 0),
    window_start TEXT NOT NULL     -- when this window began (RFC 3339 UTC text, sorts as text)
);
CREATE INDEX login_attempts_window ON login_attempts (window_start);

-- Sessions: the sweep deletes expired ones by expires_at; a changed password or a removed
-- user deletes that user's sessions by user_id.
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (user_id);
