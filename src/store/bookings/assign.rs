//! `madoguchi assign`: the city's assignment of both doses to every resident who wants one and
//! has no booking. Read once, planned in memory ([`crate::domain::assign`]), written in one
//! transaction with batched statements.
//!
//! Agents keep rebooking while the plan is made, so the write checks, under the write lock
//! (SQLite) or row locks (PostgreSQL), that every slot and run the plan fills still has the
//! counts the plan was made from; if any changed, or a resident got a booking meanwhile (the
//! one-live-booking index refuses the insert), nothing is written and the plan is made again
//! from fresh counts (at most [`ATTEMPTS`] times).

use super::super::{now, parse_ts, ts, Store, StoreError};
use crate::domain::assign::{
    plan, week_of, AssignInput, Person, Plan, PlanRun, PlanSlot, PlanVenue, Unplaced,
    DOSE2_LATE_DAYS,
};
use crate::domain::vaccine::{jst_date, jst_midnight, jst_time};
use crate::domain::Product;
use anyhow::Context;
use chrono::{Duration, NaiveDate};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Ids per `IN (…)` list.
const IN_CHUNK: usize = 900;

/// Plans made before giving up when the counts keep changing under it.
pub const ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct AssignOptions {
    /// Dose 1 falls on these days (JST), inclusive; dose 2 may fall later.
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub dry_run: bool,
    /// 地区 in the order they are served among residents of the same age.
    pub district_order: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VenueWeek {
    pub venue_id: i64,
    pub venue: String,
    /// The Monday of dose 1's week.
    pub week: NaiveDate,
    pub residents: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnassignedRow {
    pub resident_id: i64,
    pub address_no: String,
    pub name: String,
    pub reason: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AssignReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub dry_run: bool,
    /// Residents who want a dose and had no booking.
    pub considered: usize,
    pub assigned: usize,
    /// Of those, placed in one slot with the rest of their household.
    pub with_household: usize,
    pub rides: usize,
    pub per_venue_week: Vec<VenueWeek>,
    pub unassigned_by_reason: BTreeMap<String, usize>,
    pub unassigned: Vec<UnassignedRow>,
    pub read_ms: u128,
    pub plan_ms: u128,
    pub write_ms: u128,
    /// Plans made (more than one when the counts changed while planning).
    pub attempts: usize,
    /// Each assigned resident's doses and rides (not in the JSON: the bookings are in the
    /// ledger).
    #[serde(skip)]
    pub placements: Vec<crate::domain::assign::Placement>,
}

/// The plan's view of a slot or run, to check the counts have not moved before writing.
type Snapshot = HashMap<i64, (i64, i64, i64, i64)>;

impl Store {
    /// Plans and (unless `dry_run`) writes the assignment; see the module doc.
    pub async fn assign(&self, opts: &AssignOptions) -> Result<AssignReport, StoreError> {
        if opts.to < opts.from {
            return Err(StoreError::Invalid { field: "to" });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let t = Instant::now();
            let (input, slot_snap, run_snap) = self.assign_input(opts).await?;
            let read_ms = t.elapsed().as_millis();
            let t = Instant::now();
            let considered = input.people.len();
            let (input, plan) = tokio::task::spawn_blocking(move || {
                let p = plan(&input);
                (input, p)
            })
            .await
            .context("the assignment planner")?;
            let plan_ms = t.elapsed().as_millis();
            let t = Instant::now();
            if !opts.dry_run {
                match self.write_plan(&plan, &slot_snap, &run_snap).await? {
                    true => {}
                    false if attempt < ATTEMPTS => {
                        tracing::info!(attempt, "counts changed while planning; planning again");
                        continue;
                    }
                    false => {
                        return Err(anyhow::anyhow!(
                            "the slots kept changing while the assignment was planned ({ATTEMPTS} tries); nothing was written, try again"
                        )
                        .into())
                    }
                }
            }
            let write_ms = t.elapsed().as_millis();
            return self
                .assign_report(
                    opts,
                    &input,
                    &plan,
                    considered,
                    (read_ms, plan_ms, write_ms),
                    attempt,
                )
                .await;
        }
    }

    async fn assign_input(
        &self,
        opts: &AssignOptions,
    ) -> Result<(AssignInput, Snapshot, Snapshot), StoreError> {
        let people = sqlx::query(
            "SELECT r.id, r.birth_date, r.district, r.town, r.household_no, r.needs_transport \
             FROM residents r WHERE r.intent = 'wants' AND NOT EXISTS (SELECT 1 FROM bookings b \
             WHERE b.resident_id = r.id AND b.status IN ('booked', 'checked_in', 'vaccinated')) \
             ORDER BY r.id",
        )
        .fetch_all(&self.read)
        .await?
        .iter()
        .filter_map(|r| {
            let birth: String = r.try_get("birth_date").ok()?;
            Some(Person {
                id: r.try_get("id").ok()?,
                birth: NaiveDate::parse_from_str(&birth, "%Y-%m-%d").ok()?,
                district: r.try_get("district").ok()?,
                town: r.try_get("town").ok()?,
                household: r.try_get("household_no").ok()?,
                needs_transport: r.try_get::<i64, _>("needs_transport").ok()? == 1,
            })
        })
        .collect();
        let venues = self
            .venues()
            .await?
            .into_iter()
            .map(|v| PlanVenue {
                id: v.id,
                districts: v.districts,
            })
            .collect();
        let longest = Product::ALL
            .iter()
            .map(|p| p.standard_interval_days())
            .max()
            .unwrap_or(56);
        let start = ts(jst_midnight(opts.from));
        let end = ts(jst_midnight(
            opts.to + Duration::days(longest + DOSE2_LATE_DAYS + 1),
        ));
        let mut slot_snap = Snapshot::new();
        let mut slots = Vec::new();
        for r in sqlx::query(
            "SELECT id, venue_id, starts_at, product, capacity, booked, closed, held FROM slots \
             WHERE starts_at >= $1 AND starts_at < $2 ORDER BY starts_at, id",
        )
        .bind(start.clone())
        .bind(end.clone())
        .fetch_all(&self.read)
        .await?
        {
            let (id, capacity, booked, closed, held): (i64, i64, i64, i64, i64) = (
                r.try_get("id")?,
                r.try_get("capacity")?,
                r.try_get("booked")?,
                r.try_get("closed")?,
                r.try_get("held")?,
            );
            let starts: String = r.try_get("starts_at")?;
            let product: String = r.try_get("product")?;
            let (Some(starts), Some(product)) = (parse_ts(&starts), Product::parse(&product))
            else {
                continue;
            };
            slot_snap.insert(id, (capacity, booked, closed, held));
            slots.push(PlanSlot {
                id,
                venue_id: r.try_get("venue_id")?,
                product,
                date: jst_date(starts),
                time: jst_time(starts),
                free: if closed != 0 {
                    0
                } else {
                    (capacity - held - booked).max(0)
                },
            });
        }
        let mut run_snap = Snapshot::new();
        let mut runs = Vec::new();
        let mut run_stops: HashMap<i64, Vec<i64>> = HashMap::new();
        for r in sqlx::query(
            "SELECT rs.run_id, rs.stop_id FROM run_stops rs JOIN runs r ON r.id = rs.run_id \
             WHERE r.starts_at >= $1 AND r.starts_at < $2 ORDER BY rs.run_id, rs.seq",
        )
        .bind(start.clone())
        .bind(end.clone())
        .fetch_all(&self.read)
        .await?
        {
            run_stops
                .entry(r.try_get("run_id")?)
                .or_default()
                .push(r.try_get("stop_id")?);
        }
        for r in sqlx::query(
            "SELECT id, venue_id, starts_at, seats, riders FROM runs \
             WHERE starts_at >= $1 AND starts_at < $2 ORDER BY starts_at, id",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&self.read)
        .await?
        {
            let (id, seats, riders): (i64, i64, i64) =
                (r.try_get("id")?, r.try_get("seats")?, r.try_get("riders")?);
            let starts: String = r.try_get("starts_at")?;
            let Some(starts) = parse_ts(&starts) else {
                continue;
            };
            run_snap.insert(id, (seats, riders, seats, riders));
            runs.push(PlanRun {
                id,
                venue_id: r.try_get("venue_id")?,
                date: jst_date(starts),
                time: jst_time(starts),
                free: (seats - riders).max(0),
                stops: run_stops.remove(&id).unwrap_or_default(),
            });
        }
        let mut stops_by_town: HashMap<String, Vec<i64>> = HashMap::new();
        for s in self.stops().await? {
            for t in &s.towns {
                stops_by_town.entry(t.clone()).or_default().push(s.id);
            }
        }
        Ok((
            AssignInput {
                from: Some(opts.from),
                to: Some(opts.to),
                people,
                venues,
                slots,
                runs,
                stops_by_town,
                district_order: opts.district_order.clone(),
            },
            slot_snap,
            run_snap,
        ))
    }

    /// Writes a plan in one transaction: false (nothing written) when the counts it was made
    /// from changed, or a resident got a booking meanwhile.
    async fn write_plan(
        &self,
        plan: &Plan,
        slot_snap: &Snapshot,
        run_snap: &Snapshot,
    ) -> Result<bool, StoreError> {
        if plan.placements.is_empty() {
            return Ok(true);
        }
        let mut tx = self.begin_write().await?;
        let lock = tx.for_update();
        for (table, cols, touched, snap) in [
            (
                "slots",
                "capacity, booked, closed, held",
                &plan.slot_seats,
                slot_snap,
            ),
            (
                "runs",
                "seats, riders, seats AS s2, riders AS r2",
                &plan.run_seats,
                run_snap,
            ),
        ] {
            let ids: Vec<i64> = touched.keys().copied().collect();
            for chunk in ids.chunks(IN_CHUNK) {
                let sql = format!(
                    "SELECT id, {cols} FROM {table} WHERE id IN ({}) ORDER BY id{lock}",
                    join(chunk)
                );
                let rows = sqlx::query(&sql).fetch_all(tx.conn()).await?;
                if rows.len() != chunk.len() {
                    return Ok(false);
                }
                for r in rows {
                    let id: i64 = r.try_get(0)?;
                    let now = (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
                    if snap.get(&id) != Some(&now) {
                        return Ok(false);
                    }
                }
            }
        }
        for (table, column, touched) in [
            ("slots", "booked", &plan.slot_seats),
            ("runs", "riders", &plan.run_seats),
        ] {
            let pairs: Vec<(i64, i64)> = touched.iter().map(|(k, v)| (*k, *v)).collect();
            for chunk in pairs.chunks(IN_CHUNK) {
                let cases: String = chunk
                    .iter()
                    .map(|(id, n)| format!(" WHEN {id} THEN {n}"))
                    .collect();
                let ids: Vec<i64> = chunk.iter().map(|p| p.0).collect();
                let sql = format!(
                    "UPDATE {table} SET {column} = {column} + CASE id{cases} END WHERE id IN ({})",
                    join(&ids)
                );
                sqlx::query(&sql).execute(tx.conn()).await?;
            }
        }
        let at = now();
        const BATCH: usize = 1000;
        for chunk in plan.placements.chunks(BATCH / 2) {
            let mut sql = String::from(
                "INSERT INTO bookings (resident_id, dose, slot_id, status, created_at, updated_at) VALUES ",
            );
            let mut first = true;
            for p in chunk {
                for (dose, slot) in [(1, p.dose1_slot), (2, p.dose2_slot)] {
                    if !first {
                        sql.push(',');
                    }
                    first = false;
                    sql.push_str(&format!("({},{dose},{slot},'booked',$1,$1)", p.resident_id));
                }
            }
            match sqlx::query(&sql).bind(at.clone()).execute(tx.conn()).await {
                Ok(_) => {}
                Err(e) => {
                    let e = StoreError::from(e);
                    if e.constraint() == Some("bookings_one_live_per_dose") {
                        return Ok(false);
                    }
                    return Err(e);
                }
            }
        }
        // Rides: the riders' new bookings, by resident and dose.
        let riders: Vec<&crate::domain::assign::Placement> = plan
            .placements
            .iter()
            .filter(|p| p.ride1.is_some() || p.ride2.is_some())
            .collect();
        let mut booking_of: HashMap<(i64, i64), i64> = HashMap::new();
        let ids: Vec<i64> = riders.iter().map(|p| p.resident_id).collect();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, resident_id, dose FROM bookings WHERE status = 'booked' AND resident_id IN ({})",
                join(chunk)
            );
            for r in sqlx::query(&sql).fetch_all(tx.conn()).await? {
                booking_of.insert(
                    (r.try_get("resident_id")?, r.try_get("dose")?),
                    r.try_get("id")?,
                );
            }
        }
        let mut rides = Vec::new();
        for p in &riders {
            for (dose, ride) in [(1, p.ride1), (2, p.ride2)] {
                if let (Some((run, stop)), Some(b)) = (ride, booking_of.get(&(p.resident_id, dose)))
                {
                    rides.push(format!("({b},{run},{stop},'booked',$1,$1)"));
                }
            }
        }
        for chunk in rides.chunks(BATCH) {
            let sql = format!(
                "INSERT INTO rides (booking_id, run_id, stop_id, status, created_at, updated_at) VALUES {}",
                chunk.join(",")
            );
            sqlx::query(&sql)
                .bind(at.clone())
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        self.refresh_statistics(&["bookings", "slots", "rides", "runs"])
            .await?;
        Ok(true)
    }

    async fn assign_report(
        &self,
        opts: &AssignOptions,
        input: &AssignInput,
        plan: &Plan,
        considered: usize,
        (read_ms, plan_ms, write_ms): (u128, u128, u128),
        attempts: usize,
    ) -> Result<AssignReport, StoreError> {
        let names: HashMap<i64, String> = self
            .venues()
            .await?
            .into_iter()
            .map(|v| (v.id, v.name))
            .collect();
        let mut weeks: BTreeMap<(i64, NaiveDate), usize> = BTreeMap::new();
        for p in &plan.placements {
            *weeks
                .entry((p.venue_id, week_of(p.dose1_date)))
                .or_default() += 1;
        }
        let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
        for (_, why) in &plan.unplaced {
            *by_reason.entry(why.code().to_string()).or_default() += 1;
        }
        let mut who: HashMap<i64, (String, String)> = HashMap::new();
        let ids: Vec<i64> = plan.unplaced.iter().map(|u| u.0).collect();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, address_no, name FROM residents WHERE id IN ({})",
                join(chunk)
            );
            for r in sqlx::query(&sql).fetch_all(&self.read).await? {
                who.insert(
                    r.try_get("id")?,
                    (r.try_get("address_no")?, r.try_get("name")?),
                );
            }
        }
        let _ = input;
        Ok(AssignReport {
            from: opts.from,
            to: opts.to,
            dry_run: opts.dry_run,
            considered,
            assigned: plan.placements.len(),
            with_household: plan.placements.iter().filter(|p| p.with_household).count(),
            rides: plan
                .placements
                .iter()
                .map(|p| usize::from(p.ride1.is_some()) + usize::from(p.ride2.is_some()))
                .sum(),
            per_venue_week: weeks
                .into_iter()
                .map(|((venue_id, week), residents)| VenueWeek {
                    venue_id,
                    venue: names.get(&venue_id).cloned().unwrap_or_default(),
                    week,
                    residents,
                })
                .collect(),
            unassigned_by_reason: by_reason,
            unassigned: plan
                .unplaced
                .iter()
                .map(|(id, why): &(i64, Unplaced)| {
                    let (address_no, name) = who.get(id).cloned().unwrap_or_default();
                    UnassignedRow {
                        resident_id: *id,
                        address_no,
                        name,
                        reason: why.code().to_string(),
                        why: why.sentence().to_string(),
                    }
                })
                .collect(),
            read_ms,
            plan_ms,
            write_ms,
            attempts,
            placements: plan.placements.clone(),
        })
    }
}

