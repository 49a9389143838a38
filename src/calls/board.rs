//! The live queue board a supervisor watches: who waits and how long (and who they probably
//! are), the figures per queue and overall for today and the last hour (offered, answered,
//! abandoned with short abandons apart, timeouts, service level, ASA, AHT, longest wait now),
//! and each agent's state: what their phone does (idle, ringing, talking), what the PBX says of
//! them as a queue member (paused with a reason, logged out), and what they said they can take
//! (ready, on a break with its reason, after-call work that returns to ready by itself).
//!
//! The tracker writes it as events arrive; `/api/queues` and the supervisors' WebSocket topic
//! read a snapshot. A std RwLock: the tracker's writes are a few field updates, reads copy a
//! small structure, neither awaits.
//!
//! Figures are computed from one record per (call, queue) the board keeps for the current day
//! in Japan (the city's calendar, reset at midnight JST). The same records are rebuilt from the
//! call log at start ([`Board::rebuild`]), so a restart mid-day shows the same figures, and the
//! reports compute their figures from call-log rows with the same function ([`figures_of`]).

use crate::domain::device::Extension;
use crate::store::calls::CallRow;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A call answered within this many seconds of joining the queue counts toward the service
/// level (the usual call-center 80/20 measure uses 20 s). `MADOGUCHI_SERVICE_LEVEL_S`.
pub const SERVICE_LEVEL_S: i64 = 20;
/// A caller who hangs up within this many seconds of joining is a short abandon, counted apart
/// (they never really waited: a wrong number, a change of mind). `MADOGUCHI_SHORT_ABANDON_S`.
pub const SHORT_ABANDON_S: i64 = 5;

/// How long after-call work lasts unless the setting says otherwise.
pub const DEFAULT_ACW: Duration = Duration::from_secs(60);

/// The thresholds the figures use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Answered within this many seconds: inside the service level.
    pub service_level_s: i64,
    /// Abandoned within fewer than this many seconds: a short abandon.
    pub short_abandon_s: i64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            service_level_s: SERVICE_LEVEL_S,
            short_abandon_s: SHORT_ABANDON_S,
        }
    }
}

#[derive(Clone, Default)]
pub struct Board {
    state: Arc<RwLock<State>>,
    /// Bumped at every change, so the supervisors' publisher knows there is something to send.
    version: Arc<AtomicU64>,
    changed: Arc<tokio::sync::Notify>,
}

struct State {
    day: Option<NaiveDate>,
    /// One record per (call key, queue) that joined a queue today, and calls still open.
    recs: BTreeMap<(String, String), Rec>,
    /// Queues seen (joins, QueueStatus), so an empty queue still shows.
    queues: BTreeMap<String, ()>,
    /// extension → (phone state, call id, since)
    agents: BTreeMap<String, (AgentState, String, DateTime<Utc>)>,
    /// extension → what the agent said they can take (absent: ready since the server started).
    desks: BTreeMap<String, Desk>,
    /// extension → what the PBX says of the agent as a queue member.
    members: BTreeMap<String, Member>,
    /// extension → the last composite state shown and since when.
    shown: BTreeMap<String, (LiveState, DateTime<Utc>)>,
    /// 後処理 (after-call work): how long it lasts before the agent is ready again.
    acw: Duration,
    thresholds: Thresholds,
}

impl Default for State {
    fn default() -> Self {
        State {
            day: None,
            recs: BTreeMap::new(),
            queues: BTreeMap::new(),
            agents: BTreeMap::new(),
            desks: BTreeMap::new(),
            members: BTreeMap::new(),
            shown: BTreeMap::new(),
            acw: DEFAULT_ACW,
            thresholds: Thresholds::default(),
        }
    }
}

/// 受付可 / 休憩 / 後処理: what an agent says they can take, beside what their phone does.
/// Pops reach an agent in any of them; on a break or in after-call work they wait as tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Ready,
    Break,
    Acw,
}

impl Availability {
    pub fn parse(code: &str) -> Option<Availability> {
        match code.trim() {
            "ready" => Some(Availability::Ready),
            "break" => Some(Availability::Break),
            "acw" => Some(Availability::Acw),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Desk {
    state: Availability,
    reason: Option<String>,
    since: DateTime<Utc>,
    /// When after-call work ends by itself.
    until: Option<DateTime<Utc>>,
}

impl Desk {
    /// After-call work whose timer has run out reads as ready from the moment it ran out.
    fn as_of(&self, now: DateTime<Utc>) -> Desk {
        match self.until {
            Some(until) if self.state == Availability::Acw && until <= now => Desk {
                state: Availability::Ready,
                reason: None,
                since: until,
                until: None,
            },
            _ => self.clone(),
        }
    }

    fn view(&self) -> AvailabilityView {
        AvailabilityView {
            state: self.state,
            reason: self.reason.clone(),
            since: Some(crate::store::ts(self.since)),
            until: self.until.map(crate::store::ts),
        }
    }
}

/// An agent's availability as `/api/queues` and `/api/agent/state` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AvailabilityView {
    pub state: Availability,
    /// Why the agent is on a break (休憩理由), as they wrote it.
    pub reason: Option<String>,
    /// Since when (RFC 3339 UTC); null when the agent has not changed it since the start.
    pub since: Option<String>,
    /// When after-call work ends by itself.
    pub until: Option<String>,
}

/// What the PBX says of a queue member (QueueMember, QueueMemberStatus, QueueMemberPause,
/// DeviceStateChange).
#[derive(Debug, Clone, Default)]
struct Member {
    /// Logged out: the member's device is unavailable or invalid, or it left every queue.
    logged_out: bool,
    paused: bool,
    reason: Option<String>,
    since: Option<DateTime<Utc>>,
}

/// The PBX's word on one queue member, from the neutral event
/// [`crate::domain::call::PbxEvent::Member`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemberReport {
    pub queue: Option<String>,
    pub device: String,
    /// Asterisk's device status number (1 not in use … 5 unavailable, 4 invalid), if said.
    pub status: Option<u8>,
    pub paused: Option<bool>,
    pub reason: Option<String>,
    /// The member was removed from the queue (QueueMemberRemoved).
    pub removed: bool,
}

/// An agent's state as the dashboard shows it: the PBX's word first (logged out, paused), then
/// the phone (talking, ringing), then after-call work, else idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    LoggedOut,
    Paused,
    Talking,
    Ringing,
    WrapUp,
    Idle,
}

