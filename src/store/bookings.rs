//! 会場・コマ・予約: venues, their slots, and residents' bookings; and the one change an agent
//! makes to them on the phone, [`Store::move_booking`].
//!
//! Every rule is decided inside one [`WriteTx`], on the rows it changes:
//! - a seat is taken by `UPDATE slots SET booked = booked + 1 WHERE id = $1 AND booked <
//!   capacity AND closed = 0`; zero rows changed means the slot is full (or closed), and the
//!   transaction is rolled back, so nothing changes;
//! - moving dose 1 moves dose 2 with it, to the same venue and time of day at the product's
//!   standard interval (or the nearest legal day with a seat); with no such slot the whole move
//!   is refused;
//! - dose 2 keeps dose 1's product and its minimum interval ([`crate::domain::vaccine`]).
//!
//! Deadlocks (PostgreSQL) are avoided where they can be — the two slots of a dose are changed
//! in id order — and retried where they cannot (dose 2's slots), since a deadlock victim has
//! changed nothing.

pub mod assign;
pub mod notices;
pub mod reshuffle;
pub mod templates;
pub mod transport;

use super::{now, parse_ts, ts, Store, StoreError, WriteTx};
use crate::domain::vaccine::{
    check_age, check_next_dose, dose2_window, jst_date, jst_midnight, jst_time, DoseRuleError,
};
use crate::domain::{BookingStatus, Product};
use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// 会場.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Venue {
    pub id: i64,
    pub name: String,
    pub address: String,
    /// 地区 served.
    pub districts: Vec<String>,
}

/// コマ, as the screens and `slot_update` messages show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Slot {
    pub id: i64,
    pub venue_id: i64,
    pub starts_at: String,
    pub ends_at: String,
    pub product: String,
    pub capacity: i64,
    pub booked: i64,
    pub closed: bool,
    /// Seats held back for the call center: the city's assignment leaves them free.
    #[serde(default)]
    pub held: i64,
}

/// A slot to create.
#[derive(Debug, Clone)]
pub struct NewSlot {
    pub venue_id: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub product: Product,
    pub capacity: i64,
}

/// A resident's booking, as the record and the screen pop carry it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BookingRow {
    pub id: i64,
    pub dose: i64,
    pub slot_id: i64,
    pub venue_id: i64,
    pub venue_name: String,
    pub starts_at: String,
    pub product: String,
    pub status: String,
    /// Its live ride (送迎), when it has one: the stop and the pickup time; `null` when none.
    #[serde(default)]
    pub ride: Option<BookingRide>,
}

/// A booking's ride as the record shows it beside the booking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BookingRide {
    pub run_id: i64,
    pub stop_name: String,
    /// When the bus calls at the stop (RFC 3339 UTC).
    pub pickup_at: Option<String>,
}

/// A live booking in a slot (`GET /api/bookings?slot_id=`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SlotBooking {
    pub id: i64,
    pub resident_id: i64,
    pub dose: i64,
}

/// Why a booking or a move was refused: a stable `reason` code and a sentence an agent can read
/// to the caller. Nothing was changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Refusal {
    pub reason: String,
    pub message: String,
}

impl Refusal {
    pub(super) fn new(reason: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    fn rule(e: DoseRuleError) -> Refusal {
        Refusal::new(
            e.code(),
            format!("{}; nothing was changed.", capitalise(&e)),
        )
    }
}

fn capitalise(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// What a move did: the bookings as they are now (dose 1, and dose 2 when it followed) and the
/// slots whose seat counts changed; or why nothing was done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MoveOutcome {
    Moved {
        bookings: Vec<BookingRow>,
        slots: Vec<Slot>,
        /// Rides (送迎) that followed the move or were released by it.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rides: Vec<transport::RideChange>,
    },
    Refused(Refusal),
}

/// How a move treats the booking's bus ride.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveOptions {
    /// The resident will come without the bus: release the ride instead of requiring a seat
    /// on a run that serves the new slot.
    pub release_ride: bool,
}

/// A move's answer, and whether it is the stored answer to an earlier request with the same
/// idempotency key (then nothing was done this time).
#[derive(Debug, Clone, PartialEq)]
pub struct MoveAnswer {
    pub outcome: MoveOutcome,
    pub replayed: bool,
}

/// The constraint a full slot is reported as: the rule the conditional UPDATE upholds.
pub const SLOT_FULL: &str = "slots_booked_within_capacity";

/// How far past the standard interval dose 2 is looked for when dose 1 moves.
pub const DOSE2_SEARCH_DAYS: i64 = 42;

pub(super) const SLOT_COLUMNS: &str =
    "id, venue_id, starts_at, ends_at, product, capacity, booked, closed, held";

pub(super) fn slot_from_row(row: &AnyRow) -> Result<Slot, sqlx::Error> {
    slot_from_row_as(row, "")
}

/// A slot whose [`SLOT_COLUMNS`] the query named with `prefix` (`t_id`, `t_venue_id`, …).
pub(super) fn slot_from_row_as(row: &AnyRow, prefix: &str) -> Result<Slot, sqlx::Error> {
    let col = |name: &'static str| -> std::borrow::Cow<'static, str> {
        if prefix.is_empty() {
            name.into()
        } else {
            format!("{prefix}{name}").into()
        }
    };
    Ok(Slot {
        id: row.try_get(&*col("id"))?,
        venue_id: row.try_get(&*col("venue_id"))?,
        starts_at: row.try_get(&*col("starts_at"))?,
        ends_at: row.try_get(&*col("ends_at"))?,
        product: row.try_get(&*col("product"))?,
        capacity: row.try_get(&*col("capacity"))?,
        booked: row.try_get(&*col("booked"))?,
        closed: row.try_get::<i64, _>(&*col("closed"))? != 0,
        held: row.try_get(&*col("held"))?,
    })
}

pub(super) const BOOKING_SELECT: &str =
    "SELECT b.id, b.dose, b.slot_id, s.venue_id, v.name AS venue_name, \
    s.starts_at, s.product, b.status, x.run_id AS ride_run, st.name AS ride_stop, \
    rs.pickup_at AS ride_pickup FROM bookings b JOIN slots s ON s.id = b.slot_id \
    JOIN venues v ON v.id = s.venue_id \
    LEFT JOIN rides x ON x.booking_id = b.id AND x.status = 'booked' \
    LEFT JOIN stops st ON st.id = x.stop_id \
    LEFT JOIN run_stops rs ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id";

pub(super) fn booking_from_row(row: &AnyRow) -> Result<BookingRow, sqlx::Error> {
    Ok(BookingRow {
        id: row.try_get("id")?,
        dose: row.try_get("dose")?,
        slot_id: row.try_get("slot_id")?,
        venue_id: row.try_get("venue_id")?,
        venue_name: row.try_get("venue_name")?,
        starts_at: row.try_get("starts_at")?,
        product: row.try_get("product")?,
        status: row.try_get("status")?,
        ride: match row.try_get::<Option<i64>, _>("ride_run").ok().flatten() {
            Some(run_id) => Some(BookingRide {
                run_id,
                stop_name: row
                    .try_get::<Option<String>, _>("ride_stop")?
                    .unwrap_or_default(),
                pickup_at: row.try_get("ride_pickup")?,
            }),
            None => None,
        },
    })
}

