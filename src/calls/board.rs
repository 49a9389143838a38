//! The live queue board a supervisor watches: who waits and how long, today's counts per
//! queue (offered, answered, abandoned, service level, ASA, AHT), and each agent's state:
//! what their phone does (idle, ringing, talking) and what they said they can take (ready, on
//! a break with its reason, after-call work that returns to ready when its timer runs out).
//!
//! The tracker writes it as events arrive; `/api/queues` reads a snapshot. A std RwLock: the
//! tracker's writes are a few field updates, reads copy a small structure, neither awaits.
//! Counts are for the current day in Japan (the city's calendar) and reset at midnight JST.

use crate::store::calls::CallRow;
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// A call answered within this many seconds of joining the queue counts toward the service
/// level (the usual call-center 80/20 measure uses 20 s).
pub const SERVICE_LEVEL_S: i64 = 20;

#[derive(Clone, Default)]
pub struct Board(Arc<RwLock<State>>);

/// How long after-call work lasts unless the setting says otherwise.
pub const DEFAULT_ACW: Duration = Duration::from_secs(60);

struct State {
    day: Option<NaiveDate>,
    queues: BTreeMap<String, QueueCounts>,
    /// extension → (state, call id)
    agents: BTreeMap<String, (AgentState, String)>,
    /// extension → what the agent said they can take (absent: ready since the server started).
    desks: BTreeMap<String, Desk>,
    /// 後処理 (after-call work): how long it lasts before the agent is ready again.
    acw: Duration,
}