/// An agent's composite state with its reason and time in state.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AgentLive {
    pub state: LiveState,
    /// The pause reason (QueuePause's, or the break reason the agent wrote).
    pub reason: Option<String>,
    pub since: String,
    pub in_state_s: i64,
}

/// How a queued call ended, for the figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Answered,
    Abandoned,
    Timeout,
}

#[derive(Debug, Clone)]
struct Rec {
    caller: String,
    joined: DateTime<Utc>,
    answered: Option<DateTime<Utc>>,
    /// Wait before the answer, or before giving up.
    hold_s: Option<i64>,
    talk_s: Option<i64>,
    ended: Option<(DateTime<Utc>, Fate)>,
    /// Left the queue unanswered (QueueCallerLeave without an agent): a timeout unless the
    /// caller is answered after all or the PBX says they abandoned.
    left: bool,
    abandoned: bool,
    resident: Option<ResidentMatch>,
}

impl Rec {
    fn new(caller: &str, joined: DateTime<Utc>) -> Rec {
        Rec {
            caller: caller.to_string(),
            joined,
            answered: None,
            hold_s: None,
            talk_s: None,
            ended: None,
            left: false,
            abandoned: false,
            resident: None,
        }
    }

    fn waiting(&self) -> bool {
        self.answered.is_none() && self.ended.is_none() && !self.left
    }

    /// From a call-log row (the rebuild and the reports). None for calls not in a queue, ended
    /// unseen (`unknown`), or still open and unanswered (the tracker re-joins those).
    pub fn from_row(c: &CallRow) -> Option<(String, Rec)> {
        let queue = c.queue.clone()?;
        if c.outcome.as_deref() == Some("unknown") {
            return None;
        }
        let started = crate::store::parse_ts(&c.started_at)?;
        let joined = c
            .queued_at
            .as_deref()
            .and_then(crate::store::parse_ts)
            .unwrap_or(started);
        let answered = c.answered_at.as_deref().and_then(crate::store::parse_ts);
        let ended = c.ended_at.as_deref().and_then(crate::store::parse_ts);
        if answered.is_none() && ended.is_none() {
            return None;
        }
        let mut r = Rec::new(&c.caller_number, joined);
        r.answered = answered;
        r.hold_s = c.hold_s.map(|h| h.max(0));
        if let (Some(a), Some(e)) = (answered, ended) {
            r.talk_s = Some((e - a).num_seconds().max(0));
        }
        if let Some(e) = ended {
            let fate = match (answered, c.outcome.as_deref()) {
                (Some(_), _) => Fate::Answered,
                (None, Some("timeout")) => Fate::Timeout,
                _ => Fate::Abandoned,
            };
            if r.hold_s.is_none() && fate != Fate::Answered {
                r.hold_s = Some((e - joined).num_seconds().max(0));
            }
            r.ended = Some((e, fate));
        }
        Some((queue, r))
    }
}

/// Who a waiting caller probably is: the residents their number matched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResidentMatch {
    /// How many residents the number matched (a household landline matches several).
    pub candidates: usize,
    /// The one resident, when the number matched exactly one.
    pub resident_id: Option<i64>,
    /// The first candidate's name (and how many more), for the wall screen.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Idle,
    Ringing,
    Talking,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Waiting {
    pub call_id: String,
    pub caller_number: String,
    pub wait_s: i64,
    /// When the caller joined the queue (RFC 3339 UTC), so a screen can tick the wait.
    pub since: String,
    pub resident: Option<ResidentMatch>,
}

/// The figures over one window (today, the last hour, one hour of a report).
///
/// - `offered`: calls that joined the queue in the window (each queue a call joins counts).
/// - `answered`: of those, answered by an agent.
/// - `short_abandoned`: left unanswered within fewer than `short_abandon_s` seconds.
/// - `abandoned`: left unanswered after at least `short_abandon_s` seconds (short ones apart).
/// - `timeouts`: the queue gave up on them (its timeout) rather than the caller.
/// - `service_level`: answered within `service_level_s` ÷ (answered + abandoned + timeouts);
///   short abandons count on neither side. Null when nothing counts yet.
/// - `abandon_rate`: abandoned ÷ (offered − short abandons).
/// - `asa_s`: average speed of answer, the mean wait of answered calls (the PBX's HoldTime).
/// - `aht_s`: average handling time, the mean talk time of answered calls that ended.
/// - `longest_wait_s`: the longest wait of a caller waiting now (only for the live windows).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Figures {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    pub timeouts: u64,
    pub waiting: u64,
    pub answered_within_sl: u64,
    pub service_level: Option<f64>,
    pub abandon_rate: Option<f64>,
    pub asa_s: Option<f64>,
    pub aht_s: Option<f64>,
    pub longest_wait_s: Option<i64>,
}

