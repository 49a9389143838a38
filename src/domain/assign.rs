//! 自治体による日時指定: the city's assignment of both doses, planned in memory (no I/O), so a
//! million residents are planned in a second and written in one transaction by the store
//! (`store/bookings/assign.rs`).
//!
//! The rules (issue 8, DESIGN §2):
//! - priority: 65+ (on the first day of the range) first; then the oldest (whole years of age)
//!   first; among the same age, by 地区 in the configured order (districts not named come
//!   after, by name); then by birth date and id, so the result is the same for the same input;
//! - a household (世帯番号) is placed together, in one slot for dose 1 and one for dose 2,
//!   where the seats allow; otherwise its members are placed one by one in priority order;
//! - dose 2 at the same venue, product and time of day, on the product's standard interval
//!   day, or the nearest legal day with seats (never before the minimum interval, at most
//!   [`DOSE2_LATE_DAYS`] past the standard day);
//! - a resident who needs transport only into slots a bus run from their area serves (a run
//!   calling at a stop that serves their 町名, with a seat), for both doses;
//! - nobody below the product's minimum age on the day of the dose;
//! - venues serving the resident's 地区 first, then the others (by id); within a venue the
//!   earliest dose-1 slot that fits; held seats (for the call center) are never assigned.

use super::vaccine::{age_on, dose2_window, Product};
use chrono::{Datelike, Duration, NaiveDate, NaiveTime};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// How far past the standard day dose 2 may be placed when that day is full.
pub const DOSE2_LATE_DAYS: i64 = 14;

/// A resident who wants a dose and has no live booking.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: i64,
    pub birth: NaiveDate,
    pub district: String,
    pub town: String,
    pub household: Option<String>,
    pub needs_transport: bool,
}

/// A slot with the seats the assignment may fill (capacity − held − booked; 0 when closed).
#[derive(Debug, Clone)]
pub struct PlanSlot {
    pub id: i64,
    pub venue_id: i64,
    pub product: Product,
    pub date: NaiveDate,
    pub time: NaiveTime,
    pub free: i64,
}

/// A bus run to a venue for the slots starting at `date` `time`, its free seats and the stops
/// it calls at.
#[derive(Debug, Clone)]
pub struct PlanRun {
    pub id: i64,
    pub venue_id: i64,
    pub date: NaiveDate,
    pub time: NaiveTime,
    pub free: i64,
    pub stops: Vec<i64>,
}

#[derive(Debug, Clone)]
pub struct PlanVenue {
    pub id: i64,
    pub districts: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AssignInput {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub people: Vec<Person>,
    pub venues: Vec<PlanVenue>,
    pub slots: Vec<PlanSlot>,
    pub runs: Vec<PlanRun>,
    /// 町名 → the stops serving it (by id).
    pub stops_by_town: HashMap<String, Vec<i64>>,
    /// 地区 in the order they are served (Soma went 中村東部 → 玉野 → …).
    pub district_order: Vec<String>,
}

/// Both doses of one resident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub resident_id: i64,
    pub venue_id: i64,
    pub dose1_slot: i64,
    pub dose2_slot: i64,
    /// (run, stop) for dose 1 and dose 2 when the resident needs transport.
    pub ride1: Option<(i64, i64)>,
    pub ride2: Option<(i64, i64)>,
    pub dose1_date: NaiveDate,
    /// Placed with the rest of the household in the same slots.
    pub with_household: bool,
}

/// Why a resident was left unassigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unplaced {
    /// Below every offered product's minimum age on every day in the range.
    TooYoung,
    /// Needs transport and no run from their area serves a slot in the range.
    NoTransport,
    /// The slots (or the bus seats) ran out.
    NoCapacity,
}

