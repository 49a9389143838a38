-- Appointments the city assigns (issue 8): venues, their time slots (コマ), and each
-- resident's booking of dose 1 and dose 2. SQLite dialect; the PostgreSQL twin in
-- ../postgres/ has the same version, tables, columns and constraint names (a refused change
-- names its rule the same way on both engines: src/store/error.rs).
--
-- The rules of DESIGN §2 live here, so they hold whatever the load:
--   * a slot never holds more live bookings than its capacity: the counter `slots.booked` is
--     raised only by `UPDATE … SET booked = booked + 1 WHERE booked < capacity AND closed = 0`
--     (src/store/bookings.rs, a row-count check), and the CHECK below refuses anything else;
--   * a resident has at most one live booking per dose: a partial UNIQUE index;
--   * dose 2's product and interval are checked in the same write transaction that moves it
--     (src/domain/vaccine.rs); the product is the slot's, so a booking cannot carry its own.

-- 会場: a vaccination venue (a community centre, a hospital hall).
CREATE TABLE venues (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    address    TEXT NOT NULL DEFAULT '',
    -- 地区 served, comma-separated as the residents table writes them ('東,中'): the planner
    -- assigns residents of these districts here first.
    districts  TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    CONSTRAINT venues_name_unique UNIQUE (name)
);

-- コマ: a time window at a venue, for one vaccine product, with a number of seats.
CREATE TABLE slots (
    id         INTEGER PRIMARY KEY,
    venue_id   INTEGER NOT NULL REFERENCES venues (id),
    starts_at  TEXT NOT NULL,   -- RFC 3339 UTC; the venue's day and time of day are in JST
    ends_at    TEXT NOT NULL,
    -- Every dose given in this slot is of this product; dose 2 must match dose 1's.
    product    TEXT NOT NULL CHECK (product IN ('pfizer', 'moderna', 'astrazeneca')),
    capacity   INTEGER NOT NULL CHECK (capacity >= 0),
    -- Live bookings (booked or checked in) in this slot, kept by the store in the same
    -- transaction that changes a booking. A counter, not a COUNT(*), so that taking a seat is
    -- one conditional UPDATE whose row count says whether a seat was free.
    booked     INTEGER NOT NULL DEFAULT 0 CHECK (booked >= 0),
    -- 1 when the planner stopped new bookings (venue closed, vials short); live bookings stay.
    closed     INTEGER NOT NULL DEFAULT 0 CHECK (closed IN (0, 1)),
    created_at TEXT NOT NULL,
    -- The rule itself: never more live bookings than seats. The conditional UPDATE never
    -- reaches it; anything that bypasses the store is refused here.
    CONSTRAINT slots_booked_within_capacity CHECK (booked <= capacity),
    CONSTRAINT slots_ends_after_start CHECK (ends_at > starts_at),
    -- One コマ per venue, product and start time.
    CONSTRAINT slots_venue_start UNIQUE (venue_id, starts_at, product)
);
-- The slots of a day (GET /api/slots?date=), and dose 2's search at a venue.
CREATE INDEX slots_starts ON slots (starts_at);
CREATE INDEX slots_venue_starts ON slots (venue_id, product, starts_at);

-- 予約: a resident's appointment for dose 1 or 2 in a slot. A move (rebooking) changes
-- slot_id in place, so a booking keeps its id however often it moves; a cancelled or no-show
-- booking stays as history and a new row is the next appointment.
CREATE TABLE bookings (
    id          INTEGER PRIMARY KEY,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    dose        INTEGER NOT NULL CHECK (dose IN (1, 2)),
    slot_id     INTEGER NOT NULL REFERENCES slots (id),
    status      TEXT NOT NULL DEFAULT 'booked'
                CHECK (status IN ('booked', 'checked_in', 'vaccinated', 'cancelled', 'no_show')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
-- At most one LIVE booking per resident and dose (booked or checked in: those hold a seat).
-- Partial, so cancelled and no-show rows may pile up as history.
CREATE UNIQUE INDEX bookings_one_live_per_dose ON bookings (resident_id, dose)
    WHERE status IN ('booked', 'checked_in');
-- Who is booked in a slot (GET /api/bookings?slot_id=).
CREATE INDEX bookings_slot ON bookings (slot_id, status);
-- A resident's bookings (the record and the screen pop).
CREATE INDEX bookings_resident ON bookings (resident_id, dose);

-- The first answer to each move request, by the Idempotency-Key its client sent: a retry
-- (a double click, a browser resending after a timeout) gets the same answer and changes
-- nothing. A successful move writes its row in the move's own transaction; a refusal writes
-- its row after the move was rolled back.
CREATE TABLE booking_moves (
    idempotency_key TEXT PRIMARY KEY,
    booking_id      INTEGER NOT NULL,
    slot_id         INTEGER NOT NULL,   -- the slot asked for: the same key for another request is refused
    answer          TEXT NOT NULL,      -- the answer as JSON (src/store/bookings.rs MoveOutcome)
    created_at      TEXT NOT NULL
);
