//! SQLite's write transactions and short reads, run in place.
//!
//! Through the pool, sqlx hands every statement to the connection's worker thread and waits
//! for the answer: two thread wake-ups a statement, about a tenth of a millisecond on this
//! machine's virtual CPUs, while the statement itself takes a few microseconds. A rebook is a
//! dozen statements, so the writer spent most of each change waiting for wake-ups, and every
//! change queued behind it.
//!
//! A [`NativeWriter`] is a second connection to the same file, driven directly (rusqlite) on
//! the task's own thread. Its transaction takes the pool's one writer connection and holds it
//! until `COMMIT`: every write, through the pool or here, still goes one at a time, so `BEGIN
//! IMMEDIATE` never waits for another writer of this process. Changes queued for it share
//! one `COMMIT` (group commit, see [`NativeWriter`]).
//!
//! The store's SQL stays as it is: [`Via`] is an [`Executor`] for the `Any` driver, so
//! `query.fetch_optional(tx.conn())` runs here on SQLite and through the pool on PostgreSQL
//! (or on an in-memory SQLite database, which a second connection could not share). Values and
//! errors come back exactly as sqlx's SQLite driver gives them: an integer as a `BigInt`, text
//! as `Text`, a constraint violation as a database error carrying SQLite's extended code and
//! message, so [`super::StoreError`] reads both the same way. [`super::Store::reads`] does the
//! same for short reads, on direct read-only connections ([`NativeReader`]).

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use rusqlite::types::ValueRef;
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyTypeInfo, AnyTypeInfoKind, AnyValue};
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::pool::PoolConnection;
use sqlx::{Any, Either, Execute, Executor, Transaction};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long `BEGIN IMMEDIATE` waits for a writer in another process (the pool's connections
/// wait as long).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Statements kept prepared: every text the store writes with, several times over.
const STATEMENT_CACHE: usize = 256;

/// The path of the file behind a `sqlite:` URL; `None` (the pools serve alone) for an
/// in-memory database, a read-only one (`mode=ro`), or a URL with options a direct
/// connection would not honour the same way (`immutable`, `vfs`).
pub(super) fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let special = query.split('&').any(|pair| {
        matches!(
            pair.split_once('=').unwrap_or((pair, "")),
            ("mode", "memory" | "ro") | ("immutable" | "vfs", _)
        )
    });
    if path.is_empty() || path.contains(":memory:") || special {
        return None;
    }
    Some(path)
}

/// How many changes share one `COMMIT` at most (see [`NativeWriter`]).
const BATCH_CHANGES: usize = 32;

/// How long a batch left open for a change that then never came stays open before it is
/// committed anyway (the change's request was dropped while it waited for the writer).
const BATCH_ORPHANED: Duration = Duration::from_millis(20);

/// The direct write connection (see the module doc), with group commit.
///
/// A `COMMIT` writes every page the transaction changed to the WAL: a rebook touches a dozen
/// pages (slots, bookings, the answer, the audit line, the inquiry, their indexes), and its
/// `COMMIT` cost more than its statements. So changes that queue for the writer share one
/// transaction: each runs inside a savepoint of its own (`SAVEPOINT w` … `RELEASE w`, or
/// `ROLLBACK TO w` when it fails, which leaves the others untouched), and when the last
/// change of the queue is done (or [`BATCH_CHANGES`] are), one `COMMIT` writes them all.
/// A change's `commit` returns only once that `COMMIT` has: nobody hears of a change that
/// could still be lost, and when the `COMMIT` fails every change in it gets the error.
#[derive(Clone)]
pub(super) struct NativeWriter {
    conn: Arc<Mutex<rusqlite::Connection>>,
    batch: Arc<tokio::sync::Mutex<Batch>>,
    /// Changes waiting for `batch`: while there are some, a finished change leaves the
    /// transaction open for them.
    queued: Arc<AtomicUsize>,
    /// `Batch::number`, readable without the lock (by a watchdog whose batch is long done).
    batches: Arc<AtomicU64>,
}

