//! 待機リスト: residents who asked for an earlier date, on standby at a venue. When open vials
//! hold more doses than residents still expected today, venue staff call them (nearest first:
//! residents of the venue's own 地区 before the others, then by the date they asked for) and
//! book them into today's slot through the ordinary booking path: a live booking of the dose
//! moves ([`Store::move_booking_with`]), else a new one is made ([`Store::book`]). The entry is
//! then closed, naming the booking; entries are never deleted.

use super::bookings::{lock_live_dose, MoveOptions, Refusal};
use super::tx::WriteTx;
use super::vaccinations::Actor;
use super::{now, Store, StoreError};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// A standby entry as the venue screen lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StandbyRow {
    pub id: i64,
    pub resident_id: i64,
    pub venue_id: i64,
    pub dose: i64,
    /// The earliest date the resident asked for (YYYY-MM-DD).
    pub asked_on: String,
    pub phone: String,
    pub note: String,
    pub name: String,
    pub name_kana: String,
    pub district: String,
    /// Lives in one of the venue's 地区 (listed first).
    pub nearby: bool,
    /// When the resident's live booking of the dose starts now, if they have one.
    pub booked_at: Option<String>,
    pub created_at: String,
    pub closed_at: Option<String>,
    pub closed_reason: String,
    pub booking_id: Option<i64>,
}

const STANDBY_SELECT: &str = "SELECT s.id, s.resident_id, s.venue_id, s.dose, s.asked_on, \
    s.phone, s.note, s.created_at, s.closed_at, s.closed_reason, s.booking_id, r.name, \
    r.name_kana, r.district, v.districts, \
    (SELECT MIN(sl.starts_at) FROM bookings b JOIN slots sl ON sl.id = b.slot_id \
      WHERE b.resident_id = s.resident_id AND b.dose = s.dose \
      AND b.status IN ('booked', 'checked_in')) AS booked_at \
    FROM standby s JOIN residents r ON r.id = s.resident_id JOIN venues v ON v.id = s.venue_id";

fn standby_from_row(r: &sqlx::any::AnyRow) -> Result<StandbyRow, sqlx::Error> {
    let district: String = r.try_get("district")?;
    let districts: String = r.try_get("districts")?;
    let nearby = !district.is_empty()
        && districts
            .split(',')
            .map(str::trim)
            .any(|d| d == district.as_str());
    Ok(StandbyRow {
        id: r.try_get("id")?,
        resident_id: r.try_get("resident_id")?,
        venue_id: r.try_get("venue_id")?,
        dose: r.try_get("dose")?,
        asked_on: r.try_get("asked_on")?,
        phone: r.try_get("phone")?,
        note: r.try_get("note")?,
        name: r.try_get("name")?,
        name_kana: r.try_get("name_kana")?,
        district,
        nearby,
        booked_at: r.try_get("booked_at")?,
        created_at: r.try_get("created_at")?,
        closed_at: r.try_get("closed_at")?,
        closed_reason: r.try_get("closed_reason")?,
        booking_id: r.try_get("booking_id")?,
    })
}

/// Why a standby entry could not be made, taken or removed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StandbyRefusal {
    #[error("the resident is already on standby at this venue (entry {0})")]
    AlreadyOnStandby(i64),
    #[error("the resident has had every dose a booking can be made for")]
    NoDoseToBook,
    #[error("standby entry {0} was already taken or removed")]
    Closed(i64),
    #[error("{}", .0.message)]
    Booking(Refusal),
}

impl StandbyRefusal {
    /// A stable code for the 409's `reason`.
    pub fn code(&self) -> &str {
        match self {
            StandbyRefusal::AlreadyOnStandby(_) => "already_on_standby",
            StandbyRefusal::NoDoseToBook => "no_dose_to_book",
            StandbyRefusal::Closed(_) => "closed",
            StandbyRefusal::Booking(r) => &r.reason,
        }
    }
}

