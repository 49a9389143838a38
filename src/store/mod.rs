//! All SQL, through sqlx's `Any` driver: one query text serves SQLite and PostgreSQL.
//!
//! The two-engine shape, decided once: queries are written in the portable subset (numbered
//! `$1` parameters, which both engines accept; `INSERT … ON CONFLICT`, `RETURNING`), values are
//! the types both engines share (i64, f64, text; timestamps as RFC 3339 UTC text, dates as
//! `YYYY-MM-DD`, flags as 0/1). The schema is one migration history with a folder per engine
//! (`migrations/sqlite`, `migrations/postgres`), same versions, same tables.
//!
//! SQLite gets two pools: readers, and one writer connection. With a single writer no write
//! transaction ever starts from a stale read snapshot, so SQLITE_BUSY_SNAPSHOT cannot happen;
//! writes queue on the writer instead of failing. PostgreSQL uses one pool for both.
//!
//! Changes that must hold together go through a [`WriteTx`] ([`Store::begin_write`]); what the
//! database refuses comes back as a [`StoreError`] naming the constraint or the field.
//!
//! PostgreSQL also gets a native [`sqlx::PgPool`] ([`Store::postgres`]), opened lazily, for
//! what the `Any` driver cannot carry: LISTEN/NOTIFY and advisory locks (see the README's
//! design decisions).

pub mod bookings;
pub mod bulk;
pub mod callbacks;
pub mod calls;
pub mod error;
pub mod exports;
pub mod inquiries;
pub mod native;
pub mod popjson;
pub mod rebook;
pub mod residents;
pub mod standby;
pub mod survey;
pub mod testing;
pub mod tx;
pub mod users;
pub mod vaccinations;
pub mod venue;
pub mod vials;
pub mod vsys;

pub use error::StoreError;
pub use tx::WriteTx;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A pooled PostgreSQL connection idle this long is pinged before it is used again.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The ledger's database. Cheap to clone (pools are handles).
#[derive(Clone)]
pub struct Store {
    /// Queries that only read.
    pub read: AnyPool,
    /// Every write. On SQLite this pool has exactly one connection (see the module doc).
    pub write: AnyPool,
    pub engine: Engine,
    /// SQLite only: read-only connections used in place, without a hop to another thread,
    /// for the short reads of every request and the screen pop (see `native`, `popjson`).
    reader: Option<native::NativeReader>,
    /// SQLite only: the connection write transactions run on in place (see `native`).
    native: Option<native::NativeWriter>,
    /// PostgreSQL only: native connections for LISTEN/NOTIFY and advisory locks, which need
    /// PostgreSQL types and a session of their own. Lazy: none open until one is asked for.
    pg: Option<sqlx::PgPool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// A database URL with any password replaced, for logs: the `user:password@` part and query
/// parameters that carry secrets (`?password=`, `sslpassword=`, anything naming a secret or
/// token).
pub fn mask_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s + 3 => match base[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}://{}:***@{}", &base[..s], user, &base[at + 1..]),
            None => base.to_string(),
        },
        _ => base.to_string(),
    };
    if let Some(query) = query {
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&masked.join("&"));
    }
    out
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "passwd", "secret", "token"]
        .iter()
        .any(|w| key.contains(w))
}