/// The open transaction shared by the changes of one batch.
#[derive(Default)]
struct Batch {
    /// The pool's writer, held while a batch is open, so that no other write of this
    /// process runs meanwhile.
    writer: Option<PoolConnection<Any>>,
    /// Changes released into the open batch so far.
    changes: usize,
    /// The changes waiting for the batch's `COMMIT`.
    waiting: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    /// Counts batches, so a late watchdog knows its batch was committed already.
    number: u64,
    /// A watchdog is set for this batch (see [`NativeWriter::after_change`]).
    watched: bool,
}

impl NativeWriter {
    /// Opens the file behind a `sqlite:` URL with the pool's settings; `None` (writes go
    /// through the pool) for an in-memory database or when it cannot be opened.
    pub(super) fn open(url: &str, wal_autocheckpoint: i64) -> Option<NativeWriter> {
        use rusqlite::OpenFlags;
        let path = sqlite_path(url)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let opened = rusqlite::Connection::open_with_flags(path, flags).and_then(|conn| {
            conn.execute_batch(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -16384; PRAGMA wal_autocheckpoint = {wal_autocheckpoint};"
            ))?;
            conn.busy_timeout(Duration::ZERO)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            Ok(conn)
        });
        match opened {
            Ok(conn) => Some(NativeWriter {
                conn: Arc::new(Mutex::new(conn)),
                batch: Default::default(),
                queued: Default::default(),
                batches: Default::default(),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "no direct SQLite writer; writes go through the pool");
                None
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A change's transaction: its savepoint in the open batch, or a new batch (`BEGIN
    /// IMMEDIATE` with the pool's writer, taken from `pool`).
    pub(super) async fn begin(&self, pool: &sqlx::AnyPool) -> Result<NativeTx, sqlx::Error> {
        let mut batch = {
            let _queued = Queued::new(&self.queued);
            self.batch.clone().lock_owned().await
        };
        if batch.writer.is_some() && self.lock().is_autocommit() {
            // The open batch is gone (SQLite rolls a transaction back by itself after a
            // failed write of the disk, say): its changes are lost, and said so.
            self.end_batch(&mut batch, Err("the write transaction was lost".into()));
        }
        if batch.writer.is_none() {
            let writer = pool.acquire().await?;
            {
                let conn = self.lock();
                if !conn.is_autocommit() {
                    // A `BEGIN` that finished after its request was dropped.
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
            self.begin_immediate().await?;
            batch.writer = Some(writer);
            batch.changes = 0;
        }
        if let Err(e) = self.lock().execute_batch("SAVEPOINT w") {
            drop(self.after_change(batch, false, false));
            return Err(database_error(e));
        }
        Ok(NativeTx {
            conn: self.clone(),
            batch: Some(batch),
        })
    }

    /// `BEGIN IMMEDIATE`: without a wait when the file is free (the usual case: this
    /// process's writes all hold the pool's writer); a writer in another process (a command
    /// run beside the server) is waited for off the runtime's threads.
    async fn begin_immediate(&self) -> Result<(), sqlx::Error> {
        let first = self.lock().execute_batch("BEGIN IMMEDIATE");
        match first {
            Ok(()) => Ok(()),
            Err(e) if is_busy(&e) => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || {
                    let conn = this.lock();
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    let begun = conn.execute_batch("BEGIN IMMEDIATE");
                    conn.busy_timeout(Duration::ZERO)?;
                    begun
                })
                .await
                .map_err(|_| sqlx::Error::WorkerCrashed)?
                .map_err(database_error)
            }
            Err(e) => Err(database_error(e)),
        }
    }

    /// After a change (released into the batch, or rolled back): leaves the batch open for
    /// the changes queued behind it, or (none queued, the batch full, or `close`) commits it.
    fn after_change(
        &self,
        mut batch: tokio::sync::OwnedMutexGuard<Batch>,
        released: bool,
        close: bool,
    ) -> Outcome {
        if released {
            batch.changes += 1;
        }
        let more = self.queued.load(Ordering::SeqCst) > 0;
        if close || !more || batch.changes >= BATCH_CHANGES || batch.changes == 0 {
            if batch.changes == 0 {
                // Nothing in the batch: give the writer back at once.
                let _ = self.lock().execute_batch("ROLLBACK");
                self.end_batch(&mut batch, Ok(()));
                return Outcome::Done(Ok(()));
            }
            let committed = self
                .lock()
                .execute_batch("COMMIT")
                .map_err(|e| database_error(e).to_string());
            if committed.is_err() {
                let _ = self.lock().execute_batch("ROLLBACK");
            }
            self.end_batch(&mut batch, committed.clone());
            return Outcome::Done(committed);
        }
        // Left open for the next change. Should that change never come (its request dropped
        // while it waited), a watchdog, one per batch, commits what the batch holds.
        let number = batch.number;
        let outcome = if released {
            let (tx, rx) = tokio::sync::oneshot::channel();
            batch.waiting.push(tx);
            Outcome::Pending(rx)
        } else {
            Outcome::Done(Ok(()))
        };
        let watch = !std::mem::replace(&mut batch.watched, true);
        drop(batch);
        let runtime = tokio::runtime::Handle::try_current();
        if let (true, Ok(runtime)) = (watch, runtime) {
            // (Without a runtime the process is shutting down: nothing will come, and
            // nothing waits.)
            let this = self.clone();
            runtime.spawn(async move {
                tokio::time::sleep(BATCH_ORPHANED).await;
                if this.batches.load(Ordering::SeqCst) != number {
                    return; // committed meanwhile, as nearly always
                }
                let batch = this.batch.clone().lock_owned().await;
                if batch.number == number && batch.writer.is_some() {
                    drop(this.after_change(batch, false, true));
                }
            });
        }
        outcome
    }

    /// Closes the batch: tells its changes how the `COMMIT` went and gives the writer back.
    fn end_batch(&self, batch: &mut Batch, outcome: Result<(), String>) {
        for waiting in batch.waiting.drain(..) {
            let _ = waiting.send(outcome.clone());
        }
        batch.writer = None;
        batch.changes = 0;
        batch.watched = false;
        batch.number += 1;
        self.batches.store(batch.number, Ordering::SeqCst);
    }
}

/// How the batch a change left stands: committed (or given back) already, with the
/// `COMMIT`'s outcome, or open, its `COMMIT` still to come.
enum Outcome {
    Done(Result<(), String>),
    Pending(tokio::sync::oneshot::Receiver<Result<(), String>>),
}

/// Counts a change waiting for the batch while it waits (and when its request is dropped
/// meanwhile, no longer).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn new(count: &'a AtomicUsize) -> Queued<'a> {
        count.fetch_add(1, Ordering::SeqCst);
        Queued(count)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One change's part of a batch: its savepoint. Dropping it uncommitted rolls the change back.
pub struct NativeTx {
    conn: NativeWriter,
    batch: Option<tokio::sync::OwnedMutexGuard<Batch>>,
}

impl std::fmt::Debug for NativeTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTx")
            .field("open", &self.batch.is_some())
            .finish_non_exhaustive()
    }
}

