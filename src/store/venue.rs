//! 会場受付: what reception sees of a resident on the day (today's booking, or why there is
//! none here: a walk-in, the wrong venue, the wrong day), the check-in, the 予診票 reissues,
//! and each venue's progress through the day.

use super::bookings::BookingRow;
use super::vaccinations::Actor;
use super::{now, parse_ts, ts, Store, StoreError};
use crate::domain::forecast::{self, Arrival, ReceptionForecast};
use crate::domain::vaccine::{jst_date, jst_midnight};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::HashMap;

/// What reception is warned of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warning {
    /// Booked here today: no warning.
    #[serde(rename = "")]
    None,
    /// No live booking at all.
    WalkIn,
    /// Booked today, at another venue.
    WrongVenue,
    /// Booked, but on another day.
    WrongDay,
}

impl Warning {
    pub fn code(self) -> &'static str {
        match self {
            Warning::None => "",
            Warning::WalkIn => "walk_in",
            Warning::WrongVenue => "wrong_venue",
            Warning::WrongDay => "wrong_day",
        }
    }
}

/// The booking that decides the warning, and the warning.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Expected {
    pub warning: Warning,
    /// Today's booking here; else the booking the warning is about (today elsewhere, or the
    /// nearest other day); none for a walk-in.
    pub booking: Option<BookingRow>,
}

/// A check-in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckinRow {
    pub id: i64,
    pub resident_id: i64,
    pub venue_id: i64,
    pub day: String,
    pub booking_id: Option<i64>,
    pub warning: String,
    pub checked_in_at: String,
}

/// One venue's day in numbers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VenueProgress {
    pub venue_id: i64,
    pub venue_name: String,
    pub date: String,
    /// Bookings in the day's slots, cancelled ones left out.
    pub booked: i64,
    /// Residents checked in (walk-ins included).
    pub checked_in: i64,
    /// Doses recorded (current records).
    pub vaccinated: i64,
    /// Bookings marked no-show.
    pub no_show: i64,
    /// Booked and not checked in yet: still expected today.
    pub expected: i64,
    /// Checked in and not vaccinated yet: waiting at the venue.
    pub waiting: i64,
    /// Doses still drawable from open vials.
    pub doses_left: i64,
    /// Arrivals per 15 minutes against reception's throughput, and the wait forecast.
    pub forecast: ReceptionForecast,
}

fn day_bounds(day: NaiveDate) -> (String, String) {
    (
        ts(jst_midnight(day)),
        ts(jst_midnight(day + Duration::days(1))),
    )
}

/// The warning for a resident's live bookings, seen from `venue_id` on `day`.
pub fn expected_of(live: &[BookingRow], venue_id: i64, day: NaiveDate) -> Expected {
    let on = |b: &BookingRow| parse_ts(&b.starts_at).map(jst_date);
    if let Some(b) = live
        .iter()
        .find(|b| b.venue_id == venue_id && on(b) == Some(day))
    {
        return Expected {
            warning: Warning::None,
            booking: Some(b.clone()),
        };
    }
    if let Some(b) = live.iter().find(|b| on(b) == Some(day)) {
        return Expected {
            warning: Warning::WrongVenue,
            booking: Some(b.clone()),
        };
    }
    // The other day nearest to today.
    let nearest = live
        .iter()
        .filter_map(|b| on(b).map(|d| ((d - day).num_days().abs(), b)))
        .min_by_key(|(gap, b)| (*gap, b.id))
        .map(|(_, b)| b.clone());
    match nearest {
        Some(b) => Expected {
            warning: Warning::WrongDay,
            booking: Some(b),
        },
        None => Expected {
            warning: Warning::WalkIn,
            booking: None,
        },
    }
}

const CHECKIN_COLUMNS: &str = "id, resident_id, venue_id, day, booking_id, warning, checked_in_at";

fn checkin_from_row(r: &sqlx::any::AnyRow) -> Result<CheckinRow, sqlx::Error> {
    Ok(CheckinRow {
        id: r.try_get("id")?,
        resident_id: r.try_get("resident_id")?,
        venue_id: r.try_get("venue_id")?,
        day: r.try_get("day")?,
        booking_id: r.try_get("booking_id")?,
        warning: r.try_get("warning")?,
        checked_in_at: r.try_get("checked_in_at")?,
    })
}