impl Store {
    /// Opens (creating a SQLite file if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            anyhow::bail!(
                "database URL must start with sqlite: or postgres:, got {}",
                mask_url(url)
            );
        };
        let original = url;
        let store = match engine {
            Engine::Sqlite => {
                let url = if url.contains("mode=") {
                    url.to_string()
                } else if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                };
                // Messages name the URL as the operator wrote it, without the mode added here.
                let shown = mask_url(original);
                let opts = AnyConnectOptions::from_str(&url)
                    .with_context(|| format!("parsing database URL {shown}"))?;
                // A SQLite connection is a file handle in this process: it cannot go stale the
                // way a network connection can, so sqlx's ping before each use is skipped.
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                    .connect_with(opts.clone())
                    .await
                    .with_context(|| format!("opening {shown}"))?;
                // Migrate before readers open, so they see the schema.
                SQLITE_MIGRATIONS
                    .run(&write)
                    .await
                    .context("migrating the SQLite database")?;
                let read = AnyPoolOptions::new()
                    .max_connections(8)
                    .test_before_acquire(false)
                    .min_connections(1)
                    .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                    .connect_with(opts)
                    .await
                    .with_context(|| format!("opening {shown}"))?;
                let reader = native::NativeReader::open(&url);
                let native = native::NativeWriter::open(&url, WAL_AUTOCHECKPOINT);
                tokio::spawn(checkpoint_wal(read.clone()));
                Store {
                    read,
                    write,
                    engine,
                    reader,
                    native,
                    pg: None,
                }
            }
            Engine::Postgres => {
                let opts = AnyConnectOptions::from_str(url)
                    .with_context(|| format!("parsing database URL {}", mask_url(url)))?;
                // sqlx pings a connection before every use by default: a round trip to the
                // server for every statement, which doubled the server's work per request. A
                // connection in use a moment ago is alive (and if it died since, the statement
                // fails like any other and the connection is closed); one idle for a while may
                // have been cut by a server restart or a firewall, so it is still pinged first.
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= PING_AFTER_IDLE {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .with_context(|| format!("connecting to {}", mask_url(url)))?;
                POSTGRES_MIGRATIONS
                    .run(&pool)
                    .await
                    .context("migrating the PostgreSQL database")?;
                let pg = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_lazy(url)
                    .with_context(|| format!("parsing database URL {}", mask_url(url)))?;
                Store {
                    read: pool.clone(),
                    write: pool,
                    engine,
                    reader: None,
                    native: None,
                    pg: Some(pg),
                }
            }
        };
        Ok(store)
    }

    /// Where a short read (a row or a few, by key) runs: in place on SQLite, where a hop to
    /// the pool's thread would cost more than the read; through the pool on PostgreSQL.
    pub fn reads(&self) -> native::Via<'_, &AnyPool> {
        match &self.reader {
            Some(reader) => native::Via::InPlace(reader),
            None => native::Via::Pool(&self.read),
        }
    }

    /// After a bulk write (an import, the city's assignment, a transport plan): PostgreSQL's
    /// planner statistics for these tables, made anew now rather than at autovacuum's next
    /// round. Until then the planner guesses from an empty table's defaults, and the one-row
    /// reads of every request become scans of whole tables. Nothing on SQLite, whose planner
    /// keeps no statistics unless asked to.
    pub async fn refresh_statistics(&self, tables: &[&str]) -> Result<(), StoreError> {
        if self.engine == Engine::Postgres && !tables.is_empty() {
            // Table names are this crate's own constants.
            sqlx::query(&format!("ANALYZE {}", tables.join(", ")))
                .execute(&self.write)
                .await?;
        }
        Ok(())
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }

    /// The native PostgreSQL pool, for LISTEN/NOTIFY (`sqlx::postgres::PgListener`) and
    /// advisory locks (`pg_try_advisory_lock` on a connection held for as long as the lock);
    /// `None` on SQLite, where one process owns the file and neither is needed.
    pub fn postgres(&self) -> Option<&sqlx::PgPool> {
        self.pg.as_ref()
    }
}

/// The WAL size (pages) past which the writer checkpoints inside its own `COMMIT`: a safety
/// net only, [`checkpoint_wal`] checkpoints every [`CHECKPOINT_EVERY`] off the writer.
pub(crate) const WAL_AUTOCHECKPOINT: i64 = 10_000;

/// How often the WAL is checkpointed off the writer.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// SQLite: checkpoints the WAL every [`CHECKPOINT_EVERY`] on a reader connection
/// (`PRAGMA wal_checkpoint(PASSIVE)`: it copies what it can and waits for nobody), until the
/// pool closes. Left to itself, SQLite checkpoints inside the writer's `COMMIT` once the WAL
/// passes 1,000 pages, and that checkpoint's fsync stalls every change queued behind it; the
/// writer still checkpoints by itself past [`WAL_AUTOCHECKPOINT`] pages, should this task fall
/// behind.
async fn checkpoint_wal(pool: AnyPool) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::debug!(error = %e, "WAL checkpoint skipped");
        }
    }
}

/// Per-connection SQLite settings: WAL, foreign keys, a generous busy timeout, and
/// [`WAL_AUTOCHECKPOINT`].
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(
        format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 10000; PRAGMA cache_size = -16384; \
             PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT};"
        )
        .as_str(),
    )
    .await?;
    Ok(())
}

/// How every timestamp is stored: RFC 3339, UTC, milliseconds, `Z` (sorts as text).
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now() -> String {
    ts(Utc::now())
}

/// Reads a stored timestamp back.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(mask_url("sqlite://madoguchi.db"), "sqlite://madoguchi.db");
        assert_eq!(
            mask_url("postgres://h/db?user=u&password=secret&sslmode=require&sslpassword=x"),
            "postgres://h/db?user=u&password=***&sslmode=require&sslpassword=***"
        );
        assert_eq!(
            mask_url("postgres://u:secret@h/db?PassWord=p@ss"),
            "postgres://u:***@h/db?PassWord=***"
        );
    }

    #[test]
    fn timestamps_sort_as_text() {
        let a = ts(DateTime::from_timestamp(1_620_000_000, 5_000_000).unwrap());
        let b = ts(DateTime::from_timestamp(1_620_000_001, 0).unwrap());
        assert_eq!(a, "2021-05-03T00:00:00.005Z");
        assert!(a < b);
        assert_eq!(parse_ts(&a).unwrap().timestamp_millis(), 1_620_000_000_005);
    }
}