impl NativeTx {
    /// Releases the change into its batch and waits for the batch's `COMMIT`.
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        if let Err(e) = self.conn.lock().execute_batch("RELEASE w") {
            self.batch = Some(batch);
            return Err(database_error(e));
        }
        let committed = match self.conn.after_change(batch, true, false) {
            Outcome::Done(committed) => committed,
            Outcome::Pending(rx) => rx.await.map_err(|_| sqlx::Error::WorkerCrashed)?,
        };
        committed.map_err(|e| sqlx::Error::Protocol(format!("committing: {e}")))
    }

    pub(super) fn rollback(mut self) -> Result<(), sqlx::Error> {
        self.undo()
    }

    /// Undoes the change alone; the batch goes on for the others.
    fn undo(&mut self) -> Result<(), sqlx::Error> {
        let Some(batch) = self.batch.take() else {
            return Ok(());
        };
        let undone = self
            .conn
            .lock()
            .execute_batch("ROLLBACK TO w; RELEASE w")
            .map_err(database_error);
        drop(self.conn.after_change(batch, false, false));
        undone
    }
}

impl Drop for NativeTx {
    fn drop(&mut self) {
        if let Err(e) = self.undo() {
            tracing::warn!(error = %e, "rolling back an abandoned change");
        }
    }
}

