//! 予約の組み換え: close a slot, a venue's day or a whole venue (typhoon, staff shortage,
//! vaccine delay) and move its live bookings to the nearest slots the rules allow.
//!
//! One transaction: the scope's slots are closed, then each live booking in them is moved,
//! dose 1 before dose 2, a household (same 世帯番号, same slot, same dose) together where one
//! slot has seats for all of them, else one by one. Candidates are the open slots of the same
//! product that start later than now: the same venue first, then by distance in days, then
//! in time of day. A candidate is legal when the resident is old enough for it on its day,
//! dose 2 stays at least the minimum interval after dose 1 (whichever of the two moves), and
//! a rider's ride can follow to a run serving it from the same stop. Each try is made under a
//! savepoint with the same conditional updates as a move, so no slot or run ever goes over;
//! a try that fails is undone and the next candidate tried. Bookings left where they were are
//! listed with the reason. A dry run does all of it and rolls back.

use super::super::{parse_ts, ts, Store, StoreError, WriteTx};
use super::{release_seat, set_slot, slot_from_row, take_seat, transport, Slot, SLOT_COLUMNS};
use crate::domain::vaccine::{age_on, jst_date, jst_midnight, jst_time};
use crate::domain::Product;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

/// Candidates tried per booking (or household) before it is listed as not moved.
const TRIES: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Slot(i64),
    VenueDay(i64, NaiveDate),
    Venue(i64),
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Slot(s) => write!(f, "slot {s}"),
            Scope::VenueDay(v, d) => write!(f, "venue {v} on {d}"),
            Scope::Venue(v) => write!(f, "venue {v}"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MovedBooking {
    pub booking_id: i64,
    pub resident_id: i64,
    pub dose: i64,
    pub from_slot: i64,
    pub to_slot: i64,
    pub venue_id: i64,
    pub starts_at: String,
    /// Moved into one slot with the rest of the household's bookings from the same slot.
    pub with_household: bool,
    pub ride: Option<transport::RideChange>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotMoved {
    pub booking_id: i64,
    pub resident_id: i64,
    pub dose: i64,
    pub slot_id: i64,
    /// `no_legal_slot` or `no_bus_seat`.
    pub reason: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReshuffleReport {
    pub scope: String,
    pub dry_run: bool,
    pub closed_slots: Vec<i64>,
    pub moved: Vec<MovedBooking>,
    pub not_moved: Vec<NotMoved>,
}

#[derive(Debug, Clone)]
struct Live {
    id: i64,
    resident: i64,
    dose: i64,
    slot: i64,
    household: Option<String>,
    birth: NaiveDate,
}

struct Cand {
    slot: Slot,
    date: NaiveDate,
    starts: DateTime<Utc>,
    product: Product,
}

async fn savepoint(tx: &mut WriteTx, sql: &str) -> Result<(), StoreError> {
    sqlx::query(sql).execute(tx.conn()).await?;
    Ok(())
}

impl Store {
    /// Closes `scope` and moves its live bookings (see the module doc). `now`: candidates
    /// start after it.
    pub async fn reshuffle(
        &self,
        scope: Scope,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<ReshuffleReport, StoreError> {
        let mut tx = self.begin_write().await?;
        let lock = tx.for_update();
        let (cond, a, b): (&str, i64, String) = match scope {
            Scope::Slot(id) => ("id = $1 AND $2 <> ''", id, "x".into()),
            Scope::VenueDay(v, d) => (
                "venue_id = $1 AND starts_at >= $2 AND starts_at < $3",
                v,
                ts(jst_midnight(d)),
            ),
            Scope::Venue(v) => ("venue_id = $1 AND starts_at >= $2", v, ts(now)),
        };
        let end = match scope {
            Scope::VenueDay(_, d) => ts(jst_midnight(d + Duration::days(1))),
            _ => String::new(),
        };
        let sql =
            format!("SELECT {SLOT_COLUMNS} FROM slots WHERE {cond} ORDER BY starts_at, id{lock}");
        let mut q = sqlx::query(&sql).bind(a).bind(b);
        if matches!(scope, Scope::VenueDay(..)) {
            q = q.bind(end);
        }
        let closing: Vec<Slot> = q
            .fetch_all(tx.conn())
            .await?
            .iter()
            .map(slot_from_row)
            .collect::<Result<_, _>>()?;
        if closing.is_empty() {
            return Err(StoreError::NotFound);
        }
        let closed_ids: Vec<i64> = closing.iter().map(|s| s.id).collect();
        let list = join(&closed_ids);
        sqlx::query(&format!("UPDATE slots SET closed = 1 WHERE id IN ({list})"))
            .execute(tx.conn())
            .await?;
        let products: Vec<String> = {
            let mut p: Vec<String> = closing.iter().map(|s| s.product.clone()).collect();
            p.sort();
            p.dedup();
            p
        };
        // The live bookings to move, dose 1 first, by slot and household.
        let mut live: Vec<Live> = Vec::new();
        for r in sqlx::query(&format!(
            "SELECT b.id, b.resident_id, b.dose, b.slot_id, p.household_no, p.birth_date \
             FROM bookings b JOIN residents p ON p.id = b.resident_id \
             WHERE b.slot_id IN ({list}) AND b.status IN ('booked', 'checked_in') \
             ORDER BY b.dose, b.slot_id, p.household_no, b.id"
        ))
        .fetch_all(tx.conn())
        .await?
        {
            let birth: String = r.try_get("birth_date")?;
            live.push(Live {
                id: r.try_get("id")?,
                resident: r.try_get("resident_id")?,
                dose: r.try_get("dose")?,
                slot: r.try_get("slot_id")?,
                household: r.try_get("household_no")?,
                birth: NaiveDate::parse_from_str(&birth, "%Y-%m-%d")
                    .map_err(|_| anyhow::anyhow!("resident with a bad birth date"))?,
            });
        }
        // Each resident's doses as they stand (date), to keep the interval.
        let mut dose_day: HashMap<(i64, i64), NaiveDate> = HashMap::new();
        let residents: Vec<i64> = live.iter().map(|l| l.resident).collect();
        for chunk in residents.chunks(900) {
            for r in sqlx::query(&format!(
                "SELECT b.resident_id, b.dose, s.starts_at FROM bookings b JOIN slots s ON s.id = b.slot_id \
                 WHERE b.resident_id IN ({}) AND b.status IN ('booked', 'checked_in', 'vaccinated')",
                join(chunk)
            ))
            .fetch_all(tx.conn())
            .await?
            {
                let starts: String = r.try_get("starts_at")?;
                if let Some(t) = parse_ts(&starts) {
                    dose_day.insert((r.try_get("resident_id")?, r.try_get("dose")?), jst_date(t));
                }
            }
        }
        // Open slots of the same products, later than now.
        let quoted: Vec<String> = products
            .iter()
            .map(|p| format!("'{}'", p.replace('\'', "")))
            .collect();
        let mut cands: Vec<Cand> = Vec::new();
        for r in sqlx::query(&format!(
            "SELECT {SLOT_COLUMNS} FROM slots WHERE closed = 0 AND booked < capacity AND starts_at > $1 \
             AND product IN ({}) ORDER BY starts_at, id",
            quoted.join(",")
        ))
        .bind(ts(now))
        .fetch_all(tx.conn())
        .await?
        {
            let slot = slot_from_row(&r)?;
            let (Some(starts), Some(product)) = (parse_ts(&slot.starts_at), Product::parse(&slot.product)) else {
                continue;
            };
            cands.push(Cand {
                date: jst_date(starts),
                starts,
                product,
                slot,
            });
        }
        let mut free: Vec<i64> = cands
            .iter()
            .map(|c| c.slot.capacity - c.slot.booked)
            .collect();
        let source: HashMap<i64, &Slot> = closing.iter().map(|s| (s.id, s)).collect();

        // Units: same dose, same slot, same household.
        let mut units: Vec<Vec<Live>> = Vec::new();
        let mut key_of: BTreeMap<(i64, i64, String), usize> = BTreeMap::new();
        for l in live {
            match l.household.clone().filter(|h| !h.is_empty()) {
                Some(h) => {
                    let key = (l.dose, l.slot, h);
                    match key_of.get(&key) {
                        Some(&u) => units[u].push(l),
                        None => {
                            key_of.insert(key, units.len());
                            units.push(vec![l]);
                        }
                    }
                }
                None => units.push(vec![l]),
            }
        }
        let mut report = ReshuffleReport {
            scope: scope.to_string(),
            dry_run,
            closed_slots: closed_ids.clone(),
            moved: Vec::new(),
            not_moved: Vec::new(),
        };
        let mut order: HashMap<i64, Vec<usize>> = HashMap::new();
        for unit in units {
            let src = source[&unit[0].slot];
            order.entry(src.id).or_insert_with(|| rank(src, &cands));
            let ranked = &order[&src.id];
            let together = unit.len() > 1;
            let mut groups = vec![unit.clone()];
            if together {
                if self
                    .place_group(
                        &mut tx,
                        &unit,
                        ranked,
                        &cands,
                        &mut free,
                        &mut dose_day,
                        true,
                        &mut report,
                    )
                    .await?
                    .is_none()
                {
                    continue;
                }
                groups = unit.iter().map(|l| vec![l.clone()]).collect();
            }
            for g in groups {
                if let Some(reason) = self
                    .place_group(
                        &mut tx,
                        &g,
                        ranked,
                        &cands,
                        &mut free,
                        &mut dose_day,
                        false,
                        &mut report,
                    )
                    .await?
                {
                    let l = &g[0];
                    report.not_moved.push(NotMoved {
                        booking_id: l.id,
                        resident_id: l.resident,
                        dose: l.dose,
                        slot_id: l.slot,
                        why: match reason {
                            "no_bus_seat" => "no run from the resident's stop has a seat at any legal slot with seats".into(),
                            _ => "no open slot of the same vaccine with a seat keeps the dose rules".into(),
                        },
                        reason: reason.to_string(),
                    });
                }
            }
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }

    /// Tries to move a group into one slot: `None` when moved, else the reason.
    #[allow(clippy::too_many_arguments)]
    async fn place_group(
        &self,
        tx: &mut WriteTx,
        group: &[Live],
        ranked: &[usize],
        cands: &[Cand],
        free: &mut [i64],
        dose_day: &mut HashMap<(i64, i64), NaiveDate>,
        together: bool,
        report: &mut ReshuffleReport,
    ) -> Result<Option<&'static str>, StoreError> {
        let n = group.len() as i64;
        let mut tries = 0;
        let mut reason = "no_legal_slot";
        for &c in ranked {
            if free[c] < n {
                continue;
            }
            let cand = &cands[c];
            if !group.iter().all(|l| legal(l, cand, dose_day)) {
                continue;
            }
            tries += 1;
            if tries > TRIES {
                break;
            }
            savepoint(tx, "SAVEPOINT reshuffle_try").await?;
            let mut moved = Vec::new();
            let mut ok = true;
            for l in group {
                match take_seat(tx, cand.slot.id).await {
                    Ok(()) => {}
                    Err(StoreError::Conflict { .. }) => {
                        ok = false;
                        break;
                    }
                    Err(e) => return Err(e),
                }
                release_seat(tx, l.slot).await?;
                set_slot(tx, l.id, cand.slot.id).await?;
                match transport::follow_ride(tx, l.id, &cand.slot, false).await? {
                    Ok(ride) => moved.push((l, ride)),
                    Err(_) => {
                        reason = "no_bus_seat";
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                savepoint(tx, "ROLLBACK TO SAVEPOINT reshuffle_try").await?;
                savepoint(tx, "RELEASE SAVEPOINT reshuffle_try").await?;
                continue;
            }
            savepoint(tx, "RELEASE SAVEPOINT reshuffle_try").await?;
            free[c] -= n;
            for (l, ride) in moved {
                dose_day.insert((l.resident, l.dose), cand.date);
                report.moved.push(MovedBooking {
                    booking_id: l.id,
                    resident_id: l.resident,
                    dose: l.dose,
                    from_slot: l.slot,
                    to_slot: cand.slot.id,
                    venue_id: cand.slot.venue_id,
                    starts_at: cand.slot.starts_at.clone(),
                    with_household: together,
                    ride,
                });
            }
            return Ok(None);
        }
        Ok(Some(reason))
    }
}

/// Whether `l` may be given its dose in `cand`: old enough, and dose 2 at least the minimum
/// interval after dose 1 (the product is the same: candidates are of the closed slot's).
fn legal(l: &Live, cand: &Cand, dose_day: &HashMap<(i64, i64), NaiveDate>) -> bool {
    if age_on(l.birth, cand.date) < cand.product.min_age() {
        return false;
    }
    let min = Duration::days(cand.product.min_interval_days());
    match l.dose {
        1 => dose_day
            .get(&(l.resident, 2))
            .is_none_or(|d2| *d2 >= cand.date + min),
        _ => dose_day
            .get(&(l.resident, 1))
            .is_none_or(|d1| cand.date >= *d1 + min),
    }
}

/// Candidates for a closed slot's bookings, best first: the same product, the same venue first,
/// then the nearest day, then the nearest time of day.
fn rank(src: &Slot, cands: &[Cand]) -> Vec<usize> {
    let Some(starts) = parse_ts(&src.starts_at) else {
        return Vec::new();
    };
    let (day, time) = (jst_date(starts), jst_time(starts));
    let mut v: Vec<(bool, i64, i64, DateTime<Utc>, i64, usize)> = cands
        .iter()
        .enumerate()
        .filter(|(_, c)| c.slot.product == src.product)
        .map(|(i, c)| {
            (
                c.slot.venue_id != src.venue_id,
                (c.date - day).num_days().abs(),
                (jst_time(c.starts) - time).num_minutes().abs(),
                c.starts,
                c.slot.id,
                i,
            )
        })
        .collect();
    v.sort();
    v.into_iter().map(|t| t.5).collect()
}

fn join(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}
