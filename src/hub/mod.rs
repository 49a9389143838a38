//! Real-time delivery to browsers, by topic (`agent:<extension>`, `slots`, later `supervisors`,
//! a venue).
//!
//! Each topic numbers its messages (`seq`) and keeps the last [`REPLAY`] of them, so a client
//! that reconnects with `?since=<seq>` gets what it missed. Delivery never waits: a subscriber
//! whose queue is full is dropped (its socket closes and the browser resyncs), so one slow
//! screen never holds up a pop to another. A screen pop is therefore never dropped silently:
//! either it is delivered, or the client is disconnected and replays it on reconnect.

use chrono::{DateTime, Utc};
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
/// Live calls one topic shows at most (a phone rings for a handful at a time; this only bounds
/// a PBX that never reports ends, whose oldest entries are then forgotten).
pub const LIVE_PER_TOPIC: usize = 64;

/// One delivered frame: the JSON text with its `seq` already in place, and for a screen pop
/// the instant the PBX event behind it was read, so the socket that writes it can measure the
/// server's own latency (event read → frame written).
#[derive(Clone, Debug)]
pub struct Frame {
    pub text: Arc<str>,
    pub origin: Option<DateTime<Utc>>,
}

#[derive(Clone)]
pub struct Hub {
    /// Topics by name. A std mutex: every section is short and never awaits.
    topics: Arc<Mutex<HashMap<String, Topic>>>,
    next_client: Arc<AtomicU64>,
    /// New at every start: `seq` restarts with the process, so a client resuming with a `since`
    /// from another epoch is told of the gap instead of being silently skipped.
    epoch: Arc<str>,
    /// Clients dropped for being too slow (for /metrics).
    pub dropped_clients: Arc<AtomicU64>,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

#[derive(Default)]
struct Topic {
    seq: u64,
    recent: VecDeque<(u64, std::time::Instant, Frame)>,
    clients: Vec<(u64, mpsc::Sender<Frame>)>,
    /// Calls ringing or talking on this topic now, by call id, in the order they started:
    /// each a JSON object `{"call":…,"candidates":…}` that a (re)connecting screen shows.
    live: Vec<(String, Arc<str>)>,
}

/// A subscription: frames to send, starting with the replay.
pub struct Subscription {
    pub id: u64,
    pub topic: String,
    pub replay: Vec<Frame>,
    /// The topic's seq when subscribing (the client's position after the replay).
    pub seq: u64,
    /// True when the client missed messages for good and must reload its state: its `since`
    /// is older than the replay buffer, newer than anything sent (the server restarted), or
    /// from another epoch.
    pub gap: bool,
    /// The topic's live calls at the moment of subscribing (consistent with `seq`).
    pub live: Vec<Arc<str>>,
    pub rx: mpsc::Receiver<Frame>,
}

/// Puts `"seq":N` first into a JSON object text (`{"type":…}` → `{"seq":N,"type":…}`).
pub fn with_seq(seq: u64, payload: &str) -> Arc<str> {
    let body = payload.strip_prefix('{').unwrap_or(payload);
    let sep = if body.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    Arc::from(format!("{{\"seq\":{seq}{sep}{body}"))
}

fn new_epoch() -> Arc<str> {
    Arc::from(crate::domain::random::hex(8))
}

fn set_live_in(t: &mut Topic, call_id: &str, state: Arc<str>) {
    match t.live.iter_mut().find(|(id, _)| id == call_id) {
        Some(entry) => entry.1 = state,
        None => {
            t.live.push((call_id.to_string(), state));
            if t.live.len() > LIVE_PER_TOPIC {
                t.live.remove(0);
            }
        }
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            topics: Arc::default(),
            next_client: Arc::default(),
            epoch: new_epoch(),
            dropped_clients: Arc::default(),
        }
    }