/// Runs one statement on `conn`: its rows (at most `limit`) and how many rows it changed.
fn run(
    conn: &rusqlite::Connection,
    sql: &str,
    args: Option<AnyArguments<'_>>,
    limit: usize,
) -> Result<(Vec<AnyRow>, u64), sqlx::Error> {
    let values = args.map(|a| a.values.0).unwrap_or_default();
    if has_tail(sql) {
        // Several statements in one text, as sqlx's driver allows for `execute`: without
        // parameters only (which statement a `$1` belongs to is not said).
        if !values.is_empty() {
            return Err(sqlx::Error::Protocol(
                "several statements in one query cannot take parameters".into(),
            ));
        }
        conn.execute_batch(sql).map_err(database_error)?;
        return Ok((Vec::new(), conn.changes()));
    }
    let mut stmt = conn.prepare_cached(sql).map_err(database_error)?;
    bind(&mut stmt, &values)?;
    let count = stmt.column_count();
    let mut names = sqlx_core::HashMap::with_capacity(count);
    let mut columns = Vec::with_capacity(count);
    for i in 0..count {
        let name = UStr::new(stmt.column_name(i).map_err(database_error)?);
        names.insert(name.clone(), i);
        columns.push(AnyColumn {
            ordinal: i,
            name,
            type_info: AnyTypeInfo {
                kind: AnyTypeInfoKind::Null,
            },
        });
    }
    let names = Arc::new(names);
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while out.len() < limit {
        let Some(row) = rows.next().map_err(database_error)? else {
            break;
        };
        let mut values = Vec::with_capacity(count);
        for i in 0..count {
            values.push(AnyValue {
                kind: any_value(row.get_ref(i).map_err(database_error)?),
            });
        }
        let mut columns = columns.clone();
        for (c, v) in columns.iter_mut().zip(&values) {
            c.type_info = AnyTypeInfo {
                kind: kind_of(&v.kind),
            };
        }
        out.push(AnyRow {
            column_names: names.clone(),
            columns,
            values,
        });
    }
    drop(rows);
    Ok((out, conn.changes()))
}

/// True when `sql` holds more than one statement (a `;` with more text after it).
fn has_tail(sql: &str) -> bool {
    let body = sql.trim_end().trim_end_matches(';');
    body.contains(';')
}

/// Binds the arguments as sqlx's SQLite driver does: `$N` and `?N` name the N-th argument,
/// a bare `?` takes the next one, and a parameter past the arguments stays NULL.
fn bind(
    stmt: &mut rusqlite::Statement<'_>,
    values: &[AnyValueKind<'_>],
) -> Result<(), sqlx::Error> {
    let mut next = 0;
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    sqlx::Error::Protocol(format!("unsupported SQL parameter {name}"))
                })?,
            None => {
                next += 1;
                next
            }
        };
        let Some(value) = n.checked_sub(1).and_then(|n| values.get(n)) else {
            continue;
        };
        let bound = match value {
            AnyValueKind::Null(_) => stmt.raw_bind_parameter(i, rusqlite::types::Null),
            AnyValueKind::Bool(b) => stmt.raw_bind_parameter(i, i32::from(*b)),
            AnyValueKind::SmallInt(v) => stmt.raw_bind_parameter(i, *v),
            AnyValueKind::Integer(v) => stmt.raw_bind_parameter(i, *v),
            AnyValueKind::BigInt(v) => stmt.raw_bind_parameter(i, *v),
            AnyValueKind::Real(v) => stmt.raw_bind_parameter(i, f64::from(*v)),
            AnyValueKind::Double(v) => stmt.raw_bind_parameter(i, *v),
            AnyValueKind::Text(t) => stmt.raw_bind_parameter(i, t.as_ref()),
            AnyValueKind::Blob(b) => stmt.raw_bind_parameter(i, b.as_ref()),
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "no SQLite value for {other:?}"
                )))
            }
        };
        bound.map_err(database_error)?;
    }
    Ok(())
}