impl Unplaced {
    pub fn code(self) -> &'static str {
        match self {
            Unplaced::TooYoung => "too_young",
            Unplaced::NoTransport => "no_transport",
            Unplaced::NoCapacity => "no_capacity",
        }
    }
    pub fn sentence(self) -> &'static str {
        match self {
            Unplaced::TooYoung => "below the minimum age of every product offered in the range",
            Unplaced::NoTransport => {
                "needs transport and no bus run from their area serves a slot in the range"
            }
            Unplaced::NoCapacity => {
                "no slot with seats for both doses (and a bus seat where needed) was left"
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<(i64, Unplaced)>,
    /// Seats taken per slot and per run (for the store's counters).
    pub slot_seats: BTreeMap<i64, i64>,
    pub run_seats: BTreeMap<i64, i64>,
}

/// The priority key of a person (smaller first).
fn priority(
    p: &Person,
    on: NaiveDate,
    rank: &HashMap<&str, usize>,
) -> (bool, i64, usize, String, NaiveDate, i64) {
    let age = age_on(p.birth, on) as i64;
    let r = rank.get(p.district.as_str()).copied().unwrap_or(usize::MAX);
    (
        age < 65,
        -age,
        r,
        if r == usize::MAX {
            p.district.clone()
        } else {
            String::new()
        },
        p.birth,
        p.id,
    )
}

/// A run (index) and the stop each rider boards at; `usize::MAX` when nobody rides.
type Ride = (usize, Vec<i64>);

struct Index<'a> {
    input: &'a AssignInput,
    free: Vec<i64>,
    run_free: Vec<i64>,
    /// Per venue: dose-1 candidate slots (indices into input.slots) by (date, time, id).
    venue_slots: HashMap<i64, Vec<usize>>,
    cursor: HashMap<i64, usize>,
    /// (venue, product, time) → date → slot index.
    by_time: HashMap<(i64, Product, NaiveTime), BTreeMap<NaiveDate, usize>>,
    /// (venue, date, time) → slot indices (any product).
    at: HashMap<(i64, NaiveDate, NaiveTime), Vec<usize>>,
    /// (venue, date, time) → run indices.
    runs_at: HashMap<(i64, NaiveDate, NaiveTime), Vec<usize>>,
    /// Per venue: run indices by (date, time, id).
    venue_runs: HashMap<i64, Vec<usize>>,
}

/// One group to place together: its members' ages are checked per slot, and `stops[i]` are the
/// stops serving the town of a member who needs transport.
struct Group<'p> {
    members: Vec<&'p Person>,
    riders: Vec<Vec<i64>>,
}