/// Figures over records (joined within `[from, to)`), as of `now`.
fn figures<'a>(
    recs: impl Iterator<Item = &'a Rec>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    t: Thresholds,
) -> Figures {
    let mut f = Figures::default();
    let (mut hold_sum, mut talk_sum, mut talked) = (0i64, 0i64, 0u64);
    for r in recs.filter(|r| r.joined >= from && r.joined < to) {
        f.offered += 1;
        if r.answered.is_some() {
            f.answered += 1;
            let hold = r.hold_s.unwrap_or(0).max(0);
            hold_sum += hold;
            if hold <= t.service_level_s {
                f.answered_within_sl += 1;
            }
            if let (Some(talk), Some(_)) = (r.talk_s, r.ended) {
                talk_sum += talk.max(0);
                talked += 1;
            }
        } else if let Some((at, fate)) = r.ended {
            match fate {
                Fate::Timeout => f.timeouts += 1,
                _ => {
                    let wait = r.hold_s.unwrap_or((at - r.joined).num_seconds()).max(0);
                    if wait < t.short_abandon_s {
                        f.short_abandoned += 1;
                    } else {
                        f.abandoned += 1;
                    }
                }
            }
        } else if r.left {
            // Left the queue unanswered and still on the line (the dialplan goes on).
            f.timeouts += 1;
        } else {
            f.waiting += 1;
            let wait = (now - r.joined).num_seconds().max(0);
            f.longest_wait_s = Some(f.longest_wait_s.unwrap_or(0).max(wait));
        }
    }
    let ratio = |n: i64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    f.service_level = ratio(
        f.answered_within_sl as i64,
        f.answered + f.abandoned + f.timeouts,
    );
    f.abandon_rate = ratio(f.abandoned as i64, f.offered - f.short_abandoned);
    f.asa_s = ratio(hold_sum, f.answered);
    f.aht_s = ratio(talk_sum, talked);
    f
}

/// Figures of call-log rows that joined a queue within `[from, to)` (the reports).
pub fn figures_of(
    rows: &[CallRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    t: Thresholds,
) -> Figures {
    figures_per(rows, &[(from, to)], t)
        .pop()
        .unwrap_or_default()
}

/// [`figures_of`] for several windows at once (a report's days or hours): the rows are read
/// into records once. A call counts in the window in which it joined a queue, with the way it
/// ended, whenever that was.
pub fn figures_per(
    rows: &[CallRow],
    windows: &[(DateTime<Utc>, DateTime<Utc>)],
    t: Thresholds,
) -> Vec<Figures> {
    let recs: Vec<Rec> = rows
        .iter()
        .filter_map(Rec::from_row)
        .map(|(_, r)| r)
        .collect();
    windows
        .iter()
        .map(|&(from, to)| figures(recs.iter(), from, to, to, t))
        .collect()
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueView {
    pub name: String,
    pub waiting: Vec<Waiting>,
    pub offered: u64,
    pub answered: u64,
    /// Abandoned after at least the short-abandon threshold (short abandons apart).
    pub abandoned: u64,
    pub short_abandoned: u64,
    pub timeouts: u64,
    /// Answered within the threshold ÷ (answered + abandoned + timeouts); null before any.
    pub service_level: Option<f64>,
    /// Average speed of answer, seconds.
    pub asa_s: Option<f64>,
    /// Average handling (talk) time, seconds.
    pub aht_s: Option<f64>,
    pub abandon_rate: Option<f64>,
    pub longest_wait_s: Option<i64>,
    /// The same figures over the last 60 minutes.
    pub last_hour: Figures,
}

/// Today's calls per 15 minutes (by when they joined a queue), all queues.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Slice {
    /// Start of the 15 minutes, RFC 3339 UTC.
    pub at: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
}

fn jst() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"))
}

fn jst_day(t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&jst()).date_naive()
}

impl State {
    fn roll(&mut self, at: DateTime<Utc>) {
        let day = jst_day(at);
        if self.day != Some(day) {
            self.day = Some(day);
            // Yesterday's ended calls go; calls still open stay.
            self.recs.retain(|_, r| r.ended.is_none());
        }
    }

    /// The open records of a call (any queue), or of one queue only.
    fn open_recs<'a>(
        &'a mut self,
        call: &'a str,
        queue: Option<&'a str>,
    ) -> impl Iterator<Item = &'a mut Rec> + 'a {
        self.recs
            .range_mut((call.to_string(), String::new())..)
            .take_while(move |((c, _), _)| c == call)
            .filter(move |((_, q), r)| queue.is_none_or(|want| want == q) && r.ended.is_none())
            .map(|(_, r)| r)
    }

    fn live(&self, ext: &str, now: DateTime<Utc>) -> (LiveState, Option<String>) {
        let member = self.members.get(ext);
        let desk = self.desks.get(ext).map(|d| d.as_of(now));
        if member.is_some_and(|m| m.logged_out) {
            return (LiveState::LoggedOut, None);
        }
        if let Some(m) = member.filter(|m| m.paused) {
            return (LiveState::Paused, m.reason.clone());
        }
        match self.agents.get(ext).map(|a| a.0) {
            Some(AgentState::Talking) => return (LiveState::Talking, None),
            Some(AgentState::Ringing) => return (LiveState::Ringing, None),
            _ => {}
        }
        match desk {
            Some(d) if d.state == Availability::Break => (LiveState::Paused, d.reason),
            Some(d) if d.state == Availability::Acw => (LiveState::WrapUp, None),
            _ => (LiveState::Idle, None),
        }
    }

    /// Notes when an agent's composite state changed (time in state counts from there).
    fn settle(&mut self, ext: &str, at: DateTime<Utc>) {
        let (state, _) = self.live(ext, at);
        match self.shown.get(ext) {
            Some((s, _)) if *s == state => {}
            _ => {
                // After-call work that ran out by itself: idle since it ran out.
                let since = match (state, self.desks.get(ext)) {
                    (LiveState::Idle, Some(d)) if d.until.is_some_and(|u| u <= at) => {
                        d.until.unwrap_or(at)
                    }
                    _ => at,
                };
                self.shown.insert(ext.to_string(), (state, since));
            }
        }
    }
}

