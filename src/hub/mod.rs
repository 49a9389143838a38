//! Real-time delivery to browsers, by topic (`agent:<extension>`, later `supervisors`, a venue).
//!
//! Each topic numbers its messages (`seq`) and keeps the last [`REPLAY`] of them, so a client
//! that reconnects with `?since=<seq>` gets what it missed. Delivery never waits: a subscriber
//! whose queue is full is dropped (its socket closes and the browser resyncs), so one slow
//! screen never holds up a pop to another. A screen pop is therefore never dropped silently:
//! either it is delivered, or the client is disconnected and replays it on reconnect.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Messages a topic keeps for clients that reconnect: a call makes about three, so this covers
/// a screen that was away for several calls, without holding every pop of the day in memory.
pub const REPLAY: usize = 32;
/// Messages older than this are not replayed: a screen away that long reloads its state.
pub const REPLAY_AGE: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Messages queued for one client before it counts as too slow and is dropped.
pub const CLIENT_QUEUE: usize = 256;

/// One delivered frame: the JSON text with its `seq` already in place.
pub type Frame = Arc<str>;

#[derive(Clone, Default)]
pub struct Hub {
    /// Topics by name. A std mutex: every section is short and never awaits.
    topics: Arc<Mutex<HashMap<String, Topic>>>,
    next_client: Arc<AtomicU64>,
    /// Clients dropped for being too slow (for /metrics).
    pub dropped_clients: Arc<AtomicU64>,
}

#[derive(Default)]
struct Topic {
    seq: u64,
    recent: VecDeque<(u64, std::time::Instant, Frame)>,
    clients: Vec<(u64, mpsc::Sender<Frame>)>,
}

/// A subscription: frames to send, starting with the replay.
pub struct Subscription {
    pub id: u64,
    pub topic: String,
    pub replay: Vec<Frame>,
    /// The topic's seq when subscribing (the client's position after the replay).
    pub seq: u64,
    /// True when `since` was older than the replay buffer: the client missed messages for
    /// good and must reload its state.
    pub gap: bool,
    pub rx: mpsc::Receiver<Frame>,
}

/// Puts `"seq":N` first into a JSON object text (`{"type":…}` → `{"seq":N,"type":…}`).
fn with_seq(seq: u64, payload: &str) -> Frame {
    let body = payload.strip_prefix('{').unwrap_or(payload);
    let sep = if body.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    Arc::from(format!("{{\"seq\":{seq}{sep}{body}"))
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    /// Publishes a JSON object (without `seq`) to a topic; returns its seq.
    pub fn publish(&self, topic: &str, payload: &str) -> u64 {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let t = topics.entry(topic.to_string()).or_default();
        t.seq += 1;
        let seq = t.seq;
        let frame = with_seq(seq, payload);
        let now = std::time::Instant::now();
        t.recent.push_back((seq, now, frame.clone()));
        while t.recent.len() > REPLAY
            || t.recent
                .front()
                .is_some_and(|(_, at, _)| now.duration_since(*at) > REPLAY_AGE)
        {
            t.recent.pop_front();
        }
        let before = t.clients.len();
        t.clients
            .retain(|(_, tx)| tx.try_send(frame.clone()).is_ok());
        let dropped = before - t.clients.len();
        if dropped > 0 {
            self.dropped_clients
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::warn!(
                topic,
                dropped,
                "dropped slow or closed clients; they will resync"
            );
        }
        seq
    }

    /// Subscribes to a topic, replaying what came after `since`.
    pub fn subscribe(&self, topic: &str, since: Option<u64>) -> Subscription {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let t = topics.entry(topic.to_string()).or_default();
        let mut gap = false;
        let replay = match since {
            Some(since) if since < t.seq => {
                let oldest = t.recent.front().map(|(s, _, _)| *s).unwrap_or(t.seq + 1);
                gap = since + 1 < oldest;
                t.recent
                    .iter()
                    .filter(|(s, _, _)| *s > since)
                    .map(|(_, _, f)| f.clone())
                    .collect()
            }
            _ => Vec::new(),
        };
        t.clients.push((id, tx));
        Subscription {
            id,
            topic: topic.to_string(),
            replay,
            seq: t.seq,
            gap,
            rx,
        }
    }

    pub fn unsubscribe(&self, topic: &str, id: u64) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = topics.get_mut(topic) {
            t.clients.retain(|(cid, _)| *cid != id);
        }
    }

    /// How many clients listen on a topic right now.
    pub fn listeners(&self, topic: &str) -> usize {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.get(topic).map(|t| t.clients.len()).unwrap_or(0)
    }

    pub fn client_count(&self) -> usize {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.values().map(|t| t.clients.len()).sum()
    }
}

/// The topic an agent's screen listens on.
pub fn agent_topic(extension: &str) -> String {
    format!("agent:{extension}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn numbers_and_replays() {
        let hub = Hub::new();
        let mut a = hub.subscribe("agent:201", None);
        assert_eq!(hub.publish("agent:201", r#"{"type":"x"}"#), 1);
        assert_eq!(hub.publish("agent:201", r#"{"type":"y"}"#), 2);
        assert_eq!(&*a.rx.recv().await.unwrap(), r#"{"seq":1,"type":"x"}"#);
        assert_eq!(&*a.rx.recv().await.unwrap(), r#"{"seq":2,"type":"y"}"#);
        let b = hub.subscribe("agent:201", Some(1));
        assert_eq!(b.replay.len(), 1);
        assert_eq!(&*b.replay[0], r#"{"seq":2,"type":"y"}"#);
        assert!(!b.gap);
        // Another topic sees nothing.
        let mut c = hub.subscribe("agent:202", None);
        assert!(c.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn slow_client_is_dropped_not_waited_for() {
        let hub = Hub::new();
        let slow = hub.subscribe("t", None);
        let mut fast = hub.subscribe("t", None);
        for i in 0..(CLIENT_QUEUE + 5) {
            hub.publish("t", &format!(r#"{{"n":{i}}}"#));
            assert!(fast.rx.recv().await.is_some());
        }
        assert_eq!(hub.listeners("t"), 1);
        assert_eq!(hub.dropped_clients.load(Ordering::Relaxed), 1);
        drop(slow);
        // A client far behind the replay buffer is told it has a gap.
        let late = hub.subscribe("t", Some(0));
        assert!(late.gap);
        assert_eq!(late.replay.len(), REPLAY);
    }
}