    /// This process's epoch (see the field).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Topic>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a JSON object (without `seq`) to a topic; returns its seq.
    pub fn publish(&self, topic: &str, payload: &str) -> u64 {
        self.publish_at(topic, payload, None)
    }

    /// Publishes, recording when the PBX event behind the message was read.
    pub fn publish_at(&self, topic: &str, payload: &str, origin: Option<DateTime<Utc>>) -> u64 {
        let mut topics = self.lock();
        let t = topics.entry(topic.to_string()).or_default();
        self.publish_in(t, topic, payload, origin)
    }

    /// Publishes a call's message and records the call as live on the topic in one step, so
    /// that a screen connecting meanwhile gets the message or the call in its `hello`, never
    /// neither (as it could between two steps, when this thread was preempted between them).
    pub fn publish_live(
        &self,
        topic: &str,
        payload: &str,
        origin: Option<DateTime<Utc>>,
        call_id: &str,
        state: Arc<str>,
    ) -> u64 {
        let mut topics = self.lock();
        let t = topics.entry(topic.to_string()).or_default();
        set_live_in(t, call_id, state);
        self.publish_in(t, topic, payload, origin)
    }

    fn publish_in(
        &self,
        t: &mut Topic,
        topic: &str,
        payload: &str,
        origin: Option<DateTime<Utc>>,
    ) -> u64 {
        t.seq += 1;
        let seq = t.seq;
        let frame = Frame {
            text: with_seq(seq, payload),
            origin,
        };
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

    /// Records (or replaces) a live call a topic's screens should show when they connect.
    pub fn set_live(&self, topic: &str, call_id: &str, state: Arc<str>) {
        let mut topics = self.lock();
        set_live_in(topics.entry(topic.to_string()).or_default(), call_id, state);
    }

    /// Forgets a live call on a topic (it ended, or was answered elsewhere).
    pub fn clear_live(&self, topic: &str, call_id: &str) {
        let mut topics = self.lock();
        if let Some(t) = topics.get_mut(topic) {
            t.live.retain(|(id, _)| id != call_id);
        }
    }

    /// Subscribes to a topic, replaying what came after `since` (a seq of `epoch`; without an
    /// epoch, of this process if it can be).
    pub fn subscribe(&self, topic: &str, since: Option<u64>, epoch: Option<&str>) -> Subscription {
        let (tx, rx) = mpsc::channel(CLIENT_QUEUE);
        let id = self.next_client.fetch_add(1, Ordering::Relaxed);
        let foreign = epoch.is_some_and(|e| e != &*self.epoch);
        let mut topics = self.lock();
        let t = topics.entry(topic.to_string()).or_default();
        let mut gap = false;
        let replay = match since {
            Some(_) if foreign => {
                gap = true;
                Vec::new()
            }
            Some(since) if since > t.seq => {
                // Ahead of anything this process sent: the seq is from before a restart.
                gap = true;
                Vec::new()
            }
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
            live: t.live.iter().map(|(_, s)| s.clone()).collect(),
            rx,
        }
    }

    pub fn unsubscribe(&self, topic: &str, id: u64) {
        let mut topics = self.lock();
        if let Some(t) = topics.get_mut(topic) {
            t.clients.retain(|(cid, _)| *cid != id);
        }
    }

    /// How many clients listen on a topic right now.
    pub fn listeners(&self, topic: &str) -> usize {
        self.lock().get(topic).map(|t| t.clients.len()).unwrap_or(0)
    }

    pub fn client_count(&self) -> usize {
        self.lock().values().map(|t| t.clients.len()).sum()
    }
}

/// The topic of seat counts: a `slot_update` for every slot whose bookings changed
/// (`/ws/slots`).
pub const SLOTS_TOPIC: &str = "slots";

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
        let mut a = hub.subscribe("agent:201", None, None);
        assert_eq!(hub.publish("agent:201", r#"{"type":"x"}"#), 1);
        assert_eq!(hub.publish("agent:201", r#"{"type":"y"}"#), 2);
        assert_eq!(&*a.rx.recv().await.unwrap().text, r#"{"seq":1,"type":"x"}"#);
        assert_eq!(&*a.rx.recv().await.unwrap().text, r#"{"seq":2,"type":"y"}"#);
        let b = hub.subscribe("agent:201", Some(1), None);
        assert_eq!(b.replay.len(), 1);
        assert_eq!(&*b.replay[0].text, r#"{"seq":2,"type":"y"}"#);
        assert!(!b.gap);
        // Another topic sees nothing.
        let mut c = hub.subscribe("agent:202", None, None);
        assert!(c.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn slow_client_is_dropped_not_waited_for() {
        let hub = Hub::new();
        let slow = hub.subscribe("t", None, None);
        let mut fast = hub.subscribe("t", None, None);
        for i in 0..(CLIENT_QUEUE + 5) {
            hub.publish("t", &format!(r#"{{"n":{i}}}"#));
            assert!(fast.rx.recv().await.is_some());
        }
        assert_eq!(hub.listeners("t"), 1);
        assert_eq!(hub.dropped_clients.load(Ordering::Relaxed), 1);
        drop(slow);
        // A client far behind the replay buffer is told it has a gap.
        let late = hub.subscribe("t", Some(0), None);
        assert!(late.gap);
        assert_eq!(late.replay.len(), REPLAY);
    }

    #[tokio::test]
    async fn a_since_from_before_a_restart_is_a_gap() {
        let hub = Hub::new();
        hub.publish("agent:201", r#"{"type":"x"}"#);
        hub.publish("agent:201", r#"{"type":"y"}"#);
        // A seq this process never sent (the old process had reached 9).
        let s = hub.subscribe("agent:201", Some(9), None);
        assert!(s.gap);
        assert!(s.replay.is_empty());
        // A seq this process did send, but under another epoch.
        let s = hub.subscribe("agent:201", Some(1), Some("another-epoch"));
        assert!(s.gap);
        assert!(s.replay.is_empty());
        // The same epoch resumes normally.
        let epoch = hub.epoch().to_string();
        let s = hub.subscribe("agent:201", Some(1), Some(&epoch));
        assert!(!s.gap);
        assert_eq!(s.replay.len(), 1);
        assert_ne!(Hub::new().epoch(), hub.epoch());
    }

    #[tokio::test]
    async fn a_pop_and_its_live_call_come_together() {
        let hub = Hub::new();
        let mut before = hub.subscribe("agent:201", None, None);
        hub.publish_live(
            "agent:201",
            r#"{"type":"screen_pop"}"#,
            None,
            "ami:1",
            Arc::from(r#"{"call":{"id":"ami:1"}}"#),
        );
        let got = before.rx.try_recv().expect("the pop");
        assert!(got.text.contains("screen_pop"), "{}", got.text);
        let after = hub.subscribe("agent:201", None, None);
        assert_eq!(after.live.len(), 1);
        assert!(after.live[0].contains("ami:1"));
    }

    #[tokio::test]
    async fn live_calls_come_with_the_subscription() {
        let hub = Hub::new();
        hub.set_live(
            "agent:201",
            "ami:1",
            Arc::from(r#"{"call":{"id":"ami:1"}}"#),
        );
        hub.set_live(
            "agent:201",
            "ami:2",
            Arc::from(r#"{"call":{"id":"ami:2"}}"#),
        );
        hub.set_live(
            "agent:201",
            "ami:1",
            Arc::from(r#"{"call":{"id":"ami:1","state":"talking"}}"#),
        );
        let s = hub.subscribe("agent:201", None, None);
        assert_eq!(s.live.len(), 2);
        assert!(s.live[0].contains("talking"));
        hub.clear_live("agent:201", "ami:1");
        let s = hub.subscribe("agent:201", None, None);
        assert_eq!(s.live.len(), 1);
        assert!(hub.subscribe("agent:202", None, None).live.is_empty());
    }
}