impl Board {
    /// A board whose after-call work lasts `acw` (`MADOGUCHI_ACW_SECONDS`).
    pub fn with_acw(acw: Duration) -> Board {
        let b = Board::default();
        b.with(|s| s.acw = acw);
        b
    }

    /// The service-level and short-abandon thresholds (settings).
    pub fn with_thresholds(self, t: Thresholds) -> Board {
        self.with(|s| s.thresholds = t);
        self
    }

    pub fn thresholds(&self) -> Thresholds {
        self.read().thresholds
    }

    /// Changes so far (a counter), and a way to wait for the next one.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }

    /// Resolves at the next change (or at once if one happened since the last wait returned).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.state.write().unwrap_or_else(|e| e.into_inner()));
        self.version.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        r
    }

    /// The agent sets their own availability. After-call work set by hand runs the same timer
    /// as after a call.
    pub fn set_availability(
        &self,
        ext: &str,
        state: Availability,
        reason: Option<String>,
        now: DateTime<Utc>,
    ) -> AvailabilityView {
        self.with(|s| {
            let until = (state == Availability::Acw).then(|| now + acw_of(s.acw));
            let desk = Desk {
                state,
                reason: reason.filter(|_| state == Availability::Break),
                since: now,
                until,
            };
            let view = desk.view();
            s.desks.insert(ext.to_string(), desk);
            s.settle(ext, now);
            view
        })
    }

    pub fn availability(&self, ext: &str, now: DateTime<Utc>) -> AvailabilityView {
        self.frozen().availability(ext, now)
    }

    pub fn joined(&self, queue: &str, call: &str, caller: &str, at: DateTime<Utc>) {
        self.with(|s| {
            s.roll(at);
            s.queues.insert(queue.to_string(), ());
            let key = (call.to_string(), queue.to_string());
            match s.recs.get_mut(&key) {
                // A resync repeats a join: the same caller, counted once, with the earliest
                // join time known (after a restart, the PBX's own wait).
                Some(r) => {
                    if at < r.joined && r.answered.is_none() {
                        r.joined = at;
                    }
                }
                None => {
                    s.recs.insert(key, Rec::new(caller, at));
                }
            }
        })
    }

    /// Who a queued caller's number matched (the tracker's lookup). `candidates_json` is the
    /// pop's candidate list; the first one's name is kept for the wall screen.
    pub fn matched(&self, call: &str, ids: &[i64], candidates_json: &str) {
        let name = serde_json::from_str::<Vec<serde_json::Value>>(candidates_json)
            .ok()
            .and_then(|v| {
                v.first()
                    .and_then(|c| c.get("name"))
                    .and_then(|n| n.as_str())
                    .map(str::to_string)
            });
        let m = ResidentMatch {
            candidates: ids.len(),
            resident_id: (ids.len() == 1).then(|| ids[0]),
            name,
        };
        self.with(|s| {
            for r in s.open_recs(call, None) {
                r.resident = Some(m.clone());
            }
        })
    }

    pub fn ringing(&self, ext: &str, call: &str) {
        let now = Utc::now();
        self.with(|s| {
            let e =
                s.agents
                    .entry(ext.to_string())
                    .or_insert((AgentState::Idle, String::new(), now));
            if e.0 == AgentState::Idle {
                *e = (AgentState::Ringing, call.to_string(), now);
            }
            s.settle(ext, now);
        })
    }

    /// An agent answered; `hold_s` is how long the caller waited in the queue.
    pub fn answered(
        &self,
        queue: Option<&str>,
        call: &str,
        ext: &str,
        hold_s: Option<i64>,
        at: DateTime<Utc>,
    ) {
        self.with(|s| {
            s.roll(at);
            // Every other agent this call rang goes back to idle.
            let mut freed = Vec::new();
            for (e, (state, c, since)) in s.agents.iter_mut() {
                if c == call && *state == AgentState::Ringing {
                    *state = AgentState::Idle;
                    c.clear();
                    *since = at;
                    freed.push(e.clone());
                }
            }
            s.agents
                .insert(ext.to_string(), (AgentState::Talking, call.to_string(), at));
            for e in freed {
                s.settle(&e, at);
            }
            s.settle(ext, at);
            // The queue the caller waits in (one, normally); without a queue named, any.
            let mut recs: Vec<&mut Rec> = s
                .open_recs(call, queue)
                .filter(|r| r.answered.is_none())
                .collect();
            if recs.is_empty() && queue.is_some() {
                recs = s
                    .open_recs(call, None)
                    .filter(|r| r.answered.is_none())
                    .collect();
            }
            if let Some(r) = recs.into_iter().next() {
                let hold = hold_s.unwrap_or_else(|| (at - r.joined).num_seconds().max(0));
                r.answered = Some(at);
                r.hold_s = Some(hold.max(0));
                r.left = false;
            }
        })
    }

    /// The PBX said how long an answered caller waited (AgentConnect's HoldTime, which comes
    /// after DialEnd's ANSWER): the figures take it instead of the wait measured at the answer.
    pub fn hold_known(&self, queue: Option<&str>, call: &str, hold_s: i64) {
        self.with(|s| {
            if let Some(r) = s.open_recs(call, queue).find(|r| r.answered.is_some()) {
                r.hold_s = Some(hold_s.max(0));
            }
        })
    }

    /// The caller left a queue (QueueCallerLeave). Unanswered, they stop waiting: the queue
    /// timed out on them, unless an answer or an abandon follows.
    pub fn left(&self, queue: &str, call: &str, at: DateTime<Utc>) {
        self.with(|s| {
            for r in s.open_recs(call, Some(queue)) {
                if r.answered.is_none() && !r.abandoned {
                    r.left = true;
                    r.hold_s = Some((at - r.joined).num_seconds().max(0));
                }
            }
        })
    }

    /// The PBX said the caller abandoned the queue (QueueCallerAbandon) after `hold_s`.
    pub fn abandoned(&self, queue: &str, call: &str, hold_s: Option<i64>) {
        self.with(|s| {
            for r in s.open_recs(call, Some(queue)) {
                r.abandoned = true;
                r.left = false;
                if let Some(h) = hold_s {
                    r.hold_s = Some(h.max(0));
                }
            }
        })
    }

    /// The call ended: a caller still waiting abandoned; agents on it are free again.
    pub fn ended(&self, queue: Option<&str>, call: &str, talk_s: Option<i64>, at: DateTime<Utc>) {
        self.closed(queue, call, talk_s, None, at)
    }

    /// The call ended with the call log's outcome (`unknown`: ended unseen, not counted).
    pub fn closed(
        &self,
        _queue: Option<&str>,
        call: &str,
        talk_s: Option<i64>,
        outcome: Option<&str>,
        at: DateTime<Utc>,
    ) {
        self.with(|s| {
            s.roll(at);
            let acw = acw_of(s.acw);
            let mut touched = Vec::new();
            for (ext, (state, c, since)) in s.agents.iter_mut() {
                if c == call {
                    // A call this agent talked on ended: after-call work, unless they went on
                    // a break meanwhile.
                    if *state == AgentState::Talking {
                        let on_break = s
                            .desks
                            .get(ext)
                            .is_some_and(|d| d.state == Availability::Break);
                        if !on_break && !acw.is_zero() {
                            s.desks.insert(
                                ext.clone(),
                                Desk {
                                    state: Availability::Acw,
                                    reason: None,
                                    since: at,
                                    until: Some(at + acw),
                                },
                            );
                        }
                    }
                    *state = AgentState::Idle;
                    c.clear();
                    *since = at;
                    touched.push(ext.clone());
                }
            }
            for e in touched {
                s.settle(&e, at);
            }
            let unknown = outcome == Some("unknown");
            let keys: Vec<(String, String)> = s
                .recs
                .range((call.to_string(), String::new())..)
                .take_while(|((c, _), _)| c == call)
                .filter(|(_, r)| r.ended.is_none())
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                if unknown {
                    // Nobody knows how it ended: not counted at all.
                    s.recs.remove(&k);
                    continue;
                }
                let Some(r) = s.recs.get_mut(&k) else {
                    continue;
                };
                let fate = if r.answered.is_some() {
                    r.talk_s = talk_s.map(|t| t.max(0));
                    Fate::Answered
                } else if r.left && !r.abandoned || outcome == Some("timeout") {
                    Fate::Timeout
                } else {
                    if r.hold_s.is_none() {
                        r.hold_s = Some((at - r.joined).num_seconds().max(0));
                    }
                    Fate::Abandoned
                };
                r.ended = Some((at, fate));
            }
        })
    }

    /// A queue member's state from the PBX (QueueMember in a QueueStatus listing,
    /// QueueMemberStatus, QueueMemberPause, QueueMemberAdded/Removed).
    pub fn member(&self, m: &MemberReport, at: DateTime<Utc>) {
        let Some(ext) = Extension::from_device(&m.device) else {
            return;
        };
        let ext = ext.as_str().to_string();
        self.with(|s| {
            if let Some(q) = &m.queue {
                s.queues.insert(q.clone(), ());
            }
            let e = s.members.entry(ext.clone()).or_default();
            if let Some(p) = m.paused {
                e.paused = p;
                e.reason = if p {
                    m.reason.clone().filter(|r| !r.trim().is_empty())
                } else {
                    None
                };
            }
            if let Some(st) = m.status {
                // 4 AST_DEVICE_INVALID, 5 AST_DEVICE_UNAVAILABLE.
                e.logged_out = matches!(st, 4 | 5);
            }
            if m.removed {
                e.logged_out = true;
            }
            e.since = Some(at);
            s.settle(&ext, at);
        })
    }

    /// A device changed state (DeviceStateChange: `NOT_INUSE`, `INUSE`, `RINGING`,
    /// `UNAVAILABLE`, `INVALID`…). Only the logged-in/out part is taken: what the phone does on
    /// a call the call events tell more exactly.
    pub fn device_state(&self, device: &str, state: &str, at: DateTime<Utc>) {
        if device.starts_with("Queue:") {
            return;
        }
        let Some(ext) = Extension::from_device(device) else {
            return;
        };
        let ext = ext.as_str().to_string();
        let out = matches!(
            state.trim().to_ascii_uppercase().as_str(),
            "UNAVAILABLE" | "INVALID"
        );
        self.with(|s| {
            // Only members the PBX told us about; a device we never saw in a queue is not an
            // agent of ours.
            if let Some(m) = s.members.get_mut(&ext) {
                if m.logged_out != out {
                    m.logged_out = out;
                    m.since = Some(at);
                }
                s.settle(&ext, at);
            }
        })
    }

    /// Today's counts (the JST day of `now`) from the call log, so a server restarted mid-day
    /// shows the figures it showed before. Calls still open are left to the tracker, which
    /// re-joins the ones still waiting; an open call already answered counts here as offered and
    /// answered. Calls that ended unseen (`unknown`) are not counted: nobody knows how they
    /// ended.
    pub fn rebuild(&self, calls: &[CallRow], now: DateTime<Utc>) {
        let today = jst_day(now);
        self.with(|s| {
            s.roll(now);
            for c in calls {
                let Some((queue, r)) = Rec::from_row(c) else {
                    continue;
                };
                if jst_day(r.joined) != today {
                    continue;
                }
                s.queues.insert(queue.clone(), ());
                s.recs.entry((c.id.clone(), queue)).or_insert(r);
            }
        })
    }

    /// Midnight in Japan (the start of the board's day) for `now`, in UTC.
    pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
        let midnight = jst_day(now).and_hms_opt(0, 0, 0).unwrap_or_default();
        midnight.and_utc() - chrono::Duration::hours(9)
    }

    /// The board as of one moment: everything read through it is read under one lock, so a
    /// snapshot's agents and figures agree (no agent still ringing on a call the figures
    /// already count as ended).
    pub fn frozen(&self) -> Frozen<'_> {
        Frozen(self.state.write().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn queues(&self, now: DateTime<Utc>) -> Vec<QueueView> {
        self.frozen().queues(now)
    }

    pub fn overall(&self, now: DateTime<Utc>) -> (Figures, Figures) {
        self.frozen().overall(now)
    }

    pub fn slices(&self, now: DateTime<Utc>) -> Vec<Slice> {
        self.frozen().slices(now)
    }

    pub fn agent_state(&self, ext: &str) -> AgentState {
        self.frozen().agent_state(ext)
    }

    pub fn agent_live(&self, ext: &str, now: DateTime<Utc>) -> AgentLive {
        self.frozen().agent_live(ext, now)
    }

    pub fn member_extensions(&self) -> Vec<String> {
        self.frozen().member_extensions()
    }
}