impl<'a> Index<'a> {
    fn new(input: &'a AssignInput) -> Index<'a> {
        let mut venue_slots: HashMap<i64, Vec<usize>> = HashMap::new();
        let mut by_time: HashMap<_, BTreeMap<NaiveDate, usize>> = HashMap::new();
        let mut at: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, s) in input.slots.iter().enumerate() {
            let in_range =
                input.from.is_none_or(|f| s.date >= f) && input.to.is_none_or(|t| s.date <= t);
            if in_range {
                venue_slots.entry(s.venue_id).or_default().push(i);
            }
            by_time
                .entry((s.venue_id, s.product, s.time))
                .or_default()
                .insert(s.date, i);
            at.entry((s.venue_id, s.date, s.time)).or_default().push(i);
        }
        for v in venue_slots.values_mut() {
            v.sort_by_key(|i| {
                (
                    input.slots[*i].date,
                    input.slots[*i].time,
                    input.slots[*i].id,
                )
            });
        }
        let mut runs_at: HashMap<_, Vec<usize>> = HashMap::new();
        let mut venue_runs: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, r) in input.runs.iter().enumerate() {
            runs_at
                .entry((r.venue_id, r.date, r.time))
                .or_default()
                .push(i);
            venue_runs.entry(r.venue_id).or_default().push(i);
        }
        for v in venue_runs.values_mut() {
            v.sort_by_key(|i| (input.runs[*i].date, input.runs[*i].time, input.runs[*i].id));
        }
        for v in runs_at.values_mut() {
            v.sort_by_key(|i| input.runs[*i].id);
        }
        Index {
            input,
            free: input.slots.iter().map(|s| s.free.max(0)).collect(),
            run_free: input.runs.iter().map(|r| r.free.max(0)).collect(),
            venue_slots,
            cursor: HashMap::new(),
            by_time,
            at,
            runs_at,
            venue_runs,
        }
    }

    /// A run at (venue, date, time) calling at one of each rider's stops, with seats for all:
    /// (run index, the stop of each rider).
    fn run_for(
        &self,
        venue: i64,
        date: NaiveDate,
        time: NaiveTime,
        riders: &[Vec<i64>],
    ) -> Option<(usize, Vec<i64>)> {
        if riders.is_empty() {
            return Some((usize::MAX, Vec::new()));
        }
        for &r in self.runs_at.get(&(venue, date, time))? {
            if self.run_free[r] < riders.len() as i64 {
                continue;
            }
            let run = &self.input.runs[r];
            let stops: Option<Vec<i64>> = riders
                .iter()
                .map(|candidates| candidates.iter().copied().find(|s| run.stops.contains(s)))
                .collect();
            if let Some(stops) = stops {
                return Some((r, stops));
            }
        }
        None
    }

    /// Dose 2 for dose 1 in slot `s1`: the standard day, else the nearest legal day with seats.
    fn dose2_for(&self, s1: usize, group: &Group) -> Option<(usize, Option<Ride>)> {
        let slot = &self.input.slots[s1];
        let n = group.members.len() as i64;
        let window = dose2_window(slot.date, slot.product);
        let dates = self
            .by_time
            .get(&(slot.venue_id, slot.product, slot.time))?;
        let last = window.standard + Duration::days(DOSE2_LATE_DAYS);
        let mut best: Option<(i64, NaiveDate, usize, Option<Ride>)> = None;
        for (date, &i) in dates.range(window.earliest..=last) {
            if self.free[i] < n {
                continue;
            }
            let distance = (*date - window.standard).num_days().abs();
            if best
                .as_ref()
                .is_some_and(|b| (b.0, b.1) <= (distance, *date))
            {
                continue;
            }
            if !group
                .members
                .iter()
                .all(|p| age_on(p.birth, *date) >= slot.product.min_age())
            {
                continue;
            }
            let ride = if group.riders.is_empty() {
                None
            } else {
                match self.run_for(slot.venue_id, *date, slot.time, &group.riders) {
                    Some(r) => Some(r),
                    None => continue,
                }
            };
            best = Some((distance, *date, i, ride));
        }
        best.map(|(_, _, i, ride)| (i, ride))
    }

    /// The earliest fit for the group at a venue: (dose-1 slot, its ride, dose-2 slot, its ride).
    #[allow(clippy::type_complexity)]
    fn fit_at(
        &mut self,
        venue: i64,
        group: &Group,
    ) -> Option<(
        usize,
        Option<(usize, Vec<i64>)>,
        usize,
        Option<(usize, Vec<i64>)>,
    )> {
        let n = group.members.len() as i64;
        let slots = self.venue_slots.get(&venue)?;
        // Skip slots already full for good.
        let mut c = self.cursor.get(&venue).copied().unwrap_or(0);
        while c < slots.len() && self.free[slots[c]] == 0 {
            c += 1;
        }
        self.cursor.insert(venue, c);
        if !group.riders.is_empty() {
            // Riders: walk the venue's runs (few) rather than its slots.
            let runs = self.venue_runs.get(&venue)?;
            let first = slots
                .get(c)
                .map(|i| (self.input.slots[*i].date, self.input.slots[*i].time));
            let first = first?;
            let mut seen = std::collections::HashSet::new();
            for &r in runs {
                let run = &self.input.runs[r];
                if (run.date, run.time) < first {
                    continue;
                }
                if self.input.to.is_some_and(|t| run.date > t)
                    || self.input.from.is_some_and(|f| run.date < f)
                {
                    continue;
                }
                if !seen.insert((run.date, run.time)) {
                    continue;
                }
                let Some(ride1) = self.run_for(venue, run.date, run.time, &group.riders) else {
                    continue;
                };
                if let Some(found) = self.try_slots_at(venue, run.date, run.time, group, n) {
                    return Some((found.0, Some(ride1), found.1, found.2));
                }
            }
            return None;
        }
        for &s in &slots[c..] {
            if self.free[s] < n {
                continue;
            }
            let slot = &self.input.slots[s];
            if !group
                .members
                .iter()
                .all(|p| age_on(p.birth, slot.date) >= slot.product.min_age())
            {
                continue;
            }
            if let Some((s2, ride2)) = self.dose2_for(s, group) {
                return Some((s, None, s2, ride2));
            }
        }
        None
    }

    #[allow(clippy::type_complexity)]
    fn try_slots_at(
        &self,
        venue: i64,
        date: NaiveDate,
        time: NaiveTime,
        group: &Group,
        n: i64,
    ) -> Option<(usize, usize, Option<(usize, Vec<i64>)>)> {
        for &s in self.at.get(&(venue, date, time))? {
            let slot = &self.input.slots[s];
            let in_range = self.input.from.is_none_or(|f| slot.date >= f)
                && self.input.to.is_none_or(|t| slot.date <= t);
            if !in_range || self.free[s] < n {
                continue;
            }
            if !group
                .members
                .iter()
                .all(|p| age_on(p.birth, slot.date) >= slot.product.min_age())
            {
                continue;
            }
            if let Some((s2, ride2)) = self.dose2_for(s, group) {
                return Some((s, s2, ride2));
            }
        }
        None
    }
}

