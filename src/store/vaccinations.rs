//! 接種記録: recording a dose at a venue, and correcting a record.
//!
//! Every rule is decided inside one [`WriteTx`], on the rows as that transaction sees them:
//! - the resident's row is locked first (`FOR UPDATE` on PostgreSQL; SQLite's one writer holds
//!   the whole database), so two screens recording a dose of the same resident at once decide
//!   one after the other, and the second sees the first's record and is refused;
//! - the dose rules of [`crate::domain::dose`]: the same dose twice, dose N+1 without dose N
//!   or before the product's minimum interval, dose 2 of another product than dose 1, a
//!   resident younger than the product's minimum age;
//! - the lot: a vial of it opened at this venue on the day of the dose, at or before the dose,
//!   not discarded, within its 6 hours, with a dose left; the vials of the lot are locked
//!   before their doses are counted, so a vial never gives more doses than it holds;
//! - the partial UNIQUE index `vaccinations_one_per_dose` is the last line: whatever reaches
//!   the database, one current record per resident and dose.
//!
//! A record is never edited: a correction inserts a new record naming the one it corrects
//! and sets the old one's `superseded_at` (once), both audited, in one transaction.

use super::bookings::Refusal;
use super::{now, parse_ts, ts, Store, StoreError, WriteTx};
use crate::domain::dose::{check_dose, DoseRefusal, GivenDose, InjectionSite, LotNo, VIAL_HOURS};
use crate::domain::vaccine::{jst_date, jst_midnight, jst_time};
use crate::domain::Product;
use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The constraint that keeps one current record per resident and dose.
pub const ONE_PER_DOSE: &str = "vaccinations_one_per_dose";
/// The constraint that lets a record be corrected once.
pub const CORRECTED_ONCE: &str = "vaccinations_corrected_once";

/// A dose to record (or the corrected values of one).
#[derive(Debug, Clone)]
pub struct NewVaccination {
    pub resident_id: i64,
    pub dose: u8,
    pub product: Product,
    pub lot: LotNo,
    pub vaccinator: String,
    pub injection_site: InjectionSite,
    pub given_at: DateTime<Utc>,
    /// The venue; when `None`, the venue of the resident's live booking for this dose.
    pub venue_id: Option<i64>,
}

/// A vaccination record, as the screens, the resident's record and the exports read it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VaccinationRow {
    pub id: i64,
    pub resident_id: i64,
    pub dose: i64,
    pub product: String,
    pub lot: String,
    pub vial_id: Option<i64>,
    pub venue_id: i64,
    pub venue_name: String,
    pub vaccinator: String,
    pub injection_site: String,
    pub given_at: String,
    pub given_on: String,
    pub municipality_code: String,
    pub ticket_no: String,
    pub recorded_at: String,
    pub recorded_by: Option<i64>,
    pub corrects_id: Option<i64>,
    pub correction_reason: String,
    /// Set when a correction replaced this record; such a record no longer counts.
    pub superseded_at: Option<String>,
    pub export_batch_id: Option<i64>,
}

/// The columns of a [`VaccinationRow`], from `vaccinations x JOIN venues v`.
pub(crate) const VACCINATION_COLUMNS: &str = "x.id, x.resident_id, x.dose, x.product, x.lot, \
    x.vial_id, x.venue_id, v.name AS venue_name, x.vaccinator, x.injection_site, x.given_at, \
    x.given_on, x.municipality_code, x.ticket_no, x.recorded_at, x.recorded_by, x.corrects_id, \
    x.correction_reason, x.superseded_at, x.export_batch_id";

/// [`VACCINATION_COLUMNS`] selected (the same text, checked by a test).
pub(crate) const VACCINATION_SELECT: &str =
    "SELECT x.id, x.resident_id, x.dose, x.product, x.lot, \
    x.vial_id, x.venue_id, v.name AS venue_name, x.vaccinator, x.injection_site, x.given_at, \
    x.given_on, x.municipality_code, x.ticket_no, x.recorded_at, x.recorded_by, x.corrects_id, \
    x.correction_reason, x.superseded_at, x.export_batch_id \
    FROM vaccinations x JOIN venues v ON v.id = x.venue_id";