/// A slot's product and JST day and time, parsed from its stored row.
pub(super) struct SlotFacts {
    pub(super) slot: Slot,
    pub(super) product: Product,
    pub(super) starts: DateTime<Utc>,
}

impl SlotFacts {
    pub(super) fn of(slot: Slot) -> Result<SlotFacts, StoreError> {
        let product = Product::parse(&slot.product)
            .with_context(|| format!("slot {} has product {:?}", slot.id, slot.product))?;
        let starts = parse_ts(&slot.starts_at)
            .with_context(|| format!("slot {} starts at {:?}", slot.id, slot.starts_at))?;
        Ok(SlotFacts {
            slot,
            product,
            starts,
        })
    }
    pub(super) fn date(&self) -> NaiveDate {
        jst_date(self.starts)
    }
}

/// The booking being moved, locked for the transaction.
pub(super) struct LockedBooking {
    pub(super) id: i64,
    pub(super) resident_id: i64,
    pub(super) dose: i64,
    pub(super) slot_id: i64,
    pub(super) status: String,
    /// It has a live ride (送迎): only then is the ride looked at.
    pub(super) has_ride: bool,
    /// The booking as it was when locked (for the change's note).
    pub(super) row: BookingRow,
}

/// The locking read of bookings: the row with its slot and venue (only the booking's row is
/// locked on PostgreSQL) and whether it has a live ride.
fn lock_sql(tx: &WriteTx, filter: &str) -> String {
    format!(
        "SELECT b.id, b.resident_id, b.dose, b.slot_id, b.status, s.venue_id, \
         v.name AS venue_name, s.starts_at, s.product, \
         (SELECT COUNT(*) FROM rides x WHERE x.booking_id = b.id AND x.status = 'booked') \
         AS rides FROM bookings b JOIN slots s ON s.id = b.slot_id \
         JOIN venues v ON v.id = s.venue_id WHERE {filter}{}",
        tx.for_update_of("b")
    )
}

pub(super) fn locked_from_row(row: &AnyRow) -> Result<LockedBooking, sqlx::Error> {
    let booking = booking_from_row(row)?;
    Ok(LockedBooking {
        id: booking.id,
        resident_id: row.try_get("resident_id")?,
        dose: booking.dose,
        slot_id: booking.slot_id,
        status: booking.status.clone(),
        has_ride: row.try_get::<i64, _>("rides")? > 0,
        row: booking,
    })
}

