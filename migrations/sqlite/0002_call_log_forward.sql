-- The call log only moves forward (src/store/calls.rs), and a row the database refuses is set
-- aside instead of blocking the log (src/calls/writer.rs).
--
-- calls gains:
--   * outcome 'unknown': the call ended while madoguchi could not see it (a restart or an
--     outage), and nobody can say how; an answered call is never turned into this;
--   * resident_confirmed: 1 once an agent said who is calling (the household pick-list). The
--     agent owns that fact; the tracker's later writes never replace it;
--   * end_estimated: 1 when ended_at is when madoguchi noticed the end (resync, the bound on
--     calls with no PBX), not when the PBX reported it.
-- SQLite cannot alter a CHECK, so the table is rebuilt; nothing references calls by key.
CREATE TABLE calls_v2 (
    id              INTEGER PRIMARY KEY,
    call_key        TEXT NOT NULL UNIQUE,
    direction       TEXT NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller_number   TEXT NOT NULL DEFAULT '',
    caller_e164     TEXT,
    caller_name     TEXT NOT NULL DEFAULT '',
    dialled         TEXT NOT NULL DEFAULT '',
    queue           TEXT,
    agents_offered  TEXT NOT NULL DEFAULT '',
    answered_by     TEXT,
    answered_user_id INTEGER REFERENCES users (id),
    resident_id     INTEGER REFERENCES residents (id),
    resident_confirmed INTEGER NOT NULL DEFAULT 0 CHECK (resident_confirmed IN (0, 1)),
    candidates      INTEGER NOT NULL DEFAULT 0,
    started_at      TEXT NOT NULL,
    queued_at       TEXT,
    rang_at         TEXT,
    answered_at     TEXT,
    ended_at        TEXT,
    end_estimated   INTEGER NOT NULL DEFAULT 0 CHECK (end_estimated IN (0, 1)),
    hold_s          INTEGER,
    outcome         TEXT CHECK (outcome IN ('answered', 'abandoned', 'timeout', 'no_answer', 'busy', 'failed', 'unknown'))
);
INSERT INTO calls_v2 (id, call_key, direction, caller_number, caller_e164, caller_name, dialled,
    queue, agents_offered, answered_by, answered_user_id, resident_id, candidates, started_at,
    queued_at, rang_at, answered_at, ended_at, hold_s, outcome)
SELECT id, call_key, direction, caller_number, caller_e164, caller_name, dialled,
    queue, agents_offered, answered_by, answered_user_id, resident_id, candidates, started_at,
    queued_at, rang_at, answered_at, ended_at, hold_s, outcome FROM calls;
DROP TABLE calls;
ALTER TABLE calls_v2 RENAME TO calls;
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_resident ON calls (resident_id, started_at);
CREATE INDEX calls_caller ON calls (caller_e164, started_at);
-- Calls an earlier process left open, read at start to reconcile with the PBX.
CREATE INDEX calls_open ON calls (call_key) WHERE ended_at IS NULL;

-- Call states the database refused (a NUL byte in a PostgreSQL text, a broken constraint):
-- kept here whole, as JSON, for an administrator, so one bad row never blocks the ones
-- behind it. The log itself then holds the call with the offending characters removed.
CREATE TABLE call_log_rejects (
    id        INTEGER PRIMARY KEY,
    call_key  TEXT NOT NULL,
    at        TEXT NOT NULL,
    error     TEXT NOT NULL,
    row_json  TEXT NOT NULL
);
CREATE INDEX call_log_rejects_at ON call_log_rejects (at);
