//! From PBX events to one [`CallRow`] per conversation.
//!
//! A call is keyed `<link>:<call id>` (AMI: the Linkedid, the Uniqueid of the call's oldest
//! channel). Legs are followed by channel id, because a channel's Linkedid can change mid-call
//! when bridges merge: once a channel belongs to a call it stays with it. The first channel of
//! a call is the caller's leg; the call ends when that leg hangs up (or when every leg has).
//!
//! **Who owns which fact.** The tracker owns the telephony facts (times, queue, agents offered,
//! who answered, the outcome); the agent owns the identification of the caller (`POST
//! /api/calls/{id}/resident`). The call log's upsert only moves forward (`store::calls`), so
//! whichever writes last, nothing learned is lost.
//!
//! **The caller lookup never holds the tracker.** On SQLite it runs in place on a read-only
//! connection (tens of microseconds). Otherwise it runs beside the tracker and its answer comes
//! back as a message; a pop that is due while the lookup runs waits for it at most
//! [`POP_DEADLINE`], then goes out with `"lookup":"pending"` and the record follows as a
//! `candidates_update`. While a call's pop waits, that call's later messages wait behind it, so
//! every screen sees a call's messages in order. A failing lookup is retried until the call ends.
//!
//! **Restarts and outages.** At start the tracker reads the calls an earlier process left open
//! ([`Tracker::restore`]). The first resync of their PBX link decides each one: still listed,
//! it continues with what the log knows (an `Up` agent leg means answered); gone, it is closed
//! with the outcome nobody can dispute ([`outcome_unseen`]: answered stays answered, anything
//! else is `unknown`) and `end_estimated`. Calls of a link that never comes back are closed
//! after [`ORPHAN_GRACE`]. Live calls are bounded: a call silent for [`MAX_SILENCE`] is closed
//! the same way, and past [`MAX_LIVE_CALLS`] the longest-silent call is closed to make room.

use super::writer::CallLog;
use crate::domain::call::{outcome, outcome_unseen, CAUSE_BUSY};
use crate::domain::call::{DialStatus, LiveChannel, PbxEvent};
use crate::domain::{Extension, Outcome, PhoneNumber};
use crate::hub::{agent_topic, Hub};
use crate::metrics::Metrics;
use crate::store::{calls::CallRow, ts, Store};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Calls remembered after they end, so stragglers (the agent leg's late Hangup, a replayed
/// transcript) do not open a second call. Also read back from the log at start.
const ENDED_MEMORY: usize = 20_000;
/// Channels whose Hangup came before anything else of theirs, remembered so a late Newchannel
/// opens no call that would never end.
const DEAD_CHANNEL_MEMORY: usize = 20_000;
/// How long a pop waits for the caller lookup before it goes out without the record.
pub const POP_DEADLINE: Duration = Duration::from_millis(50);
/// One lookup attempt's limit; a failed or timed-out attempt is retried after a backoff.
const LOOKUP_ATTEMPT: Duration = Duration::from_secs(2);
/// Calls left open by an earlier process whose PBX link has not listed its live channels by
/// then are closed as ended during the outage.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(120);
/// A live call with no event for this long is closed (a PBX that never reports the end).
pub const MAX_SILENCE: Duration = Duration::from_secs(4 * 3600);
/// Live calls held at most; past it the longest-silent one is closed to make room.
pub const MAX_LIVE_CALLS: usize = 10_000;
/// Links that push events and list nothing at a reconnect (the HTTP webhook): their calls
/// left open by an earlier process continue at once, bounded by [`MAX_SILENCE`].
const PUSH_LINKS: &[&str] = &["webhook"];
/// How often the bounds above are checked.
const SWEEP_EVERY: Duration = Duration::from_secs(15);

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

/// Where the caller lookup of a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookup {
    /// No number to look up (withheld), or the answer is in `candidates_json`.
    Done,
    /// Running beside the tracker; `generation` tells a stale answer from the current one.
    Running,
}

/// A message for agents, held while the call's pop waits for the lookup.
enum Held {
    Pop { ext: String, at: DateTime<Utc> },
    Message { topic: String, payload: String },
}

