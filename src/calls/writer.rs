//! Writes the call log off the tracker's path, and cannot be poisoned.
//!
//! The tracker hands each call's whole current state to a [`CallLog`] and never waits: the
//! log keeps the newest state per call (a later state supersedes an earlier one, since each
//! carries everything known), so its size is bounded by the calls in flight, not by the
//! events. A task writes what is pending in batches, one transaction each.
//!
//! When a batch fails, the error says why:
//! - *the database is away or busy* (connection lost, pool timeout, SQLite BUSY, PostgreSQL
//!   class 08/53/57): the rows go back in front of the queue and the writer retries with a
//!   backoff up to 5 s. `/readyz` reports the writer failing and its backlog meanwhile;
//! - *the database refused a row* (a NUL byte in a PostgreSQL text, a broken constraint): the
//!   batch is retried row by row, so the good rows go in; each refused row is set aside whole
//!   in `call_log_rejects` (and counted, and logged with its call key), then written once more
//!   with control characters removed, so the call itself is still in the log.
//!
//! At shutdown the writer drains what is pending; what the database cannot take within
//! [`DRAIN_DEADLINE`] is written to a spool file (`call-log-spool.jsonl`) that the next start
//! reads back first. Nothing is dropped silently.

use crate::metrics::Metrics;
use crate::store::{calls::CallRow, Engine, Store};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Rows written in one transaction at most.
pub const BATCH: usize = 512;
/// How long shutdown waits for an unavailable database before spooling to disk.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(8);
/// The spool file's name inside the spool folder.
pub const SPOOL_FILE: &str = "call-log-spool.jsonl";

/// What `/readyz` and `/metrics` know of the writer.
#[derive(Default)]
pub struct WriterStatus {
    /// Calls whose newest state is not yet written.
    pub backlog: AtomicU64,
    /// Rows written.
    pub written: AtomicU64,
    /// Rows the database refused (set aside).
    pub rejected: AtomicU64,
    /// Unix milliseconds since which writes fail; 0 while they succeed.
    pub failing_since_ms: AtomicI64,
    /// The writer task ended (after shutdown, or by a bug): the log is no longer written.
    pub stopped: AtomicBool,
    /// The last error, for an administrator.
    pub last_error: Mutex<Option<String>>,
}

impl WriterStatus {
    /// Healthy: running and the last write succeeded.
    pub fn healthy(&self) -> bool {
        !self.stopped.load(Ordering::Relaxed) && self.failing_since_ms.load(Ordering::Relaxed) == 0
    }

    pub fn detail(&self) -> serde_json::Value {
        let since = self.failing_since_ms.load(Ordering::Relaxed);
        serde_json::json!({
            "ok": self.healthy(),
            "backlog": self.backlog.load(Ordering::Relaxed),
            "written": self.written.load(Ordering::Relaxed),
            "rejected": self.rejected.load(Ordering::Relaxed),
            "failing_for_s": if since == 0 { 0 } else { (chrono::Utc::now().timestamp_millis() - since).max(0) / 1000 },
            "stopped": self.stopped.load(Ordering::Relaxed),
            "last_error": self.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        })
    }
}

/// The calls waiting to be written: the newest state of each, in the order first seen.
#[derive(Default)]
struct Pending {
    order: VecDeque<String>,
    rows: HashMap<String, CallRow>,
}

impl Pending {
    fn put(&mut self, row: CallRow) {
        if !self.rows.contains_key(&row.id) {
            self.order.push_back(row.id.clone());
        }
        self.rows.insert(row.id.clone(), row);
    }