/// A column's value as sqlx's SQLite driver maps it for `Any` (by the value's own type).
fn any_value(v: ValueRef<'_>) -> AnyValueKind<'static> {
    match v {
        ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
        ValueRef::Integer(i) => AnyValueKind::BigInt(i),
        ValueRef::Real(f) => AnyValueKind::Double(f),
        ValueRef::Text(t) => AnyValueKind::Text(String::from_utf8_lossy(t).into_owned().into()),
        ValueRef::Blob(b) => AnyValueKind::Blob(b.to_vec().into()),
    }
}

fn kind_of(v: &AnyValueKind<'_>) -> AnyTypeInfoKind {
    match v {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

/// A SQLite error as sqlx's driver reports it: the extended result code and the message.
#[derive(Debug)]
struct SqliteFailure {
    code: i32,
    message: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn database_error(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(f, message) => {
            let message = message.unwrap_or_else(|| f.to_string());
            sqlx::Error::Database(Box::new(SqliteFailure {
                code: f.extended_code,
                message,
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// The connection a [`super::WriteTx`] holds: a pooled sqlx transaction, or SQLite's
/// [`NativeTx`].
#[derive(Debug)]
pub enum TxConn {
    Pool(Transaction<'static, Any>),
    Native(NativeTx),
}

impl TxConn {
    /// Where the transaction's statements run.
    pub(super) fn via(&mut self) -> Via<'_, &mut sqlx::AnyConnection> {
        match self {
            TxConn::Pool(tx) => Via::Pool(&mut **tx),
            TxConn::Native(native) => Via::InPlace(&native.conn),
        }
    }
}

/// A direct SQLite connection to run a statement on, now, on the calling thread.
pub trait InPlace: Sync {
    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection>;
}

impl InPlace for NativeWriter {
    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        NativeWriter::lock(self)
    }
}

impl InPlace for NativeReader {
    fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        NativeReader::lock(self)
    }
}

/// Where a statement runs: through sqlx (`E`: a pool, a transaction's connection), or in
/// place on a direct SQLite connection. An [`Executor`] for the `Any` driver either way, so
/// the store's queries do not know which.
pub enum Via<'c, E> {
    Pool(E),
    InPlace(&'c dyn InPlace),
}

impl<E> std::fmt::Debug for Via<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Pool(_) => "Via::Pool",
            Via::InPlace(_) => "Via::InPlace",
        })
    }
}

impl<'c, X> Executor<'c> for Via<'c, X>
where
    X: Executor<'c, Database = Any>,
{
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Via::Pool(pool) => pool.fetch_many(query),
            Via::InPlace(conn) => many(&conn.lock(), query),
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Via::Pool(pool) => pool.fetch_optional(query),
            Via::InPlace(conn) => optional(&conn.lock(), query),
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<sqlx::any::AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Via::Pool(pool) => pool.prepare_with(sql, parameters),
            Via::InPlace(_) => not_in_place("prepare"),
        }
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Via::Pool(pool) => pool.describe(sql),
            Via::InPlace(_) => not_in_place("describe"),
        }
    }
}