pub(crate) fn vaccination_from_row(row: &AnyRow) -> Result<VaccinationRow, sqlx::Error> {
    Ok(VaccinationRow {
        id: row.try_get("id")?,
        resident_id: row.try_get("resident_id")?,
        dose: row.try_get("dose")?,
        product: row.try_get("product")?,
        lot: row.try_get("lot")?,
        vial_id: row.try_get("vial_id")?,
        venue_id: row.try_get("venue_id")?,
        venue_name: row.try_get("venue_name")?,
        vaccinator: row.try_get("vaccinator")?,
        injection_site: row.try_get("injection_site")?,
        given_at: row.try_get("given_at")?,
        given_on: row.try_get("given_on")?,
        municipality_code: row.try_get("municipality_code")?,
        ticket_no: row.try_get("ticket_no")?,
        recorded_at: row.try_get("recorded_at")?,
        recorded_by: row.try_get("recorded_by")?,
        corrects_id: row.try_get("corrects_id")?,
        correction_reason: row.try_get("correction_reason")?,
        superseded_at: row.try_get("superseded_at")?,
        export_batch_id: row.try_get("export_batch_id")?,
    })
}

fn refusal(reason: &str, message: impl Into<String>) -> Refusal {
    Refusal {
        reason: reason.to_string(),
        message: message.into(),
    }
}

fn dose_refusal(e: DoseRefusal) -> Refusal {
    let s = e.to_string();
    let mut c = s.chars();
    let message = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>(),
        None => s,
    };
    refusal(e.code(), format!("{message}; nothing was recorded."))
}

/// The resident's facts a dose is recorded with, locked for the transaction.
struct LockedResident {
    birth: NaiveDate,
    municipality_code: String,
    ticket_no: String,
}

async fn lock_resident(
    tx: &mut WriteTx,
    resident_id: i64,
) -> Result<Option<LockedResident>, StoreError> {
    let sql = format!(
        "SELECT birth_date, municipality_code, ticket_no FROM residents WHERE id = $1{}",
        tx.for_update()
    );
    let Some(row) = sqlx::query(&sql)
        .bind(resident_id)
        .fetch_optional(tx.conn())
        .await?
    else {
        return Ok(None);
    };
    let birth: String = row.try_get("birth_date")?;
    Ok(Some(LockedResident {
        birth: NaiveDate::parse_from_str(&birth, "%Y-%m-%d")
            .with_context(|| format!("resident {resident_id} has birth date {birth:?}"))?,
        municipality_code: row.try_get("municipality_code")?,
        ticket_no: row.try_get("ticket_no")?,
    }))
}

/// The resident's current records, but `except` (the record being corrected).
async fn history(
    tx: &mut WriteTx,
    resident_id: i64,
    except: i64,
) -> Result<Vec<GivenDose>, StoreError> {
    let rows = sqlx::query(
        "SELECT dose, product, given_on FROM vaccinations \
         WHERE resident_id = $1 AND superseded_at IS NULL AND id <> $2 ORDER BY dose",
    )
    .bind(resident_id)
    .bind(except)
    .fetch_all(tx.conn())
    .await?;
    rows.iter()
        .map(|r| {
            let dose: i64 = r.try_get("dose")?;
            let product: String = r.try_get("product")?;
            let on: String = r.try_get("given_on")?;
            Ok(GivenDose {
                dose: u8::try_from(dose).unwrap_or(u8::MAX),
                product: Product::parse(&product)
                    .with_context(|| format!("a vaccination has product {product:?}"))?,
                given_on: NaiveDate::parse_from_str(&on, "%Y-%m-%d")
                    .with_context(|| format!("a vaccination was given on {on:?}"))?,
            })
        })
        .collect()
}

/// The live booking (booked or checked in) of a resident's dose: its id, slot and venue.
async fn live_booking(
    tx: &mut WriteTx,
    resident_id: i64,
    dose: u8,
) -> Result<Option<(i64, i64, i64)>, StoreError> {
    let row = sqlx::query(
        "SELECT b.id, b.slot_id, s.venue_id FROM bookings b JOIN slots s ON s.id = b.slot_id \
         WHERE b.resident_id = $1 AND b.dose = $2 AND b.status IN ('booked', 'checked_in')",
    )
    .bind(resident_id)
    .bind(i64::from(dose))
    .fetch_optional(tx.conn())
    .await?;
    Ok(match row {
        Some(r) => Some((
            r.try_get("id")?,
            r.try_get("slot_id")?,
            r.try_get("venue_id")?,
        )),
        None => None,
    })
}

