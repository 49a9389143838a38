-- Callbacks (折り返し, issue 11), sqlite dialect. Same version, tables and constraints on both engines.
--
-- Every caller who abandoned the queue or was missed (abandoned, timeout, no answer, busy) is one
-- entry per number per day in Japan: a second missed call from the same number the same day
-- adds to `missed` instead of a second entry. When that number calls again and is answered,
-- the open entry is cleared by itself (status 'cleared'). Agents take an entry (status 'taken',
-- by whom), call back, and mark it done with an outcome.
CREATE TABLE callbacks (
    id           INTEGER PRIMARY KEY,
    number       TEXT NOT NULL,          -- the caller's number as the PBX sent it
    day          TEXT NOT NULL,          -- YYYY-MM-DD, the day in Japan of the missed call
    call_key     TEXT NOT NULL,          -- the last missed call
    queue        TEXT,
    resident_id  INTEGER,                -- the one resident the number matched, if exactly one
    candidates   INTEGER NOT NULL DEFAULT 0, -- residents the number matched
    missed       INTEGER NOT NULL DEFAULT 1 CHECK (missed >= 1),
    status       TEXT NOT NULL DEFAULT 'open'
                 CHECK (status IN ('open', 'taken', 'done', 'cleared')),
    taken_by     INTEGER,                -- users.id
    taken_at     TEXT,
    outcome      TEXT,                   -- when done: reached, no_answer, voicemail, wrong_number, other
    note         TEXT NOT NULL DEFAULT '',
    done_at      TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CONSTRAINT callbacks_one_per_number_day UNIQUE (number, day)
);
CREATE INDEX callbacks_status ON callbacks (status, day);