/// [`Executor::fetch_many`] in place: the statement runs now, its rows and count are streamed.
fn many<'e, 'q: 'e, E>(
    conn: &rusqlite::Connection,
    mut query: E,
) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
where
    E: 'q + Execute<'q, Any>,
{
    let items = match query.take_arguments() {
        Ok(args) => match run(conn, query.sql(), args, usize::MAX) {
            Ok((rows, changed)) => {
                let mut items: Vec<Result<_, sqlx::Error>> =
                    rows.into_iter().map(|r| Ok(Either::Right(r))).collect();
                items.push(Ok(Either::Left(AnyQueryResult {
                    rows_affected: changed,
                    last_insert_id: None,
                })));
                items
            }
            Err(e) => vec![Err(e)],
        },
        Err(e) => vec![Err(sqlx::Error::Encode(e))],
    };
    Box::pin(futures_util::stream::iter(items))
}

/// [`Executor::fetch_optional`] in place: the statement runs now, up to its first row.
fn optional<'e, 'q: 'e, E>(
    conn: &rusqlite::Connection,
    mut query: E,
) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
where
    E: 'q + Execute<'q, Any>,
{
    let result = query
        .take_arguments()
        .map_err(sqlx::Error::Encode)
        .and_then(|args| run(conn, query.sql(), args, 1))
        .map(|(rows, _)| rows.into_iter().next());
    Box::pin(std::future::ready(result))
}

fn not_in_place<'e, T: Send + 'e>(what: &str) -> BoxFuture<'e, Result<T, sqlx::Error>> {
    let e = sqlx::Error::Protocol(format!(
        "{what} is not available on a direct SQLite connection"
    ));
    Box::pin(std::future::ready(Err(e)))
}

/// Read-only connections to the file, for short reads in place on the calling thread: the
/// session behind every request, the screen pop. One per core; a reader takes whichever is
/// free.
#[derive(Clone)]
pub struct NativeReader(Arc<Vec<Mutex<rusqlite::Connection>>>);

impl NativeReader {
    /// `None` (reads go through the pool) for an in-memory database or when the file cannot
    /// be opened.
    pub(super) fn open(url: &str) -> Option<NativeReader> {
        use rusqlite::OpenFlags;
        let path = sqlite_path(url)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let count = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let mut conns = Vec::with_capacity(count);
        for _ in 0..count {
            let opened = rusqlite::Connection::open_with_flags(path, flags).and_then(|conn| {
                conn.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -16384;")?;
                conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
                Ok(conn)
            });
            match opened {
                Ok(conn) => conns.push(Mutex::new(conn)),
                Err(e) => {
                    tracing::warn!(error = %e, "no direct SQLite reader; reads go through the pool");
                    return None;
                }
            }
        }
        Some(NativeReader(Arc::new(conns)))
    }

