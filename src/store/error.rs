//! Typed store errors: what the database refused, in terms a handler can answer with.
//!
//! The rules of the ledger are the database's constraints (DESIGN §2), so "the slot is full"
//! or "this resident already has a dose-1 booking" arrives as a constraint violation. Both
//! engines report the same constraint by the same name:
//!
//! - PostgreSQL names it in the error (`constraint` field). An unnamed constraint gets
//!   PostgreSQL's default name: `residents_address_no_key` (UNIQUE), `residents_sex_check`
//!   (column CHECK), `sessions_pkey`.
//! - SQLite says `UNIQUE constraint failed: residents.address_no` or `CHECK constraint failed:
//!   sex IN ('M', 'F')` (the name, when the CHECK has one). [`sqlite_constraint`] reads the
//!   embedded SQLite migrations once and maps those columns and expressions to the name
//!   PostgreSQL gives the same constraint, so one test, and one handler, serves both.
//!
//! New constraints that a handler answers with should carry an explicit name, the same in
//! both migration folders (`CONSTRAINT slots_booked_within_capacity CHECK (…)`).

use sqlx::error::ErrorKind;
use std::collections::HashMap;
use std::sync::OnceLock;

/// What the store could not do, by kind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A rule refused the change: a UNIQUE or CHECK constraint (409), named as in the schema.
    #[error("refused by the database rule {constraint}")]
    Conflict { constraint: String },
    /// A value the schema does not accept: a missing required value, a reference to a row that
    /// does not exist (422). `field` is the column.
    #[error("{field} is not acceptable to the database")]
    Invalid { field: &'static str },
    /// The row asked for does not exist.
    #[error("not found")]
    NotFound,
    /// The database could not be reached or did not answer in time (connection lost, pool
    /// exhausted, a lock wait that timed out): worth retrying, not the caller's fault.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// The constraint a conflict names, if this is one.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            StoreError::Conflict { constraint } => Some(constraint),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            sqlx::Error::Database(db) => {
                if let Some(typed) = from_database(db.as_ref()) {
                    typed
                } else if unavailable_code(
                    db.code().as_deref(),
                    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                        .is_some(),
                ) {
                    StoreError::Unavailable(sqlx::Error::Database(db))
                } else {
                    StoreError::Other(sqlx::Error::Database(db).into())
                }
            }
            other => StoreError::Other(other.into()),
        }
    }
}

/// SQLite BUSY / LOCKED (a lock wait that outlived busy_timeout) and PostgreSQL's connection
/// exceptions (class 08), shutdowns (57P0x) and lack of resources (53xxx).
fn unavailable_code(code: Option<&str>, postgres: bool) -> bool {
    let Some(code) = code else { return false };
    if postgres {
        return code.starts_with("08") || code.starts_with("57P0") || code.starts_with("53");
    }
    // SQLite gives the extended code; the primary code is its low byte.
    code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

fn from_database(db: &dyn sqlx::error::DatabaseError) -> Option<StoreError> {
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
    match db.kind() {
        ErrorKind::UniqueViolation | ErrorKind::CheckViolation => {
            let constraint = match pg {
                Some(pg) => pg.constraint().unwrap_or("unnamed").to_string(),
                None => sqlite_constraint(db.message()),
            };
            Some(StoreError::Conflict { constraint })
        }
        ErrorKind::NotNullViolation => {
            let column = match pg {
                Some(pg) => pg.column().unwrap_or("").to_string(),
                // NOT NULL constraint failed: residents.name
                None => last_column(db.message()),
            };
            Some(StoreError::Invalid {
                field: intern(&column),
            })
        }
        ErrorKind::ForeignKeyViolation => {
            // PostgreSQL: "Key (resident_id)=(9) is not present in table \"residents\"".
            // SQLite does not say which key; the caller knows what it referenced.
            let column = pg
                .and_then(|pg| pg.detail())
                .and_then(|d| d.strip_prefix("Key ("))
                .and_then(|d| d.split(')').next())
                .unwrap_or("reference")
                .to_string();
            Some(StoreError::Invalid {
                field: intern(&column),
            })
        }
        _ => None,
    }
}

/// Field names live as long as the program: the set is the schema's columns, so interning each
/// once is bounded, and an `Invalid` stays cheap to pass to an HTTP answer.
fn intern(s: &str) -> &'static str {
    static NAMES: OnceLock<std::sync::Mutex<std::collections::HashSet<&'static str>>> =
        OnceLock::new();
    if s.is_empty() || s.len() > 63 {
        return "value";
    }
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(s) {
        return n;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

fn last_column(message: &str) -> String {
    message
        .rsplit(':')
        .next()
        .unwrap_or("")
        .trim()
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_string()
}

/// The name of the constraint behind a SQLite constraint message, as PostgreSQL names it.
pub fn sqlite_constraint(message: &str) -> String {
    let names = sqlite_names();
    if let Some(cols) = message.strip_prefix("UNIQUE constraint failed: ") {
        // "residents.municipality_code, residents.ticket_no"
        let mut table = "";
        let mut columns = Vec::new();
        for part in cols.split(',') {
            let (t, c) = part.trim().split_once('.').unwrap_or(("", part.trim()));
            table = t;
            columns.push(c);
        }
        let key = format!("{table}({})", columns.join(","));
        return names
            .unique
            .get(&key)
            .cloned()
            .unwrap_or_else(|| format!("{table}_{}_key", columns.join("_")));
    }
    if let Some(what) = message.strip_prefix("CHECK constraint failed: ") {
        let what = squash(what);
        return names.check.get(&what).cloned().unwrap_or(what);
    }
    message.to_string()
}

/// Constraint names of the SQLite schema: `unique` by `table(col,col)`, `check` by the
/// expression text (and by name, for named checks).
#[derive(Debug, Default)]
struct SqliteNames {
    unique: HashMap<String, String>,
    check: HashMap<String, String>,
}

fn sqlite_names() -> &'static SqliteNames {
    static NAMES: OnceLock<SqliteNames> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = SqliteNames::default();
        for m in super::SQLITE_MIGRATIONS.iter() {
            read_schema(&m.sql, &mut names);
        }
        names
    })
}

