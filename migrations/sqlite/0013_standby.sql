-- 待機リスト: residents who asked for an earlier date, on standby at a venue, called when open
-- vials would otherwise go to waste. An entry stays (audited history) once taken or removed.
CREATE TABLE standby (
    id             INTEGER PRIMARY KEY,
    resident_id    INTEGER NOT NULL REFERENCES residents (id),
    venue_id       INTEGER NOT NULL REFERENCES venues (id),
    dose           INTEGER NOT NULL CHECK (dose IN (1, 2)),
    -- The earliest date (YYYY-MM-DD, JST) the resident asked for: they can come from then on.
    asked_on       TEXT NOT NULL,
    -- The number to call (as written), chosen by the agent from the resident's phones.
    phone          TEXT NOT NULL DEFAULT '',
    note           TEXT NOT NULL DEFAULT '',
    created_at     TEXT NOT NULL,
    created_by     INTEGER REFERENCES users (id),
    -- Taken (booked into a slot: booking_id) or removed (reason); NULL while on the list.
    closed_at      TEXT,
    closed_by      INTEGER REFERENCES users (id),
    closed_reason  TEXT NOT NULL DEFAULT '',
    booking_id     INTEGER REFERENCES bookings (id)
);
-- One open entry per resident and venue.
CREATE UNIQUE INDEX standby_one_open ON standby (resident_id, venue_id) WHERE closed_at IS NULL;
CREATE INDEX standby_venue_open ON standby (venue_id, closed_at);
