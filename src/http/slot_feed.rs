//! The seat-count feed: `slot_update` messages on the hub's [`SLOTS_TOPIC`] (`/ws/slots`).
//!
//! A change that altered seat counts only marks its slots (after its commit) and returns: it
//! never waits for the feed. One task takes every slot marked since its last turn, reads them
//! in one query and publishes each as it is now; it reads at most every [`GATHER`]. Because
//! the marks follow the commits and the task's reads follow one another, the last message about a slot always shows a count read
//! after the last change to it: a screen that keeps the latest message per slot ends at the
//! true count, however the changes interleave. A burst of moves into one slot costs one read.
//! Before, each change read its slots back under one lock shared by every agent, which made
//! every rebook wait for every other's round trip.

use crate::hub::{Hub, SLOTS_TOPIC};
use crate::store::Store;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long the feed gathers marks before it reads them: it reads at most this often.
const GATHER: Duration = Duration::from_millis(20);

/// Slots whose counts changed and are not yet published.
#[derive(Default)]
pub struct SlotFeed {
    dirty: Mutex<BTreeSet<i64>>,
    wake: Notify,
}

impl SlotFeed {
    /// Marks slots whose seat counts a committed change altered; the feed publishes them soon.
    pub fn mark(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.extend(ids);
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<i64> {
        match self.dirty.lock() {
            Ok(mut dirty) => std::mem::take(&mut *dirty).into_iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Runs the feed until shutdown. A read the database refuses is retried: the slots stay
    /// marked, so nothing is lost, only late.
    pub async fn run(self: Arc<Self>, store: Store, hub: Hub, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            // A moment for the marks of the moves under way to join this read: one read per
            // turn, not per move, however busy the agents are (a screen sees the count this
            // much later, which nobody can tell).
            tokio::select! {
                _ = tokio::time::sleep(GATHER) => {}
                _ = stop.changed() => return,
            }
            let ids = self.take();
            if ids.is_empty() {
                continue;
            }
            match store.slots_now(&ids).await {
                Ok(slots) => {
                    for slot in slots {
                        let msg = json!({"type": "slot_update", "slot": slot});
                        hub.publish(SLOTS_TOPIC, &msg.to_string());
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, slots = ids.len(), "could not read slots for slot_update; retrying");
                    self.mark(ids);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    /// Marks from many changes coalesce into one read, and every marked slot is published
    /// with its count as stored now.
    #[tokio::test]
    async fn marked_slots_are_published_as_they_are_now() {
        let db = TestDb::new("sqlite").await.unwrap();
        let venue = db.store.insert_venue("会場", "", &[]).await.unwrap();
        let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().to_utc();
        let slot = |t: &str, capacity| crate::store::bookings::NewSlot {
            venue_id: venue,
            starts_at: at(t),
            ends_at: at(t) + chrono::Duration::minutes(30),
            product: crate::domain::Product::Pfizer,
            capacity,
        };
        let ids = db
            .store
            .insert_slots(&[
                slot("2026-12-01T10:00:00+09:00", 5),
                slot("2026-12-01T10:30:00+09:00", 7),
            ])
            .await
            .unwrap();
        let (a, b) = (ids[0], ids[1]);
        let hub = Hub::new();
        let mut sub = hub.subscribe(SLOTS_TOPIC, None, None);
        let feed = Arc::new(SlotFeed::default());
        let (stop_tx, stop) = watch::channel(false);
        feed.mark([a, b]);
        feed.mark([a]);
        let task = tokio::spawn(feed.clone().run(db.store.clone(), hub.clone(), stop));
        let mut seen = Vec::new();
        for _ in 0..2 {
            let frame = tokio::time::timeout(Duration::from_secs(5), sub.rx.recv())
                .await
                .unwrap()
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&frame.text).unwrap();
            assert_eq!(v["type"], "slot_update");
            seen.push((
                v["slot"]["id"].as_i64().unwrap(),
                v["slot"]["capacity"].as_i64().unwrap(),
            ));
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![(a, 5), (b, 7)],
            "each slot once, with its stored capacity"
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap();
    }
}