/// Whitespace runs as one space, so an expression matches however the migration wrapped it.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text inside the parentheses opening at `open`, and the index after the closing one.
fn parenthesised(s: &str, open: usize) -> Option<(&str, usize)> {
    let mut depth = 0;
    let mut quoted = false;
    for (i, c) in s[open..].char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[open + 1..open + i], open + i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits at commas outside parentheses and quotes.
fn top_level_split(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn read_schema(sql: &str, names: &mut SqliteNames) {
    let sql: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let upper = sql.to_ascii_uppercase();
    read_unique_indexes(&sql, &upper, names);
    let mut from = 0;
    while let Some(at) = upper[from..].find("CREATE TABLE") {
        let start = from + at + "CREATE TABLE".len();
        let Some(open) = sql[start..].find('(').map(|o| start + o) else {
            return;
        };
        let table = sql[start..open]
            .split_whitespace()
            .last()
            .unwrap_or("")
            .to_string();
        let Some((body, end)) = parenthesised(&sql, open) else {
            return;
        };
        from = end;
        for def in top_level_split(body) {
            read_definition(&table, &squash(def), names);
        }
    }
}

/// `CREATE UNIQUE INDEX name ON table (a, b) [WHERE …]`: SQLite reports the columns,
/// PostgreSQL the index name (a partial unique index, such as one live booking per dose).
fn read_unique_indexes(sql: &str, upper: &str, names: &mut SqliteNames) {
    let mut from = 0;
    while let Some(at) = upper[from..].find("CREATE UNIQUE INDEX") {
        let start = from + at + "CREATE UNIQUE INDEX".len();
        from = start;
        let Some(open) = sql[start..].find('(').map(|o| start + o) else {
            return;
        };
        let head: Vec<&str> = sql[start..open].split_whitespace().collect();
        // [IF NOT EXISTS] name ON table
        let Some(on) = head.iter().position(|w| w.eq_ignore_ascii_case("ON")) else {
            continue;
        };
        let (Some(name), Some(table)) = (on.checked_sub(1).map(|i| head[i]), head.get(on + 1))
        else {
            continue;
        };
        let Some((cols, end)) = parenthesised(sql, open) else {
            return;
        };
        from = end;
        let cols: Vec<String> = cols.split(',').map(|c| c.trim().to_string()).collect();
        names
            .unique
            .insert(format!("{table}({})", cols.join(",")), name.to_string());
    }
}

fn read_definition(table: &str, def: &str, names: &mut SqliteNames) {
    let upper = def.to_ascii_uppercase();
    let words: Vec<&str> = def.split(' ').collect();
    let check_expr = |names: &mut SqliteNames, name: String| {
        if let Some(at) = upper.find("CHECK (").or_else(|| upper.find("CHECK(")) {
            let open = at + upper[at..].find('(').unwrap_or(0);
            if let Some((expr, _)) = parenthesised(def, open) {
                names.check.insert(squash(expr), name.clone());
                names.check.insert(name.clone(), name);
            }
        }
    };
    let unique_cols = |at: usize| {
        let open = at + upper[at..].find('(')?;
        let (cols, _) = parenthesised(def, open)?;
        Some(
            cols.split(',')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>(),
        )
    };
    if upper.starts_with("CONSTRAINT ") {
        let name = words.get(1).copied().unwrap_or("").to_string();
        if let Some(at) = upper.find(" UNIQUE").or_else(|| upper.find(" PRIMARY KEY")) {
            if let Some(cols) = unique_cols(at) {
                names
                    .unique
                    .insert(format!("{table}({})", cols.join(",")), name.clone());
            }
        }
        check_expr(names, name);
    } else if upper.starts_with("UNIQUE") || upper.starts_with("PRIMARY KEY") {
        if let Some(cols) = unique_cols(0) {
            let suffix = if upper.starts_with("PRIMARY") {
                "pkey".to_string()
            } else {
                format!("{}_key", cols.join("_"))
            };
            names.unique.insert(
                format!("{table}({})", cols.join(",")),
                format!("{table}_{suffix}"),
            );
        }
    } else if upper.starts_with("CHECK") {
        check_expr(names, format!("{table}_check"));
    } else if let Some(column) = words.first() {
        if upper.contains(" PRIMARY KEY") {
            names
                .unique
                .insert(format!("{table}({column})"), format!("{table}_pkey"));
        } else if upper.contains(" UNIQUE") {
            names.unique.insert(
                format!("{table}({column})"),
                format!("{table}_{column}_key"),
            );
        }
        check_expr(names, format!("{table}_{column}_check"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_messages_name_what_postgres_names() {
        for (message, name) in [
            (
                "UNIQUE constraint failed: residents.address_no",
                "residents_address_no_key",
            ),
            (
                "UNIQUE constraint failed: residents.municipality_code, residents.ticket_no",
                "residents_ticket_unique",
            ),
            (
                "UNIQUE constraint failed: phones.resident_id, phones.e164",
                "phones_resident_number",
            ),
            ("UNIQUE constraint failed: sessions.token_hash", "sessions_pkey"),
            (
                "CHECK constraint failed: sex IN ('M', 'F')",
                "residents_sex_check",
            ),
            (
                "CHECK constraint failed: intent IN ('wants', 'declines', 'undecided', 'none', 'clinic')",
                "residents_intent_check",
            ),
            ("CHECK constraint failed: follow_up IN (0, 1)", "inquiries_follow_up_check"),
            // Named, or unknown to the schema: the text as SQLite gave it.
            ("CHECK constraint failed: slots_booked_within_capacity", "slots_booked_within_capacity"),
            ("UNIQUE constraint failed: t.a, t.b", "t_a_b_key"),
            // A partial unique index: named by the index.
            (
                "UNIQUE constraint failed: bookings.resident_id, bookings.dose",
                "bookings_one_live_per_dose",
            ),
            (
                "UNIQUE constraint failed: slots.venue_id, slots.starts_at, slots.product",
                "slots_venue_start",
            ),
        ] {
            assert_eq!(sqlite_constraint(message), name, "{message}");
        }
    }

    #[test]
    fn schema_reading() {
        let mut names = SqliteNames::default();
        read_schema(
            "CREATE TABLE slots ( -- コマ\n id INTEGER PRIMARY KEY,\n booked INTEGER NOT NULL,\n \
             capacity INTEGER NOT NULL CHECK (capacity >= 0),\n CONSTRAINT slots_booked_within_capacity \
             CHECK (booked <= capacity),\n CONSTRAINT slots_unique UNIQUE (venue_id, starts_at)\n);",
            &mut names,
        );
        assert_eq!(names.check["capacity >= 0"], "slots_capacity_check");
        assert_eq!(
            names.check["booked <= capacity"],
            "slots_booked_within_capacity"
        );
        assert_eq!(names.unique["slots(venue_id,starts_at)"], "slots_unique");
        assert_eq!(names.unique["slots(id)"], "slots_pkey");
    }

    #[test]
    fn lost_connections_are_unavailable() {
        assert!(matches!(
            StoreError::from(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::NotFound
        ));
        assert!(unavailable_code(Some("5"), false));
        assert!(unavailable_code(Some("517"), false)); // SQLITE_BUSY_SNAPSHOT
        assert!(!unavailable_code(Some("2067"), false)); // SQLITE_CONSTRAINT_UNIQUE
        assert!(unavailable_code(Some("08006"), true));
        assert!(unavailable_code(Some("57P01"), true));
        assert!(!unavailable_code(Some("23505"), true));
    }
}