impl Store {
    /// The resident's live bookings (booked or checked in).
    pub async fn live_bookings_of(&self, resident_id: i64) -> Result<Vec<BookingRow>, StoreError> {
        Ok(self
            .bookings_of(resident_id)
            .await?
            .into_iter()
            .filter(|b| b.status == "booked" || b.status == "checked_in")
            .collect())
    }

    /// The check-in of a resident at a venue on a day, if any.
    pub async fn checkin_of(
        &self,
        resident_id: i64,
        venue_id: i64,
        day: NaiveDate,
    ) -> Result<Option<CheckinRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {CHECKIN_COLUMNS} FROM checkins WHERE resident_id = $1 AND venue_id = $2 \
             AND day = $3"
        ))
        .bind(resident_id)
        .bind(venue_id)
        .bind(day.format("%Y-%m-%d").to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(checkin_from_row).transpose()?)
    }

    /// Checks a resident in at a venue at `at`: once a day per venue (a second scan returns
    /// the first check-in and `false`). Today's booking here becomes `checked_in`; the
    /// warning reception saw is kept with the check-in. Audited.
    pub async fn check_in(
        &self,
        resident_id: i64,
        venue_id: i64,
        at: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<(CheckinRow, bool), StoreError> {
        let day = jst_date(at);
        let day_text = day.format("%Y-%m-%d").to_string();
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
        let found: Option<i64> = sqlx::query_scalar("SELECT id FROM venues WHERE id = $1")
            .bind(venue_id)
            .fetch_optional(tx.conn())
            .await?;
        if found.is_none() {
            return Err(StoreError::Invalid { field: "venue_id" });
        }
        let existing = sqlx::query(&format!(
            "SELECT {CHECKIN_COLUMNS} FROM checkins WHERE resident_id = $1 AND venue_id = $2 \
             AND day = $3"
        ))
        .bind(resident_id)
        .bind(venue_id)
        .bind(day_text.clone())
        .fetch_optional(tx.conn())
        .await?;
        if let Some(row) = existing {
            let row = checkin_from_row(&row)?;
            tx.rollback().await?;
            return Ok((row, false));
        }
        let rows = sqlx::query(
            "SELECT b.id, b.dose, b.slot_id, s.venue_id, v.name AS venue_name, s.starts_at, \
             s.product, b.status FROM bookings b JOIN slots s ON s.id = b.slot_id \
             JOIN venues v ON v.id = s.venue_id WHERE b.resident_id = $1 \
             AND b.status IN ('booked', 'checked_in') ORDER BY b.dose, b.id",
        )
        .bind(resident_id)
        .fetch_all(tx.conn())
        .await?;
        let live = rows
            .iter()
            .map(|r| {
                Ok(BookingRow {
                    id: r.try_get("id")?,
                    dose: r.try_get("dose")?,
                    slot_id: r.try_get("slot_id")?,
                    venue_id: r.try_get("venue_id")?,
                    venue_name: r.try_get("venue_name")?,
                    starts_at: r.try_get("starts_at")?,
                    product: r.try_get("product")?,
                    status: r.try_get("status")?,
                    ride: None,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        let expected = expected_of(&live, venue_id, day);
        let booking_id = expected.booking.as_ref().map(|b| b.id);
        if let (Warning::None, Some(id)) = (expected.warning, booking_id) {
            sqlx::query(
                "UPDATE bookings SET status = 'checked_in', updated_at = $1 \
                 WHERE id = $2 AND status = 'booked'",
            )
            .bind(now())
            .bind(id)
            .execute(tx.conn())
            .await?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO checkins (resident_id, venue_id, day, booking_id, warning, \
             checked_in_at, user_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(resident_id)
        .bind(venue_id)
        .bind(day_text.clone())
        .bind(booking_id)
        .bind(expected.warning.code())
        .bind(ts(at))
        .bind(actor.user_id)
        .fetch_one(tx.conn())
        .await?;
        let detail = match expected.warning {
            Warning::None => format!("checked in at venue {venue_id} (booking {id})"),
            w => format!("checked in at venue {venue_id} ({})", w.code()),
        };
        Store::audit_in(
            &mut tx,
            actor.user_id,
            "check_in",
            Some(resident_id),
            &detail,
            actor.remote_addr,
        )
        .await?;
        tx.commit().await?;
        Ok((
            CheckinRow {
                id,
                resident_id,
                venue_id,
                day: day_text,
                booking_id,
                warning: expected.warning.code().to_string(),
                checked_in_at: ts(at),
            },
            true,
        ))
    }

    /// Counts a 予診票 reissue for a resident (audited); returns how many have been printed.
    pub async fn count_questionnaire(
        &self,
        resident_id: i64,
        venue_id: Option<i64>,
        actor: Actor<'_>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT id FROM residents WHERE id = $1{}", tx.for_update());
        if sqlx::query(&sql)
            .bind(resident_id)
            .fetch_optional(tx.conn())
            .await?
            .is_none()
        {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO questionnaire_prints (resident_id, venue_id, printed_at, user_id) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(resident_id)
        .bind(venue_id)
        .bind(now())
        .bind(actor.user_id)
        .execute(tx.conn())
        .await?;
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM questionnaire_prints WHERE resident_id = $1")
                .bind(resident_id)
                .fetch_one(tx.conn())
                .await?;
        Store::audit_in(
            &mut tx,
            actor.user_id,
            "reissue_questionnaire",
            Some(resident_id),
            &format!("予診票 reissue {n}"),
            actor.remote_addr,
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    /// How many 予診票 were reissued for a resident.
    pub async fn questionnaire_count(&self, resident_id: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM questionnaire_prints WHERE resident_id = $1")
                .bind(resident_id)
                .fetch_one(&self.read)
                .await?,
        )
    }

    /// Every venue's day (JST) in numbers, as of `at` (for the doses left in open vials and
    /// the forecast), or one venue's when `venue` names it. `max_wait_min` is the wait at
    /// reception the forecast warns about.
    pub async fn progress(
        &self,
        day: NaiveDate,
        at: DateTime<Utc>,
        venue: Option<i64>,
        max_wait_min: u32,
    ) -> Result<Vec<VenueProgress>, StoreError> {
        let (start, end) = day_bounds(day);
        let day_text = day.format("%Y-%m-%d").to_string();
        let only = |column: &str, n: u8| match venue {
            Some(_) => format!(" AND {column} = ${n}"),
            None => String::new(),
        };
        let sql = format!(
            "SELECT v.id, v.name, \
             (SELECT COUNT(*) FROM bookings b JOIN slots s ON s.id = b.slot_id \
               WHERE s.venue_id = v.id AND s.starts_at >= $1 AND s.starts_at < $2 \
               AND b.status <> 'cancelled') AS booked, \
             (SELECT COUNT(*) FROM bookings b JOIN slots s ON s.id = b.slot_id \
               WHERE s.venue_id = v.id AND s.starts_at >= $1 AND s.starts_at < $2 \
               AND b.status = 'no_show') AS no_show, \
             (SELECT COUNT(*) FROM bookings b JOIN slots s ON s.id = b.slot_id \
               WHERE s.venue_id = v.id AND s.starts_at >= $1 AND s.starts_at < $2 \
               AND b.status = 'booked') AS expected, \
             (SELECT COUNT(*) FROM checkins c WHERE c.venue_id = v.id AND c.day = $3) \
               AS checked_in, \
             (SELECT COUNT(*) FROM checkins c WHERE c.venue_id = v.id AND c.day = $3 \
               AND NOT EXISTS (SELECT 1 FROM vaccinations x WHERE x.resident_id = c.resident_id \
               AND x.venue_id = v.id AND x.given_on = $3 AND x.superseded_at IS NULL)) \
               AS waiting, \
             (SELECT COUNT(*) FROM vaccinations x WHERE x.venue_id = v.id AND x.given_on = $3 \
               AND x.superseded_at IS NULL) AS vaccinated \
             FROM venues v WHERE 1 = 1{} ORDER BY v.id",
            only("v.id", 4)
        );
        let mut q = sqlx::query(&sql)
            .bind(start.clone())
            .bind(end.clone())
            .bind(day_text.clone());
        if let Some(v) = venue {
            q = q.bind(v);
        }
        let rows = q.fetch_all(&self.read).await?;

        // Who is booked to arrive when, for the forecast.
        let sql = format!(
            "SELECT s.venue_id, s.starts_at, b.status FROM bookings b \
             JOIN slots s ON s.id = b.slot_id WHERE s.starts_at >= $1 AND s.starts_at < $2 \
             AND b.status <> 'cancelled'{}",
            only("s.venue_id", 3)
        );
        let mut q = sqlx::query(&sql).bind(start.clone()).bind(end.clone());
        if let Some(v) = venue {
            q = q.bind(v);
        }
        let mut arrivals: HashMap<i64, Vec<Arrival>> = HashMap::new();
        for r in q.fetch_all(&self.read).await? {
            let starts: String = r.try_get("starts_at")?;
            let status: String = r.try_get("status")?;
            if let Some(t) = parse_ts(&starts) {
                arrivals
                    .entry(r.try_get("venue_id")?)
                    .or_default()
                    .push(Arrival {
                        at: t,
                        still_expected: status == "booked",
                    });
            }
        }
        let sql = format!(
            "SELECT venue_id, checked_in_at FROM checkins WHERE day = $1{}",
            only("venue_id", 2)
        );
        let mut q = sqlx::query(&sql).bind(day_text.clone());
        if let Some(v) = venue {
            q = q.bind(v);
        }
        let mut checkins: HashMap<i64, Vec<DateTime<Utc>>> = HashMap::new();
        for r in q.fetch_all(&self.read).await? {
            let t: String = r.try_get("checked_in_at")?;
            if let Some(t) = parse_ts(&t) {
                checkins.entry(r.try_get("venue_id")?).or_default().push(t);
            }
        }
        let left = if jst_date(at) == day {
            self.doses_left_by_venue(at, venue).await?
        } else {
            HashMap::new()
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let venue_id: i64 = r.try_get("id")?;
            let forecast = forecast::forecast(
                arrivals.get(&venue_id).map_or(&[][..], Vec::as_slice),
                checkins.get(&venue_id).map_or(&[][..], Vec::as_slice),
                at,
                max_wait_min,
            );
            out.push(VenueProgress {
                venue_id,
                venue_name: r.try_get("name")?,
                date: day_text.clone(),
                booked: r.try_get("booked")?,
                checked_in: r.try_get("checked_in")?,
                vaccinated: r.try_get("vaccinated")?,
                no_show: r.try_get("no_show")?,
                expected: r.try_get("expected")?,
                waiting: r.try_get("waiting")?,
                doses_left: left.get(&venue_id).copied().unwrap_or(0),
                forecast,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking(id: i64, venue_id: i64, starts_at: &str) -> BookingRow {
        BookingRow {
            id,
            dose: 1,
            slot_id: id,
            venue_id,
            venue_name: format!("会場{venue_id}"),
            starts_at: starts_at.into(),
            product: "pfizer".into(),
            status: "booked".into(),
            ride: None,
        }
    }

    #[test]
    fn warnings_name_what_is_wrong() {
        let day = NaiveDate::from_ymd_opt(2021, 6, 3).unwrap();
        // 09:30 JST on 06-03 is 00:30 UTC; 08:00 JST is the evening before in UTC.
        let here_today = booking(1, 7, "2021-06-03T00:30:00.000Z");
        let here_early = booking(2, 7, "2021-06-02T23:00:00.000Z");
        let there_today = booking(3, 8, "2021-06-03T01:00:00.000Z");
        let here_later = booking(4, 7, "2021-06-24T00:30:00.000Z");
        let w = |live: &[BookingRow]| {
            let e = expected_of(live, 7, day);
            (e.warning, e.booking.map(|b| b.id))
        };
        assert_eq!(
            w(std::slice::from_ref(&here_today)),
            (Warning::None, Some(1))
        );
        assert_eq!(
            w(std::slice::from_ref(&here_early)),
            (Warning::None, Some(2))
        );
        assert_eq!(
            w(&[there_today.clone(), here_later.clone()]),
            (Warning::WrongVenue, Some(3))
        );
        assert_eq!(
            w(std::slice::from_ref(&here_later)),
            (Warning::WrongDay, Some(4))
        );
        assert_eq!(w(&[]), (Warning::WalkIn, None));
        assert_eq!(Warning::WrongDay.code(), "wrong_day");
        assert_eq!(serde_json::to_value(Warning::None).unwrap(), "");
    }
}