pub(super) async fn lock_booking(
    tx: &mut WriteTx,
    booking_id: i64,
) -> Result<Option<LockedBooking>, StoreError> {
    let row = sqlx::query(&lock_sql(tx, "b.id = $1"))
        .bind(booking_id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(row.as_ref().map(locked_from_row).transpose()?)
}

/// The live booking of a resident's dose, locked.
pub(super) async fn lock_live_dose(
    tx: &mut WriteTx,
    resident_id: i64,
    dose: i64,
) -> Result<Option<LockedBooking>, StoreError> {
    let sql = lock_sql(
        tx,
        "b.resident_id = $1 AND b.dose = $2 AND b.status IN ('booked', 'checked_in')",
    );
    let row = sqlx::query(&sql)
        .bind(resident_id)
        .bind(dose)
        .fetch_optional(tx.conn())
        .await?;
    Ok(row.as_ref().map(locked_from_row).transpose()?)
}

pub(super) async fn slot_in(tx: &mut WriteTx, slot_id: i64) -> Result<Option<Slot>, StoreError> {
    let row = sqlx::query(&format!("SELECT {SLOT_COLUMNS} FROM slots WHERE id = $1"))
        .bind(slot_id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(row.as_ref().map(slot_from_row).transpose()?)
}

/// Takes one seat: the conditional UPDATE whose row count is the answer. Zero rows: the slot
/// is full or closed, reported as a conflict with [`SLOT_FULL`].
pub(super) async fn take_seat(tx: &mut WriteTx, slot_id: i64) -> Result<(), StoreError> {
    match seat_taken(tx, slot_id).await? {
        Some(_) => Ok(()),
        None => Err(StoreError::Conflict {
            constraint: SLOT_FULL.to_string(),
        }),
    }
}

/// Takes one seat in one statement and returns the slot as it now is; `None` when it is full
/// or closed (nothing changed).
pub(super) async fn seat_taken(tx: &mut WriteTx, slot_id: i64) -> Result<Option<Slot>, StoreError> {
    let row = sqlx::query(&format!(
        "UPDATE slots SET booked = booked + 1 \
         WHERE id = $1 AND booked < capacity AND closed = 0 RETURNING {SLOT_COLUMNS}"
    ))
    .bind(slot_id)
    .fetch_optional(tx.conn())
    .await?;
    Ok(row.as_ref().map(slot_from_row).transpose()?)
}

pub(super) async fn release_seat(tx: &mut WriteTx, slot_id: i64) -> Result<(), StoreError> {
    seat_released(tx, slot_id).await.map(|_| ())
}

/// Gives one seat back and returns the slot as it now is.
async fn seat_released(tx: &mut WriteTx, slot_id: i64) -> Result<Slot, StoreError> {
    let row = sqlx::query(&format!(
        "UPDATE slots SET booked = booked - 1 WHERE id = $1 RETURNING {SLOT_COLUMNS}"
    ))
    .bind(slot_id)
    .fetch_one(tx.conn())
    .await?;
    Ok(slot_from_row(&row)?)
}

/// Moves a seat from one slot to another: `Some((from, to))` as they now are, or `None` when
/// `to` is full or closed (then nothing changed).
///
/// One statement on both engines; a refusal puts the released seat back. SQLite: the
/// transaction holds the database's one write lock. PostgreSQL: the two rows are locked in id
/// order first (the CTE), so two moves in opposite directions cannot deadlock.
pub(super) async fn shift_seat(
    tx: &mut WriteTx,
    from: i64,
    to: i64,
) -> Result<Option<(Slot, Slot)>, StoreError> {
    let sql = match tx.engine() {
        super::Engine::Sqlite => format!(
            "UPDATE slots SET booked = booked + (CASE WHEN id = $2 THEN 1 ELSE -1 END) \
             WHERE id = $1 OR (id = $2 AND booked < capacity AND closed = 0) \
             RETURNING {SLOT_COLUMNS}"
        ),
        super::Engine::Postgres => format!(
            "WITH locked AS (SELECT id AS locked_id FROM slots WHERE id IN ($1, $2) \
             ORDER BY id FOR NO KEY UPDATE) \
             UPDATE slots SET booked = booked + (CASE WHEN id = $2 THEN 1 ELSE -1 END) \
             FROM locked WHERE id = locked_id \
             AND (id = $1 OR (booked < capacity AND closed = 0)) \
             RETURNING {SLOT_COLUMNS}"
        ),
    };
    let rows = sqlx::query(&sql)
        .bind(from)
        .bind(to)
        .fetch_all(tx.conn())
        .await?;
    let slots: Vec<Slot> = rows.iter().map(slot_from_row).collect::<Result<_, _>>()?;
    let find = |id: i64| slots.iter().find(|s| s.id == id).cloned();
    match (find(from), find(to)) {
        (Some(f), Some(t)) => Ok(Some((f, t))),
        (Some(_), None) => {
            sqlx::query("UPDATE slots SET booked = booked + 1 WHERE id = $1")
                .bind(from)
                .execute(tx.conn())
                .await?;
            Ok(None)
        }
        _ => Err(anyhow::anyhow!("slot {from} vanished during a move").into()),
    }
}

pub(super) async fn set_slot(
    tx: &mut WriteTx,
    booking_id: i64,
    slot_id: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE bookings SET slot_id = $1, updated_at = $2 WHERE id = $3")
        .bind(slot_id)
        .bind(now())
        .bind(booking_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub(super) async fn birth_date(
    tx: &mut WriteTx,
    resident_id: i64,
) -> Result<Option<NaiveDate>, StoreError> {
    let b: Option<String> = sqlx::query_scalar("SELECT birth_date FROM residents WHERE id = $1")
        .bind(resident_id)
        .fetch_optional(tx.conn())
        .await?;
    Ok(b.and_then(|b| NaiveDate::parse_from_str(&b, "%Y-%m-%d").ok()))
}

/// Dose 1 as dose 2 must follow it: its product and day (a live or given dose 1).
pub(super) async fn dose1_of(
    tx: &mut WriteTx,
    resident_id: i64,
) -> Result<Option<(Product, NaiveDate)>, StoreError> {
    let row = sqlx::query(
        "SELECT s.product, s.starts_at FROM bookings b JOIN slots s ON s.id = b.slot_id \
         WHERE b.resident_id = $1 AND b.dose = 1 \
         AND b.status IN ('booked', 'checked_in', 'vaccinated') ORDER BY b.id DESC LIMIT 1",
    )
    .bind(resident_id)
    .fetch_optional(tx.conn())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let product: String = row.try_get("product")?;
    let starts: String = row.try_get("starts_at")?;
    match (Product::parse(&product), parse_ts(&starts)) {
        (Some(p), Some(t)) => Ok(Some((p, jst_date(t)))),
        _ => Err(anyhow::anyhow!("dose 1 of resident {resident_id} has an unreadable slot").into()),
    }
}

/// PostgreSQL's deadlock victim (40P01) or serialization failure (40001): it changed nothing,
/// and the same transaction run again will most likely succeed.
pub(super) fn retryable(e: &StoreError) -> bool {
    let StoreError::Other(e) = e else {
        return false;
    };
    match e.downcast_ref::<sqlx::Error>() {
        Some(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

impl Store {
    pub async fn insert_venue(
        &self,
        name: &str,
        address: &str,
        districts: &[&str],
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO venues (name, address, districts, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(name.to_string())
        .bind(address.to_string())
        .bind(districts.join(","))
        .bind(now())
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn venues(&self) -> Result<Vec<Venue>, StoreError> {
        let rows = sqlx::query("SELECT id, name, address, districts FROM venues ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                let districts: String = r.try_get("districts")?;
                Ok(Venue {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    address: r.try_get("address")?,
                    districts: districts
                        .split(',')
                        .filter(|d| !d.is_empty())
                        .map(String::from)
                        .collect(),
                })
            })
            .collect()
    }

    /// Creates slots in one transaction (all or none); returns their ids in order.
    pub async fn insert_slots(&self, slots: &[NewSlot]) -> Result<Vec<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(slots.len());
        let created = now();
        for s in slots {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO slots (venue_id, starts_at, ends_at, product, capacity, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(s.venue_id)
            .bind(ts(s.starts_at))
            .bind(ts(s.ends_at))
            .bind(s.product.code())
            .bind(s.capacity)
            .bind(created.clone())
            .fetch_one(tx.conn())
            .await?;
            ids.push(id);
        }
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn slot(&self, id: i64) -> Result<Option<Slot>, StoreError> {
        let row = sqlx::query(&format!("SELECT {SLOT_COLUMNS} FROM slots WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(slot_from_row).transpose()?)
    }

    /// Slots of a venue and/or a day (JST); with neither, the coming slots from `now`. At most
    /// `limit`, by start time.
    pub async fn slots(
        &self,
        venue_id: Option<i64>,
        date: Option<NaiveDate>,
        from: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Slot>, StoreError> {
        let (start, end) = match date {
            Some(d) => (ts(jst_midnight(d)), ts(jst_midnight(d + Duration::days(1)))),
            None => (ts(from), "9999".to_string()),
        };
        let rows = sqlx::query(&format!(
            "SELECT {SLOT_COLUMNS} FROM slots WHERE starts_at >= $1 AND starts_at < $2 \
             AND ($3 = 0 OR venue_id = $3) ORDER BY starts_at, venue_id, id LIMIT $4"
        ))
        .bind(start)
        .bind(end)
        .bind(venue_id.unwrap_or(0))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(slot_from_row).collect::<Result<_, _>>()?)
    }

    /// The live bookings in a slot (booked or checked in).
    pub async fn live_bookings_in(&self, slot_id: i64) -> Result<Vec<SlotBooking>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, resident_id, dose FROM bookings \
             WHERE slot_id = $1 AND status IN ('booked', 'checked_in') ORDER BY id",
        )
        .bind(slot_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SlotBooking {
                    id: r.try_get("id")?,
                    resident_id: r.try_get("resident_id")?,
                    dose: r.try_get("dose")?,
                })
            })
            .collect()
    }

    /// A resident's bookings, every status, by dose.
    pub async fn bookings_of(&self, resident_id: i64) -> Result<Vec<BookingRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{BOOKING_SELECT} WHERE b.resident_id = $1 ORDER BY b.dose, b.id"
        ))
        .bind(resident_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(booking_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Books dose `dose` of a resident into a slot (the city's assignment): takes a seat,
    /// checks dose 2 against dose 1. `Ok(Err(refusal))` when a rule refuses it.
    pub async fn book(
        &self,
        resident_id: i64,
        dose: i64,
        slot_id: i64,
    ) -> Result<Result<i64, Refusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let booked = self.book_in(&mut tx, resident_id, dose, slot_id).await?;
        if booked.is_ok() {
            tx.commit().await?;
        }
        Ok(booked)
    }

    /// [`Store::book`] on an open transaction (the caller commits, or rolls back on a refusal).
    pub(super) async fn book_in(
        &self,
        tx: &mut WriteTx,
        resident_id: i64,
        dose: i64,
        slot_id: i64,
    ) -> Result<Result<i64, Refusal>, StoreError> {
        let slot = SlotFacts::of(
            slot_in(tx, slot_id)
                .await?
                .ok_or(StoreError::Invalid { field: "slot_id" })?,
        )?;
        if let Err(refusal) = self.rules_for(tx, resident_id, dose, &slot).await? {
            return Ok(Err(refusal));
        }
        match take_seat(tx, slot_id).await {
            Ok(()) => {}
            Err(StoreError::Conflict { constraint }) if constraint == SLOT_FULL => {
                return Ok(Err(full(&slot.slot)));
            }
            Err(e) => return Err(e),
        }
        let at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO bookings (resident_id, dose, slot_id, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'booked', $4, $4) RETURNING id",
        )
        .bind(resident_id)
        .bind(dose)
        .bind(slot_id)
        .bind(at)
        .fetch_one(tx.conn())
        .await?;
        Ok(Ok(id))
    }

    /// The rules for dose `dose` of a resident in `slot`, on this transaction's rows: the
    /// product's minimum age; for dose 2, dose 1's product and minimum interval.
    pub(super) async fn rules_for(
        &self,
        tx: &mut WriteTx,
        resident_id: i64,
        dose: i64,
        slot: &SlotFacts,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let birth = birth_date(tx, resident_id).await?;
        rules_given(tx, resident_id, birth, dose, slot).await
    }

    /// 予約変更: moves a booking to another slot, all in one write transaction; when dose 1
    /// moves, dose 2 follows (see the module doc). A retry with the same `idempotency_key`
    /// returns the first answer and changes nothing; the same key for another booking or slot
    /// is refused as invalid.
    pub async fn move_booking(
        &self,
        booking_id: i64,
        slot_id: i64,
        idempotency_key: &str,
    ) -> Result<MoveAnswer, StoreError> {
        self.move_booking_with(booking_id, slot_id, idempotency_key, MoveOptions::default())
            .await
    }

    /// [`Store::move_booking`] with options: a rider's ride follows to a run serving the new
    /// slot (refused with `no_bus_seat` when none has a seat) unless `release_ride`. The same
    /// path as an agent's move ([`Store::change_booking`]), without an audit line or inquiry.
    pub async fn move_booking_with(
        &self,
        booking_id: i64,
        slot_id: i64,
        idempotency_key: &str,
        opts: MoveOptions,
    ) -> Result<MoveAnswer, StoreError> {
        let change = super::rebook::Change::Move {
            booking_id,
            slot_id,
            release_ride: opts.release_ride,
        };
        self.change_booking_by(&change, idempotency_key, None).await
    }

    /// The move itself, on the open transaction. `Ok(Err(refusal))`: a rule refused it and the
    /// caller rolls back (to its savepoint). The seats are taken by the conditional UPDATE
    /// (one statement that also returns the slot as it now is), the bookings as they are now
    /// are built from the rows the move read, so a move is a handful of statements.
    pub(super) async fn move_in(
        &self,
        tx: &mut WriteTx,
        booking: &LockedBooking,
        slot_id: i64,
        opts: MoveOptions,
    ) -> Result<Result<MoveDone, Refusal>, StoreError> {
        let status = BookingStatus::parse(&booking.status);
        if !status.is_some_and(BookingStatus::is_live) {
            return Ok(Err(Refusal::new(
                "booking_not_live",
                format!(
                    "This booking is {} and can no longer be moved; nothing was changed.",
                    booking.status.replace('_', " ")
                ),
            )));
        }
        let target = Target::read(tx, slot_id, booking.resident_id)
            .await?
            .ok_or(StoreError::Invalid { field: "slot_id" })?;
        if slot_id == booking.slot_id {
            let bookings = if booking.has_ride {
                bookings_by_id(tx, &[booking.id]).await?
            } else {
                vec![booking.row.clone()]
            };
            return Ok(Ok(MoveDone {
                outcome: MoveOutcome::Moved {
                    bookings,
                    slots: Vec::new(),
                    rides: Vec::new(),
                },
                before: vec![booking.row.clone()],
            }));
        }
        if target.facts.slot.closed {
            return Ok(Err(closed()));
        }
        if let Err(refusal) = rules_given(
            tx,
            booking.resident_id,
            target.birth,
            booking.dose,
            &target.facts,
        )
        .await?
        {
            return Ok(Err(refusal));
        }
        // Dose 1 with a live dose 2: the product may change only with dose 2 following, which
        // the search below guarantees (it looks only at the new product's slots).
        let Some((from, to)) = shift_seat(tx, booking.slot_id, slot_id).await? else {
            return Ok(Err(full(&target.facts.slot)));
        };
        let mut slots = vec![from, to];
        let mut rides = Vec::new();
        if booking.has_ride {
            match transport::follow_ride(tx, booking.id, &target.facts.slot, opts.release_ride)
                .await?
            {
                Ok(change) => rides.extend(change),
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        let mut moves = vec![(booking.id, slot_id)];
        let mut before = vec![booking.row.clone()];
        let mut bookings = vec![target.booking_row(booking)];
        let mut riding = booking.has_ride;
        if booking.dose == 1 {
            if let Some(dose2) = lock_live_dose(tx, booking.resident_id, 2).await? {
                riding |= dose2.has_ride;
                match dose2_seat(tx, &target.facts, Some(&dose2), opts.release_ride).await? {
                    Ok(Dose2Seat::Kept(slot)) => {
                        bookings.push(row_in(&dose2.row, &slot, &target.venue_name));
                    }
                    Ok(Dose2Seat::Moved { from, to }) => {
                        if dose2.has_ride {
                            match transport::follow_ride(tx, dose2.id, &to, opts.release_ride)
                                .await?
                            {
                                Ok(change) => rides.extend(change),
                                Err(refusal) => return Ok(Err(refusal)),
                            }
                        }
                        moves.push((dose2.id, to.id));
                        bookings.push(row_in(&dose2.row, &to, &target.venue_name));
                        slots.extend([from, to]);
                    }
                    Ok(Dose2Seat::Taken(_)) => {
                        return Err(anyhow::anyhow!("dose 2 was given a second seat").into())
                    }
                    Err(refusal) => return Ok(Err(refusal)),
                }
                before.push(dose2.row.clone());
            }
        }
        // Dose 2 moved alone: rules_given held it to dose 1's product and interval; nothing
        // else moves.
        set_slots(tx, &moves).await?;
        if riding {
            // A rider's bookings carry their ride as it now is.
            let ids: Vec<i64> = bookings.iter().map(|b| b.id).collect();
            bookings = bookings_by_id(tx, &ids).await?;
        }
        slots.sort_by_key(|s| s.id);
        slots.dedup_by_key(|s| s.id);
        Ok(Ok(MoveDone {
            outcome: MoveOutcome::Moved {
                bookings,
                slots,
                rides,
            },
            before,
        }))
    }

    /// The city's assignment in bulk (the demo, a planner's run): each `(resident, dose,
    /// slot)` takes a seat by the same conditional UPDATE as a move and is skipped when its
    /// slot is full. One transaction; returns how many were booked.
    pub async fn assign_bookings(
        &self,
        assignments: &[(i64, i64, i64)],
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        let at = now();
        let mut booked = 0;
        for &(resident_id, dose, slot_id) in assignments {
            match take_seat(&mut tx, slot_id).await {
                Ok(()) => {}
                Err(StoreError::Conflict { constraint }) if constraint == SLOT_FULL => continue,
                Err(e) => return Err(e),
            }
            sqlx::query(
                "INSERT INTO bookings (resident_id, dose, slot_id, status, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'booked', $4, $4)",
            )
            .bind(resident_id)
            .bind(dose)
            .bind(slot_id)
            .bind(at.clone())
            .execute(tx.conn())
            .await?;
            booked += 1;
        }
        tx.commit().await?;
        Ok(booked)
    }

    /// Residents who want a dose (接種意向 `wants`), for the assignment: `(id, 地区, birth
    /// date)`, by id.
    pub async fn residents_wanting_a_dose(&self) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, district, birth_date FROM residents WHERE intent = 'wants' ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("district")?,
                    r.try_get("birth_date")?,
                ))
            })
            .collect()
    }

    /// Deletes the idempotency answers ([`MoveAnswer`]s kept by key) recorded before
    /// `before`: a client retries within seconds or minutes, not days, so the table keeps
    /// about a day's changes instead of growing for the whole campaign. Returns how many went.
    pub async fn prune_booking_moves(&self, before: &str) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM booking_moves WHERE created_at < $1")
                .bind(before.to_string())
                .execute(&self.write)
                .await?
                .rows_affected(),
        )
    }

    /// Slots holding more live bookings than seats: zero, whatever the load (DESIGN §2).
    pub async fn slots_over_capacity(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM slots WHERE booked > capacity")
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// How many live bookings each slot really holds against its counter: `(slot, counter,
    /// live)` for every slot where they differ (none, if the store is right).
    pub async fn slot_count_mismatches(&self) -> Result<Vec<(i64, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.booked, (SELECT COUNT(*) FROM bookings b WHERE b.slot_id = s.id \
             AND b.status IN ('booked', 'checked_in')) AS live FROM slots s ORDER BY s.id",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let (id, booked, live): (i64, i64, i64) =
                (r.try_get("id")?, r.try_get("booked")?, r.try_get("live")?);
            if booked != live {
                out.push((id, booked, live));
            }
        }
        Ok(out)
    }
}

pub(super) fn full(slot: &Slot) -> Refusal {
    Refusal::new(
        "slot_full",
        format!(
            "That time is fully booked (all {} seats are taken); nothing was changed. \
             Please offer another time.",
            slot.capacity
        ),
    )
}

/// Where dose 2 goes after dose 1 in `dose1`.
pub(super) enum Dose2Seat {
    /// The dose 2 being followed already sits in a slot that fits.
    Kept(Slot),
    /// Its seat moved (`from` and `to` as they now are); the booking row is the caller's.
    Moved { from: Slot, to: Slot },
    /// A new dose 2 (none was live) got this seat.
    Taken(Slot),
}

/// Dose 2's seat after dose 1 in `dose1`: the same venue, product and time of day, on the
/// standard interval's day or the nearest legal day with a seat — for a dose 2 that follows a
/// move (`current`) and for a new one booked after dose 1 alike. A rider's dose 2 goes only
/// where a run from their stop has a seat (unless the ride is released). `Err` when no legal
/// slot has a seat; then nothing changed.
pub(super) async fn dose2_seat(
    tx: &mut WriteTx,
    dose1: &SlotFacts,
    current: Option<&LockedBooking>,
    release_ride: bool,
) -> Result<Result<Dose2Seat, Refusal>, StoreError> {
    let window = dose2_window(dose1.date(), dose1.product);
    let time = jst_time(dose1.starts);
    let last = window.standard + Duration::days(DOSE2_SEARCH_DAYS);
    let ride_stop = match current {
        Some(c) if c.has_ride && !release_ride => transport::live_ride_stop(tx, c.id).await?,
        _ => None,
    };
    // The standard day first, which nearly always has the seat: a look at a handful of slots.
    // Only then the whole window, nearest day first, past the slots already tried.
    let mut tried = Vec::new();
    for (from, to) in [(window.standard, window.standard), (window.earliest, last)] {
        for slot in dose2_candidates(tx.conn(), dose1, current, from, to, window.standard).await? {
            if tried.contains(&slot.id) {
                continue;
            }
            tried.push(slot.id);
            if let Some(stop) = ride_stop {
                if !transport::run_has_seat(tx, &slot, stop).await? {
                    continue;
                }
            }
            match current {
                Some(c) if c.slot_id == slot.id => return Ok(Ok(Dose2Seat::Kept(slot))),
                // A candidate filled meanwhile by another transaction (PostgreSQL) is skipped;
                // the old seat is given up only with the new one taken.
                Some(c) => {
                    if let Some((from, to)) = shift_seat(tx, c.slot_id, slot.id).await? {
                        return Ok(Ok(Dose2Seat::Moved { from, to }));
                    }
                }
                None => {
                    if let Some(taken) = seat_taken(tx, slot.id).await? {
                        return Ok(Ok(Dose2Seat::Taken(taken)));
                    }
                }
            }
        }
    }
    let venue: String = sqlx::query_scalar("SELECT name FROM venues WHERE id = $1")
        .bind(dose1.slot.venue_id)
        .fetch_optional(tx.conn())
        .await?
        .unwrap_or_default();
    Ok(Err(Refusal::new(
        "no_dose2_slot",
        format!(
            "Dose 2 cannot follow: {venue} has no free {product} seat at {time} from {earliest} \
             (the standard day is {standard}); nothing was changed. Please offer another time \
             for dose 1.",
            product = dose1.product,
            time = time.format("%H:%M"),
            earliest = window.earliest,
            standard = window.standard,
        ),
    )))
}

/// The slots dose 2 may take after dose 1 in `dose1`, on the days `first..=last`: the same
/// venue, product and time of day, open, with a seat (or `current`'s own), nearest the
/// standard day first.
pub(super) async fn dose2_candidates<'e, E>(
    executor: E,
    dose1: &SlotFacts,
    current: Option<&LockedBooking>,
    first: NaiveDate,
    last: NaiveDate,
    standard: NaiveDate,
) -> Result<Vec<Slot>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    // Only slots at dose 1's time of day come back (the database compares the time in the
    // stored UTC text, `YYYY-MM-DDTHH:MM…`; Japan has no summer time, so one JST time is one
    // UTC time): six weeks of a venue's slots at every time would be a thousand rows read
    // and copied on every move.
    let rows = sqlx::query(&format!(
        "SELECT {SLOT_COLUMNS} FROM slots WHERE venue_id = $1 AND product = $2 \
         AND starts_at >= $3 AND starts_at < $4 AND substr(starts_at, 12, 5) = $6 \
         AND closed = 0 AND (booked < capacity OR id = $5) ORDER BY starts_at"
    ))
    .bind(dose1.slot.venue_id)
    .bind(dose1.product.code())
    .bind(ts(jst_midnight(first)))
    .bind(ts(jst_midnight(last + Duration::days(1))))
    .bind(current.map(|c| c.slot_id).unwrap_or(0))
    .bind(dose1.starts.format("%H:%M").to_string())
    .fetch_all(executor)
    .await?;
    let mut candidates: Vec<(i64, NaiveDate, Slot)> = Vec::with_capacity(rows.len());
    for row in &rows {
        let slot = slot_from_row(row)?;
        let Some(starts) = parse_ts(&slot.starts_at) else {
            continue;
        };
        let day = jst_date(starts);
        candidates.push(((day - standard).num_days().abs(), day, slot));
    }
    candidates.sort_by_key(|c| (c.0, c.1, c.2.id));
    Ok(candidates.into_iter().map(|c| c.2).collect())
}