/// Plans the assignment (see the module doc). Deterministic: the same input gives the same plan.
pub fn plan(input: &AssignInput) -> Plan {
    let on = input
        .from
        .or_else(|| input.slots.iter().map(|s| s.date).min())
        .unwrap_or(NaiveDate::MIN);
    let rank: HashMap<&str, usize> = input
        .district_order
        .iter()
        .enumerate()
        .map(|(i, d)| (d.as_str(), i))
        .collect();
    let mut people: Vec<&Person> = input.people.iter().collect();
    people.sort_by_cached_key(|p| priority(p, on, &rank));
    // Households in the order of their first member.
    let mut units: Vec<Vec<&Person>> = Vec::new();
    let mut unit_of: HashMap<&str, usize> = HashMap::new();
    for p in people {
        match p.household.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => match unit_of.get(h) {
                Some(&u) => units[u].push(p),
                None => {
                    unit_of.insert(h, units.len());
                    units.push(vec![p]);
                }
            },
            None => units.push(vec![p]),
        }
    }
    let mut venues: Vec<&PlanVenue> = input.venues.iter().collect();
    venues.sort_by_key(|v| v.id);
    let mut ix = Index::new(input);
    let mut plan = Plan::default();
    let stops_of = |p: &Person| -> Vec<i64> {
        input
            .stops_by_town
            .get(&p.town)
            .cloned()
            .unwrap_or_default()
    };
    for unit in units {
        let whole = unit.len() > 1;
        let mut groups: Vec<Vec<&Person>> = vec![unit.clone()];
        if whole {
            // Together first; failing that, one by one.
            let group = make_group(&unit, &stops_of);
            if group.riders.iter().any(|s| s.is_empty())
                || !place(&mut ix, &venues, &group, true, &mut plan)
            {
                groups = unit.iter().map(|p| vec![*p]).collect();
            } else {
                continue;
            }
        }
        for g in groups {
            let group = make_group(&g, &stops_of);
            let p = g[0];
            if group.riders.iter().any(|s| s.is_empty()) {
                plan.unplaced.push((p.id, Unplaced::NoTransport));
                continue;
            }
            if !place(&mut ix, &venues, &group, false, &mut plan) {
                plan.unplaced.push((p.id, why(&ix, &venues, p, &group)));
            }
        }
    }
    plan
}

fn make_group<'p>(members: &[&'p Person], stops_of: &dyn Fn(&Person) -> Vec<i64>) -> Group<'p> {
    Group {
        members: members.to_vec(),
        riders: members
            .iter()
            .filter(|p| p.needs_transport)
            .map(|p| stops_of(p))
            .collect(),
    }
}

fn venue_order<'v>(venues: &[&'v PlanVenue], district: &str) -> Vec<&'v PlanVenue> {
    let mut v: Vec<&PlanVenue> = venues.to_vec();
    v.sort_by_key(|v| (!v.districts.iter().any(|d| d == district), v.id));
    v
}