async fn venue_name(tx: &mut WriteTx, venue_id: i64) -> Result<Option<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT name FROM venues WHERE id = $1")
        .bind(venue_id)
        .fetch_optional(tx.conn())
        .await?)
}

/// The vial a dose of `lot` given at `at` at a venue is drawn from: the earliest opened that
/// day at or before `at`, not discarded by then, within its hours, with a dose left; or why
/// there is none. The lot's vials of that day are locked, so their counts stay true until
/// commit. `except` is a record being corrected (its dose no longer counts).
async fn vial_for(
    tx: &mut WriteTx,
    venue: (i64, &str),
    lot: &LotNo,
    product: Product,
    at: DateTime<Utc>,
    except: i64,
) -> Result<Result<i64, Refusal>, StoreError> {
    let day = jst_date(at);
    let sql = format!(
        "SELECT id, product, opened_at, doses_per_vial, discarded_at, \
         (SELECT COUNT(*) FROM vaccinations x WHERE x.vial_id = vials.id \
           AND x.superseded_at IS NULL AND x.id <> $5) AS drawn FROM vials \
         WHERE venue_id = $1 AND lot = $2 AND opened_at >= $3 AND opened_at < $4 \
         ORDER BY opened_at, id{}",
        tx.for_update()
    );
    // One query for the lot's vials and the doses drawn from each (not one per vial: a busy
    // day opens many vials of a lot, and this runs inside the write transaction).
    let rows = sqlx::query(&sql)
        .bind(venue.0)
        .bind(lot.as_str().to_string())
        .bind(ts(jst_midnight(day)))
        .bind(ts(jst_midnight(day + Duration::days(1))))
        .bind(except)
        .fetch_all(tx.conn())
        .await?;
    let not_opened = || {
        refusal(
            "lot_not_opened",
            format!(
                "Lot {lot} was not opened at {} on {day} by {}; open a vial of it first \
                 (バイアル開封); nothing was recorded.",
                venue.1,
                jst_time(at).format("%H:%M")
            ),
        )
    };
    if rows.is_empty() {
        return Ok(Err(not_opened()));
    }
    let (mut other_product, mut opened_later, mut discarded, mut expired, mut used_up) =
        (None, false, false, false, false);
    for r in &rows {
        let id: i64 = r.try_get("id")?;
        let p: String = r.try_get("product")?;
        if p != product.code() {
            other_product = Some(p);
            continue;
        }
        let opened: String = r.try_get("opened_at")?;
        let opened = parse_ts(&opened).with_context(|| format!("vial {id} opened {opened:?}"))?;
        if opened > at {
            opened_later = true;
            continue;
        }
        let gone: Option<String> = r.try_get("discarded_at")?;
        if gone.as_deref().and_then(parse_ts).is_some_and(|g| g <= at) {
            discarded = true;
            continue;
        }
        if at >= opened + Duration::hours(VIAL_HOURS) {
            expired = true;
            continue;
        }
        let holds: i64 = r.try_get("doses_per_vial")?;
        let drawn: i64 = r.try_get("drawn")?;
        if drawn >= holds {
            used_up = true;
            continue;
        }
        return Ok(Ok(id));
    }
    let refused = if expired {
        refusal(
            "vial_expired",
            format!(
                "The open vials of lot {lot} at {} were opened more than {VIAL_HOURS} hours \
                 before this dose and may not be used (discard them); nothing was recorded.",
                venue.1
            ),
        )
    } else if used_up {
        refusal(
            "vials_used_up",
            format!(
                "Every dose of the open vials of lot {lot} at {} is recorded; open another \
                 vial; nothing was recorded.",
                venue.1
            ),
        )
    } else if discarded {
        refusal(
            "vial_discarded",
            format!(
                "The vials of lot {lot} opened at {} today were discarded; open another vial; \
                 nothing was recorded.",
                venue.1
            ),
        )
    } else if let (Some(p), false) = (other_product, opened_later) {
        refusal(
            "lot_other_product",
            format!(
                "Lot {lot} opened at {} is {p}, not {product}; nothing was recorded.",
                venue.1
            ),
        )
    } else {
        not_opened()
    };
    Ok(Err(refused))
}

/// PostgreSQL's deadlock victim or serialization failure: it changed nothing; run it again.
fn retryable(e: &StoreError) -> bool {
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

/// Who did it, for the records and the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub user_id: Option<i64>,
    pub remote_addr: &'a str,
}