/// A move's result: the outcome, and the moved bookings as they were (for the note).
pub(super) struct MoveDone {
    pub(super) outcome: MoveOutcome,
    pub(super) before: Vec<BookingRow>,
}

/// The slot a change aims at, with its venue's name and the resident's birth date, in one read.
pub(super) struct Target {
    pub(super) facts: SlotFacts,
    pub(super) venue_name: String,
    pub(super) birth: Option<NaiveDate>,
}

impl Target {
    pub(super) async fn read(
        tx: &mut WriteTx,
        slot_id: i64,
        resident_id: i64,
    ) -> Result<Option<Target>, StoreError> {
        let row = sqlx::query(
            "SELECT s.id, s.venue_id, s.starts_at, s.ends_at, s.product, s.capacity, s.booked, \
             s.closed, s.held, v.name AS venue_name, \
             (SELECT birth_date FROM residents WHERE id = $2) AS birth_date \
             FROM slots s JOIN venues v ON v.id = s.venue_id WHERE s.id = $1",
        )
        .bind(slot_id)
        .bind(resident_id)
        .fetch_optional(tx.conn())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let birth: Option<String> = row.try_get("birth_date")?;
        Ok(Some(Target {
            facts: SlotFacts::of(slot_from_row(&row)?)?,
            venue_name: row.try_get("venue_name")?,
            birth: birth.and_then(|b| NaiveDate::parse_from_str(&b, "%Y-%m-%d").ok()),
        }))
    }

