//! From PBX events to one [`CallRow`] per conversation.
//!
//! A call is keyed `<link>:<call id>` (AMI: the Linkedid, the Uniqueid of the call's oldest
//! channel). Legs are followed by channel id, because a channel's Linkedid can change mid-call
//! when bridges merge: once a channel belongs to a call it stays with it. The first channel of
//! a call is the caller's leg; the call ends when that leg hangs up (or when every leg has).
//!
//! The caller is resolved to residents at the call's first event, before any agent rings, and
//! the candidates' records (with history) are serialised once; each agent device that then
//! rings gets the pop at once, from memory.

use crate::domain::{Extension, Outcome, PhoneNumber};
use crate::hub::{agent_topic, Hub};
use crate::metrics::Metrics;
use crate::pbx::{DialStatus, PbxEvent};
use crate::store::{calls::CallRow, ts, Store};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::mpsc;

/// Calls remembered after they end, so stragglers (the agent leg's late Hangup, a replayed
/// transcript) do not open a second call.
const ENDED_MEMORY: usize = 20_000;

/// Which user answers on which extension. Refreshed from the users table; read by the tracker
/// to name who answered. A std RwLock: reads are short and never await.
#[derive(Clone, Default)]
pub struct AgentDirectory(Arc<RwLock<HashMap<String, i64>>>);

impl AgentDirectory {
    pub fn user_for(&self, ext: &str) -> Option<i64> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(ext)
            .copied()
    }
    pub fn replace(&self, map: HashMap<String, i64>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = map;
    }
    pub async fn refresh(&self, store: &Store) -> anyhow::Result<()> {
        let map = store
            .users()
            .await?
            .into_iter()
            .filter_map(|u| u.extension.map(|e| (e, u.id)))
            .collect();
        self.replace(map);
        Ok(())
    }
}

/// A live call and everything needed to finish it.
struct LiveCall {
    row: CallRow,
    link: String,
    caller_channel: String,
    channels: HashSet<String>,
    /// The caller's candidates as JSON text, ready to splice into a pop.
    candidates_json: Arc<str>,
    /// Extensions popped, in order (the call log's agents_offered).
    offered: Vec<String>,
    /// Agent leg channel id → extension, to read DialEnd and Hangup.
    agent_legs: HashMap<String, String>,
    /// How each ringing ended, per extension.
    offer_ends: HashMap<String, DialStatus>,
    abandoned: bool,
    /// Arrival of the first event, for the pop latency metric.
    received: Instant,
}

/// A clonable handle to feed the tracker and read what it knows.
#[derive(Clone)]
pub struct TrackerHandle {
    pub events: mpsc::Sender<PbxEvent>,
    pub directory: AgentDirectory,
}

pub struct Tracker {
    store: Store,
    hub: Hub,
    metrics: Arc<Metrics>,
    directory: AgentDirectory,
    log: mpsc::Sender<CallRow>,
    calls: HashMap<String, LiveCall>,
    /// (link, channel id) → call key.
    channels: HashMap<(String, String), String>,
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
    /// The supervisors' live queue board.
    board: super::Board,
}

/// How many PBX events may wait for the tracker. The PBX reader never blocks on the database;
/// it blocks here only if the tracker is this far behind, which means something is badly wrong.
pub const EVENT_QUEUE: usize = 16_384;

impl Tracker {
    pub fn new(
        store: Store,
        hub: Hub,
        metrics: Arc<Metrics>,
        log: mpsc::Sender<CallRow>,
        directory: AgentDirectory,
    ) -> Tracker {
        Tracker {
            store,
            hub,
            metrics,
            directory,
            log,
            calls: HashMap::new(),
            channels: HashMap::new(),
            ended: HashSet::new(),
            ended_order: VecDeque::new(),
            board: super::Board::default(),
        }
    }

    /// Keeps `board` up to date as calls queue, ring, are answered and end.
    pub fn with_board(mut self, board: super::Board) -> Tracker {
        self.board = board;
        self
    }