    /// Puts rows that failed back in front, unless a newer state arrived meanwhile.
    fn put_back(&mut self, rows: Vec<CallRow>) {
        for row in rows.into_iter().rev() {
            if !self.rows.contains_key(&row.id) {
                self.order.push_front(row.id.clone());
                self.rows.insert(row.id.clone(), row);
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<CallRow> {
        let mut out = Vec::with_capacity(n.min(self.order.len()));
        while out.len() < n {
            let Some(key) = self.order.pop_front() else {
                break;
            };
            if let Some(row) = self.rows.remove(&key) {
                out.push(row);
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// The tracker's end of the call log. Cheap to clone; [`CallLog::put`] never waits.
#[derive(Clone)]
pub struct CallLog {
    shared: Arc<Shared>,
}

struct Shared {
    /// A std mutex: every section is a few map operations, never an await.
    pending: Mutex<Pending>,
    /// Wakes the writer when something is put or shutdown begins.
    wake: Notify,
    closing: AtomicBool,
    status: Arc<WriterStatus>,
    /// [`DRAIN_DEADLINE`], shorter in tests.
    drain_deadline: Duration,
}

impl CallLog {
    /// Queues a call's whole current state; a newer state of the same call replaces it.
    pub fn put(&self, row: CallRow) {
        let n = {
            let mut p = self.lock();
            p.put(row);
            p.len()
        };
        self.shared
            .status
            .backlog
            .store(n as u64, Ordering::Relaxed);
        self.shared.wake.notify_one();
    }

    /// Asks the writer to drain and stop.
    pub fn close(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    pub fn status(&self) -> Arc<WriterStatus> {
        self.shared.status.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, n: usize) -> Vec<CallRow> {
        let mut p = self.lock();
        let rows = p.take(n);
        self.shared
            .status
            .backlog
            .store((p.len() + rows.len()) as u64, Ordering::Relaxed);
        rows
    }

    fn put_back(&self, rows: Vec<CallRow>) {
        let mut p = self.lock();
        p.put_back(rows);
        self.shared
            .status
            .backlog
            .store(p.len() as u64, Ordering::Relaxed);
    }

    fn is_empty(&self) -> bool {
        self.lock().len() == 0
    }
}

/// Starts the writer: first what a previous process spooled in `spool_dir`, then what is put.
pub fn spawn(
    store: Store,
    metrics: Arc<Metrics>,
    spool_dir: PathBuf,
) -> (CallLog, tokio::task::JoinHandle<()>) {
    spawn_with(store, metrics, spool_dir, DRAIN_DEADLINE)
}

fn spawn_with(
    store: Store,
    metrics: Arc<Metrics>,
    spool_dir: PathBuf,
    drain_deadline: Duration,
) -> (CallLog, tokio::task::JoinHandle<()>) {
    let log = CallLog {
        shared: Arc::new(Shared {
            pending: Mutex::default(),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            status: Arc::default(),
            drain_deadline,
        }),
    };
    let spool = spool_dir.join(SPOOL_FILE);
    let restored = read_spool(&spool);
    if !restored.is_empty() {
        tracing::info!(calls = restored.len(), file = %spool.display(), "call log rows spooled at the last shutdown are written first");
        let mut p = log.lock();
        for row in restored {
            p.put(row);
        }
    }
    let handle = tokio::spawn(run(store, log.clone(), metrics, spool));
    (log, handle)
}

/// How a failed write is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// The database is away or busy: retry the same rows later.
    Transient,
    /// The database refused what was sent: find the row, set it aside.
    Refused,
}

fn classify(engine: Engine, e: &sqlx::Error) -> Failure {
    use sqlx::Error::*;
    match e {
        Database(db) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            // SQLite: 5 BUSY, 6 LOCKED (and their extended codes: 261, 517, 262…), 10 IOERR,
            // 13 FULL. PostgreSQL: 08 connection, 53 resources, 57 operator intervention
            // (shutdown), 58 system, 40001/40P01 serialization and deadlock, 55P03 lock.
            let transient = match engine {
                Engine::Sqlite => code
                    .parse::<i64>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13)),
                Engine::Postgres => ["08", "53", "57", "58", "40001", "40P01", "55P03"]
                    .iter()
                    .any(|p| code.starts_with(p)),
            };
            if transient {
                Failure::Transient
            } else {
                Failure::Refused
            }
        }
        Encode(_) => Failure::Refused,
        // Io, Tls, PoolTimedOut, PoolClosed, WorkerCrashed, Protocol and anything new: the
        // row is not known to be at fault, so it is kept and retried.
        _ => Failure::Transient,
    }
}

async fn run(store: Store, log: CallLog, metrics: Arc<Metrics>, spool: PathBuf) {
    let status = log.status();
    let mut spool_pending = spool.exists();
    let mut delay = Duration::from_millis(50);
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        let closing = log.shared.closing.load(Ordering::SeqCst);
        if closing && closing_since.is_none() {
            closing_since = Some(tokio::time::Instant::now());
        }
        let batch = log.take(BATCH);
        if batch.is_empty() {
            if spool_pending {
                // Everything restored from the spool is in the database now.
                if let Err(e) = std::fs::remove_file(&spool) {
                    tracing::warn!(file = %spool.display(), error = %e, "could not remove the call log spool");
                }
                spool_pending = false;
            }
            if closing {
                break;
            }
            log.shared.wake.notified().await;
            continue;
        }
        match write_batch(&store, &status, &metrics, batch).await {
            Ok(()) => {
                delay = Duration::from_millis(50);
                status.failing_since_ms.store(0, Ordering::Relaxed);
            }
            Err(rows) => {
                log.put_back(rows);
                let _ = status.failing_since_ms.compare_exchange(
                    0,
                    chrono::Utc::now().timestamp_millis(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                if closing_since.is_some_and(|t| t.elapsed() >= log.shared.drain_deadline) {
                    break;
                }
                // Wait the backoff, but wake early for shutdown so the deadline holds.
                let _ = tokio::time::timeout(delay, async {
                    while !log.shared.closing.load(Ordering::SeqCst) {
                        log.shared.wake.notified().await;
                    }
                })
                .await;
                if !log.shared.closing.load(Ordering::SeqCst) || closing_since.is_none() {
                    delay = (delay * 2).min(Duration::from_secs(5));
                } else {
                    delay = Duration::from_millis(250);
                }
            }
        }
    }
    if !log.is_empty() {
        let rows = log.take(usize::MAX);
        match write_spool(&spool, &rows) {
            Ok(()) => {
                tracing::warn!(calls = rows.len(), file = %spool.display(), "database unavailable at shutdown: call log rows spooled for the next start")
            }
            Err(e) => {
                tracing::error!(calls = rows.len(), file = %spool.display(), error = %e, keys = ?rows.iter().map(|r| &r.id).collect::<Vec<_>>(), "call log rows LOST: neither the database nor the spool file took them")
            }
        }
    } else if spool_pending {
        let _ = std::fs::remove_file(&spool);
    }
    status.stopped.store(true, Ordering::Relaxed);
    tracing::info!("call log writer stopped");
}

/// Writes a batch; on a transient failure returns the rows still to be written.
async fn write_batch(
    store: &Store,
    status: &WriterStatus,
    metrics: &Metrics,
    rows: Vec<CallRow>,
) -> Result<(), Vec<CallRow>> {
    let e = match store.upsert_calls(&rows).await {
        Ok(()) => {
            count_written(status, metrics, rows.len());
            return Ok(());
        }
        Err(e) => e,
    };
    metrics.call_log_errors.fetch_add(1, Ordering::Relaxed);
    *status.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
    if classify(store.engine, &e) == Failure::Transient {
        tracing::warn!(calls = rows.len(), backlog = status.backlog.load(Ordering::Relaxed), error = %e, "call log write failed; retrying");
        return Err(rows);
    }
    // Some row was refused: one at a time, so the others go in.
    let mut rest = rows.into_iter();
    while let Some(row) = rest.next() {
        match store.upsert_calls(std::slice::from_ref(&row)).await {
            Ok(()) => count_written(status, metrics, 1),
            Err(e) if classify(store.engine, &e) == Failure::Transient => {
                let mut back = vec![row];
                back.extend(rest);
                return Err(back);
            }
            Err(e) => set_aside(store, status, metrics, row, &e).await,
        }
    }
    Ok(())
}

fn count_written(status: &WriterStatus, metrics: &Metrics, n: usize) {
    status.written.fetch_add(n as u64, Ordering::Relaxed);
    metrics
        .call_log_writes
        .fetch_add(n as u64, Ordering::Relaxed);
}

/// Keeps a refused row whole for an administrator, then logs the call without the characters
/// a database may refuse.
async fn set_aside(
    store: &Store,
    status: &WriterStatus,
    metrics: &Metrics,
    row: CallRow,
    e: &sqlx::Error,
) {
    status.rejected.fetch_add(1, Ordering::Relaxed);
    metrics.call_log_rejected.fetch_add(1, Ordering::Relaxed);
    let json = serde_json::to_string(&SpoolRow::from(&row)).unwrap_or_default();
    tracing::error!(call = %row.id, error = %e, "the database refused a call log row; set aside in call_log_rejects");
    if let Err(e2) = store
        .insert_call_reject(&row.id, &e.to_string(), &json)
        .await
    {
        tracing::error!(call = %row.id, error = %e2, row = %json, "could not set the refused row aside; it is in this log line");
    }
    let clean = sanitized(&row);
    if clean != row {
        match store.upsert_calls(std::slice::from_ref(&clean)).await {
            Ok(()) => count_written(status, metrics, 1),
            Err(e3) => {
                tracing::error!(call = %row.id, error = %e3, "the cleaned call log row was refused too")
            }
        }
    }
}

/// The row with control characters (NUL first of all) removed from its text.
fn sanitized(row: &CallRow) -> CallRow {
    let clean = |s: &str| s.chars().filter(|c| !c.is_control()).collect::<String>();
    let clean_opt = |s: &Option<String>| s.as_deref().map(clean);
    CallRow {
        id: clean(&row.id),
        direction: clean(&row.direction),
        caller_number: clean(&row.caller_number),
        caller_e164: clean_opt(&row.caller_e164),
        caller_name: clean(&row.caller_name),
        dialled: clean(&row.dialled),
        queue: clean_opt(&row.queue),
        agents_offered: row.agents_offered.iter().map(|s| clean(s)).collect(),
        answered_by: clean_opt(&row.answered_by),
        ..row.clone()
    }
}

/// A call row as the spool and the reject table keep it: every field, the flags included
/// (the history's JSON leaves them out).
#[derive(Serialize, Deserialize)]
struct SpoolRow {
    #[serde(flatten)]
    row: CallRow,
    resident_confirmed: bool,
    end_estimated: bool,
}

impl From<&CallRow> for SpoolRow {
    fn from(row: &CallRow) -> SpoolRow {
        SpoolRow {
            row: row.clone(),
            resident_confirmed: row.resident_confirmed,
            end_estimated: row.end_estimated,
        }
    }
}

impl From<SpoolRow> for CallRow {
    fn from(s: SpoolRow) -> CallRow {
        CallRow {
            resident_confirmed: s.resident_confirmed,
            end_estimated: s.end_estimated,
            ..s.row
        }
    }
}

fn write_spool(path: &Path, rows: &[CallRow]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for row in rows {
            let line =
                serde_json::to_string(&SpoolRow::from(row)).map_err(std::io::Error::other)?;
            writeln!(f, "{line}")?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

fn read_spool(path: &Path) -> Vec<CallRow> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<SpoolRow>(l) {
            Ok(r) => Some(CallRow::from(r)),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, line = l, "unreadable call log spool line; kept in the file's copy");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str) -> CallRow {
        CallRow {
            id: id.into(),
            direction: "inbound".into(),
            caller_name: name.into(),
            started_at: "2021-05-10T09:00:00.000Z".into(),
            ..CallRow::default()
        }
    }

    #[test]
    fn pending_keeps_the_newest_state_in_first_seen_order() {
        let mut p = Pending::default();
        p.put(row("a", "1"));
        p.put(row("b", "1"));
        p.put(row("a", "2"));
        let taken = p.take(10);
        assert_eq!(taken.len(), 2);
        assert_eq!(
            (taken[0].id.as_str(), taken[0].caller_name.as_str()),
            ("a", "2")
        );
        // A failed batch goes back in front, unless a newer state came meanwhile.
        p.put(row("b", "3"));
        p.put(row("c", "1"));
        p.put_back(taken);
        let again = p.take(10);
        let ids: Vec<_> = again
            .iter()
            .map(|r| (r.id.as_str(), r.caller_name.as_str()))
            .collect();
        assert_eq!(ids, vec![("a", "2"), ("b", "3"), ("c", "1")]);
    }

    #[test]
    fn spool_round_trips_every_field() {
        let dir = crate::store::testing::TempDir::new("spool").unwrap();
        let path = dir.0.join(SPOOL_FILE);
        let mut r = row("ami:1", "名\u{0}前");
        r.resident_confirmed = true;
        r.end_estimated = true;
        r.agents_offered = vec!["201".into(), "202".into()];
        write_spool(&path, &[r.clone(), row("ami:2", "")]).unwrap();
        let back = read_spool(&path);
        assert_eq!(back, vec![r, row("ami:2", "")]);
    }

    /// The database is gone at shutdown: what is queued goes to the spool, and the next start
    /// writes it before anything else. Nothing is lost.
    #[tokio::test]
    async fn rows_the_database_cannot_take_at_shutdown_are_spooled_and_written_next_time() {
        let db = crate::store::testing::TestDb::new("sqlite").await.unwrap();
        let spool = crate::store::testing::TempDir::new("spool").unwrap();
        let gone = db.store.clone();
        gone.close().await;
        let metrics = Arc::new(Metrics::default());
        let (log, task) = spawn_with(
            gone,
            metrics.clone(),
            spool.0.clone(),
            Duration::from_millis(300),
        );
        let mut a = row("ami:1", "舞鶴");
        a.resident_confirmed = true;
        log.put(a.clone());
        log.put(row("ami:2", ""));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!log.status().healthy(), "failing writes show");
        assert_eq!(log.status().backlog.load(Ordering::Relaxed), 2);
        log.close();
        task.await.unwrap();
        assert!(log.status().stopped.load(Ordering::Relaxed));
        assert!(spool.0.join(SPOOL_FILE).exists());

        let store = Store::open(&db.url).await.unwrap();
        let (log, task) = spawn(store.clone(), metrics, spool.0.clone());
        log.close();
        task.await.unwrap();
        let got = store
            .call("ami:1")
            .await
            .unwrap()
            .expect("spooled row written");
        assert_eq!(got.caller_name, "舞鶴");
        assert!(got.resident_confirmed);
        assert!(store.call("ami:2").await.unwrap().is_some());
        assert!(
            !spool.0.join(SPOOL_FILE).exists(),
            "the spool is removed once written"
        );
        store.close().await;
    }

    #[test]
    fn cleaning_removes_control_characters_only() {
        let r = row("ami:1", "岡本\u{0} 清\u{7}");
        assert_eq!(sanitized(&r).caller_name, "岡本 清");
        assert_eq!(sanitized(&row("ami:2", "ok")), row("ami:2", "ok"));
    }
}