    /// A booking as it is once moved into this slot.
    pub(super) fn booking_row(&self, booking: &LockedBooking) -> BookingRow {
        row_in(&booking.row, &self.facts.slot, &self.venue_name)
    }
}

/// `was` moved into `slot` (at the venue named `venue_name`).
pub(super) fn row_in(was: &BookingRow, slot: &Slot, venue_name: &str) -> BookingRow {
    BookingRow {
        slot_id: slot.id,
        venue_id: slot.venue_id,
        venue_name: venue_name.to_string(),
        starts_at: slot.starts_at.clone(),
        product: slot.product.clone(),
        ..was.clone()
    }
}

/// The refusal of a closed slot.
pub(super) fn closed() -> Refusal {
    Refusal::new(
        "slot_closed",
        "That time is closed for bookings; nothing was changed. Please offer another time.",
    )
}

/// The rules for dose `dose` in `slot` given the resident's birth date (see
/// [`Store::rules_for`]).
pub(super) async fn rules_given(
    tx: &mut WriteTx,
    resident_id: i64,
    birth: Option<NaiveDate>,
    dose: i64,
    slot: &SlotFacts,
) -> Result<Result<(), Refusal>, StoreError> {
    let birth = birth.ok_or(StoreError::Invalid {
        field: "resident_id",
    })?;
    let dose1 = if dose == 2 {
        dose1_of(tx, resident_id).await?
    } else {
        None
    };
    Ok(rules_with(birth, slot, dose1))
}

