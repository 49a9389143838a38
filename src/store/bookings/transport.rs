//! 送迎: pickup stops, bus runs and rides.
//!
//! - A stop serves 町名 (its `towns`) and knows its minutes by bus to each venue it serves.
//! - A run goes to one venue for the slots starting at one time (`starts_at`), with seats;
//!   its stops are ordered farthest first, each picked up at `starts_at − minutes −`
//!   [`PICKUP_MARGIN_MINUTES`], so every pickup is before the slot by at least the travel time.
//! - A ride ties a live booking to a run and the stop it boards at. A run's seat is taken by
//!   `UPDATE runs SET riders = riders + 1 WHERE id = $1 AND riders < seats`, in the same
//!   transaction as the booking's change, and the CHECK `runs_riders_within_seats` refuses
//!   anything else: a run never carries more riders than its seats.
//! - Rebooking a rider ([`follow_ride`], called by the move) takes a seat on a run serving the
//!   new slot from the same stop, or releases the ride when asked; with no seat the move is
//!   refused (`no_bus_seat`) and nothing changes.

use super::super::{now, parse_ts, ts, Store, StoreError, WriteTx};
use super::{Refusal, Slot};
use crate::domain::vaccine::{jst_date, jst_midnight, jst_time};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

/// Minutes a bus arrives before the slot starts (reception, the walk in).
pub const PICKUP_MARGIN_MINUTES: i64 = 15;

/// A ride that followed a move, or was released by it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RideChange {
    pub booking_id: i64,
    pub ride_id: i64,
    /// `booked` (on `run_id` now) or `released`.
    pub status: String,
    pub run_id: i64,
    pub stop_id: i64,
    pub stop_name: String,
    /// When the bus calls at the stop (RFC 3339 UTC); None when released.
    pub pickup_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stop {
    pub id: i64,
    pub name: String,
    pub towns: Vec<String>,
    /// venue id → minutes by bus.
    pub minutes: BTreeMap<i64, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunStop {
    pub stop_id: i64,
    pub name: String,
    pub seq: i64,
    pub pickup_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Run {
    pub id: i64,
    pub venue_id: i64,
    pub starts_at: String,
    pub name: String,
    pub seats: i64,
    pub riders: i64,
    pub stops: Vec<RunStop>,
}

/// One rider on a driver's manifest.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ManifestRow {
    pub seq: i64,
    pub stop: String,
    pub pickup_at: String,
    pub name: String,
    pub name_kana: String,
    pub phone: String,
    pub address: String,
    pub dose: i64,
}

/// What `transport plan` did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TransportPlan {
    pub date: String,
    pub dry_run: bool,
    pub runs_created: Vec<i64>,
    /// (booking, resident, run, stop, pickup_at)
    pub placed: Vec<PlacedRider>,
    pub unplaced: Vec<UnplacedRider>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacedRider {
    pub booking_id: i64,
    pub resident_id: i64,
    pub run_id: i64,
    pub stop_id: i64,
    pub pickup_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnplacedRider {
    pub booking_id: i64,
    pub resident_id: i64,
    pub slot_id: i64,
    /// `no_stop` (no stop serves their 町名 with a route to the venue) or `no_seat`.
    pub reason: String,
}

/// The stop a booking's live ride boards at.
pub async fn live_ride_stop(tx: &mut WriteTx, booking_id: i64) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT stop_id FROM rides WHERE booking_id = $1 AND status = 'booked'")
            .bind(booking_id)
            .fetch_optional(tx.conn())
            .await?,
    )
}

/// Runs to `slot`'s venue at its start that may take a rider from `stop` (the stop has a route
/// to the venue), with a seat, those already calling at the stop first.
async fn runs_for(tx: &mut WriteTx, slot: &Slot, stop: i64) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT r.id, (SELECT COUNT(*) FROM run_stops rs WHERE rs.run_id = r.id AND rs.stop_id = $3) AS calls \
         FROM runs r WHERE r.venue_id = $1 AND r.starts_at = $2 AND r.riders < r.seats \
         AND EXISTS (SELECT 1 FROM stop_minutes m WHERE m.stop_id = $3 AND m.venue_id = $1) \
         ORDER BY r.id",
    )
    .bind(slot.venue_id)
    .bind(slot.starts_at.clone())
    .bind(stop)
    .fetch_all(tx.conn())
    .await?;
    let mut runs: Vec<(i64, i64)> = rows
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>("calls")?, r.try_get::<i64, _>("id")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    runs.sort_by_key(|(calls, id)| (-*calls, *id));
    Ok(runs.into_iter().map(|(_, id)| id).collect())
}