impl Store {
    /// Puts a resident on standby at a venue from `asked_on`; the dose is that of their
    /// earliest live booking, else the next after their current vaccinations. `phone`
    /// defaults to the resident's first number. Audited.
    pub async fn add_standby(
        &self,
        resident_id: i64,
        venue_id: i64,
        asked_on: NaiveDate,
        phone: Option<&str>,
        note: &str,
        actor: Actor<'_>,
    ) -> Result<Result<StandbyRow, StandbyRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT id FROM residents WHERE id = $1{}", tx.for_update());
        if sqlx::query(&sql)
            .bind(resident_id)
            .fetch_optional(tx.conn())
            .await?
            .is_none()
        {
            return Err(StoreError::Invalid {
                field: "resident_id",
            });
        }
        let venue: Option<i64> = sqlx::query_scalar("SELECT id FROM venues WHERE id = $1")
            .bind(venue_id)
            .fetch_optional(tx.conn())
            .await?;
        if venue.is_none() {
            return Err(StoreError::Invalid { field: "venue_id" });
        }
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM standby WHERE resident_id = $1 AND venue_id = $2 \
             AND closed_at IS NULL",
        )
        .bind(resident_id)
        .bind(venue_id)
        .fetch_optional(tx.conn())
        .await?;
        if let Some(id) = open {
            return Ok(Err(StandbyRefusal::AlreadyOnStandby(id)));
        }
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(dose) FROM bookings WHERE resident_id = $1 \
             AND status IN ('booked', 'checked_in')",
        )
        .bind(resident_id)
        .fetch_one(tx.conn())
        .await?;
        let given: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(dose) FROM vaccinations WHERE resident_id = $1 \
             AND superseded_at IS NULL",
        )
        .bind(resident_id)
        .fetch_one(tx.conn())
        .await?;
        let dose = live.unwrap_or(given.unwrap_or(0) + 1);
        if !(1..=2).contains(&dose) {
            return Ok(Err(StandbyRefusal::NoDoseToBook));
        }
        let phone = match phone.map(str::trim).filter(|p| !p.is_empty()) {
            Some(p) => p.to_string(),
            None => sqlx::query_scalar::<_, String>(
                "SELECT written FROM phones WHERE resident_id = $1 ORDER BY id LIMIT 1",
            )
            .bind(resident_id)
            .fetch_optional(tx.conn())
            .await?
            .unwrap_or_default(),
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO standby (resident_id, venue_id, dose, asked_on, phone, note, \
             created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(resident_id)
        .bind(venue_id)
        .bind(dose)
        .bind(asked_on.format("%Y-%m-%d").to_string())
        .bind(phone)
        .bind(note.to_string())
        .bind(now())
        .bind(actor.user_id)
        .fetch_one(tx.conn())
        .await?;
        Store::audit_in(
            &mut tx,
            actor.user_id,
            "standby_add",
            Some(resident_id),
            &format!("standby {id} at venue {venue_id} for dose {dose} from {asked_on}"),
            actor.remote_addr,
        )
        .await?;
        let row = sqlx::query(&format!("{STANDBY_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_one(tx.conn())
            .await?;
        let row = standby_from_row(&row)?;
        tx.commit().await?;
        Ok(Ok(row))
    }

    /// A venue's open standby entries that can come on `day` (asked for it or earlier):
    /// residents of the venue's 地区 first, then by the date asked, then first come.
    pub async fn standby_list(
        &self,
        venue_id: i64,
        day: NaiveDate,
    ) -> Result<Vec<StandbyRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{STANDBY_SELECT} WHERE s.venue_id = $1 AND s.closed_at IS NULL AND s.asked_on <= $2 \
             ORDER BY s.asked_on, s.id"
        ))
        .bind(venue_id)
        .bind(day.format("%Y-%m-%d").to_string())
        .fetch_all(&self.read)
        .await?;
        let mut list = rows
            .iter()
            .map(standby_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        // Stable: the date order holds within each group.
        list.sort_by_key(|s| !s.nearby);
        Ok(list)
    }

    /// One standby entry.
    pub async fn standby_entry(&self, id: i64) -> Result<Option<StandbyRow>, StoreError> {
        let row = sqlx::query(&format!("{STANDBY_SELECT} WHERE s.id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(standby_from_row).transpose()?)
    }

    /// Takes a resident from standby into `slot_id`: their live booking of the dose moves
    /// there (the move's rules, seat count and ride), or a new booking is made; the entry is
    /// closed with the booking. One transaction: a refusal or a crash leaves the resident on
    /// the list with their booking as it was. Audited.
    pub async fn take_standby(
        &self,
        id: i64,
        slot_id: i64,
        actor: Actor<'_>,
    ) -> Result<Result<StandbyRow, StandbyRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let entry = match open_entry(&mut tx, id).await? {
            Ok(entry) => entry,
            Err(refused) => return Ok(Err(refused)),
        };
        let live = lock_live_dose(&mut tx, entry.resident_id, entry.dose).await?;
        let booking_id = match live {
            Some(booking) => {
                let opts = MoveOptions { release_ride: true };
                match self.move_in(&mut tx, &booking, slot_id, opts).await? {
                    Ok(_) => booking.id,
                    Err(r) => return Ok(Err(StandbyRefusal::Booking(r))),
                }
            }
            None => match self
                .book_in(&mut tx, entry.resident_id, entry.dose, slot_id)
                .await?
            {
                Ok(b) => b,
                Err(r) => return Ok(Err(StandbyRefusal::Booking(r))),
            },
        };
        let row = close_in(
            &mut tx,
            id,
            entry.resident_id,
            "taken",
            Some(booking_id),
            actor,
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(row))
    }

    /// Removes an entry from the list with a reason (the resident no longer wants it).
    pub async fn remove_standby(
        &self,
        id: i64,
        reason: &str,
        actor: Actor<'_>,
    ) -> Result<Result<StandbyRow, StandbyRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let entry = match open_entry(&mut tx, id).await? {
            Ok(entry) => entry,
            Err(refused) => return Ok(Err(refused)),
        };
        let row = close_in(&mut tx, id, entry.resident_id, reason, None, actor).await?;
        tx.commit().await?;
        Ok(Ok(row))
    }
}