fn place(
    ix: &mut Index,
    venues: &[&PlanVenue],
    group: &Group,
    together: bool,
    plan: &mut Plan,
) -> bool {
    let first = group.members[0];
    for venue in venue_order(venues, &first.district) {
        let Some((s1, ride1, s2, ride2)) = ix.fit_at(venue.id, group) else {
            continue;
        };
        let n = group.members.len() as i64;
        ix.free[s1] -= n;
        ix.free[s2] -= n;
        *plan.slot_seats.entry(ix.input.slots[s1].id).or_default() += n;
        *plan.slot_seats.entry(ix.input.slots[s2].id).or_default() += n;
        let mut rides = |ride: &Option<(usize, Vec<i64>)>, ix: &mut Index| -> Vec<(i64, i64)> {
            match ride {
                Some((r, stops)) if *r != usize::MAX => {
                    ix.run_free[*r] -= stops.len() as i64;
                    *plan.run_seats.entry(ix.input.runs[*r].id).or_default() += stops.len() as i64;
                    stops.iter().map(|s| (ix.input.runs[*r].id, *s)).collect()
                }
                _ => Vec::new(),
            }
        };
        let r1 = rides(&ride1, ix);
        let r2 = rides(&ride2, ix);
        let mut k = 0;
        for p in &group.members {
            let (a, b) = if p.needs_transport {
                k += 1;
                (r1.get(k - 1).copied(), r2.get(k - 1).copied())
            } else {
                (None, None)
            };
            plan.placements.push(Placement {
                resident_id: p.id,
                venue_id: venue.id,
                dose1_slot: ix.input.slots[s1].id,
                dose2_slot: ix.input.slots[s2].id,
                ride1: a,
                ride2: b,
                dose1_date: ix.input.slots[s1].date,
                with_household: together,
            });
        }
        return true;
    }
    false
}

/// The reason one person could not be placed.
fn why(ix: &Index, venues: &[&PlanVenue], p: &Person, group: &Group) -> Unplaced {
    let old_enough = venues.iter().any(|v| {
        ix.venue_slots.get(&v.id).is_some_and(|slots| {
            slots.iter().any(|s| {
                let slot = &ix.input.slots[*s];
                age_on(p.birth, slot.date) >= slot.product.min_age()
            })
        })
    });
    if !old_enough {
        return Unplaced::TooYoung;
    }
    if let Some(stops) = group.riders.first() {
        let served = ix.input.runs.iter().any(|r| {
            ix.input.from.is_none_or(|f| r.date >= f)
                && ix.input.to.is_none_or(|t| r.date <= t)
                && r.stops.iter().any(|s| stops.contains(s))
        });
        if !served {
            return Unplaced::NoTransport;
        }
    }
    Unplaced::NoCapacity
}