/// The board held still (see [`Board::frozen`]). Hold it only while reading: every change
/// waits for it.
pub struct Frozen<'a>(std::sync::RwLockWriteGuard<'a, State>);

impl Frozen<'_> {
    pub fn thresholds(&self) -> Thresholds {
        self.0.thresholds
    }

    pub fn availability(&self, ext: &str, now: DateTime<Utc>) -> AvailabilityView {
        match self.0.desks.get(ext) {
            Some(d) => d.as_of(now).view(),
            None => AvailabilityView {
                state: Availability::Ready,
                reason: None,
                since: None,
                until: None,
            },
        }
    }

    /// Per queue: who waits, today's figures, and the last hour's.
    pub fn queues(&self, now: DateTime<Utc>) -> Vec<QueueView> {
        let s = &*self.0;
        let t = s.thresholds;
        let day_start = Board::day_start(now);
        let hour_ago = now - chrono::Duration::hours(1);
        let until = now + chrono::Duration::days(1);
        s.queues
            .keys()
            .map(|name| {
                let in_queue = || {
                    s.recs
                        .iter()
                        .filter(move |((_, q), _)| q == name)
                        .map(|(_, r)| r)
                };
                let today = figures(in_queue(), day_start, until, now, t);
                let last_hour = figures(in_queue(), hour_ago, until, now, t);
                let mut waiting: Vec<Waiting> = s
                    .recs
                    .iter()
                    .filter(|((_, q), r)| q == name && r.waiting())
                    .map(|((call, _), r)| Waiting {
                        call_id: call.clone(),
                        caller_number: r.caller.clone(),
                        wait_s: (now - r.joined).num_seconds().max(0),
                        since: crate::store::ts(r.joined),
                        resident: r.resident.clone(),
                    })
                    .collect();
                waiting.sort_by_key(|w| std::cmp::Reverse(w.wait_s));
                QueueView {
                    name: name.clone(),
                    // Callers waiting since before today (a call that spans midnight) count.
                    longest_wait_s: waiting.first().map(|w| w.wait_s),
                    waiting,
                    offered: today.offered,
                    answered: today.answered,
                    abandoned: today.abandoned,
                    short_abandoned: today.short_abandoned,
                    timeouts: today.timeouts,
                    service_level: today.service_level,
                    asa_s: today.asa_s,
                    aht_s: today.aht_s,
                    abandon_rate: today.abandon_rate,
                    last_hour,
                }
            })
            .collect()
    }

    /// All queues together: (today, last hour).
    pub fn overall(&self, now: DateTime<Utc>) -> (Figures, Figures) {
        let s = &*self.0;
        let t = s.thresholds;
        let until = now + chrono::Duration::days(1);
        let today = figures(s.recs.values(), Board::day_start(now), until, now, t);
        let hour = figures(
            s.recs.values(),
            now - chrono::Duration::hours(1),
            until,
            now,
            t,
        );
        (today, hour)
    }

    /// Today's calls per 15 minutes up to `now` (the supervisors' chart).
    pub fn slices(&self, now: DateTime<Utc>) -> Vec<Slice> {
        let s = &*self.0;
        let start = Board::day_start(now);
        let n = ((now - start).num_minutes() / 15 + 1).clamp(1, 96) as usize;
        let mut out: Vec<Slice> = (0..n)
            .map(|i| Slice {
                at: crate::store::ts(start + chrono::Duration::minutes(15 * i as i64)),
                offered: 0,
                answered: 0,
                abandoned: 0,
            })
            .collect();
        for r in s.recs.values() {
            let i = (r.joined - start).num_minutes() / 15;
            if i < 0 || i as usize >= n {
                continue;
            }
            let sl = &mut out[i as usize];
            sl.offered += 1;
            if r.answered.is_some() {
                sl.answered += 1;
            } else if matches!(r.ended, Some((_, Fate::Abandoned))) {
                sl.abandoned += 1;
            }
        }
        out
    }

    pub fn agent_state(&self, ext: &str) -> AgentState {
        self.0
            .agents
            .get(ext)
            .map(|a| a.0)
            .unwrap_or(AgentState::Idle)
    }

    /// The agent's composite state (logged out, paused with reason, talking, ringing, wrap-up,
    /// idle) and how long they have been in it.
    pub fn agent_live(&mut self, ext: &str, now: DateTime<Utc>) -> AgentLive {
        let s = &mut *self.0;
        // After-call work may have run out by itself since the last change.
        s.settle(ext, now);
        let (state, reason) = s.live(ext, now);
        let since = s.shown.get(ext).map(|(_, t)| *t).unwrap_or(now);
        AgentLive {
            state,
            reason,
            since: crate::store::ts(since),
            in_state_s: (now - since).num_seconds().max(0),
        }
    }

    /// Extensions the PBX listed as queue members (an agent with no login still shows).
    pub fn member_extensions(&self) -> Vec<String> {
        self.0.members.keys().cloned().collect()
    }
}