/// A live call and everything needed to finish it.
struct LiveCall {
    row: CallRow,
    link: String,
    caller_channel: String,
    channels: HashSet<String>,
    /// The caller's candidates as JSON text, ready to splice into a pop.
    candidates_json: Arc<str>,
    lookup: Lookup,
    /// Bumped at every new lookup (the caller number can arrive late).
    generation: u64,
    lookup_task: Option<tokio::task::AbortHandle>,
    /// When the lookup started, for the pop deadline.
    lookup_started: Instant,
    /// Messages waiting for the lookup (or the deadline), in order.
    held: Vec<Held>,
    /// Extensions that got a pop without the record: they get a `candidates_update`.
    popped_pending: Vec<String>,
    /// Extensions popped, in order (the call log's agents_offered).
    offered: Vec<String>,
    /// Agent leg channel id → extension, to read DialEnd and Hangup.
    agent_legs: HashMap<String, String>,
    /// How each ringing ended, per extension.
    offer_ends: HashMap<String, DialStatus>,
    abandoned: bool,
    /// Arrival of the first event, for the pop latency metric.
    received: Instant,
    /// The last event about this call, for [`MAX_SILENCE`].
    last_event: Instant,
    /// An outbound call: the extension of the agent who placed it (click-to-dial, a call
    /// back). The far end it dials is not an agent: its answer is this agent's.
    placed_by: Option<String>,
}

/// Messages from the tracker's helpers (lookups, timers) back to its loop.
enum Internal {
    LookupDone {
        key: String,
        generation: u64,
        result: (Arc<str>, Vec<i64>),
        elapsed: Duration,
    },
    Deadline {
        key: String,
        generation: u64,
    },
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
    log: CallLog,
    calls: HashMap<String, LiveCall>,
    /// (link, channel id) → call key.
    channels: HashMap<(String, String), String>,
    ended: HashSet<String>,
    ended_order: VecDeque<String>,
    dead_channels: HashSet<(String, String)>,
    dead_order: VecDeque<(String, String)>,
    /// Calls an earlier process left open, by key, until their link's first resync.
    orphans: HashMap<String, CallRow>,
    orphan_deadline: Instant,
    /// The PBX links this process runs; orphans of any other link are closed at once.
    links: Option<Vec<String>>,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: Option<mpsc::UnboundedReceiver<Internal>>,
    /// Calls that ended before their caller lookup answered (the database was slow or away):
    /// the final row, completed with the resident when the lookup comes back.
    unresolved: HashMap<String, (u64, CallRow, tokio::task::AbortHandle)>,
    /// The supervisors' live queue board.
    board: super::Board,
    /// Calls that left their queue unanswered without abandoning it (the queue's timeout).
    timed_out: HashSet<String>,
    /// Missed callers become callbacks; answered ones clear theirs.
    callbacks: super::callbacks::Writer,
}

/// How many PBX events may wait for the tracker. The tracker never waits on the database or a
/// browser, so this fills only if it is badly wrong; the PBX reader then blocks here.
pub const EVENT_QUEUE: usize = 16_384;

