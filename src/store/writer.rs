//! SQLite: the agents' booking changes run on a thread of their own.
//!
//! SQLite has one writer connection, and a change holds it from `BEGIN IMMEDIATE` to `COMMIT`
//! across a dozen statements. sqlx runs each statement on the connection's worker thread and
//! wakes the waiting task when it is done; on the server's runtime that task then waits in the
//! run queue behind whatever HTTP work is ready, still holding the writer, so under load the
//! writer sits idle between statements most of the time. Here the change runs on a
//! current-thread runtime that does nothing else: when a statement is done its task runs at
//! once, and the writer is held only for as long as the statements take.
//!
//! Changes run one after another, in the order they came (the writer is one connection anyway).
//! A change that panics fails alone: its caller gets an error, the thread goes on.
//! PostgreSQL needs none of this: its changes run in parallel on pooled connections.
//!
//! The thread also checkpoints the WAL every [`CHECKPOINT_EVERY`], on a reader connection
//! (`PRAGMA wal_checkpoint(PASSIVE)`: it copies what it can and waits for nobody). Left to
//! itself, SQLite checkpoints inside the writer's `COMMIT` once the WAL passes 1,000 pages,
//! and that checkpoint's fsync stalled every change queued behind it. The writer still
//! checkpoints by itself past [`super::WAL_AUTOCHECKPOINT`] pages, should this one fall
//! behind.

use super::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How often the WAL is checkpointed off the writer (see the module doc).
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// The thread's mailbox. Cheap to clone; the thread ends when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the thread; `checkpoints` is the pool the WAL is checkpointed on (`None`: no
    /// checkpoints from here).
    pub(crate) fn start(checkpoints: Option<sqlx::AnyPool>) -> std::io::Result<Writer> {
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        // No I/O driver: nothing here does network I/O, and without one the thread sleeps on
        // a futex instead of epoll, a cheaper wake after each statement.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        std::thread::Builder::new()
            .name("sqlite-changes".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Some(pool) = checkpoints {
                        tokio::spawn(checkpoint(pool));
                    }
                    while let Some(job) = rx.recv().await {
                        // Spawned, so that a panic ends this change only.
                        if let Err(e) = tokio::spawn(job()).await {
                            tracing::error!(error = %e, "a booking change failed on the writer thread");
                        }
                    }
                });
            })?;
        Ok(Writer { jobs })
    }

    /// Runs `change` on the writer thread and returns what it returned.
    pub(crate) async fn run<T, F>(
        &self,
        change: impl FnOnce() -> F + Send + 'static,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                // The caller gave up while the change queued (its request timed out or the
                // client went away): it is not made behind its back.
                if done.is_closed() {
                    return;
                }
                let _ = done.send(change().await);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| anyhow::anyhow!("the SQLite writer thread has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the change ended without an answer (see the log)"))?
    }
}

/// Checkpoints the WAL every [`CHECKPOINT_EVERY`] until the pool closes (it runs beside the
/// changes: its statement waits on a reader connection's thread, not on this one).
async fn checkpoint(pool: sqlx::AnyPool) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_run_in_order_and_a_panic_fails_only_its_own() {
        let w = Writer::start(None).unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        // Sent in this order (each on its first poll), with a change that panics among them.
        let waits = (0..20).map(|i| {
            let order = order.clone();
            let w = w.clone();
            async move {
                w.run(move || async move {
                    if i == 10 {
                        panic!("a change that panics");
                    }
                    order.lock().unwrap().push(i);
                    Ok::<_, StoreError>(i * 2)
                })
                .await
            }
        });
        let answers = futures_util::future::join_all(waits).await;
        for (i, a) in answers.iter().enumerate() {
            match a {
                Ok(v) => assert_eq!(*v, i * 2),
                Err(_) => assert_eq!(i, 10, "only the change that panicked fails"),
            }
        }
        assert!(answers[10].is_err());
        assert_eq!(
            *order.lock().unwrap(),
            (0..20).filter(|&i| i != 10).collect::<Vec<_>>()
        );
        // The thread goes on after the panic.
        assert_eq!(w.run(|| async { Ok::<_, StoreError>(7) }).await.unwrap(), 7);

        // A change whose caller gave up while it queued is not made.
        let (gate_open, gate) = tokio::sync::oneshot::channel::<()>();
        let busy = tokio::spawn({
            let w = w.clone();
            async move {
                w.run(|| async {
                    let _ = gate.await;
                    Ok::<_, StoreError>(0)
                })
                .await
            }
        });
        let made = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let queued = tokio::spawn({
            let (w, made) = (w.clone(), made.clone());
            async move {
                w.run(move || async move {
                    made.store(true, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, StoreError>(1)
                })
                .await
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        queued.abort();
        let _ = queued.await;
        gate_open.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(w.run(|| async { Ok::<_, StoreError>(2) }).await.unwrap(), 2);
        assert!(
            !made.load(std::sync::atomic::Ordering::SeqCst),
            "the abandoned change did not run"
        );
    }
}