fn acw_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2021-05-10T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn counts_waits_and_agent_states() {
        let b = Board::default();
        let t0 = t0();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        b.joined("vaccine", "c1", "0773-62-0001", t0);
        b.joined("vaccine", "c2", "0773-62-0002", s(5));
        b.joined("vaccine", "c2", "0773-62-0002", s(6)); // a resync repeats a join: counted once
        b.ringing("201", "c1");
        b.ringing("202", "c1");
        assert_eq!(b.agent_state("201"), AgentState::Ringing);
        let v = b.queues(s(10));
        assert_eq!(v[0].offered, 2);
        assert_eq!(v[0].waiting[0].call_id, "c1");
        assert_eq!(v[0].waiting[0].wait_s, 10);
        assert_eq!(v[0].longest_wait_s, Some(10));
        b.answered(Some("vaccine"), "c1", "201", Some(12), s(12));
        assert_eq!(b.agent_state("201"), AgentState::Talking);
        assert_eq!(
            b.agent_state("202"),
            AgentState::Idle,
            "answered elsewhere frees the other ringers"
        );
        b.ended(Some("vaccine"), "c2", None, s(60)); // c2 gave up after 55 s waiting
        b.ended(Some("vaccine"), "c1", Some(90), s(102));
        assert_eq!(b.agent_state("201"), AgentState::Idle);
        let v = b.queues(s(103));
        assert_eq!((v[0].answered, v[0].abandoned), (1, 1));
        assert!(v[0].waiting.is_empty());
        assert_eq!(v[0].service_level, Some(0.5));
        assert_eq!(v[0].asa_s, Some(12.0));
        assert_eq!(v[0].aht_s, Some(90.0));
        // The next day in Japan starts from zero.
        let v = b.queues(t0 + chrono::Duration::hours(24));
        assert_eq!(v[0].offered, 0);
    }

    #[test]
    fn short_abandons_timeouts_and_the_last_hour_apart() {
        let b = Board::default();
        let t0 = t0();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        // c1: hangs up after 3 s: a short abandon (< 5 s), on neither side of the SL.
        b.joined("q", "c1", "1", t0);
        b.ended(Some("q"), "c1", None, s(3));
        // c2: the queue's timeout after 60 s (Leave without an agent), then the line ends.
        b.joined("q", "c2", "2", t0);
        b.left("q", "c2", s(60));
        b.ended(Some("q"), "c2", None, s(70));
        // c3: answered after 8 s, talks 100 s.
        b.joined("q", "c3", "3", s(3600));
        b.answered(Some("q"), "c3", "201", Some(8), s(3608));
        b.ended(Some("q"), "c3", Some(100), s(3708));
        // c4: the PBX says abandoned after 30 s.
        b.joined("q", "c4", "4", s(3700));
        b.abandoned("q", "c4", Some(30));
        b.ended(Some("q"), "c4", None, s(3730));
        // c5: ended unseen: not counted at all.
        b.joined("q", "c5", "5", s(3700));
        b.closed(Some("q"), "c5", None, Some("unknown"), s(3800));
        let now = s(3800);
        let v = &b.queues(now)[0];
        assert_eq!(v.offered, 4, "c1..c4; c5 ended unseen");
        assert_eq!(
            (v.answered, v.abandoned, v.short_abandoned, v.timeouts),
            (1, 1, 1, 1)
        );
        assert_eq!(v.service_level, Some(1.0 / 3.0), "c3 of c2, c3, c4");
        assert_eq!(v.abandon_rate, Some(1.0 / 3.0), "c4 of 4 − 1 short");
        assert_eq!((v.asa_s, v.aht_s), (Some(8.0), Some(100.0)));
        // The last hour (from s(200)) holds c3 and c4 only.
        assert_eq!(v.last_hour.offered, 2);
        assert_eq!(v.last_hour.service_level, Some(0.5));
        let (today, hour) = b.overall(now);
        assert_eq!((today.offered, hour.offered), (4, 2));
        let sl = b.slices(now);
        // 10:00 JST is the 41st quarter hour of the day.
        assert_eq!(sl[40].offered, 2, "c1 and c2 joined at 10:00 JST");
        assert_eq!(sl[44].offered, 2, "c3 and c4 an hour later");
        assert_eq!(sl[44].abandoned, 1);
        assert_eq!(sl.len(), 45, "up to now (11:03 JST)");
    }

    #[test]
    fn agents_paused_logged_out_wrap_up_and_time_in_state() {
        let b = Board::with_acw(Duration::from_secs(30));
        let t0 = t0();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let rep = |paused: Option<bool>, status: Option<u8>, reason: Option<&str>| MemberReport {
            queue: Some("q".into()),
            device: "PJSIP/201".into(),
            status,
            paused,
            reason: reason.map(str::to_string),
            removed: false,
        };
        b.member(&rep(Some(false), Some(1), None), t0);
        assert_eq!(b.agent_live("201", s(5)).state, LiveState::Idle);
        b.member(&rep(Some(true), None, Some("Break")), s(10));
        let l = b.agent_live("201", s(15));
        assert_eq!(
            (l.state, l.reason.as_deref(), l.in_state_s),
            (LiveState::Paused, Some("Break"), 5)
        );
        b.member(&rep(Some(false), None, None), s(20));
        b.device_state("PJSIP/201", "UNAVAILABLE", s(30));
        assert_eq!(b.agent_live("201", s(31)).state, LiveState::LoggedOut);
        b.device_state("PJSIP/201", "NOT_INUSE", s(40));
        b.joined("q", "c1", "1", s(40));
        b.answered(Some("q"), "c1", "201", Some(0), s(40));
        assert_eq!(b.agent_live("201", s(41)).state, LiveState::Talking);
        b.ended(Some("q"), "c1", Some(10), s(50));
        let l = b.agent_live("201", s(55));
        assert_eq!((l.state, l.in_state_s), (LiveState::WrapUp, 5));
        let l = b.agent_live("201", s(90));
        assert_eq!(
            (l.state, l.in_state_s),
            (LiveState::Idle, 10),
            "wrap-up ran out at 80 s"
        );
    }

    #[test]
    fn after_call_work_follows_a_call_answered_here_and_ends_by_itself() {
        let b = Board::with_acw(Duration::from_secs(30));
        let t0 = t0();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        assert_eq!(b.availability("201", t0).state, Availability::Ready);
        b.joined("vaccine", "c1", "0773-62-0001", t0);
        b.ringing("201", "c1");
        b.ringing("202", "c1");
        b.answered(Some("vaccine"), "c1", "201", Some(2), s(2));
        b.ended(Some("vaccine"), "c1", Some(60), s(62));
        let v = b.availability("201", s(70));
        assert_eq!(v.state, Availability::Acw);
        assert_eq!(v.until.as_deref(), Some("2021-05-10T01:01:32.000Z"));
        assert_eq!(
            b.availability("202", s(70)).state,
            Availability::Ready,
            "only the agent who talked"
        );
        let v = b.availability("201", s(93));
        assert_eq!(v.state, Availability::Ready, "the timer ran out");
        assert_eq!(v.since.as_deref(), Some("2021-05-10T01:01:32.000Z"));

        // A break taken during a call outlasts its end.
        b.set_availability("202", Availability::Break, Some("昼休憩".into()), s(100));
        b.ringing("202", "c2");
        b.answered(None, "c2", "202", None, s(101));
        b.ended(None, "c2", Some(10), s(111));
        let v = b.availability("202", s(112));
        assert_eq!(
            (v.state, v.reason.as_deref()),
            (Availability::Break, Some("昼休憩"))
        );
        // A reason only goes with a break.
        let v = b.set_availability("202", Availability::Ready, Some("x".into()), s(120));
        assert_eq!(v.reason, None);
    }
}

