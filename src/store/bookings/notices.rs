//! 接種通知: what an assignment notice prints for each resident with a live booking — name,
//! address, and per dose the venue, the start, and the bus pickup (stop and time) if any.

use super::super::{ts, Store, StoreError};
use crate::domain::vaccine::jst_midnight;
use chrono::{Duration, NaiveDate};
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct NoticeDose {
    pub venue: String,
    pub venue_address: String,
    pub starts_at: String,
    pub stop: Option<String>,
    pub pickup_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NoticeRow {
    pub resident_id: i64,
    pub address_no: String,
    pub name: String,
    pub name_kana: String,
    pub postal_code: String,
    pub address: String,
    pub dose1: Option<NoticeDose>,
    pub dose2: Option<NoticeDose>,
}

impl Store {
    /// Residents with a live booking, by 宛名番号; with `from`/`to`, only those whose dose 1
    /// (or, without one, dose 2) falls within those days (JST).
    pub async fn notices(
        &self,
        from: Option<NaiveDate>,
        to: Option<NaiveDate>,
    ) -> Result<Vec<NoticeRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.id, p.address_no, p.name, p.name_kana, p.postal_code, p.address, b.dose, \
             v.name AS venue, v.address AS venue_address, s.starts_at, st.name AS stop, rs.pickup_at \
             FROM bookings b JOIN residents p ON p.id = b.resident_id JOIN slots s ON s.id = b.slot_id \
             JOIN venues v ON v.id = s.venue_id \
             LEFT JOIN rides x ON x.booking_id = b.id AND x.status = 'booked' \
             LEFT JOIN stops st ON st.id = x.stop_id \
             LEFT JOIN run_stops rs ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id \
             WHERE b.status IN ('booked', 'checked_in') ORDER BY p.address_no, b.dose",
        )
        .fetch_all(&self.read)
        .await?;
        let mut out: BTreeMap<String, NoticeRow> = BTreeMap::new();
        for r in rows {
            let address_no: String = r.try_get("address_no")?;
            let row = match out.get_mut(&address_no) {
                Some(row) => row,
                None => {
                    let row = NoticeRow {
                        resident_id: r.try_get("id")?,
                        address_no: address_no.clone(),
                        name: r.try_get("name")?,
                        name_kana: r.try_get("name_kana")?,
                        postal_code: r.try_get("postal_code")?,
                        address: r.try_get("address")?,
                        dose1: None,
                        dose2: None,
                    };
                    out.entry(address_no).or_insert(row)
                }
            };
            let dose = NoticeDose {
                venue: r.try_get("venue")?,
                venue_address: r.try_get("venue_address")?,
                starts_at: r.try_get("starts_at")?,
                stop: r.try_get("stop")?,
                pickup_at: r.try_get("pickup_at")?,
            };
            match r.try_get::<i64, _>("dose")? {
                1 => row.dose1 = Some(dose),
                _ => row.dose2 = Some(dose),
            }
        }
        let (lo, hi) = (
            from.map(|d| ts(jst_midnight(d))),
            to.map(|d| ts(jst_midnight(d + Duration::days(1)))),
        );
        Ok(out
            .into_values()
            .filter(|n| {
                let first = n.dose1.as_ref().or(n.dose2.as_ref());
                first.is_some_and(|d| {
                    lo.as_ref().is_none_or(|lo| &d.starts_at >= lo)
                        && hi.as_ref().is_none_or(|hi| &d.starts_at < hi)
                })
            })
            .collect())
    }
}
