-- madoguchi ledger, SQLite dialect. The PostgreSQL twin in ../postgres/ has the same version,
-- tables, columns and constraints; only the types of ids differ.
--
-- Conventions shared by both engines (so one query text serves both):
--   * timestamps are TEXT in UTC, RFC 3339 with milliseconds ('2021-05-10T09:00:00.000Z'):
--     they sort as text and read the same in either engine;
--   * dates are TEXT 'YYYY-MM-DD';
--   * flags are integers 0/1 with a CHECK;
--   * every closed vocabulary has a CHECK listing its codes (src/domain/resident.rs).

-- 接種者台帳: one person of the resident register. Never a My Number.
CREATE TABLE residents (
    id                INTEGER PRIMARY KEY,
    address_no        TEXT NOT NULL UNIQUE,               -- 宛名番号, the municipal person id
    municipality_code TEXT NOT NULL CHECK (length(municipality_code) = 6),
    ticket_no         TEXT NOT NULL CHECK (length(ticket_no) = 10), -- 券番号, leading zeros kept
    name              TEXT NOT NULL,                      -- 氏名 (kanji)
    name_kana         TEXT NOT NULL,                      -- フリガナ (katakana)
    birth_date        TEXT NOT NULL,
    sex               TEXT NOT NULL CHECK (sex IN ('M', 'F')),
    postal_code       TEXT NOT NULL DEFAULT '',
    address           TEXT NOT NULL DEFAULT '',
    town              TEXT NOT NULL DEFAULT '',           -- 町名
    district          TEXT NOT NULL DEFAULT '',           -- 地区
    household_no      TEXT,                               -- 世帯: residents sharing an address
    intent            TEXT NOT NULL DEFAULT 'none'
                      CHECK (intent IN ('wants', 'declines', 'undecided', 'none', 'clinic')),
    needs_transport   INTEGER NOT NULL DEFAULT 0 CHECK (needs_transport IN (0, 1)),
    notes             TEXT NOT NULL DEFAULT '',
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    -- A 券番号 is unique only within its municipality.
    CONSTRAINT residents_ticket_unique UNIQUE (municipality_code, ticket_no)
);
-- The unknown caller: search by kana name and birth date.
CREATE INDEX residents_kana_birth ON residents (name_kana, birth_date);
-- Kana typed without the space between surname and given name: narrowed by birth date.
CREATE INDEX residents_birth ON residents (birth_date);
CREATE INDEX residents_household ON residents (household_no);

-- 電話番号: many per resident; one household landline serves many residents.
CREATE TABLE phones (
    id          INTEGER PRIMARY KEY,
    resident_id INTEGER NOT NULL REFERENCES residents (id) ON DELETE CASCADE,
    e164        TEXT NOT NULL,     -- normalised key (src/domain/phone.rs): '+81773622300' or short digits
    written     TEXT NOT NULL,     -- as the register or the resident wrote it
    kind        TEXT NOT NULL DEFAULT 'home' CHECK (kind IN ('home', 'mobile', 'family', 'other')),
    CONSTRAINT phones_resident_number UNIQUE (resident_id, e164)
);
-- The screen-pop lookup: every resident on the calling number.
CREATE INDEX phones_e164 ON phones (e164);

-- 職員: staff logins. Agents have the PBX extension their phone rings on.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,   -- argon2id PHC string; never the password
    role          TEXT NOT NULL CHECK (role IN ('agent', 'supervisor', 'planner', 'venue', 'admin')),
    extension     TEXT UNIQUE,     -- one agent per extension, so a ringing device names one person
    active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    created_at    TEXT NOT NULL
);

-- Browser sessions. The cookie holds a random token; only its SHA-256 is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- 通話記録: one row per PBX call (all its legs), written by the tracker as the call progresses.
-- call_key is '<link>:<Linkedid>'; its UNIQUE constraint is what makes every call logged exactly
-- once, also when a PBX link reconnects or a transcript is replayed.
CREATE TABLE calls (
    id              INTEGER PRIMARY KEY,
    call_key        TEXT NOT NULL UNIQUE,
    direction       TEXT NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound', 'internal')),
    caller_number   TEXT NOT NULL DEFAULT '',   -- as the PBX wrote it
    caller_e164     TEXT,                       -- normalised; NULL when withheld
    caller_name     TEXT NOT NULL DEFAULT '',
    dialled         TEXT NOT NULL DEFAULT '',
    queue           TEXT,
    agents_offered  TEXT NOT NULL DEFAULT '',   -- extensions rung, comma-separated, in order
    answered_by     TEXT,                       -- extension that answered
    answered_user_id INTEGER REFERENCES users (id),
    resident_id     INTEGER REFERENCES residents (id),
    candidates      INTEGER NOT NULL DEFAULT 0, -- how many residents matched the number
    started_at      TEXT NOT NULL,
    queued_at       TEXT,
    rang_at         TEXT,
    answered_at     TEXT,
    ended_at        TEXT,
    hold_s          INTEGER,
    outcome         TEXT CHECK (outcome IN ('answered', 'abandoned', 'timeout', 'no_answer', 'busy', 'failed'))
);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_resident ON calls (resident_id, started_at);
CREATE INDEX calls_caller ON calls (caller_e164, started_at);

-- 問い合わせ: what was asked and answered. Tied to a call by its key where there was one
-- (no foreign key: the tracker may write the call row a moment after the agent saves).
CREATE TABLE inquiries (
    id           INTEGER PRIMARY KEY,
    resident_id  INTEGER REFERENCES residents (id),
    call_key     TEXT,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    category     TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    follow_up    INTEGER NOT NULL DEFAULT 0 CHECK (follow_up IN (0, 1)),
    caller_kind  TEXT NOT NULL DEFAULT 'self' CHECK (caller_kind IN ('self', 'proxy')), -- 本人 / 代理
    relationship TEXT NOT NULL DEFAULT '',     -- 続柄 when a proxy called
    created_at   TEXT NOT NULL
);
CREATE INDEX inquiries_resident ON inquiries (resident_id, created_at);
CREATE INDEX inquiries_call ON inquiries (call_key);

-- 操作記録: who viewed or changed which resident, when, from where.
CREATE TABLE audit_entries (
    id          INTEGER PRIMARY KEY,
    at          TEXT NOT NULL,
    user_id     INTEGER REFERENCES users (id),
    action      TEXT NOT NULL,
    resident_id INTEGER,
    detail      TEXT NOT NULL DEFAULT '',
    remote_addr TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_resident ON audit_entries (resident_id, at);