impl Store {
    /// Records a dose (see the module doc): the record, or why it was refused (nothing
    /// changed). An unknown resident or venue is [`StoreError::Invalid`] naming the field;
    /// a dose with no venue given and no live booking to take it from names `venue_id`.
    pub async fn record_vaccination(
        &self,
        v: &NewVaccination,
        actor: Actor<'_>,
    ) -> Result<Result<VaccinationRow, Refusal>, StoreError> {
        self.with_retries(|| self.try_record(v, None, actor)).await
    }

    /// Corrects record `id`: a new record with the corrected values, naming `id` and the
    /// reason; `id` is superseded. Refused when `id` was already corrected (the correction
    /// is the record to correct) or the corrected values break a rule.
    pub async fn correct_vaccination(
        &self,
        id: i64,
        v: &NewVaccination,
        reason: &str,
        actor: Actor<'_>,
    ) -> Result<Result<VaccinationRow, Refusal>, StoreError> {
        self.with_retries(|| self.try_record(v, Some((id, reason)), actor))
            .await
    }

    async fn with_retries<F, Fut>(
        &self,
        attempt: F,
    ) -> Result<Result<VaccinationRow, Refusal>, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Result<VaccinationRow, Refusal>, StoreError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Err(e) if retryable(&e) && tries < 5 => continue,
                // Reached only if something wrote around the resident's lock: the index holds.
                Err(StoreError::Conflict { constraint }) if constraint == ONE_PER_DOSE => {
                    return Ok(Err(refusal(
                        "already_recorded",
                        "This dose of the resident is already recorded; correct that record \
                         instead; nothing was recorded.",
                    )))
                }
                Err(StoreError::Conflict { constraint }) if constraint == CORRECTED_ONCE => {
                    return Ok(Err(refusal(
                        "already_corrected",
                        "That record was corrected already; correct the correction; nothing \
                         was recorded.",
                    )))
                }
                other => return other,
            }
        }
    }

    async fn try_record(
        &self,
        v: &NewVaccination,
        correcting: Option<(i64, &str)>,
        actor: Actor<'_>,
    ) -> Result<Result<VaccinationRow, Refusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut booking = None;
        let except = match correcting {
            Some((old, _)) => {
                let sql = format!(
                    "SELECT resident_id, superseded_at, booking_id FROM vaccinations WHERE id = $1{}",
                    tx.for_update()
                );
                let Some(row) = sqlx::query(&sql)
                    .bind(old)
                    .fetch_optional(tx.conn())
                    .await?
                else {
                    return Err(StoreError::NotFound);
                };
                let resident: i64 = row.try_get("resident_id")?;
                if resident != v.resident_id {
                    return Err(StoreError::Invalid {
                        field: "resident_id",
                    });
                }
                if row.try_get::<Option<String>, _>("superseded_at")?.is_some() {
                    let newer: Option<i64> =
                        sqlx::query_scalar("SELECT id FROM vaccinations WHERE corrects_id = $1")
                            .bind(old)
                            .fetch_optional(tx.conn())
                            .await?;
                    return Ok(Err(refusal(
                        "already_corrected",
                        format!(
                            "Record {old} was corrected already{}; correct the current record; \
                             nothing was recorded.",
                            newer.map(|n| format!(" by record {n}")).unwrap_or_default()
                        ),
                    )));
                }
                booking = row.try_get::<Option<i64>, _>("booking_id")?;
                old
            }
            None => 0,
        };
        let Some(resident) = lock_resident(&mut tx, v.resident_id).await? else {
            return Err(StoreError::Invalid {
                field: "resident_id",
            });
        };
        // Where: given, or the venue of the dose's booking (a missing venue is a bad
        // request, answered before any rule).
        let live = live_booking(&mut tx, v.resident_id, v.dose).await?;
        let venue_id = match (v.venue_id, live) {
            (Some(id), _) => id,
            (None, Some((_, _, venue))) => venue,
            (None, None) => return Err(StoreError::Invalid { field: "venue_id" }),
        };
        let Some(venue) = venue_name(&mut tx, venue_id).await? else {
            return Err(StoreError::Invalid { field: "venue_id" });
        };
        let on = jst_date(v.given_at);
        let past = history(&mut tx, v.resident_id, except).await?;
        if let Err(e) = check_dose(&past, resident.birth, v.dose, v.product, on) {
            return Ok(Err(dose_refusal(e)));
        }
        let vial = match vial_for(
            &mut tx,
            (venue_id, &venue),
            &v.lot,
            v.product,
            v.given_at,
            except,
        )
        .await?
        {
            Ok(vial) => vial,
            Err(refused) => return Ok(Err(refused)),
        };
        let recorded_at = now();
        if let Some((old, _)) = correcting {
            sqlx::query("UPDATE vaccinations SET superseded_at = $1 WHERE id = $2")
                .bind(recorded_at.clone())
                .bind(old)
                .execute(tx.conn())
                .await?;
        } else if let Some((id, slot, _)) = live {
            // The booking is done: it no longer holds a seat (see bookings.rs: only booked
            // and checked-in bookings count against a slot).
            sqlx::query("UPDATE bookings SET status = 'vaccinated', updated_at = $1 WHERE id = $2")
                .bind(recorded_at.clone())
                .bind(id)
                .execute(tx.conn())
                .await?;
            sqlx::query("UPDATE slots SET booked = booked - 1 WHERE id = $1")
                .bind(slot)
                .execute(tx.conn())
                .await?;
            booking = Some(id);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO vaccinations (resident_id, dose, product, lot, vial_id, venue_id, \
             vaccinator, injection_site, given_at, given_on, municipality_code, ticket_no, \
             booking_id, recorded_at, recorded_by, corrects_id, correction_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
             RETURNING id",
        )
        .bind(v.resident_id)
        .bind(i64::from(v.dose))
        .bind(v.product.code())
        .bind(v.lot.as_str().to_string())
        .bind(vial)
        .bind(venue_id)
        .bind(v.vaccinator.clone())
        .bind(v.injection_site.code())
        .bind(ts(v.given_at))
        .bind(on.format("%Y-%m-%d").to_string())
        .bind(resident.municipality_code)
        .bind(resident.ticket_no)
        .bind(booking)
        .bind(recorded_at)
        .bind(actor.user_id)
        .bind(correcting.map(|(old, _)| old))
        .bind(
            correcting
                .map(|(_, why)| why.to_string())
                .unwrap_or_default(),
        )
        .fetch_one(tx.conn())
        .await?;
        let (action, detail) = match correcting {
            Some((old, why)) => (
                "correct_vaccination",
                format!(
                    "record {id} corrects record {old} ({why}): dose {} {} lot {} at {venue} on {on}",
                    v.dose, v.product, v.lot
                ),
            ),
            None => (
                "record_vaccination",
                format!(
                    "record {id}: dose {} {} lot {} at {venue} on {on}",
                    v.dose, v.product, v.lot
                ),
            ),
        };
        Store::audit_in(
            &mut tx,
            actor.user_id,
            action,
            Some(v.resident_id),
            &detail,
            actor.remote_addr,
        )
        .await?;
        let row = sqlx::query(&format!("{VACCINATION_SELECT} WHERE x.id = $1"))
            .bind(id)
            .fetch_one(tx.conn())
            .await?;
        let row = vaccination_from_row(&row)?;
        tx.commit().await?;
        Ok(Ok(row))
    }

    /// One record.
    pub async fn vaccination(&self, id: i64) -> Result<Option<VaccinationRow>, StoreError> {
        let row = sqlx::query(&format!("{VACCINATION_SELECT} WHERE x.id = $1"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(vaccination_from_row).transpose()?)
    }

    /// Every record of a resident, superseded ones included (they show what was corrected),
    /// by dose and then in the order recorded.
    pub async fn vaccinations_of(
        &self,
        resident_id: i64,
    ) -> Result<Vec<VaccinationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{VACCINATION_SELECT} WHERE x.resident_id = $1 ORDER BY x.dose, x.id"
        ))
        .bind(resident_id)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(vaccination_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// The current records given on a day (JST), at one venue or all, in the order recorded.
    pub async fn vaccinations_on(
        &self,
        day: NaiveDate,
        venue_id: Option<i64>,
    ) -> Result<Vec<VaccinationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{VACCINATION_SELECT} WHERE x.given_on = $1 AND x.superseded_at IS NULL \
             AND ($2 = 0 OR x.venue_id = $2) ORDER BY x.recorded_at, x.id"
        ))
        .bind(day.format("%Y-%m-%d").to_string())
        .bind(venue_id.unwrap_or(0))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(vaccination_from_row)
            .collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests;