/// The rules for a dose in `slot`, given the resident's birth date and, for dose 2, dose 1's
/// product and day: the minimum age, and dose 2 after dose 1 with its product and interval.
pub(super) fn rules_with(
    birth: NaiveDate,
    slot: &SlotFacts,
    dose1: Option<(Product, NaiveDate)>,
) -> Result<(), Refusal> {
    check_age(slot.product, birth, slot.date()).map_err(Refusal::rule)?;
    if let Some((product, day)) = dose1 {
        check_next_dose(1, product, day, slot.product, slot.date()).map_err(Refusal::rule)?;
    }
    Ok(())
}

/// Points bookings at their new slots: a booking and its dose 2 in one statement (one text,
/// so the prepared statement is reused).
async fn set_slots(tx: &mut WriteTx, moves: &[(i64, i64)]) -> Result<(), StoreError> {
    match moves {
        [(a, sa), (b, sb)] => {
            sqlx::query(
                "UPDATE bookings SET slot_id = CASE WHEN id = $1 THEN $2 ELSE $4 END, \
                 updated_at = $5 WHERE id = $1 OR id = $3",
            )
            .bind(*a)
            .bind(*sa)
            .bind(*b)
            .bind(*sb)
            .bind(now())
            .execute(tx.conn())
            .await?;
            Ok(())
        }
        _ => {
            for (booking, slot) in moves {
                set_slot(tx, *booking, *slot).await?;
            }
            Ok(())
        }
    }
}

pub(super) async fn bookings_by_id(
    tx: &mut WriteTx,
    ids: &[i64],
) -> Result<Vec<BookingRow>, StoreError> {
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    // Integers we produced: inlining them keeps one query text for any count.
    let rows = sqlx::query(&format!(
        "{BOOKING_SELECT} WHERE b.id IN ({}) ORDER BY b.dose, b.id",
        list.join(",")
    ))
    .fetch_all(tx.conn())
    .await?;
    Ok(rows
        .iter()
        .map(booking_from_row)
        .collect::<Result<_, _>>()?)
}

pub(super) async fn slots_by_id(tx: &mut WriteTx, ids: &[i64]) -> Result<Vec<Slot>, StoreError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    let rows = sqlx::query(&format!(
        "SELECT {SLOT_COLUMNS} FROM slots WHERE id IN ({}) ORDER BY id",
        list.join(",")
    ))
    .fetch_all(tx.conn())
    .await?;
    Ok(rows.iter().map(slot_from_row).collect::<Result<_, _>>()?)
}

/// The stored answer to `key`, if any; the same key for another request is invalid.
pub(super) async fn stored_answer<'e, E>(
    executor: E,
    key: &str,
    booking_id: i64,
    slot_id: i64,
) -> Result<Option<MoveOutcome>, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT booking_id, slot_id, answer FROM booking_moves WHERE idempotency_key = $1",
    )
    .bind(key.to_string())
    .fetch_optional(executor)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (b, s): (i64, i64) = (row.try_get("booking_id")?, row.try_get("slot_id")?);
    if (b, s) != (booking_id, slot_id) {
        return Err(StoreError::Invalid {
            field: "Idempotency-Key",
        });
    }
    let answer: String = row.try_get("answer")?;
    Ok(Some(
        serde_json::from_str(&answer).context("reading a stored move answer")?,
    ))
}