    /// Runs until every sender of `events` is gone, or until shutdown; then handles what is
    /// already queued, so no reported event is lost, and returns (closing the call log queue).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<PbxEvent>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        self.metrics.pbx_events.fetch_add(1, Ordering::Relaxed);
                        self.handle(ev).await;
                    }
                    None => break,
                },
                _ = shutdown.changed() => {
                    while let Ok(ev) = events.try_recv() {
                        self.handle(ev).await;
                    }
                    break;
                }
            }
        }
        let live = self.calls.len();
        // Calls still live are written as they stand; the next start resyncs them.
        let keys: Vec<String> = self.calls.keys().cloned().collect();
        for k in keys {
            self.save(&k).await;
        }
        tracing::info!(live, "call tracker stopped");
    }

    fn key(link: &str, call: &str) -> String {
        format!("{link}:{call}")
    }

    /// The live call an event belongs to: by its channel first (Linkedids move), then by call id.
    fn find(&self, link: &str, call: &str, channel: Option<&str>) -> Option<String> {
        if let Some(ch) = channel {
            if let Some(k) = self.channels.get(&(link.to_string(), ch.to_string())) {
                return Some(k.clone());
            }
        }
        let k = Self::key(link, call);
        self.calls.contains_key(&k).then_some(k)
    }

    pub async fn handle(&mut self, ev: PbxEvent) {
        match ev {
            PbxEvent::LinkUp { link } => tracing::info!(link, "PBX link up"),
            PbxEvent::LinkDown { link, reason } => {
                tracing::warn!(link, reason, "PBX link down; live calls kept until resync")
            }
            PbxEvent::Channel {
                link,
                call,
                channel,
                name,
                caller_number,
                caller_name,
                dialled,
                at,
            } => {
                if let Some(key) = self.find(&link, &call, Some(&channel)) {
                    self.channels
                        .insert((link.clone(), channel.clone()), key.clone());
                    let Some(c) = self.calls.get_mut(&key) else {
                        return;
                    };
                    c.channels.insert(channel.clone());
                    // The caller's number can arrive after the channel (NewCallerid).
                    if channel == c.caller_channel
                        && c.offered.is_empty()
                        && PhoneNumber::from_caller_id(&caller_number).is_some()
                        && caller_number != c.row.caller_number
                    {
                        c.row.caller_number = caller_number.clone();
                        c.row.caller_name = crate::domain::phone::caller_display_name(&caller_name);
                        self.resolve(&key).await;
                    }
                    return;
                }
                let key = Self::key(&link, &call);
                if self.ended.contains(&key) {
                    return;
                }
                self.open(
                    key,
                    link,
                    channel,
                    name,
                    caller_number,
                    caller_name,
                    dialled,
                    at,
                )
                .await;
            }
            PbxEvent::QueueJoin {
                link,
                call,
                channel,
                queue,
                at,
            } => {
                if let Some(key) = self.find(&link, &call, Some(&channel)) {
                    if let Some(c) = self.calls.get_mut(&key) {
                        self.board.joined(&queue, &key, &c.row.caller_number, at);
                        c.row.queue = Some(queue);
                        c.row.queued_at.get_or_insert(ts(at));
                        self.save(&key).await;
                    }
                }
            }
            PbxEvent::Offer {
                link,
                call,
                device,
                agent_channel,
                queue,
                at,
            } => {
                let Some(key) = self.find(&link, &call, None).or_else(|| {
                    agent_channel
                        .as_deref()
                        .and_then(|ch| self.find(&link, &call, Some(ch)))
                }) else {
                    return;
                };
                self.offer(&key, &link, &device, agent_channel, queue, at)
                    .await;
            }
            PbxEvent::OfferEnd {
                link,
                call,
                device,
                agent_channel,
                status,
                at,
            } => {
                let Some(key) = self.find(&link, &call, agent_channel.as_deref()) else {
                    return;
                };
                let Some(c) = self.calls.get_mut(&key) else {
                    return;
                };
                let ext = agent_channel
                    .as_ref()
                    .and_then(|ch| c.agent_legs.get(ch).cloned())
                    .or_else(|| Extension::from_device(&device).map(|e| e.as_str().to_string()));
                let Some(ext) = ext else { return };
                c.offer_ends.insert(ext.clone(), status);
                if status == DialStatus::Answer {
                    self.answer(&key, &ext, None, None, at).await;
                }
            }
            PbxEvent::Answer {
                link,
                call,
                device,
                queue,
                hold_s,
                at,
            } => {
                let Some(key) = self.find(&link, &call, None) else {
                    return;
                };
                let Some(ext) = Extension::from_device(&device) else {
                    return;
                };
                self.answer(&key, ext.as_str(), queue, hold_s, at).await;
            }
            PbxEvent::Abandon {
                link,
                call,
                queue,
                hold_s,
                at,
            } => {
                let Some(key) = self.find(&link, &call, None) else {
                    return;
                };
                if let Some(c) = self.calls.get_mut(&key) {
                    if c.row.queued_at.is_none() {
                        // The join was filtered out or missed (a reconnect): the board still
                        // counts this caller, from when the hold time says they joined.
                        let since = at - chrono::Duration::seconds(hold_s.unwrap_or(0));
                        self.board.joined(&queue, &key, &c.row.caller_number, since);
                        c.row.queued_at = Some(ts(since));
                    }
                    c.abandoned = true;
                    c.row.queue.get_or_insert(queue);
                    if hold_s.is_some() {
                        c.row.hold_s = hold_s;
                    }
                }
            }
            PbxEvent::Hangup {
                link,
                call,
                channel,
                cause,
                at,
            } => {
                let Some(key) = self.find(&link, &call, Some(&channel)) else {
                    return;
                };
                self.channels.remove(&(link.clone(), channel.clone()));
                let Some(c) = self.calls.get_mut(&key) else {
                    return;
                };
                c.channels.remove(&channel);
                if let Some(ext) = c.agent_legs.get(&channel).cloned() {
                    // A ringing leg that hung up busy before any DialEnd said so.
                    if cause == Some(17) {
                        c.offer_ends.entry(ext).or_insert(DialStatus::Busy);
                    }
                }
                if channel == c.caller_channel || c.channels.is_empty() {
                    self.end(&key, at, cause).await;
                }
            }
            PbxEvent::Resync { link, channels, at } => {
                let alive: HashSet<&str> = channels.iter().map(|c| c.channel.as_str()).collect();
                let gone: Vec<String> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| {
                        c.link == link && !c.channels.iter().any(|ch| alive.contains(ch.as_str()))
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in gone {
                    tracing::info!(call = %key, "call ended while the PBX link was down");
                    self.end(&key, at, None).await;
                }
                for ch in channels {
                    let ev = PbxEvent::Channel {
                        link: link.clone(),
                        call: ch.call,
                        channel: ch.channel,
                        name: ch.name,
                        caller_number: ch.caller_number,
                        caller_name: ch.caller_name,
                        dialled: ch.dialled,
                        at,
                    };
                    Box::pin(self.handle(ev)).await;
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn open(
        &mut self,
        key: String,
        link: String,
        channel: String,
        name: String,
        caller_number: String,
        caller_name: String,
        dialled: String,
        at: DateTime<Utc>,
    ) {
        self.metrics.calls_started.fetch_add(1, Ordering::Relaxed);
        // A call started by an agent's own device is outbound (click-to-dial, a call back).
        let direction = match Extension::from_device(&name) {
            Some(ext) if self.directory.user_for(ext.as_str()).is_some() => "outbound",
            _ => "inbound",
        };
        let row = CallRow {
            id: key.clone(),
            direction: direction.into(),
            caller_number,
            caller_name: crate::domain::phone::caller_display_name(&caller_name),
            dialled,
            started_at: ts(at),
            ..CallRow::default()
        };
        let mut channels = HashSet::new();
        channels.insert(channel.clone());
        self.channels
            .insert((link.clone(), channel.clone()), key.clone());
        self.calls.insert(
            key.clone(),
            LiveCall {
                row,
                link,
                caller_channel: channel,
                channels,
                candidates_json: Arc::from("[]"),
                offered: Vec::new(),
                agent_legs: HashMap::new(),
                offer_ends: HashMap::new(),
                abandoned: false,
                received: Instant::now(),
            },
        );
        self.resolve(&key).await;
    }

    /// Looks the caller up and prepares the candidates for pops.
    #[tracing::instrument(level = "debug", skip_all, fields(call = %key))]
    async fn resolve(&mut self, key: &str) {
        let Some(c) = self.calls.get(key) else { return };
        let number = PhoneNumber::from_caller_id(&c.row.caller_number);
        let (e164, json, count, resident) = match &number {
            None => (None, Arc::from("[]"), 0, None),
            Some(n) => {
                self.metrics.lookups.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let found = self.lookup(n).await;
                self.metrics
                    .lookup_latency
                    .observe_us(t.elapsed().as_micros() as u64);
                match found {
                    Ok((json, ids)) => {
                        let only = (ids.len() == 1).then(|| ids[0]);
                        (Some(n.as_str().to_string()), json, ids.len() as i64, only)
                    }
                    Err(e) => {
                        tracing::error!(call = %key, error = %format!("{e:#}"), "caller lookup failed; popping without a record");
                        (Some(n.as_str().to_string()), Arc::from("[]"), 0, None)
                    }
                }
            }
        };
        if let Some(c) = self.calls.get_mut(key) {
            c.row.caller_e164 = e164;
            c.row.candidates = count;
            c.row.resident_id = resident;
            c.candidates_json = json;
        }
        self.save(key).await;
    }

    async fn lookup(&self, n: &PhoneNumber) -> anyhow::Result<(Arc<str>, Vec<i64>)> {
        let (json, ids) = self.store.pop_candidates(n).await?;
        Ok((Arc::from(json), ids))
    }

    fn call_json(c: &LiveCall, state: &str) -> serde_json::Value {
        json!({
            "id": c.row.id,
            "caller_number": c.row.caller_number,
            "caller_name": c.row.caller_name,
            "queue": c.row.queue,
            "dialled": c.row.dialled,
            "started_at": c.row.started_at,
            "resident_id": c.row.resident_id,
            "state": state,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = %key, agent = %device))]
    async fn offer(
        &mut self,
        key: &str,
        link: &str,
        device: &str,
        agent_channel: Option<String>,
        queue: Option<String>,
        at: DateTime<Utc>,
    ) {
        let Some(ext) = Extension::from_device(device) else {
            return;
        };
        let ext = ext.as_str().to_string();
        let Some(c) = self.calls.get_mut(key) else {
            return;
        };
        if let Some(ch) = &agent_channel {
            c.agent_legs.insert(ch.clone(), ext.clone());
            c.channels.insert(ch.clone());
            self.channels
                .insert((link.to_string(), ch.clone()), key.to_string());
        }
        if let Some(q) = queue {
            c.row.queue.get_or_insert(q);
        }
        if c.offered.contains(&ext) || c.row.answered_by.is_some() {
            return;
        }
        c.offered.push(ext.clone());
        self.board.ringing(&ext, key);
        c.row.agents_offered = c.offered.clone();
        c.row.rang_at.get_or_insert(ts(at));
        // The pop: built from the prepared candidates, no database on this path.
        let call = Self::call_json(c, "ringing");
        let payload = format!(
            "{{\"type\":\"screen_pop\",\"call\":{},\"candidates\":{}}}",
            call, c.candidates_json
        );
        self.hub.publish(&agent_topic(&ext), &payload);
        self.metrics
            .observe_pop(c.received.elapsed().as_micros() as u64);
        self.save(key).await;
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = %key, agent = %ext))]
    async fn answer(
        &mut self,
        key: &str,
        ext: &str,
        queue: Option<String>,
        hold_s: Option<i64>,
        at: DateTime<Utc>,
    ) {
        let dir = self.directory.clone();
        let Some(c) = self.calls.get_mut(key) else {
            return;
        };
        if let Some(q) = queue {
            c.row.queue.get_or_insert(q);
        }
        if hold_s.is_some() {
            c.row.hold_s = hold_s;
        }
        // With Local/ channels both the Local leg and the phone report ANSWER: the agent is the
        // extension a user sits at, so a known agent replaces an unknown device.
        let replace = match &c.row.answered_by {
            None => true,
            Some(prev) => {
                prev != ext && dir.user_for(prev).is_none() && dir.user_for(ext).is_some()
            }
        };
        if !replace {
            return;
        }
        c.row.answered_by = Some(ext.to_string());
        c.row.answered_user_id = dir.user_for(ext);
        c.row.answered_at.get_or_insert(ts(at));
        if c.row.hold_s.is_none() {
            if let Some(start) = c
                .row
                .queued_at
                .as_deref()
                .or(Some(c.row.started_at.as_str()))
                .and_then(crate::store::parse_ts)
            {
                c.row.hold_s = Some((at - start).num_seconds().max(0));
            }
        }
        self.board
            .answered(c.row.queue.as_deref(), key, ext, c.row.hold_s, at);
        let call = Self::call_json(c, "talking");
        for other in &c.offered {
            let event = if other == ext {
                "answered_here"
            } else {
                "answered_elsewhere"
            };
            let payload = json!({"type": "call_update", "call": call, "event": event, "answered_by": ext, "outcome": null});
            self.hub.publish(&agent_topic(other), &payload.to_string());
        }
        if !c.offered.iter().any(|o| o == ext) {
            // Answered on a device that was never offered (a direct pick-up): tell it too.
            let payload = json!({"type": "call_update", "call": call, "event": "answered_here", "answered_by": ext, "outcome": null});
            self.hub.publish(&agent_topic(ext), &payload.to_string());
        }
        self.save(key).await;
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = %key))]
    async fn end(&mut self, key: &str, at: DateTime<Utc>, cause: Option<u16>) {
        let Some(mut c) = self.calls.remove(key) else {
            return;
        };
        for ch in c.channels.iter().chain(std::iter::once(&c.caller_channel)) {
            self.channels.remove(&(c.link.clone(), ch.clone()));
        }
        for ch in c.agent_legs.keys() {
            self.channels.remove(&(c.link.clone(), ch.clone()));
        }
        let outcome = if c.row.answered_by.is_some() {
            Outcome::Answered
        } else if c.abandoned {
            Outcome::Abandoned
        } else if c.offer_ends.values().any(|s| *s == DialStatus::Busy) || cause == Some(17) {
            Outcome::Busy
        } else if c.offer_ends.values().any(|s| *s == DialStatus::NoAnswer) || cause == Some(19) {
            Outcome::NoAnswer
        } else if c
            .offer_ends
            .values()
            .any(|s| matches!(s, DialStatus::Congestion | DialStatus::Unavailable))
        {
            Outcome::Failed
        } else {
            // The caller hung up while ringing or waiting.
            Outcome::Abandoned
        };
        c.row.outcome = Some(outcome.code().to_string());
        c.row.ended_at = Some(ts(at));
        if c.row.hold_s.is_none() && outcome != Outcome::Answered {
            if let Some(start) = c.row.queued_at.as_deref().and_then(crate::store::parse_ts) {
                c.row.hold_s = Some((at - start).num_seconds().max(0));
            }
        }
        let talk_s = c
            .row
            .answered_at
            .as_deref()
            .and_then(crate::store::parse_ts)
            .map(|t| (at - t).num_seconds());
        self.board.ended(c.row.queue.as_deref(), key, talk_s, at);
        let call = Self::call_json(&c, "ended");
        for ext in &c.offered {
            let payload = json!({"type": "call_update", "call": call, "event": "ended", "answered_by": c.row.answered_by, "outcome": outcome.code()});
            self.hub.publish(&agent_topic(ext), &payload.to_string());
        }
        self.metrics.calls_ended.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call = %key, outcome = outcome.code(), answered_by = ?c.row.answered_by, resident = ?c.row.resident_id, "call ended");
        if self.log.send(c.row).await.is_err() {
            tracing::error!(call = %key, "call log writer is gone");
        }
        self.ended.insert(key.to_string());
        self.ended_order.push_back(key.to_string());
        while self.ended_order.len() > ENDED_MEMORY {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    /// Hands the call's current state to the call log writer.
    async fn save(&self, key: &str) {
        if let Some(c) = self.calls.get(key) {
            if self.log.send(c.row.clone()).await.is_err() {
                tracing::error!(call = %key, "call log writer is gone");
            }
        }
    }

    /// Live calls, for the supervisor view and tests.
    pub fn live_calls(&self) -> Vec<CallRow> {
        self.calls.values().map(|c| c.row.clone()).collect()
    }
}