impl Tracker {
    pub fn new(
        store: Store,
        hub: Hub,
        metrics: Arc<Metrics>,
        log: CallLog,
        directory: AgentDirectory,
    ) -> Tracker {
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let callbacks = super::callbacks::Writer::spawn(store.clone());
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
            dead_channels: HashSet::new(),
            dead_order: VecDeque::new(),
            orphans: HashMap::new(),
            orphan_deadline: Instant::now() + ORPHAN_GRACE,
            links: None,
            internal_tx,
            internal_rx: Some(internal_rx),
            unresolved: HashMap::new(),
            board: super::Board::default(),
            timed_out: HashSet::new(),
            callbacks,
        }
    }

    /// Keeps `board` up to date as calls queue, ring, are answered and end.
    pub fn with_board(mut self, board: super::Board) -> Tracker {
        self.board = board;
        self
    }

    /// The PBX links this process runs (by name, e.g. `ami`).
    pub fn with_links(mut self, links: Vec<String>) -> Tracker {
        self.links = Some(links);
        self
    }

    /// Reads what an earlier process left: calls still open (to reconcile at the first resync
    /// of their link) and recently ended calls (so stragglers open nothing). Open calls of a
    /// link this process does not run are closed at once.
    pub async fn restore(&mut self) -> anyhow::Result<()> {
        let since = ts(Utc::now() - chrono::Duration::hours(24));
        for key in self
            .store
            .ended_call_keys(&since, ENDED_MEMORY as i64)
            .await?
            .into_iter()
            .rev()
        {
            self.remember_ended(&key);
        }
        let open = self.store.open_calls().await?;
        let now = Utc::now();
        for row in open {
            let link = row.id.split_once(':').map(|(l, _)| l).unwrap_or("");
            let served = self
                .links
                .as_ref()
                .is_none_or(|ls| ls.iter().any(|l| l == link));
            if served && PUSH_LINKS.contains(&link) {
                let link = link.to_string();
                tracing::info!(call = %row.id, "call from before the restart continues (its PBX pushes events)");
                self.continue_call(row, &link, &[]);
            } else if served {
                self.orphans.insert(row.id.clone(), row);
            } else {
                tracing::info!(call = %row.id, "call left open with no PBX link to ask; closed");
                self.close_row_unseen(row, now);
            }
        }
        if !self.orphans.is_empty() {
            tracing::info!(
                calls = self.orphans.len(),
                "calls left open by the last process wait for their PBX link's listing"
            );
        }
        self.orphan_deadline = Instant::now() + ORPHAN_GRACE;
        Ok(())
    }

    /// Runs until every sender of `events` is gone, or until shutdown; then handles what is
    /// already queued, lets running lookups finish briefly, and writes live calls as they
    /// stand (the next start reconciles them).
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<PbxEvent>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(mut internal) = self.internal_rx.take() else {
            return;
        };
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                msg = internal.recv() => {
                    if let Some(msg) = msg {
                        self.internal(msg);
                    }
                }
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
                _ = sweep.tick() => self.sweep(Instant::now()),
            }
        }
        // Lookups under way get a moment to finish, so held pops go out with the record.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.calls.values().any(|c| c.lookup == Lookup::Running)
            || !self.unresolved.is_empty()
        {
            match tokio::time::timeout_at(until, internal.recv()).await {
                Ok(Some(msg)) => self.internal(msg),
                _ => break,
            }
        }
        for (_, (_, _, task)) in self.unresolved.drain() {
            task.abort();
        }
        let live = self.calls.len();
        let keys: Vec<String> = self.calls.keys().cloned().collect();
        for k in keys {
            self.flush(&k, "pending");
            if let Some(c) = self.calls.get(&k) {
                if let Some(t) = &c.lookup_task {
                    t.abort();
                }
            }
            self.save(&k);
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

    fn touch(&mut self, key: &str) {
        if let Some(c) = self.calls.get_mut(key) {
            c.last_event = Instant::now();
        }
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
                    self.touch(&key);
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
                        self.resolve(&key);
                    }
                    return;
                }
                let key = Self::key(&link, &call);
                if self.ended.contains(&key)
                    || self
                        .dead_channels
                        .contains(&(link.clone(), channel.clone()))
                {
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
                );
            }
            PbxEvent::QueueJoin {
                link,
                call,
                channel,
                queue,
                at,
            } => {
                if let Some(key) = self.find(&link, &call, Some(&channel)) {
                    self.touch(&key);
                    if let Some(c) = self.calls.get_mut(&key) {
                        self.board.joined(&queue, &key, &c.row.caller_number, at);
                        c.row.queue.get_or_insert(queue);
                        c.row.queued_at.get_or_insert(ts(at));
                        self.save(&key);
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
                self.touch(&key);
                self.offer(&key, &link, &device, agent_channel, queue, at);
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
                self.touch(&key);
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
                    self.answer(&key, &ext, None, None, at);
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
                self.touch(&key);
                let Some(ext) = Extension::from_device(&device) else {
                    return;
                };
                self.answer(&key, ext.as_str(), queue, hold_s, at);
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
                self.touch(&key);
                if let Some(c) = self.calls.get_mut(&key) {
                    if c.row.queued_at.is_none() {
                        // The join was filtered out or missed (a reconnect): the board still
                        // counts this caller, from when the hold time says they joined.
                        let since = at - chrono::Duration::seconds(hold_s.unwrap_or(0));
                        self.board.joined(&queue, &key, &c.row.caller_number, since);
                        c.row.queued_at = Some(ts(since));
                    }
                    c.abandoned = true;
                    self.board.abandoned(&queue, &key, hold_s);
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
                    // A Hangup before anything else of this channel (events out of order):
                    // its late Newchannel must not open a call that never ends.
                    self.remember_dead(link, channel);
                    return;
                };
                self.channels.remove(&(link.clone(), channel.clone()));
                let Some(c) = self.calls.get_mut(&key) else {
                    return;
                };
                c.channels.remove(&channel);
                if let Some(ext) = c.agent_legs.get(&channel).cloned() {
                    // A ringing leg that hung up busy before any DialEnd said so.
                    if cause == Some(CAUSE_BUSY) {
                        c.offer_ends.entry(ext).or_insert(DialStatus::Busy);
                    }
                }
                if channel == c.caller_channel || c.channels.is_empty() {
                    self.end(&key, at, cause);
                }
            }
            PbxEvent::Resync { link, channels, at } => self.resync(link, channels, at).await,
            PbxEvent::QueueLeave {
                link,
                call,
                channel,
                queue,
                at,
            } => {
                let Some(key) = self.find(&link, &call, Some(&channel)) else {
                    return;
                };
                self.touch(&key);
                if let Some(c) = self.calls.get(&key) {
                    if c.row.answered_by.is_none() && !c.abandoned {
                        // Answered after all, or an abandon, overrides this at the end.
                        self.timed_out.insert(key.clone());
                    }
                }
                self.board.left(&queue, &key, at);
            }
            PbxEvent::Member {
                queue,
                device,
                status,
                paused,
                reason,
                removed,
                at,
                ..
            } => self.board.member(
                &super::board::MemberReport {
                    queue,
                    device,
                    status,
                    paused,
                    reason,
                    removed,
                },
                at,
            ),
            PbxEvent::DeviceState {
                device, state, at, ..
            } => self.board.device_state(&device, &state, at),
        }
    }

    /// Live state after a (re)connect: calls this process follows whose channels are all gone
    /// ended unseen; calls an earlier process left open continue or close; channels not known
    /// yet open calls; an agent leg that is up means its call was answered.
    async fn resync(&mut self, link: String, channels: Vec<LiveChannel>, at: DateTime<Utc>) {
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
            self.end_unseen(&key, at);
        }
        // Calls an earlier process left open: continued if listed, closed if not.
        let listed: HashSet<String> = channels.iter().map(|c| Self::key(&link, &c.call)).collect();
        let prefix = format!("{link}:");
        let orphans: Vec<String> = self
            .orphans
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for key in orphans {
            let Some(row) = self.orphans.remove(&key) else {
                continue;
            };
            if listed.contains(&key) {
                tracing::info!(call = %key, "call from before the restart is still up; continued");
                self.continue_call(row, &link, &channels);
            } else {
                tracing::info!(call = %key, "call from before the restart ended meanwhile; closed");
                self.close_row_unseen(row, at);
            }
        }
        for ch in &channels {
            let ev = PbxEvent::Channel {
                link: link.clone(),
                call: ch.call.clone(),
                channel: ch.channel.clone(),
                name: ch.name.clone(),
                caller_number: ch.caller_number.clone(),
                caller_name: ch.caller_name.clone(),
                dialled: ch.dialled.clone(),
                at,
            };
            Box::pin(self.handle(ev)).await;
        }
        // An agent's leg that is up: that agent is talking on the call.
        for ch in channels.iter().filter(|c| c.up) {
            let Some(key) = self.find(&link, &ch.call, Some(&ch.channel)) else {
                continue;
            };
            let Some(ext) = Extension::from_device(&ch.name) else {
                continue;
            };
            let Some(c) = self.calls.get(&key) else {
                continue;
            };
            let is_agent = c.offered.iter().any(|o| o == ext.as_str())
                || self.directory.user_for(ext.as_str()).is_some();
            if ch.channel != c.caller_channel && is_agent && c.row.answered_by.is_none() {
                self.answer(&key, ext.as_str(), None, None, at);
            }
        }
    }

    /// Takes a call an earlier process left open back into the live calls, with what the log
    /// knows and the channels the PBX lists for it.
    fn continue_call(&mut self, row: CallRow, link: &str, listing: &[LiveChannel]) {
        let call_id = row.id.split_once(':').map(|(_, c)| c).unwrap_or("");
        let legs: Vec<&LiveChannel> = listing.iter().filter(|c| c.call == call_id).collect();
        let caller_channel = legs
            .iter()
            .find(|c| c.channel == call_id)
            .or_else(|| legs.first())
            .map(|c| c.channel.clone())
            .unwrap_or_else(|| call_id.to_string());
        let mut agent_legs = HashMap::new();
        for leg in &legs {
            if leg.channel == caller_channel {
                continue;
            }
            if let Some(ext) = Extension::from_device(&leg.name) {
                agent_legs.insert(leg.channel.clone(), ext.as_str().to_string());
            }
        }
        let key = row.id.clone();
        let channels: HashSet<String> = legs.iter().map(|c| c.channel.clone()).collect();
        for ch in &channels {
            self.channels
                .insert((link.to_string(), ch.clone()), key.clone());
        }
        let offered = row.agents_offered.clone();
        let talking = row.answered_by.clone();
        // The screens this call was on get its record again (and see it on reconnect).
        let screens = match &talking {
            Some(ext) => vec![ext.clone()],
            None => offered.clone(),
        };
        let call = LiveCall {
            link: link.to_string(),
            caller_channel,
            channels,
            candidates_json: Arc::from("[]"),
            lookup: Lookup::Done,
            generation: 0,
            lookup_task: None,
            lookup_started: Instant::now(),
            held: Vec::new(),
            popped_pending: screens,
            offered,
            agent_legs,
            offer_ends: HashMap::new(),
            abandoned: false,
            received: Instant::now(),
            last_event: Instant::now(),
            placed_by: None,
            row,
        };
        if let Some(q) = &call.row.queue {
            if call.row.answered_by.is_none() {
                if let Some(since) = call
                    .row
                    .queued_at
                    .as_deref()
                    .and_then(crate::store::parse_ts)
                {
                    self.board.joined(q, &key, &call.row.caller_number, since);
                }
            }
        }
        self.calls.insert(key.clone(), call);
        // Screens that reconnect see the call again once the record is back.
        self.resolve(&key);
        if let Some(ext) = talking {
            self.board.answered(None, &key, &ext, None, Utc::now());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
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
        if self.calls.len() >= MAX_LIVE_CALLS {
            if let Some(oldest) = self
                .calls
                .iter()
                .min_by_key(|(_, c)| c.last_event)
                .map(|(k, _)| k.clone())
            {
                tracing::warn!(call = %oldest, bound = MAX_LIVE_CALLS, "too many live calls; the longest silent is closed");
                self.end_unseen(&oldest, at);
            }
        }
        // A call started by an agent's own device is outbound (click-to-dial, a call back).
        let placed_by = Extension::from_device(&name)
            .filter(|ext| self.directory.user_for(ext.as_str()).is_some())
            .map(|ext| ext.as_str().to_string());
        let direction = if placed_by.is_some() {
            "outbound"
        } else {
            "inbound"
        };
        let row = CallRow {
            id: key.clone(),
            direction: direction.into(),
            caller_number,
            caller_name: crate::domain::phone::caller_display_name(&caller_name),
            dialled,
            started_at: ts(at),
            // An outbound call names its agent from the start, answered or not.
            agents_offered: placed_by.iter().cloned().collect(),
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
                lookup: Lookup::Done,
                generation: 0,
                lookup_task: None,
                lookup_started: Instant::now(),
                held: Vec::new(),
                popped_pending: Vec::new(),
                offered: Vec::new(),
                agent_legs: HashMap::new(),
                offer_ends: HashMap::new(),
                abandoned: false,
                received: Instant::now(),
                last_event: Instant::now(),
                placed_by,
            },
        );
        self.resolve(&key);
    }

    /// Looks the caller up: in place when the store can answer without leaving this thread,
    /// otherwise beside the tracker (see the module doc).
    fn resolve(&mut self, key: &str) {
        let Some(c) = self.calls.get_mut(key) else {
            return;
        };
        if let Some(t) = c.lookup_task.take() {
            t.abort();
        }
        c.generation += 1;
        let generation = c.generation;
        let Some(number) = PhoneNumber::from_caller_id(&c.row.caller_number) else {
            c.row.caller_e164 = None;
            c.row.candidates = 0;
            c.candidates_json = Arc::from("[]");
            c.lookup = Lookup::Done;
            self.flush(key, "none");
            self.save(key);
            return;
        };
        c.row.caller_e164 = Some(number.as_str().to_string());
        self.metrics.lookups.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        if let Some(Ok((json, ids))) = self.store.pop_candidates_now(&number) {
            self.lookup_done(key, generation, (Arc::from(json), ids), t.elapsed());
            return;
        }
        let store = self.store.clone();
        let tx = self.internal_tx.clone();
        let call = key.to_string();
        let task = tokio::spawn(async move {
            let t = Instant::now();
            let mut backoff = Duration::from_millis(100);
            loop {
                match tokio::time::timeout(LOOKUP_ATTEMPT, store.pop_candidates(&number)).await {
                    Ok(Ok((json, ids))) => {
                        let _ = tx.send(Internal::LookupDone {
                            key: call,
                            generation,
                            result: (Arc::from(json), ids),
                            elapsed: t.elapsed(),
                        });
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(call = %call, error = %format!("{e:#}"), "caller lookup failed; retrying")
                    }
                    Err(_) => tracing::warn!(call = %call, "caller lookup timed out; retrying"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
        if let Some(c) = self.calls.get_mut(key) {
            c.lookup = Lookup::Running;
            c.lookup_started = Instant::now();
            c.lookup_task = Some(task.abort_handle());
        }
        self.save(key);
    }

    fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::LookupDone {
                key,
                generation,
                result,
                elapsed,
            } => self.lookup_done(&key, generation, result, elapsed),
            Internal::Deadline { key, generation } => {
                let due = self
                    .calls
                    .get(&key)
                    .is_some_and(|c| c.generation == generation && c.lookup == Lookup::Running);
                if due {
                    self.flush(&key, "pending");
                }
            }
        }
    }

    fn lookup_done(
        &mut self,
        key: &str,
        generation: u64,
        (json, ids): (Arc<str>, Vec<i64>),
        elapsed: Duration,
    ) {
        let Some(c) = self.calls.get_mut(key) else {
            // The call ended first: its log row learns who called now.
            if let Some((g, mut row, _)) = self.unresolved.remove(key) {
                if g == generation {
                    row.candidates = ids.len() as i64;
                    row.resident_id = (ids.len() == 1).then(|| ids[0]);
                    self.callbacks.resident_known(&row);
                    self.log.put(row);
                }
            }
            return;
        };
        if c.generation != generation {
            return;
        }
        self.metrics
            .lookup_latency
            .observe_us(elapsed.as_micros() as u64);
        c.lookup = Lookup::Done;
        c.lookup_task = None;
        c.row.candidates = ids.len() as i64;
        c.row.resident_id = (ids.len() == 1).then(|| ids[0]);
        self.board.matched(key, &ids, &json);
        c.candidates_json = json;
        // Screens that got the pop without the record get it now.
        let late = std::mem::take(&mut c.popped_pending);
        if !late.is_empty() {
            let state = if c.row.answered_by.is_some() {
                "talking"
            } else {
                "ringing"
            };
            let payload = format!(
                "{{\"type\":\"candidates_update\",\"call\":{},\"candidates\":{},\"lookup\":\"ok\"}}",
                Self::call_json(c, state),
                c.candidates_json
            );
            let live = Self::live_json(c, state, "ok");
            let answered_by = c.row.answered_by.clone();
            for ext in late {
                let topic = agent_topic(&ext);
                if answered_by.is_none() || answered_by.as_deref() == Some(ext.as_str()) {
                    self.hub.set_live(&topic, key, live.clone());
                }
                self.emit(key, topic, payload.clone());
            }
        }
        self.flush(key, "ok");
        self.save(key);
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

    /// What a (re)connecting screen is shown of a live call: the pop's content.
    fn live_json(c: &LiveCall, state: &str, lookup: &str) -> Arc<str> {
        Arc::from(format!(
            "{{\"call\":{},\"candidates\":{},\"lookup\":\"{lookup}\"}}",
            Self::call_json(c, state),
            c.candidates_json
        ))
    }

    /// Sends a message for a call, or holds it behind the call's waiting pop.
    fn emit(&mut self, key: &str, topic: String, payload: String) {
        if let Some(c) = self.calls.get_mut(key) {
            if !c.held.is_empty() {
                c.held.push(Held::Message { topic, payload });
                return;
            }
        }
        self.hub.publish(&topic, &payload);
    }

    /// Sends what waited for the lookup, in order; `lookup` says how the pops stand.
    fn flush(&mut self, key: &str, lookup: &str) {
        let Some(c) = self.calls.get_mut(key) else {
            return;
        };
        if c.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut c.held);
        let pending = lookup == "pending";
        for h in held {
            match h {
                Held::Pop { ext, at } => {
                    let Some(c) = self.calls.get_mut(key) else {
                        return;
                    };
                    if pending {
                        c.popped_pending.push(ext.clone());
                        self.metrics
                            .pops_without_record
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    let c = &self.calls[key];
                    self.publish_pop(c, &ext, at, lookup);
                }
                Held::Message { topic, payload } => {
                    self.hub.publish(&topic, &payload);
                }
            }
        }
    }

    fn publish_pop(&self, c: &LiveCall, ext: &str, at: DateTime<Utc>, lookup: &str) {
        let state = if c.row.answered_by.is_some() {
            "talking"
        } else {
            "ringing"
        };
        let call = Self::call_json(c, state);
        let payload = format!(
            "{{\"type\":\"screen_pop\",\"call\":{},\"candidates\":{},\"lookup\":\"{lookup}\"}}",
            call, c.candidates_json
        );
        let topic = agent_topic(ext);
        let answered_elsewhere = c.row.answered_by.as_deref().is_some_and(|a| a != ext);
        if answered_elsewhere {
            self.hub.publish_at(&topic, &payload, Some(at));
        } else {
            let live = Self::live_json(c, state, lookup);
            self.hub
                .publish_live(&topic, &payload, Some(at), &c.row.id, live);
        }
        self.metrics
            .observe_pop(c.received.elapsed().as_micros() as u64);
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = %key, agent = %device))]
    fn offer(
        &mut self,
        key: &str,
        link: &str,
        device: &str,
        agent_channel: Option<String>,
        queue: Option<String>,
        at: DateTime<Utc>,
    ) {
        if let Some(c) = self.calls.get_mut(key) {
            let dialled_agent = Extension::from_device(device)
                .is_some_and(|e| self.directory.user_for(e.as_str()).is_some());
            if let (Some(agent), false) = (c.placed_by.clone(), dialled_agent) {
                // An agent's own call reaching its far end (the resident's number): nobody to
                // ring or pop. Its DialEnd and Hangup are read as the placing agent's.
                if let Some(ch) = agent_channel {
                    c.agent_legs.insert(ch.clone(), agent);
                    c.channels.insert(ch.clone());
                    self.channels
                        .insert((link.to_string(), ch), key.to_string());
                }
                c.row.rang_at.get_or_insert(ts(at));
                self.save(key);
                return;
            }
        }
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
        if c.lookup == Lookup::Running || !c.held.is_empty() {
            // The record is on its way: the pop waits for it, at most POP_DEADLINE.
            let first = c.held.is_empty();
            c.held.push(Held::Pop { ext, at });
            if first {
                let wait = POP_DEADLINE.saturating_sub(c.lookup_started.elapsed());
                let (tx, key, generation) =
                    (self.internal_tx.clone(), key.to_string(), c.generation);
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    let _ = tx.send(Internal::Deadline { key, generation });
                });
            }
        } else {
            let c = &self.calls[key];
            self.publish_pop(c, &ext, at, "ok");
        }
        self.save(key);
    }

    #[tracing::instrument(level = "debug", skip_all, fields(call = %key, agent = %ext))]
    fn answer(
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
            // The same answer reported again, now with the PBX's own wait (AgentConnect
            // after DialEnd): the supervisors' figures take it.
            if let Some(h) = hold_s {
                self.board.hold_known(c.row.queue.as_deref(), key, h);
            }
            self.save(key);
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
        let lookup = if c.lookup == Lookup::Done {
            "ok"
        } else {
            "pending"
        };
        let mut out = Vec::new();
        for other in &c.offered {
            let event = if other == ext {
                "answered_here"
            } else {
                "answered_elsewhere"
            };
            let payload = json!({"type": "call_update", "call": call, "event": event, "answered_by": ext, "outcome": null});
            out.push((other.clone(), payload.to_string()));
        }
        if !c.offered.iter().any(|o| o == ext) {
            // Answered on a device that was never offered (a direct pick-up): tell it too.
            let payload = json!({"type": "call_update", "call": call, "event": "answered_here", "answered_by": ext, "outcome": null});
            out.push((ext.to_string(), payload.to_string()));
        }
        let live = Self::live_json(c, "talking", lookup);
        for (other, payload) in out {
            let topic = agent_topic(&other);
            if other == ext {
                self.hub.set_live(&topic, key, live.clone());
            } else {
                self.hub.clear_live(&topic, key);
            }
            self.emit(key, topic, payload);
        }
        self.save(key);
    }

    /// The call ended as the PBX reported.
    #[tracing::instrument(level = "debug", skip_all, fields(call = %key))]
    fn end(&mut self, key: &str, at: DateTime<Utc>, cause: Option<u16>) {
        let Some(c) = self.calls.get(key) else {
            return;
        };
        let ends: Vec<DialStatus> = c.offer_ends.values().copied().collect();
        let mut o = outcome(c.row.answered_by.is_some(), c.abandoned, &ends, cause);
        if self.timed_out.contains(key) && c.row.answered_by.is_none() && !c.abandoned {
            o = Outcome::Timeout;
        }
        self.finish(key, at, o, false);
    }

    /// The call ended while madoguchi could not see it (a resync found it gone, a bound).
    fn end_unseen(&mut self, key: &str, at: DateTime<Utc>) {
        let Some(c) = self.calls.get(key) else {
            return;
        };
        let o = outcome_unseen(c.row.answered_by.is_some());
        self.metrics
            .calls_closed_unseen
            .fetch_add(1, Ordering::Relaxed);
        self.finish(key, at, o, true);
    }

    /// Closes a call an earlier process left open and the PBX no longer has.
    fn close_row_unseen(&mut self, mut row: CallRow, at: DateTime<Utc>) {
        let o = outcome_unseen(row.answered_at.is_some() || row.answered_by.is_some());
        row.outcome = Some(o.code().to_string());
        row.ended_at = Some(ts(at));
        row.end_estimated = true;
        self.metrics
            .calls_closed_unseen
            .fetch_add(1, Ordering::Relaxed);
        self.remember_ended(&row.id);
        tracing::info!(call = %row.id, outcome = o.code(), "call closed without an end from the PBX");
        self.log.put(row);
    }

    fn finish(&mut self, key: &str, at: DateTime<Utc>, outcome: Outcome, estimated: bool) {
        // Anything still waiting for the lookup goes out first, so screens see the call end.
        self.flush(key, "pending");
        let Some(mut c) = self.calls.remove(key) else {
            return;
        };
        let lookup_task = c.lookup_task.take();
        for ch in c.channels.iter().chain(std::iter::once(&c.caller_channel)) {
            self.channels.remove(&(c.link.clone(), ch.clone()));
        }
        for ch in c.agent_legs.keys() {
            self.channels.remove(&(c.link.clone(), ch.clone()));
        }
        c.row.outcome = Some(outcome.code().to_string());
        c.row.ended_at = Some(ts(at));
        c.row.end_estimated = estimated;
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
        self.timed_out.remove(key);
        self.callbacks.note(&c.row);
        self.board.closed(
            c.row.queue.as_deref(),
            key,
            talk_s,
            Some(outcome.code()),
            at,
        );
        let call = Self::call_json(&c, "ended");
        let mut told: Vec<&String> = c.offered.iter().collect();
        if let Some(a) = c
            .row
            .answered_by
            .as_ref()
            .filter(|a| !c.offered.contains(a))
        {
            told.push(a);
        }
        for ext in told {
            let payload = json!({"type": "call_update", "call": call, "event": "ended", "answered_by": c.row.answered_by, "outcome": outcome.code()});
            let topic = agent_topic(ext);
            self.hub.clear_live(&topic, key);
            self.hub.publish(&topic, &payload.to_string());
        }
        self.metrics.calls_ended.fetch_add(1, Ordering::Relaxed);
        tracing::info!(call = %key, outcome = outcome.code(), answered_by = ?c.row.answered_by, resident = ?c.row.resident_id, "call ended");
        if let Some(task) = lookup_task {
            // Let the lookup finish and complete the row, within a bound.
            if self.unresolved.len() >= MAX_LIVE_CALLS {
                task.abort();
            } else {
                self.unresolved
                    .insert(key.to_string(), (c.generation, c.row.clone(), task));
            }
        }
        self.log.put(c.row);
        self.remember_ended(key);
    }

    fn remember_ended(&mut self, key: &str) {
        if self.ended.insert(key.to_string()) {
            self.ended_order.push_back(key.to_string());
        }
        while self.ended_order.len() > ENDED_MEMORY {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended.remove(&old);
            }
        }
    }

    fn remember_dead(&mut self, link: String, channel: String) {
        let k = (link, channel);
        if self.dead_channels.insert(k.clone()) {
            self.dead_order.push_back(k);
        }
        while self.dead_order.len() > DEAD_CHANNEL_MEMORY {
            if let Some(old) = self.dead_order.pop_front() {
                self.dead_channels.remove(&old);
            }
        }
    }

    /// The bounds: orphans whose link never listed them, calls silent for too long.
    /// Applies the bounds now (the run loop does every 15 s); `now` may be in the future, to see
    /// what they will close.
    pub fn sweep(&mut self, now: Instant) {
        if !self.orphans.is_empty() && now >= self.orphan_deadline {
            let at = Utc::now();
            let orphans: Vec<CallRow> = self.orphans.drain().map(|(_, r)| r).collect();
            tracing::warn!(
                calls = orphans.len(),
                "no PBX listing for calls left open by the last process; closed"
            );
            for row in orphans {
                self.close_row_unseen(row, at);
            }
        }
        let silent: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_event) >= MAX_SILENCE)
            .map(|(k, _)| k.clone())
            .collect();
        for key in silent {
            tracing::warn!(call = %key, "no event for this call in hours; closed");
            self.end_unseen(&key, Utc::now());
        }
    }

    /// Hands the call's current state to the call log writer (never waits).
    fn save(&self, key: &str) {
        if let Some(c) = self.calls.get(key) {
            self.log.put(c.row.clone());
        }
    }

    /// Live calls, for the supervisor view and tests.
    pub fn live_calls(&self) -> Vec<CallRow> {
        self.calls.values().map(|c| c.row.clone()).collect()
    }

    /// Calls an earlier process left open that wait for their link's listing.
    pub fn orphan_count(&self) -> usize {
        self.orphans.len()
    }
}