pub(super) async fn record_answer(
    tx: &mut WriteTx,
    key: &str,
    booking_id: i64,
    slot_id: i64,
    outcome: &MoveOutcome,
) -> Result<(), StoreError> {
    let answer = serde_json::to_string(outcome).context("encoding a move's answer")?;
    sqlx::query(
        "INSERT INTO booking_moves (idempotency_key, booking_id, slot_id, answer, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(key.to_string())
    .bind(booking_id)
    .bind(slot_id)
    .bind(answer)
    .bind(now())
    .execute(tx.conn())
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{sample_residents, TestDb};

    /// 09:30 and 14:00 JST on each of `days` days from 2021-06-03 (a Thursday), `capacity`
    /// seats each, of `product`; returns slot ids by (day, 0 = 09:30 | 1 = 14:00).
    async fn calendar(
        s: &Store,
        venue: i64,
        product: Product,
        days: i64,
        capacity: i64,
    ) -> Vec<[i64; 2]> {
        let first = NaiveDate::from_ymd_opt(2021, 6, 3).unwrap();
        crate::store::testing::calendar(s, venue, product, first, days, capacity).await
    }

    async fn resident_ids(s: &Store, n: usize) -> Vec<i64> {
        s.insert_residents(&sample_residents(n)).await.unwrap();
        sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
            .fetch_all(&s.read)
            .await
            .unwrap()
    }

    fn refusal(a: &MoveAnswer) -> &Refusal {
        match &a.outcome {
            MoveOutcome::Refused(r) => r,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn day_of(b: &BookingRow) -> NaiveDate {
        jst_date(parse_ts(&b.starts_at).unwrap())
    }

    async fn doses(s: &Store, resident: i64) -> (BookingRow, BookingRow) {
        let b = s.bookings_of(resident).await.unwrap();
        assert_eq!(b.len(), 2);
        (b[0].clone(), b[1].clone())
    }

    async fn moving_dose1_moves_dose2_at_the_interval(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        let venue = s
            .insert_venue("中総合会館", "舞鶴市字浜", &["東", "中"])
            .await
            .unwrap();
        let cal = calendar(s, venue, Product::Pfizer, 70, 2).await;
        let r = resident_ids(s, 2).await;
        let d1 = s.book(r[0], 1, cal[0][0]).await.unwrap().unwrap();
        s.book(r[0], 2, cal[21][0]).await.unwrap().unwrap();

        // Dose 1 to day 3 at 14:00: dose 2 to day 24 at 14:00.
        let a = s.move_booking(d1, cal[3][1], "k1").await.unwrap();
        let MoveOutcome::Moved {
            bookings, slots, ..
        } = &a.outcome
        else {
            panic!("{engine}: {a:?}")
        };
        assert_eq!(bookings.len(), 2, "{engine}");
        assert_eq!(slots.len(), 4, "{engine}: four counts changed");
        let (one, two) = doses(s, r[0]).await;
        assert_eq!(
            (one.slot_id, two.slot_id),
            (cal[3][1], cal[24][1]),
            "{engine}"
        );
        assert_eq!((day_of(&two) - day_of(&one)).num_days(), 21);
        assert_eq!(two.product, "pfizer");

        // The standard day of a move to day 6 (day 27, 09:30) is full: the nearest legal day
        // with a seat, day 26 (a tie with day 28 goes to the sooner).
        for other in &r[1..] {
            s.book(*other, 1, cal[27][0]).await.unwrap().unwrap();
        }
        sqlx::query("UPDATE slots SET capacity = booked WHERE id = $1")
            .bind(cal[27][0])
            .execute(&s.write)
            .await
            .unwrap();
        let a = s.move_booking(d1, cal[6][0], "k2").await.unwrap();
        assert!(
            matches!(a.outcome, MoveOutcome::Moved { .. }),
            "{engine}: {a:?}"
        );
        let (one, two) = doses(s, r[0]).await;
        assert_eq!(one.slot_id, cal[6][0]);
        assert_eq!(two.slot_id, cal[26][0], "{engine}");
        assert!(
            s.slot_count_mismatches().await.unwrap().is_empty(),
            "{engine}"
        );
        db.cleanup().await;
    }

    async fn dose2_before_day_19_is_refused(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        let venue = s.insert_venue("西市民プラザ", "", &[]).await.unwrap();
        let cal = calendar(s, venue, Product::Pfizer, 30, 5).await;
        let r = resident_ids(s, 1).await;
        s.book(r[0], 1, cal[0][0]).await.unwrap().unwrap();
        let d2 = s.book(r[0], 2, cal[21][0]).await.unwrap().unwrap();
        let before = s
            .slots(Some(venue), None, chrono::DateTime::UNIX_EPOCH, 1000)
            .await
            .unwrap();

        let a = s.move_booking(d2, cal[18][0], "early").await.unwrap();
        let why = refusal(&a);
        assert_eq!(why.reason, "too_early", "{engine}");
        assert!(
            why.message.contains("2021-06-22"),
            "{engine}: {}",
            why.message
        );
        assert!(
            why.message.contains("nothing was changed"),
            "{}",
            why.message
        );
        let after = s
            .slots(Some(venue), None, chrono::DateTime::UNIX_EPOCH, 1000)
            .await
            .unwrap();
        assert_eq!(before, after, "{engine}: no count changed");
        assert_eq!(doses(s, r[0]).await.1.slot_id, cal[21][0]);

        // Booking dose 2 before day 19 is refused the same way.
        s.insert_residents(&sample_residents(2)[1..]).await.unwrap();
        let r2: i64 = sqlx::query_scalar("SELECT MAX(id) FROM residents")
            .fetch_one(&s.read)
            .await
            .unwrap();
        s.book(r2, 1, cal[0][1]).await.unwrap().unwrap();
        let refused = s.book(r2, 2, cal[10][1]).await.unwrap().unwrap_err();
        assert_eq!(refused.reason, "too_early");

        // Day 19 itself is legal.
        let a = s.move_booking(d2, cal[19][0], "day19").await.unwrap();
        assert!(
            matches!(a.outcome, MoveOutcome::Moved { .. }),
            "{engine}: {a:?}"
        );
        db.cleanup().await;
    }

    async fn dose2_never_gets_another_product(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        let venue = s.insert_venue("東体育館", "", &[]).await.unwrap();
        let pfizer = calendar(s, venue, Product::Pfizer, 30, 5).await;
        let r = resident_ids(s, 1).await;
        let d1 = s.book(r[0], 1, pfizer[0][0]).await.unwrap().unwrap();
        let d2 = s.book(r[0], 2, pfizer[21][0]).await.unwrap().unwrap();
        let other = s.insert_venue("西体育館", "", &[]).await.unwrap();
        let moderna = calendar(s, other, Product::Moderna, 40, 5).await;

        // Dose 2 alone into a Moderna slot: refused.
        let a = s.move_booking(d2, moderna[25][0], "m1").await.unwrap();
        assert_eq!(refusal(&a).reason, "different_product", "{engine}");
        // Dose 1 into Moderna: dose 2 follows into Moderna, 28 days on, never stays Pfizer.
        let a = s.move_booking(d1, moderna[2][0], "m2").await.unwrap();
        assert!(
            matches!(a.outcome, MoveOutcome::Moved { .. }),
            "{engine}: {a:?}"
        );
        let (one, two) = doses(s, r[0]).await;
        assert_eq!(
            (one.product.as_str(), two.product.as_str()),
            ("moderna", "moderna")
        );
        assert_eq!(two.slot_id, moderna[30][0], "{engine}");
        // Back to Pfizer at a day whose dose 2 would fall past the Pfizer calendar: refused,
        // with the reason, and both doses stay.
        let a = s.move_booking(d1, pfizer[29][0], "m3").await.unwrap();
        assert_eq!(refusal(&a).reason, "no_dose2_slot", "{engine}");
        assert!(
            refusal(&a).message.contains("09:30"),
            "{}",
            refusal(&a).message
        );
        assert_eq!(doses(s, r[0]).await, (one, two));
        assert!(
            s.slot_count_mismatches().await.unwrap().is_empty(),
            "{engine}"
        );
        db.cleanup().await;
    }

    async fn full_slots_and_retries_change_nothing(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        let venue = s.insert_venue("南公民館", "", &[]).await.unwrap();
        let cal = calendar(s, venue, Product::Pfizer, 2, 1).await;
        let r = resident_ids(s, 2).await;
        let a_booking = s.book(r[0], 1, cal[0][0]).await.unwrap().unwrap();
        s.book(r[1], 1, cal[1][0]).await.unwrap().unwrap();
        // One live booking per dose: a second dose 1 for the same resident is refused by the
        // partial unique index (a full slot aside).
        let err = s.book(r[0], 1, cal[0][1]).await.unwrap_err();
        assert_eq!(
            err.constraint(),
            Some("bookings_one_live_per_dose"),
            "{engine}: {err:?}"
        );
        let refused = s.book(r[0], 1, cal[1][0]).await.unwrap().unwrap_err();
        assert_eq!(refused.reason, "slot_full");

        let a = s
            .move_booking(a_booking, cal[1][0], "full-1")
            .await
            .unwrap();
        assert_eq!(refusal(&a).reason, "slot_full", "{engine}");
        assert!(!a.replayed);
        let again = s
            .move_booking(a_booking, cal[1][0], "full-1")
            .await
            .unwrap();
        assert!(again.replayed && again.outcome == a.outcome, "{engine}");
        // The same key for another request is refused.
        let err = s
            .move_booking(a_booking, cal[1][1], "full-1")
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Invalid {
                    field: "Idempotency-Key"
                }
            ),
            "{err:?}"
        );

        let ok = s.move_booking(a_booking, cal[1][1], "ok-1").await.unwrap();
        assert!(matches!(ok.outcome, MoveOutcome::Moved { .. }) && !ok.replayed);
        // A retry after the booking moved back still answers the first answer and changes
        // nothing.
        s.move_booking(a_booking, cal[0][0], "back").await.unwrap();
        let retry = s.move_booking(a_booking, cal[1][1], "ok-1").await.unwrap();
        assert!(retry.replayed && retry.outcome == ok.outcome, "{engine}");
        assert_eq!(s.bookings_of(r[0]).await.unwrap()[0].slot_id, cal[0][0]);
        let slots = s
            .slots(None, None, chrono::DateTime::UNIX_EPOCH, 100)
            .await
            .unwrap();
        assert_eq!(
            slots.iter().map(|s| s.booked).collect::<Vec<_>>(),
            vec![1, 0, 1, 0],
            "{engine}"
        );
        assert!(s.slot_count_mismatches().await.unwrap().is_empty());

        // The sweep prunes answers older than a day and keeps the newer ones.
        sqlx::query(
            "UPDATE booking_moves SET created_at = '2021-01-01T00:00:00.000Z' \
             WHERE idempotency_key = 'full-1'",
        )
        .execute(&s.write)
        .await
        .unwrap();
        let day_ago = ts(Utc::now() - Duration::days(1));
        assert_eq!(
            s.prune_booking_moves(&day_ago).await.unwrap(),
            1,
            "{engine}"
        );
        let left: Vec<String> = sqlx::query_scalar(
            "SELECT idempotency_key FROM booking_moves ORDER BY idempotency_key",
        )
        .fetch_all(&s.read)
        .await
        .unwrap();
        assert_eq!(left, vec!["back", "ok-1"], "{engine}");
        db.cleanup().await;
    }

    /// Many moves into one slot at once: exactly the free seats are taken.
    async fn concurrent_moves_never_overfill(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        let venue = s.insert_venue("北公民館", "", &[]).await.unwrap();
        let cal = calendar(s, venue, Product::Pfizer, 2, 40).await;
        let r = resident_ids(s, 40).await;
        let mut bookings = Vec::new();
        for (i, id) in r.iter().enumerate() {
            bookings.push(s.book(*id, 1, cal[i % 2][0]).await.unwrap().unwrap());
        }
        sqlx::query("UPDATE slots SET capacity = 5 WHERE id = $1")
            .bind(cal[1][1])
            .execute(&s.write)
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for (i, b) in bookings.into_iter().enumerate() {
            let s = s.clone();
            let target = cal[1][1];
            tasks.push(tokio::spawn(async move {
                s.move_booking(b, target, &format!("c{i}")).await
            }));
        }
        let mut moved = 0;
        for t in tasks {
            if matches!(t.await.unwrap().unwrap().outcome, MoveOutcome::Moved { .. }) {
                moved += 1;
            }
        }
        assert_eq!(moved, 5, "{engine}");
        assert_eq!(s.slot(cal[1][1]).await.unwrap().unwrap().booked, 5);
        assert!(
            s.slot_count_mismatches().await.unwrap().is_empty(),
            "{engine}"
        );
        db.cleanup().await;
    }

    /// Many dose-1 moves at once, each between slots of its own, whose dose 2 must all follow
    /// into the same few seats: each dose 2 lands in a legal slot, none over capacity, every
    /// counter equal to its bookings (on PostgreSQL a first choice fills under the others,
    /// who go on to the next).
    async fn concurrent_followers_share_dose2_seats(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let s = &db.store;
        let venue = s.insert_venue("共楽公園会場", "", &[]).await.unwrap();
        let cal = calendar(s, venue, Product::Pfizer, 45, 40).await;
        let r = resident_ids(s, 10).await;
        let mut firsts = Vec::new();
        for (i, id) in r.iter().enumerate() {
            firsts.push(s.book(*id, 1, cal[i][0]).await.unwrap().unwrap());
            s.book(*id, 2, cal[i + 21][0]).await.unwrap().unwrap();
        }
        // Days 19–40 full at 09:30 (but for the seats the movers' old dose 2 give up); days
        // 41–44 have three seats each.
        for (day, slots) in cal.iter().enumerate().skip(19) {
            let sql = if day <= 40 {
                "UPDATE slots SET capacity = booked WHERE id = $1"
            } else {
                "UPDATE slots SET capacity = 3 WHERE id = $1"
            };
            sqlx::query(sql)
                .bind(slots[0])
                .execute(&s.write)
                .await
                .unwrap();
        }
        let mut tasks = Vec::new();
        for (i, b) in firsts.into_iter().enumerate() {
            let (s, target) = (s.clone(), cal[i + 8][0]);
            tasks.push(tokio::spawn(async move {
                s.move_booking(b, target, &format!("f{i}")).await
            }));
        }
        for t in tasks {
            let a = t.await.unwrap().unwrap();
            assert!(
                matches!(a.outcome, MoveOutcome::Moved { .. }),
                "{engine}: {a:?}"
            );
        }
        for (i, id) in r.iter().enumerate() {
            let (one, two) = doses(s, *id).await;
            assert_eq!(one.slot_id, cal[i + 8][0]);
            assert!(
                day_of(&two) >= day_of(&one) + Duration::days(19),
                "{engine}"
            );
            assert_eq!(
                jst_time(parse_ts(&two.starts_at).unwrap()).to_string(),
                "09:30:00"
            );
        }
        assert_eq!(s.slots_over_capacity().await.unwrap(), 0, "{engine}");
        let mismatches = s.slot_count_mismatches().await.unwrap();
        assert!(mismatches.is_empty(), "{engine}: {mismatches:?}");
        db.cleanup().await;
    }

    crate::on_each_engine!(
        concurrent_followers_share_dose2_seats,
        moving_dose1_moves_dose2_at_the_interval,
        dose2_before_day_19_is_refused,
        dose2_never_gets_another_product,
        full_slots_and_retries_change_nothing,
        concurrent_moves_never_overfill,
    );
}