impl Default for State {
    fn default() -> Self {
        State {
            day: None,
            queues: BTreeMap::new(),
            agents: BTreeMap::new(),
            desks: BTreeMap::new(),
            acw: DEFAULT_ACW,
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

#[derive(Default, Clone)]
struct QueueCounts {
    waiting: BTreeMap<String, (String, DateTime<Utc>)>,
    /// The wait counted for each call answered and not yet ended, so a more exact figure
    /// arriving later (AgentConnect's HoldTime after DialEnd's ANSWER) can replace it.
    holds: BTreeMap<String, i64>,
    offered: u64,
    answered: u64,
    abandoned: u64,
    within_sl: u64,
    hold_sum_s: i64,
    talk_sum_s: i64,
    talked: u64,
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
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueView {
    pub name: String,
    pub waiting: Vec<Waiting>,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Share of offered calls answered within [`SERVICE_LEVEL_S`]; null before the first call.
    pub service_level: Option<f64>,
    /// Average speed of answer, seconds.
    pub asa_s: Option<f64>,
    /// Average handling (talk) time, seconds.
    pub aht_s: Option<f64>,
}

fn jst_day(t: DateTime<Utc>) -> NaiveDate {
    let jst =
        FixedOffset::east_opt(9 * 3600).unwrap_or_else(|| FixedOffset::east_opt(0).expect("UTC"));
    t.with_timezone(&jst).date_naive()
}

impl State {
    fn roll(&mut self, at: DateTime<Utc>) {
        let day = jst_day(at);
        if self.day != Some(day) {
            self.day = Some(day);
            for q in self.queues.values_mut() {
                let waiting = std::mem::take(&mut q.waiting);
                *q = QueueCounts {
                    waiting,
                    ..QueueCounts::default()
                };
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
            view
        })
    }

    pub fn availability(&self, ext: &str, now: DateTime<Utc>) -> AvailabilityView {
        let s = self.0.read().unwrap_or_else(|e| e.into_inner());
        match s.desks.get(ext) {
            Some(d) => d.as_of(now).view(),
            None => AvailabilityView {
                state: Availability::Ready,
                reason: None,
                since: None,
                until: None,
            },
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.write().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn joined(&self, queue: &str, call: &str, caller: &str, at: DateTime<Utc>) {
        self.with(|s| {
            s.roll(at);
            let q = s.queues.entry(queue.to_string()).or_default();
            if q.waiting
                .insert(call.to_string(), (caller.to_string(), at))
                .is_none()
            {
                q.offered += 1;
            }
        })
    }

    pub fn ringing(&self, ext: &str, call: &str) {
        self.with(|s| {
            let e = s
                .agents
                .entry(ext.to_string())
                .or_insert((AgentState::Idle, String::new()));
            if e.0 == AgentState::Idle {
                *e = (AgentState::Ringing, call.to_string());
            }
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
            for (state, c) in s.agents.values_mut() {
                if c == call && *state == AgentState::Ringing {
                    *state = AgentState::Idle;
                    c.clear();
                }
            }
            s.agents
                .insert(ext.to_string(), (AgentState::Talking, call.to_string()));
            if let Some(q) = queue.and_then(|q| s.queues.get_mut(q)) {
                if let Some((_, since)) = q.waiting.remove(call) {
                    let hold = hold_s.unwrap_or_else(|| (at - since).num_seconds().max(0));
                    q.answered += 1;
                    q.hold_sum_s += hold;
                    if hold <= SERVICE_LEVEL_S {
                        q.within_sl += 1;
                    }
                    q.holds.insert(call.to_string(), hold);
                }
            }
        })
    }

    /// The PBX said how long an answered caller waited (AgentConnect's HoldTime, which comes
    /// after DialEnd's ANSWER): the figures take it instead of the wait measured at the answer.
    pub fn hold_known(&self, queue: Option<&str>, call: &str, hold_s: i64) {
        self.with(|s| {
            let Some(q) = queue.and_then(|q| s.queues.get_mut(q)) else {
                return;
            };
            let Some(old) = q.holds.get_mut(call) else {
                return;
            };
            let hold = hold_s.max(0);
            q.hold_sum_s += hold - *old;
            match (*old <= SERVICE_LEVEL_S, hold <= SERVICE_LEVEL_S) {
                (true, false) => q.within_sl = q.within_sl.saturating_sub(1),
                (false, true) => q.within_sl += 1,
                _ => {}
            }
            *old = hold;
        })
    }

    /// The call ended: a caller still waiting abandoned; agents on it are free again.
    pub fn ended(&self, queue: Option<&str>, call: &str, talk_s: Option<i64>, at: DateTime<Utc>) {
        self.with(|s| {
            s.roll(at);
            let acw = acw_of(s.acw);
            for (ext, (state, c)) in s.agents.iter_mut() {
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
                }
            }
            if let Some(q) = queue.and_then(|q| s.queues.get_mut(q)) {
                q.holds.remove(call);
                if q.waiting.remove(call).is_some() {
                    q.abandoned += 1;
                }
                if let Some(t) = talk_s {
                    q.talk_sum_s += t.max(0);
                    q.talked += 1;
                }
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
                let Some(queue) = c.queue.as_deref() else {
                    continue;
                };
                let started = crate::store::parse_ts(&c.started_at);
                if started.map(jst_day) != Some(today) || c.outcome.as_deref() == Some("unknown") {
                    continue;
                }
                let answered = crate::store::parse_ts(c.answered_at.as_deref().unwrap_or(""));
                let ended = crate::store::parse_ts(c.ended_at.as_deref().unwrap_or(""));
                if answered.is_none() && ended.is_none() {
                    continue;
                }
                let q = s.queues.entry(queue.to_string()).or_default();
                q.offered += 1;
                match answered {
                    Some(at) => {
                        let hold = c.hold_s.unwrap_or(0).max(0);
                        q.answered += 1;
                        q.hold_sum_s += hold;
                        if hold <= SERVICE_LEVEL_S {
                            q.within_sl += 1;
                        }
                        if let Some(end) = ended {
                            q.talk_sum_s += (end - at).num_seconds().max(0);
                            q.talked += 1;
                        }
                    }
                    None => q.abandoned += 1,
                }
            }
        })
    }

    /// Midnight in Japan (the start of the board's day) for `now`, in UTC.
    pub fn day_start(now: DateTime<Utc>) -> DateTime<Utc> {
        let midnight = jst_day(now).and_hms_opt(0, 0, 0).unwrap_or_default();
        midnight.and_utc() - chrono::Duration::hours(9)
    }

    pub fn queues(&self, now: DateTime<Utc>) -> Vec<QueueView> {
        let s = self.0.read().unwrap_or_else(|e| e.into_inner());
        let today = s.day == Some(jst_day(now));
        s.queues
            .iter()
            .map(|(name, q)| {
                let q = if today {
                    q.clone()
                } else {
                    QueueCounts {
                        waiting: q.waiting.clone(),
                        ..QueueCounts::default()
                    }
                };
                let mut waiting: Vec<Waiting> = q
                    .waiting
                    .iter()
                    .map(|(call, (caller, since))| Waiting {
                        call_id: call.clone(),
                        caller_number: caller.clone(),
                        wait_s: (now - *since).num_seconds().max(0),
                    })
                    .collect();
                waiting.sort_by_key(|w| std::cmp::Reverse(w.wait_s));
                let ratio = |n: i64, d: u64| (d > 0).then(|| n as f64 / d as f64);
                QueueView {
                    name: name.clone(),
                    waiting,
                    offered: q.offered,
                    answered: q.answered,
                    abandoned: q.abandoned,
                    service_level: ratio(q.within_sl as i64, q.answered + q.abandoned),
                    asa_s: ratio(q.hold_sum_s, q.answered),
                    aht_s: ratio(q.talk_sum_s, q.talked),
                }
            })
            .collect()
    }

    pub fn agent_state(&self, ext: &str) -> AgentState {
        let s = self.0.read().unwrap_or_else(|e| e.into_inner());
        s.agents
            .get(ext)
            .map(|(st, _)| *st)
            .unwrap_or(AgentState::Idle)
    }
}

fn acw_of(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::seconds(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_waits_and_agent_states() {
        let b = Board::default();
        let t0 = DateTime::parse_from_rfc3339("2021-05-10T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        b.joined("vaccine", "c1", "0773-62-0001", t0);
        b.joined("vaccine", "c2", "0773-62-0002", s(5));
        b.joined("vaccine", "c2", "0773-62-0002", s(6)); // a resync repeats a join: counted once
        b.ringing("201", "c1");
        b.ringing("202", "c1");
        assert_eq!(b.agent_state("201"), AgentState::Ringing);
        let v = b.queues(s(10));
        assert_eq!(v[0].offered, 2);
        assert_eq!(
            v[0].waiting[0],
            Waiting {
                call_id: "c1".into(),
                caller_number: "0773-62-0001".into(),
                wait_s: 10
            }
        );
        b.answered(Some("vaccine"), "c1", "201", Some(12), s(12));
        assert_eq!(b.agent_state("201"), AgentState::Talking);
        assert_eq!(
            b.agent_state("202"),
            AgentState::Idle,
            "answered elsewhere frees the other ringers"
        );
        b.ended(Some("vaccine"), "c2", None, s(60)); // c2 gave up waiting
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
    fn after_call_work_follows_a_call_answered_here_and_ends_by_itself() {
        let b = Board::with_acw(Duration::from_secs(30));
        let t0 = DateTime::parse_from_rfc3339("2021-05-10T01:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
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
            ],
            now,
        );
        let v = &b.queues(now)[0];
        assert_eq!((v.offered, v.answered, v.abandoned), (3, 2, 1));
        assert_eq!(v.asa_s, Some(14.0), "(3 + 25) / 2");
        assert_eq!(v.service_level, Some(1.0 / 3.0), "one of three within 20 s");
        assert_eq!(v.aht_s, Some(47.0));
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