    /// A free connection, or (all busy) the first one once it is.
    pub(super) fn lock(&self) -> MutexGuard<'_, rusqlite::Connection> {
        for conn in self.0.iter() {
            if let Ok(guard) = conn.try_lock() {
                return guard;
            }
        }
        self.0[0].lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{sample_residents, TestDb};
    use crate::store::{Store, StoreError};
    use futures_util::FutureExt;
    use sqlx::Row;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn only_a_plain_file_gets_direct_connections() {
        use super::sqlite_path;
        assert_eq!(sqlite_path("sqlite://db/m.db?mode=rwc"), Some("db/m.db"));
        assert_eq!(sqlite_path("sqlite:m.db"), Some("m.db"));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://m.db?mode=memory&cache=shared"), None);
        assert_eq!(sqlite_path("sqlite://m.db?mode=ro"), None);
        assert_eq!(sqlite_path("sqlite://m.db?immutable=1"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }

    async fn sqlite() -> (TestDb, Store) {
        let db = TestDb::new("sqlite").await.unwrap();
        let s = db.store.clone();
        assert!(s.native.is_some(), "a file database gets the direct writer");
        s.insert_residents(&sample_residents(2)).await.unwrap();
        (db, s)
    }

    /// Rows read in place decode as the pool's do: the same values, the same types, the
    /// same NULLs, with `$N` naming the argument whatever order the text uses them in.
    #[tokio::test]
    async fn rows_read_in_place_match_the_pools() {
        let (db, s) = sqlite().await;
        let sql = "SELECT id, name, birth_date, needs_transport, NULL AS missing, 1.5 AS half, \
                   $2 AS second, $1 AS first FROM residents WHERE id > $3 ORDER BY id";
        let pooled = sqlx::query(sql)
            .bind("one")
            .bind(2_i64)
            .bind(0_i64)
            .fetch_all(&s.read)
            .await
            .unwrap();
        let mut tx = s.begin_write().await.unwrap();
        let native = sqlx::query(sql)
            .bind("one")
            .bind(2_i64)
            .bind(0_i64)
            .fetch_all(tx.conn())
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        assert_eq!(native.len(), 2);
        assert_eq!(native.len(), pooled.len());
        for (a, b) in native.iter().zip(&pooled) {
            assert_eq!(a.get::<i64, _>("id"), b.get::<i64, _>("id"));
            assert_eq!(a.get::<String, _>("name"), b.get::<String, _>("name"));
            assert_eq!(
                a.get::<i64, _>("needs_transport"),
                b.get::<i64, _>("needs_transport")
            );
            assert_eq!(a.get::<Option<String>, _>("missing"), None);
            assert_eq!(a.get::<f64, _>("half"), 1.5);
            assert_eq!(a.get::<i64, _>("second"), 2);
            assert_eq!(a.get::<String, _>("first"), "one");
            // A text column read as a number fails here as it fails through the pool.
            assert!(a.try_get::<i64, _>("name").is_err());
            assert!(b.try_get::<i64, _>("name").is_err());
        }
        db.cleanup().await;
    }

    /// What the database refuses comes back as the pool's driver says it, so the store's
    /// errors read both alike; the transaction goes on, and dropping it undoes it all.
    #[tokio::test]
    async fn refusals_and_abandoned_transactions() {
        let (db, s) = sqlite().await;
        let mut tx = s.begin_write().await.unwrap();
        let changed = sqlx::query("UPDATE residents SET notes = 'x'")
            .execute(tx.conn())
            .await
            .unwrap();
        assert_eq!(changed.rows_affected(), 2);
        let err: StoreError = sqlx::query("UPDATE residents SET sex = 'X'")
            .execute(tx.conn())
            .await
            .unwrap_err()
            .into();
        assert_eq!(err.constraint(), Some("residents_sex_check"), "{err:?}");
        let err: StoreError = sqlx::query("INSERT INTO phones (resident_id, e164, written, kind) VALUES (999999, '+81', '', 'home')")
            .execute(tx.conn())
            .await
            .unwrap_err()
            .into();
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        let Err(err) = sqlx::query("SELECT nope FROM residents")
            .fetch_all(tx.conn())
            .await
        else {
            panic!("a missing column was read");
        };
        assert!(err.to_string().contains("no such column"), "{err}");
        // Several statements in one text run whole, without parameters only.
        sqlx::query("UPDATE residents SET notes = 'y'; UPDATE residents SET notes = notes || 'z';")
            .execute(tx.conn())
            .await
            .unwrap();
        let notes: String = sqlx::query_scalar("SELECT notes FROM residents LIMIT 1")
            .fetch_one(tx.conn())
            .await
            .unwrap();
        assert_eq!(notes, "yz");
        assert!(sqlx::query("UPDATE residents SET notes = $1; SELECT 1")
            .bind("w")
            .execute(tx.conn())
            .await
            .is_err());
        drop(tx);
        let notes: Vec<String> = sqlx::query_scalar("SELECT notes FROM residents")
            .fetch_all(&s.read)
            .await
            .unwrap();
        assert!(notes.iter().all(|n| n.is_empty()), "{notes:?}");
        // The writer is free again.
        let mut tx = s.begin_write().await.unwrap();
        sqlx::query("UPDATE residents SET notes = 'kept'")
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM residents WHERE notes = 'kept'")
            .fetch_one(&s.read)
            .await
            .unwrap();
        assert_eq!(kept, 2);
        db.cleanup().await;
    }

    /// A writer in another process (here another connection) holds the file: the change
    /// waits for it, off the runtime's threads, instead of failing at once.
    #[tokio::test]
    async fn a_writer_elsewhere_is_waited_for() {
        let (db, s) = sqlite().await;
        let path = super::sqlite_path(&db.url).unwrap().to_string();
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; UPDATE residents SET notes = 'other';")
            .unwrap();
        let waiting = tokio::spawn({
            let s = s.clone();
            async move {
                let mut tx = s.begin_write().await?;
                sqlx::query("UPDATE residents SET notes = notes || ' then ours'")
                    .execute(tx.conn())
                    .await?;
                tx.commit().await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !waiting.is_finished(),
            "the change did not wait for the other writer"
        );
        other.execute_batch("COMMIT").unwrap();
        waiting.await.unwrap().unwrap();
        let notes: String = sqlx::query_scalar("SELECT notes FROM residents LIMIT 1")
            .fetch_one(&s.read)
            .await
            .unwrap();
        assert_eq!(notes, "other then ours");
        db.cleanup().await;
    }

    async fn notes(s: &Store) -> Vec<String> {
        sqlx::query_scalar("SELECT notes FROM residents ORDER BY id")
            .fetch_all(&s.read)
            .await
            .unwrap()
    }

    /// Changes queued behind one another share a `COMMIT`; one that fails is undone alone,
    /// and each change's `commit` returns once its batch is on disk.
    #[tokio::test]
    async fn queued_changes_share_a_commit_and_fail_alone() {
        let (db, s) = sqlite().await;
        let before = s.native.as_ref().unwrap().batch.lock().await.number;
        let mut first = s.begin_write().await.unwrap();
        sqlx::query("UPDATE residents SET notes = notes || '0'")
            .execute(first.conn())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 1..=6 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = s.begin_write().await?;
                sqlx::query("UPDATE residents SET notes = notes || $1")
                    .bind(i.to_string())
                    .execute(tx.conn())
                    .await?;
                if i == 3 {
                    // A change that fails after it wrote: dropped, as an early `?` would.
                    return Ok(false);
                }
                tx.commit().await?;
                Ok::<_, StoreError>(true)
            }));
        }
        tokio::task::yield_now().await;
        assert_eq!(s.native.as_ref().unwrap().queued.load(Ordering::SeqCst), 6);
        first.commit().await.unwrap();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(notes(&s).await, ["012456", "012456"]);
        let batch = s.native.as_ref().unwrap().batch.lock().await;
        assert!(batch.writer.is_none(), "the writer is given back");
        assert_eq!(batch.number, before + 1, "one batch, one COMMIT");
        drop(batch);
        db.cleanup().await;
    }

    /// A batch left open for a change whose request is then dropped is committed anyway.
    #[tokio::test]
    async fn a_batch_left_for_a_dropped_change_still_commits() {
        let (db, s) = sqlite().await;
        let mut first = s.begin_write().await.unwrap();
        sqlx::query("UPDATE residents SET notes = 'kept'")
            .execute(first.conn())
            .await
            .unwrap();
        let queued = tokio::spawn({
            let s = s.clone();
            async move { s.begin_write().await.map(drop) }
        });
        tokio::task::yield_now().await;
        let commit = first.commit();
        tokio::pin!(commit);
        assert!(
            (&mut commit).now_or_never().is_none(),
            "the batch stays open for the queued change"
        );
        queued.abort();
        tokio::time::timeout(Duration::from_secs(2), commit)
            .await
            .expect("the orphaned batch is committed")
            .unwrap();
        assert_eq!(notes(&s).await, ["kept", "kept"]);
        // The writer is free for the pool's own writes.
        sqlx::query("UPDATE residents SET notes = 'after'")
            .execute(&s.write)
            .await
            .unwrap();
        db.cleanup().await;
    }
}