/// Whether a run serving `slot` has a seat for a rider from `stop`.
pub async fn run_has_seat(tx: &mut WriteTx, slot: &Slot, stop: i64) -> Result<bool, StoreError> {
    Ok(!runs_for(tx, slot, stop).await?.is_empty())
}

/// Takes a seat on a run: false when it has none left.
pub(crate) async fn take_run_seat(tx: &mut WriteTx, run: i64) -> Result<bool, StoreError> {
    let done = sqlx::query("UPDATE runs SET riders = riders + 1 WHERE id = $1 AND riders < seats")
        .bind(run)
        .execute(tx.conn())
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(crate) async fn release_run_seat(tx: &mut WriteTx, run: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE runs SET riders = riders - 1 WHERE id = $1")
        .bind(run)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Makes `run` call at `stop` (if it does not yet), and orders its stops farthest first with
/// their pickup times.
pub(crate) async fn ensure_run_stop(
    tx: &mut WriteTx,
    run: i64,
    stop: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query(
        "SELECT r.starts_at, m.minutes FROM runs r JOIN stop_minutes m \
         ON m.venue_id = r.venue_id AND m.stop_id = $2 WHERE r.id = $1",
    )
    .bind(run)
    .bind(stop)
    .fetch_optional(tx.conn())
    .await?
    .ok_or(StoreError::Invalid { field: "stop_id" })?;
    let starts: String = row.try_get("starts_at")?;
    let minutes: i64 = row.try_get("minutes")?;
    let starts = parse_ts(&starts).ok_or_else(|| anyhow::anyhow!("run {run} has a bad start"))?;
    let pickup = starts - Duration::minutes(minutes + PICKUP_MARGIN_MINUTES);
    let added = sqlx::query(
        "INSERT INTO run_stops (run_id, stop_id, seq, pickup_at) VALUES ($1, $2, 0, $3) \
         ON CONFLICT (run_id, stop_id) DO NOTHING",
    )
    .bind(run)
    .bind(stop)
    .bind(ts(pickup))
    .execute(tx.conn())
    .await?;
    if added.rows_affected() == 1 {
        let order: Vec<(i64, String)> = sqlx::query(
            "SELECT stop_id, pickup_at FROM run_stops WHERE run_id = $1 ORDER BY pickup_at, stop_id",
        )
        .bind(run)
        .fetch_all(tx.conn())
        .await?
        .iter()
        .map(|r| Ok((r.try_get("stop_id")?, r.try_get("pickup_at")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        for (i, (s, _)) in order.iter().enumerate() {
            sqlx::query("UPDATE run_stops SET seq = $1 WHERE run_id = $2 AND stop_id = $3")
                .bind(i as i64 + 1)
                .bind(run)
                .bind(*s)
                .execute(tx.conn())
                .await?;
        }
    }
    Ok(())
}

pub(crate) async fn ride_change(tx: &mut WriteTx, ride: i64) -> Result<RideChange, StoreError> {
    let row = sqlx::query(
        "SELECT x.id, x.booking_id, x.status, x.run_id, x.stop_id, s.name, rs.pickup_at \
         FROM rides x JOIN stops s ON s.id = x.stop_id \
         LEFT JOIN run_stops rs ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id WHERE x.id = $1",
    )
    .bind(ride)
    .fetch_one(tx.conn())
    .await?;
    let status: String = row.try_get("status")?;
    Ok(RideChange {
        booking_id: row.try_get("booking_id")?,
        ride_id: row.try_get("id")?,
        pickup_at: if status == "booked" {
            row.try_get("pickup_at")?
        } else {
            None
        },
        status,
        run_id: row.try_get("run_id")?,
        stop_id: row.try_get("stop_id")?,
        stop_name: row.try_get("name")?,
    })
}

/// Releases a ride (its seat back to the run).
pub(crate) async fn release_ride(tx: &mut WriteTx, ride: i64, run: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE rides SET status = 'released', updated_at = $1 WHERE id = $2")
        .bind(now())
        .bind(ride)
        .execute(tx.conn())
        .await?;
    release_run_seat(tx, run).await
}

/// After a booking moved into `slot`: its live ride follows to a run serving the slot from the
/// same stop, or is released when `release` (or already fits). `Ok(Err)`: no run has a seat.
pub async fn follow_ride(
    tx: &mut WriteTx,
    booking_id: i64,
    slot: &Slot,
    release: bool,
) -> Result<Result<Option<RideChange>, Refusal>, StoreError> {
    let sql = format!(
        "SELECT x.id, x.run_id, x.stop_id, r.venue_id, r.starts_at FROM rides x \
         JOIN runs r ON r.id = x.run_id WHERE x.booking_id = $1 AND x.status = 'booked'{}",
        tx.for_update()
    );
    let Some(row) = sqlx::query(&sql)
        .bind(booking_id)
        .fetch_optional(tx.conn())
        .await?
    else {
        return Ok(Ok(None));
    };
    let ride: i64 = row.try_get("id")?;
    let run: i64 = row.try_get("run_id")?;
    let stop: i64 = row.try_get("stop_id")?;
    let venue: i64 = row.try_get("venue_id")?;
    let starts: String = row.try_get("starts_at")?;
    if venue == slot.venue_id && starts == slot.starts_at {
        return Ok(Ok(None));
    }
    if release {
        release_ride(tx, ride, run).await?;
        return Ok(Ok(Some(ride_change(tx, ride).await?)));
    }
    for candidate in runs_for(tx, slot, stop).await? {
        if take_run_seat(tx, candidate).await? {
            ensure_run_stop(tx, candidate, stop).await?;
            release_run_seat(tx, run).await?;
            sqlx::query("UPDATE rides SET run_id = $1, updated_at = $2 WHERE id = $3")
                .bind(candidate)
                .bind(now())
                .bind(ride)
                .execute(tx.conn())
                .await?;
            return Ok(Ok(Some(ride_change(tx, ride).await?)));
        }
    }
    let stop_name: String = sqlx::query_scalar("SELECT name FROM stops WHERE id = $1")
        .bind(stop)
        .fetch_optional(tx.conn())
        .await?
        .unwrap_or_default();
    let at = parse_ts(&slot.starts_at)
        .map(jst_time)
        .map(|t| t.format("%H:%M").to_string());
    Ok(Err(Refusal::new(
        "no_bus_seat",
        format!(
            "No bus from {stop_name} serves the {} slot with a free seat; nothing was changed. \
             Please offer a time the bus serves, or release the ride if the resident can come \
             another way.",
            at.unwrap_or_default()
        ),
    )))
}

/// Books a ride for a booking on a run (a seat taken, the stop added): false when full.
pub(crate) async fn add_ride(
    tx: &mut WriteTx,
    booking: i64,
    run: i64,
    stop: i64,
    at: &str,
) -> Result<bool, StoreError> {
    if !take_run_seat(tx, run).await? {
        return Ok(false);
    }
    ensure_run_stop(tx, run, stop).await?;
    sqlx::query(
        "INSERT INTO rides (booking_id, run_id, stop_id, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'booked', $4, $4)",
    )
    .bind(booking)
    .bind(run)
    .bind(stop)
    .bind(at.to_string())
    .execute(tx.conn())
    .await?;
    Ok(true)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}

impl Store {
    /// A pickup stop, the 町名 it serves and its minutes to each venue it serves.
    pub async fn insert_stop(
        &self,
        name: &str,
        towns: &[&str],
        minutes: &[(i64, i64)],
    ) -> Result<i64, StoreError> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid { field: "name" });
        }
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO stops (name, towns, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name.trim().to_string())
        .bind(towns.join(","))
        .bind(now())
        .fetch_one(tx.conn())
        .await?;
        for (venue, m) in minutes {
            sqlx::query(
                "INSERT INTO stop_minutes (stop_id, venue_id, minutes) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(*venue)
            .bind(*m)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn stops(&self) -> Result<Vec<Stop>, StoreError> {
        let mut stops: Vec<Stop> = sqlx::query("SELECT id, name, towns FROM stops ORDER BY id")
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|r| {
                Ok(Stop {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    towns: split_list(&r.try_get::<String, _>("towns")?),
                    minutes: BTreeMap::new(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let mut by_id: HashMap<i64, usize> = HashMap::new();
        for (i, s) in stops.iter().enumerate() {
            by_id.insert(s.id, i);
        }
        for r in sqlx::query("SELECT stop_id, venue_id, minutes FROM stop_minutes")
            .fetch_all(&self.read)
            .await?
        {
            let stop: i64 = r.try_get("stop_id")?;
            if let Some(i) = by_id.get(&stop) {
                stops[*i]
                    .minutes
                    .insert(r.try_get("venue_id")?, r.try_get("minutes")?);
            }
        }
        Ok(stops)
    }

    /// A bus run to `venue` for the slots starting at `starts_at`, calling at `stops` (each
    /// must have minutes to the venue).
    pub async fn insert_run(
        &self,
        venue: i64,
        starts_at: DateTime<Utc>,
        name: &str,
        seats: i64,
        stops: &[i64],
    ) -> Result<i64, StoreError> {
        if seats < 0 {
            return Err(StoreError::Invalid { field: "seats" });
        }
        let mut tx = self.begin_write().await?;
        let id = insert_run_in(&mut tx, venue, starts_at, name, seats).await?;
        // Farthest first: pickup = start − minutes − margin, in time order.
        let mut calls: Vec<(DateTime<Utc>, i64)> = Vec::new();
        for s in stops {
            let minutes: i64 = sqlx::query_scalar(
                "SELECT minutes FROM stop_minutes WHERE stop_id = $1 AND venue_id = $2",
            )
            .bind(*s)
            .bind(venue)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::Invalid { field: "stop_id" })?;
            calls.push((
                starts_at - Duration::minutes(minutes + PICKUP_MARGIN_MINUTES),
                *s,
            ));
        }
        calls.sort();
        calls.dedup_by_key(|c| c.1);
        for (seq, (pickup, stop)) in calls.iter().enumerate() {
            sqlx::query(
                "INSERT INTO run_stops (run_id, stop_id, seq, pickup_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(*stop)
            .bind(seq as i64 + 1)
            .bind(ts(*pickup))
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Runs whose slots start on `date` (JST), with their stops, by start and id.
    pub async fn runs_on(&self, date: NaiveDate) -> Result<Vec<Run>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, venue_id, starts_at, name, seats, riders FROM runs \
             WHERE starts_at >= $1 AND starts_at < $2 ORDER BY starts_at, venue_id, id",
        )
        .bind(ts(jst_midnight(date)))
        .bind(ts(jst_midnight(date + Duration::days(1))))
        .fetch_all(&self.read)
        .await?;
        let mut runs = Vec::new();
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let stops = sqlx::query(
                "SELECT rs.stop_id, s.name, rs.seq, rs.pickup_at FROM run_stops rs \
                 JOIN stops s ON s.id = rs.stop_id WHERE rs.run_id = $1 ORDER BY rs.seq, rs.stop_id",
            )
            .bind(id)
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(|s| {
                Ok(RunStop {
                    stop_id: s.try_get("stop_id")?,
                    name: s.try_get("name")?,
                    seq: s.try_get("seq")?,
                    pickup_at: s.try_get("pickup_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
            runs.push(Run {
                id,
                venue_id: r.try_get("venue_id")?,
                starts_at: r.try_get("starts_at")?,
                name: r.try_get("name")?,
                seats: r.try_get("seats")?,
                riders: r.try_get("riders")?,
                stops,
            });
        }
        Ok(runs)
    }

    /// A driver's manifest: the run, and its riders by stop order and kana.
    pub async fn manifest(&self, run: i64) -> Result<(Run, Vec<ManifestRow>), StoreError> {
        let starts: String = sqlx::query_scalar("SELECT starts_at FROM runs WHERE id = $1")
            .bind(run)
            .fetch_optional(&self.read)
            .await?
            .ok_or(StoreError::NotFound)?;
        let date = parse_ts(&starts)
            .map(jst_date)
            .ok_or_else(|| anyhow::anyhow!("run {run} has a bad start"))?;
        let info = self
            .runs_on(date)
            .await?
            .into_iter()
            .find(|r| r.id == run)
            .ok_or(StoreError::NotFound)?;
        let rows = sqlx::query(
            "SELECT rs.seq, s.name AS stop, rs.pickup_at, p.name, p.name_kana, p.address, b.dose, \
             (SELECT ph.written FROM phones ph WHERE ph.resident_id = p.id ORDER BY ph.id LIMIT 1) AS phone \
             FROM rides x JOIN bookings b ON b.id = x.booking_id JOIN residents p ON p.id = b.resident_id \
             JOIN stops s ON s.id = x.stop_id \
             JOIN run_stops rs ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id \
             WHERE x.run_id = $1 AND x.status = 'booked' ORDER BY rs.seq, p.name_kana, p.id",
        )
        .bind(run)
        .fetch_all(&self.read)
        .await?;
        let out = rows
            .iter()
            .map(|r| {
                Ok(ManifestRow {
                    seq: r.try_get("seq")?,
                    stop: r.try_get("stop")?,
                    pickup_at: r.try_get("pickup_at")?,
                    name: r.try_get("name")?,
                    name_kana: r.try_get("name_kana")?,
                    phone: r.try_get::<Option<String>, _>("phone")?.unwrap_or_default(),
                    address: r.try_get("address")?,
                    dose: r.try_get("dose")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok((info, out))
    }

    /// `transport plan --date`: every live booking on `date` whose resident needs transport
    /// and has no ride gets a seat on a run to its slot's venue and time, boarding at the
    /// nearest stop serving their 町名; runs are filled, never beyond their seats, and new
    /// runs of `seats` seats are added while a slot time has fewer than `max_runs`. Riders it
    /// cannot place are listed. One transaction; `dry_run` rolls it back.
    pub async fn plan_transport(
        &self,
        date: NaiveDate,
        seats: i64,
        max_runs: usize,
        dry_run: bool,
    ) -> Result<TransportPlan, StoreError> {
        if seats < 1 {
            return Err(StoreError::Invalid { field: "seats" });
        }
        let stops = self.stops().await?;
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT b.id, b.resident_id, p.town, s.id AS slot_id, s.venue_id, s.starts_at \
             FROM bookings b JOIN residents p ON p.id = b.resident_id JOIN slots s ON s.id = b.slot_id \
             WHERE s.starts_at >= $1 AND s.starts_at < $2 AND b.status IN ('booked', 'checked_in') \
             AND p.needs_transport = 1 \
             AND NOT EXISTS (SELECT 1 FROM rides x WHERE x.booking_id = b.id AND x.status = 'booked') \
             ORDER BY s.venue_id, s.starts_at, b.id",
        )
        .bind(ts(jst_midnight(date)))
        .bind(ts(jst_midnight(date + Duration::days(1))))
        .fetch_all(tx.conn())
        .await?;
        let mut plan = TransportPlan {
            date: date.to_string(),
            dry_run,
            ..Default::default()
        };
        // (venue, starts) → [(stop, booking, resident, slot)]
        type Rider = (i64, i64, i64, i64);
        let mut groups: BTreeMap<(i64, String), Vec<Rider>> = BTreeMap::new();
        for r in &rows {
            let (booking, resident, town, slot, venue, starts): (
                i64,
                i64,
                String,
                i64,
                i64,
                String,
            ) = (
                r.try_get("id")?,
                r.try_get("resident_id")?,
                r.try_get("town")?,
                r.try_get("slot_id")?,
                r.try_get("venue_id")?,
                r.try_get("starts_at")?,
            );
            let stop = stops
                .iter()
                .filter(|s| s.towns.contains(&town))
                .filter_map(|s| s.minutes.get(&venue).map(|m| (*m, s.id)))
                .min();
            match stop {
                Some((_, stop)) => groups
                    .entry((venue, starts))
                    .or_default()
                    .push((stop, booking, resident, slot)),
                None => plan.unplaced.push(UnplacedRider {
                    booking_id: booking,
                    resident_id: resident,
                    slot_id: slot,
                    reason: "no_stop".into(),
                }),
            }
        }
        let at = now();
        for ((venue, starts), mut riders) in groups {
            riders.sort();
            let starts_t = parse_ts(&starts).ok_or_else(|| anyhow::anyhow!("bad slot start"))?;
            let sql = format!(
                "SELECT id FROM runs WHERE venue_id = $1 AND starts_at = $2 ORDER BY id{}",
                tx.for_update()
            );
            let mut runs: Vec<i64> = sqlx::query_scalar(&sql)
                .bind(venue)
                .bind(starts.clone())
                .fetch_all(tx.conn())
                .await?;
            for (stop, booking, resident, slot) in riders {
                let mut placed = None;
                for run in &runs {
                    if add_ride(&mut tx, booking, *run, stop, &at).await? {
                        placed = Some(*run);
                        break;
                    }
                }
                if placed.is_none() && runs.len() < max_runs {
                    let name = format!(
                        "{} 便{}",
                        jst_time(starts_t).format("%H:%M"),
                        runs.len() + 1
                    );
                    let run = insert_run_in(&mut tx, venue, starts_t, &name, seats).await?;
                    plan.runs_created.push(run);
                    runs.push(run);
                    if add_ride(&mut tx, booking, run, stop, &at).await? {
                        placed = Some(run);
                    }
                }
                match placed {
                    Some(run) => {
                        let pickup: String = sqlx::query_scalar(
                            "SELECT pickup_at FROM run_stops WHERE run_id = $1 AND stop_id = $2",
                        )
                        .bind(run)
                        .bind(stop)
                        .fetch_one(tx.conn())
                        .await?;
                        plan.placed.push(PlacedRider {
                            booking_id: booking,
                            resident_id: resident,
                            run_id: run,
                            stop_id: stop,
                            pickup_at: pickup,
                        });
                    }
                    None => plan.unplaced.push(UnplacedRider {
                        booking_id: booking,
                        resident_id: resident,
                        slot_id: slot,
                        reason: "no_seat".into(),
                    }),
                }
            }
        }
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
            self.refresh_statistics(&["rides", "runs", "run_stops"])
                .await?;
        }
        Ok(plan)
    }

    /// Residents who want a dose and need the bus, per (地区, 町名): how many.
    pub async fn transport_demand(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT district, town, COUNT(*) AS n FROM residents \
             WHERE intent = 'wants' AND needs_transport = 1 GROUP BY district, town \
             ORDER BY district, town",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("district")?, r.try_get("town")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Runs carrying more riders than seats (none, whatever the load), and runs whose counter
    /// differs from their live rides: `(run, riders, live)`.
    pub async fn run_count_mismatches(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.riders, r.seats, (SELECT COUNT(*) FROM rides x WHERE x.run_id = r.id \
             AND x.status = 'booked') AS live FROM runs r ORDER BY r.id",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let (id, riders, seats, live): (i64, i64, i64, i64) = (
                r.try_get("id")?,
                r.try_get("riders")?,
                r.try_get("seats")?,
                r.try_get("live")?,
            );
            if riders != live || riders > seats {
                out.push((id, riders, live));
            }
        }
        Ok(out)
    }
}

pub(crate) async fn insert_run_in(
    tx: &mut WriteTx,
    venue: i64,
    starts_at: DateTime<Utc>,
    name: &str,
    seats: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO runs (venue_id, starts_at, name, seats, riders, created_at) \
         VALUES ($1, $2, $3, $4, 0, $5) RETURNING id",
    )
    .bind(venue)
    .bind(ts(starts_at))
    .bind(name.to_string())
    .bind(seats)
    .bind(now())
    .fetch_one(tx.conn())
    .await?)
}

/// A manifest as CSV for Excel (UTF-8 with BOM): stop order, stop, pickup time (JST), name,
/// kana, phone, address, dose.
pub fn manifest_csv(run: &Run, rows: &[ManifestRow]) -> String {
    let mut out = String::from("\u{feff}");
    let date = parse_ts(&run.starts_at)
        .map(jst_date)
        .map(|d| d.to_string())
        .unwrap_or_default();
    let time = parse_ts(&run.starts_at)
        .map(jst_time)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    out.push_str(&format!(
        "# {} {} {} 座席{}/{}\r\n",
        run.name, date, time, run.riders, run.seats
    ));
    out.push_str("順,乗車場所,乗車時刻,氏名,フリガナ,電話番号,住所,接種回\r\n");
    for r in rows {
        let pickup = parse_ts(&r.pickup_at)
            .map(jst_time)
            .map(|t| t.format("%H:%M").to_string())
            .unwrap_or_default();
        let fields = [
            r.seq.to_string(),
            r.stop.clone(),
            pickup,
            r.name.clone(),
            r.name_kana.clone(),
            r.phone.clone(),
            r.address.clone(),
            r.dose.to_string(),
        ];
        out.push_str(
            &fields
                .iter()
                .map(|f| csv_field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    out
}

/// One CSV field, quoted when it must be (and never starting a formula in Excel).
pub fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@'])
        && !s.chars().all(|c| c.is_ascii_digit() || c == '-')
    {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