/// The entry's resident and dose, locked; refused when it is already closed.
struct OpenEntry {
    resident_id: i64,
    dose: i64,
}

async fn open_entry(
    tx: &mut WriteTx,
    id: i64,
) -> Result<Result<OpenEntry, StandbyRefusal>, StoreError> {
    let sql = format!(
        "SELECT resident_id, dose, closed_at FROM standby WHERE id = $1{}",
        tx.for_update()
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
    if row.try_get::<Option<String>, _>("closed_at")?.is_some() {
        return Ok(Err(StandbyRefusal::Closed(id)));
    }
    Ok(Ok(OpenEntry {
        resident_id: row.try_get("resident_id")?,
        dose: row.try_get("dose")?,
    }))
}

/// Closes an open entry (taken with its booking, or removed with a reason), audited, on the
/// caller's transaction; the entry as it now is.
async fn close_in(
    tx: &mut WriteTx,
    id: i64,
    resident_id: i64,
    reason: &str,
    booking_id: Option<i64>,
    actor: Actor<'_>,
) -> Result<StandbyRow, StoreError> {
    sqlx::query(
        "UPDATE standby SET closed_at = $1, closed_by = $2, closed_reason = $3, \
         booking_id = $4 WHERE id = $5",
    )
    .bind(now())
    .bind(actor.user_id)
    .bind(reason.to_string())
    .bind(booking_id)
    .bind(id)
    .execute(tx.conn())
    .await?;
    let detail = match booking_id {
        Some(b) => format!("standby {id} taken: booking {b}"),
        None => format!("standby {id} removed: {reason}"),
    };
    Store::audit_in(
        tx,
        actor.user_id,
        "standby_close",
        Some(resident_id),
        &detail,
        actor.remote_addr,
    )
    .await?;
    let row = sqlx::query(&format!("{STANDBY_SELECT} WHERE s.id = $1"))
        .bind(id)
        .fetch_one(tx.conn())
        .await?;
    Ok(standby_from_row(&row)?)
}