/// The Monday of a date's week (the report's week).
pub fn week_of(date: NaiveDate) -> NaiveDate {
    date - Duration::days(date.weekday().num_days_from_monday() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }
    fn t(h: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, 0, 0).unwrap()
    }
    fn person(id: i64, birth: &str, district: &str, household: Option<&str>) -> Person {
        Person {
            id,
            birth: d(birth),
            district: district.into(),
            town: "浜".into(),
            household: household.map(String::from),
            needs_transport: false,
        }
    }
    /// One venue, Pfizer, 10:00 and 14:00 for 40 days from 2021-06-01, `free` seats each.
    fn calendar(free: i64) -> Vec<PlanSlot> {
        let mut v = Vec::new();
        for day in 0..40 {
            for (k, h) in [10, 14].iter().enumerate() {
                v.push(PlanSlot {
                    id: day * 2 + k as i64 + 1,
                    venue_id: 1,
                    product: Product::Pfizer,
                    date: d("2021-06-01") + Duration::days(day),
                    time: t(*h),
                    free,
                });
            }
        }
        v
    }

    #[test]
    fn elders_first_then_district_order_then_households_together() {
        let input = AssignInput {
            from: Some(d("2021-06-01")),
            to: Some(d("2021-06-10")),
            people: vec![
                person(1, "1990-01-01", "東", None),
                person(2, "1940-05-01", "西", None),
                person(3, "1940-02-01", "東", None),
                person(4, "1950-01-01", "東", Some("H1")),
                person(5, "1995-01-01", "東", Some("H1")),
                person(6, "2015-01-01", "東", None),
            ],
            venues: vec![PlanVenue {
                id: 1,
                districts: vec!["東".into()],
            }],
            slots: calendar(2),
            district_order: vec!["西".into(), "東".into()],
            ..Default::default()
        };
        let plan = plan(&input);
        let order: Vec<i64> = plan.placements.iter().map(|p| p.resident_id).collect();
        // 81-year-olds: 西 before 東; then the 71-year-old with her household; then the rest.
        assert_eq!(order, vec![2, 3, 4, 5, 1]);
        let slot_of = |id| {
            plan.placements
                .iter()
                .find(|p| p.resident_id == id)
                .unwrap()
                .clone()
        };
        assert_eq!(slot_of(2).dose1_slot, slot_of(3).dose1_slot);
        assert_eq!(slot_of(4).dose1_slot, slot_of(5).dose1_slot);
        assert!(slot_of(4).with_household);
        assert_eq!(plan.unplaced, vec![(6, Unplaced::TooYoung)]);
        for p in &plan.placements {
            let s1 = input.slots.iter().find(|s| s.id == p.dose1_slot).unwrap();
            let s2 = input.slots.iter().find(|s| s.id == p.dose2_slot).unwrap();
            assert_eq!((s2.date - s1.date).num_days(), 21);
            assert_eq!(s1.time, s2.time);
        }
        assert!(plan.slot_seats.values().all(|n| *n <= 2));
    }

    #[test]
    fn riders_only_where_a_run_serves_and_seats_never_exceed() {
        let mut people = Vec::new();
        for i in 0..5 {
            let mut p = person(i + 1, "1940-01-01", "東", None);
            p.needs_transport = true;
            people.push(p);
        }
        let mut far = person(9, "1941-01-01", "東", None);
        far.needs_transport = true;
        far.town = "遠方".into();
        people.push(far);
        let runs = vec![
            PlanRun {
                id: 1,
                venue_id: 1,
                date: d("2021-06-02"),
                time: t(14),
                free: 2,
                stops: vec![7],
            },
            PlanRun {
                id: 2,
                venue_id: 1,
                date: d("2021-06-23"),
                time: t(14),
                free: 3,
                stops: vec![7],
            },
        ];
        let input = AssignInput {
            from: Some(d("2021-06-01")),
            to: Some(d("2021-06-10")),
            people,
            venues: vec![PlanVenue {
                id: 1,
                districts: vec![],
            }],
            slots: calendar(10),
            runs,
            stops_by_town: [("浜".to_string(), vec![7])].into_iter().collect(),
            ..Default::default()
        };
        let plan = plan(&input);
        assert_eq!(plan.placements.len(), 2, "{plan:?}");
        for p in &plan.placements {
            assert_eq!(p.ride1, Some((1, 7)));
            assert_eq!(p.ride2, Some((2, 7)));
        }
        assert_eq!(plan.run_seats.get(&1), Some(&2));
        let reasons: Vec<_> = plan.unplaced.iter().map(|u| u.1).collect();
        assert_eq!(
            reasons
                .iter()
                .filter(|r| **r == Unplaced::NoCapacity)
                .count(),
            3
        );
        assert!(plan.unplaced.contains(&(9, Unplaced::NoTransport)));
    }

    #[test]
    fn dose2_moves_off_a_full_standard_day_but_never_before_day_19() {
        let mut slots = calendar(1);
        // Day 21 at 10:00 (2021-06-22) full: the nearest legal day is day 20, then day 22.
        for s in &mut slots {
            if s.date == d("2021-06-22") && s.time == t(10) {
                s.free = 0;
            }
        }
        let input = AssignInput {
            from: Some(d("2021-06-01")),
            to: Some(d("2021-06-01")),
            people: vec![person(1, "1950-01-01", "東", None)],
            venues: vec![PlanVenue {
                id: 1,
                districts: vec![],
            }],
            slots,
            ..Default::default()
        };
        let plan = plan(&input);
        let p = &plan.placements[0];
        let s2 = input.slots.iter().find(|s| s.id == p.dose2_slot).unwrap();
        assert_eq!(s2.date, d("2021-06-21"));
        assert!(s2.date >= d("2021-06-20"));
    }
}