#[cfg(test)]
mod rebuild_tests {
    use super::*;

    #[test]
    fn todays_figures_come_back_from_the_call_log() {
        let now = Utc::now();
        let t = |s: i64| crate::store::ts(now - chrono::Duration::seconds(s));
        let row = |id: &str, hold: Option<i64>, answered: Option<String>, ended: Option<String>| {
            CallRow {
                id: id.into(),
                queue: Some("vaccine".into()),
                started_at: t(100),
                queued_at: Some(t(100)),
                answered_at: answered,
                ended_at: ended,
                hold_s: hold,
                ..CallRow::default()
            }
        };
        let b = Board::default();
        b.rebuild(
            &[
                row("a", Some(3), Some(t(97)), Some(t(50))),
                row("b", Some(1), None, Some(t(99))),
                row("c", Some(25), Some(t(75)), None),
                row("d", None, None, None),
                row("e", Some(9), None, Some(t(91))),
            ],
            now,
        );
        let v = &b.queues(now)[0];
        // a, c answered; b left after 1 s (short); e after 9 s (abandoned); d still open.
        assert_eq!(
            (v.offered, v.answered, v.abandoned, v.short_abandoned),
            (4, 2, 1, 1)
        );
        assert_eq!(v.asa_s, Some(14.0), "(3 + 25) / 2");
        assert_eq!(v.service_level, Some(1.0 / 3.0), "a of a, c, e");
        assert_eq!(v.aht_s, Some(47.0), "a talked 97 − 50 s; c has not ended");
    }

    #[test]
    fn the_pbx_wait_replaces_the_one_measured_at_the_answer() {
        let b = Board::default();
        let t0 = Utc::now();
        b.joined("vaccine", "c1", "0773", t0);
        // DialEnd ANSWER comes first: the wait is measured (0 s here) …
        b.answered(Some("vaccine"), "c1", "201", None, t0);
        assert_eq!(b.queues(t0)[0].asa_s, Some(0.0));
        // … then AgentConnect says the caller waited 25 s.
        b.hold_known(Some("vaccine"), "c1", 25);
        let v = &b.queues(t0)[0];
        assert_eq!(v.asa_s, Some(25.0));
        b.ended(Some("vaccine"), "c1", Some(30), t0);
        assert_eq!(
            b.queues(t0)[0].service_level,
            Some(0.0),
            "25 s is outside 20 s"
        );
    }
}
