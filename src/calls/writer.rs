//! Writes the call log off the tracker's path. Rows for one call arrive in order and each
//! carries the call's whole state, so the writer may coalesce: of several rows queued for one
//! call only the newest is written. A failed write is retried (the upsert is idempotent), so a
//! database hiccup delays the log but loses nothing.

use crate::metrics::Metrics;
use crate::store::{calls::CallRow, Store};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How many call states may wait for the database before the tracker slows down.
pub const QUEUE: usize = 8192;

pub fn spawn(
    store: Store,
    metrics: Arc<Metrics>,
) -> (mpsc::Sender<CallRow>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let handle = tokio::spawn(run(store, rx, metrics));
    (tx, handle)
}

async fn run(store: Store, mut rx: mpsc::Receiver<CallRow>, metrics: Arc<Metrics>) {
    let mut batch: Vec<CallRow> = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(row) => batch.push(row),
                Err(_) => break,
            }
        }
        // Keep the newest state of each call, in first-seen order.
        let mut order: Vec<String> = Vec::new();
        let mut newest: HashMap<String, CallRow> = HashMap::new();
        for row in batch.drain(..) {
            if !newest.contains_key(&row.id) {
                order.push(row.id.clone());
            }
            newest.insert(row.id.clone(), row);
        }
        let rows: Vec<CallRow> = order.iter().filter_map(|k| newest.remove(k)).collect();
        let mut delay = Duration::from_millis(50);
        loop {
            match store.upsert_calls(&rows).await {
                Ok(()) => {
                    metrics
                        .call_log_writes
                        .fetch_add(rows.len() as u64, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    metrics.call_log_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(calls = rows.len(), error = %format!("{e:#}"), "call log write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
