-- The venue day (issue 10): vials received and opened at a venue, check-ins at reception,
-- 予診票 reissues, each dose given (接種記録), and the VRS files they went out in. SQLite
-- dialect; the PostgreSQL twin in ../postgres/ has the same version, tables, columns and
-- constraint names (a refused change names its rule the same way on both engines).
--
-- The rules of a dose are decided in one write transaction (src/store/vaccinations.rs):
-- the resident's row is locked first, then the vials of the lot, so two screens recording at
-- once decide one after the other. The database holds the last line itself:
--   * one current record per resident and dose: a partial UNIQUE index (a correction
--     supersedes the record it corrects in the same transaction, then takes its place);
--   * a record is corrected at most once (later corrections correct the correction);
--   * a vaccination belongs to at most one export batch (a column, set once).

-- バイアル: one vial of a lot, received at a venue. Opened (diluted) at a time, then good for
-- 6 hours; discarded with a reason. The doses drawn are the vaccinations that name the vial.
CREATE TABLE vials (
    id             INTEGER PRIMARY KEY,
    venue_id       INTEGER NOT NULL REFERENCES venues (id),
    product        TEXT NOT NULL CHECK (product IN ('pfizer', 'moderna', 'astrazeneca')),
    lot            TEXT NOT NULL CHECK (length(lot) BETWEEN 1 AND 20),
    -- 5 or 6 for Pfizer (the syringe decides), 10 for Moderna and AstraZeneca.
    doses_per_vial INTEGER NOT NULL CHECK (doses_per_vial BETWEEN 1 AND 30),
    received_at    TEXT NOT NULL,
    received_by    INTEGER REFERENCES users (id),
    opened_at      TEXT,              -- 希釈/開封: the 6-hour clock starts here
    opened_by      INTEGER REFERENCES users (id),
    discarded_at   TEXT,
    discard_reason TEXT NOT NULL DEFAULT '',
    discarded_by   INTEGER REFERENCES users (id),
    CONSTRAINT vials_discard_has_reason CHECK (discarded_at IS NULL OR discard_reason <> ''),
    CONSTRAINT vials_opened_after_received CHECK (opened_at IS NULL OR opened_at >= received_at)
);
-- The lot's vials opened at a venue on a day (the rule "a lot opened here today").
CREATE INDEX vials_venue_lot ON vials (venue_id, lot, opened_at);
CREATE INDEX vials_venue_opened ON vials (venue_id, opened_at);

-- VRS連携: one file written for VRS, kept byte for byte so it can be downloaded again.
CREATE TABLE export_batches (
    id         INTEGER PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('vrs')),
    for_date   TEXT NOT NULL,     -- the day (JST) of the doses in it, YYYY-MM-DD
    created_at TEXT NOT NULL,
    created_by INTEGER REFERENCES users (id),
    row_count  INTEGER NOT NULL CHECK (row_count >= 0),
    checksum   TEXT NOT NULL,     -- BLAKE2b-512 of the content, hex
    content    TEXT NOT NULL      -- the CSV exactly as first written (UTF-8, CRLF)
);
CREATE INDEX export_batches_day ON export_batches (kind, for_date, id);

-- 接種記録: one dose given. Never edited: a correction is a new row naming the row it
-- corrects (corrects_id), and the corrected row gets superseded_at, once.
CREATE TABLE vaccinations (
    id                INTEGER PRIMARY KEY,
    resident_id       INTEGER NOT NULL REFERENCES residents (id),
    dose              INTEGER NOT NULL CHECK (dose BETWEEN 1 AND 9),
    product           TEXT NOT NULL CHECK (product IN ('pfizer', 'moderna', 'astrazeneca')),
    lot               TEXT NOT NULL CHECK (length(lot) BETWEEN 1 AND 20),
    vial_id           INTEGER REFERENCES vials (id),
    venue_id          INTEGER NOT NULL REFERENCES venues (id),
    vaccinator        TEXT NOT NULL CHECK (length(vaccinator) BETWEEN 1 AND 20), -- 接種医師名
    injection_site    TEXT NOT NULL DEFAULT 'left_arm'
                      CHECK (injection_site IN ('left_arm', 'right_arm', 'left_thigh', 'right_thigh')),
    given_at          TEXT NOT NULL,  -- RFC 3339 UTC
    given_on          TEXT NOT NULL,  -- the day in Japan of given_at, YYYY-MM-DD (VRS 接種日)
    -- The ticket the dose was given on, as it was then (a reissued ticket keeps its old doses).
    municipality_code TEXT NOT NULL CHECK (length(municipality_code) = 6),
    ticket_no         TEXT NOT NULL CHECK (length(ticket_no) = 10),
    booking_id        INTEGER REFERENCES bookings (id),
    recorded_at       TEXT NOT NULL,  -- VRS 接種履歴登録日時
    recorded_by       INTEGER REFERENCES users (id),
    corrects_id       INTEGER REFERENCES vaccinations (id),
    correction_reason TEXT NOT NULL DEFAULT '',
    superseded_at     TEXT,
    export_batch_id   INTEGER REFERENCES export_batches (id),
    CONSTRAINT vaccinations_correction_has_reason
        CHECK (corrects_id IS NULL OR correction_reason <> '')
);
-- Never two current records of the same dose of a resident.
CREATE UNIQUE INDEX vaccinations_one_per_dose ON vaccinations (resident_id, dose)
    WHERE superseded_at IS NULL;
-- A record is corrected once; a later correction corrects the correction.
CREATE UNIQUE INDEX vaccinations_corrected_once ON vaccinations (corrects_id)
    WHERE corrects_id IS NOT NULL;
-- What is not yet exported for a day, and a batch's rows.
CREATE INDEX vaccinations_day_export ON vaccinations (given_on, export_batch_id);
CREATE INDEX vaccinations_batch ON vaccinations (export_batch_id);
CREATE INDEX vaccinations_venue_day ON vaccinations (venue_id, given_on);
CREATE INDEX vaccinations_vial ON vaccinations (vial_id);

-- 受付: a resident checked in at a venue on a day, once (a second scan finds this row).
CREATE TABLE checkins (
    id            INTEGER PRIMARY KEY,
    resident_id   INTEGER NOT NULL REFERENCES residents (id),
    venue_id      INTEGER NOT NULL REFERENCES venues (id),
    day           TEXT NOT NULL,      -- YYYY-MM-DD in Japan
    booking_id    INTEGER REFERENCES bookings (id),
    -- What reception was warned of: '' (booked here today), walk_in (no booking), wrong_venue,
    -- wrong_day.
    warning       TEXT NOT NULL DEFAULT ''
                  CHECK (warning IN ('', 'walk_in', 'wrong_venue', 'wrong_day')),
    checked_in_at TEXT NOT NULL,
    user_id       INTEGER REFERENCES users (id),
    CONSTRAINT checkins_once_a_day UNIQUE (resident_id, venue_id, day)
);
CREATE INDEX checkins_venue_day ON checkins (venue_id, day);

-- 予診票の再発行: every blank 予診票 printed for a resident at reception.
CREATE TABLE questionnaire_prints (
    id          INTEGER PRIMARY KEY,
    resident_id INTEGER NOT NULL REFERENCES residents (id),
    venue_id    INTEGER REFERENCES venues (id),
    printed_at  TEXT NOT NULL,
    user_id     INTEGER REFERENCES users (id)
);
CREATE INDEX questionnaire_prints_resident ON questionnaire_prints (resident_id);