/// Integers we produced, inlined: one query text per count, and no parameter limit.
fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl std::fmt::Display for AssignReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "assignment {} – {}{}: {} wanted a dose without a booking; {} assigned both doses ({} with their household), {} rides; {} left unassigned",
            self.from,
            self.to,
            if self.dry_run { " (dry run: nothing written)" } else { "" },
            self.considered,
            self.assigned,
            self.with_household,
            self.rides,
            self.unassigned.len()
        )?;
        writeln!(f, "assigned per venue and week (dose 1; week of Monday):")?;
        for w in &self.per_venue_week {
            writeln!(f, "  {}\t{}\t{}", w.venue, w.week, w.residents)?;
        }
        if !self.unassigned.is_empty() {
            writeln!(f, "unassigned by reason:")?;
            for (r, n) in &self.unassigned_by_reason {
                writeln!(f, "  {r}\t{n}")?;
            }
            writeln!(f, "unassigned residents (address_no, name, reason):")?;
            for u in &self.unassigned {
                writeln!(f, "  {}\t{}\t{}: {}", u.address_no, u.name, u.reason, u.why)?;
            }
        }
        write!(
            f,
            "read {} ms, plan {} ms, write {} ms",
            self.read_ms, self.plan_ms, self.write_ms
        )
    }
}
