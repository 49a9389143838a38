-- The city's assignment, transport (送迎) and reshuffles (issue 8, part 2). SQLite dialect;
-- the PostgreSQL twin in ../postgres/ has the same version, tables, columns and constraint
-- names.
--
-- Rules kept here, whatever the load:
--   * a bus run never carries more riders than its seats: the counter `runs.riders` is raised
--     only by `UPDATE … SET riders = riders + n WHERE riders + n <= seats` (src/store/bookings/
--     transport.rs), and the CHECK below refuses anything else;
--   * a booking has at most one live ride: a partial UNIQUE index.

-- Seats of a slot held back for the call center: the city's assignment leaves them free for
-- agents rebooking on the phone; a move may take them.
ALTER TABLE slots ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held >= 0);

-- 乗車場所: a pickup stop (a meeting hall, a bus stop) and the 町名 it serves, comma-separated.
CREATE TABLE stops (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    towns      TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    CONSTRAINT stops_name_unique UNIQUE (name)
);

-- Minutes by bus from a stop to a venue (the stop serves that venue only when a row exists).
CREATE TABLE stop_minutes (
    stop_id  INTEGER NOT NULL REFERENCES stops (id),
    venue_id INTEGER NOT NULL REFERENCES venues (id),
    minutes  INTEGER NOT NULL CHECK (minutes > 0),
    PRIMARY KEY (stop_id, venue_id)
);

-- 便: a bus to a venue, arriving for the slots that start at `starts_at` (JST day and time),
-- with seats. `riders` counts its live rides (a counter, like slots.booked).
CREATE TABLE runs (
    id         INTEGER PRIMARY KEY,
    venue_id   INTEGER NOT NULL REFERENCES venues (id),
    starts_at  TEXT NOT NULL,
    name       TEXT NOT NULL DEFAULT '',
    seats      INTEGER NOT NULL CHECK (seats >= 0),
    riders     INTEGER NOT NULL DEFAULT 0 CHECK (riders >= 0),
    created_at TEXT NOT NULL,
    CONSTRAINT runs_riders_within_seats CHECK (riders <= seats)
);
CREATE INDEX runs_venue_starts ON runs (venue_id, starts_at);
CREATE INDEX runs_starts ON runs (starts_at);

-- A run's stops in order, each with its pickup time (computed back from the slot's start by
-- the stop's minutes to the venue and a margin).
CREATE TABLE run_stops (
    run_id    INTEGER NOT NULL REFERENCES runs (id),
    stop_id   INTEGER NOT NULL REFERENCES stops (id),
    seq       INTEGER NOT NULL,
    pickup_at TEXT NOT NULL,
    PRIMARY KEY (run_id, stop_id)
);

-- 送迎: a booking's seat on a run, boarding at a stop. A released ride stays as history.
CREATE TABLE rides (
    id         INTEGER PRIMARY KEY,
    booking_id INTEGER NOT NULL REFERENCES bookings (id),
    run_id     INTEGER NOT NULL REFERENCES runs (id),
    stop_id    INTEGER NOT NULL REFERENCES stops (id),
    status     TEXT NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'released')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX rides_one_live_per_booking ON rides (booking_id) WHERE status = 'booked';
CREATE INDEX rides_run ON rides (run_id, status);
