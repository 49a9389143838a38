//! What the V-SYS weekly request is made of ([`crate::domain::vsys`]): per venue and product,
//! the doses booked on each day of the period (live bookings), the doses a vial gives there
//! (the latest vials received; else the product's label with standard syringes) and the
//! unopened vials in stock.

use super::{parse_ts, ts, Store, StoreError};
use crate::domain::vaccine::{jst_date, jst_midnight};
use crate::domain::vsys::{Demand, REQUEST_DAYS};
use crate::domain::Product;
use chrono::{Duration, NaiveDate};
use sqlx::Row;
use std::collections::{BTreeMap, HashMap};

impl Store {
    /// The demands of the `REQUEST_DAYS` days from `from` (JST), by venue then product.
    pub async fn vsys_demands(&self, from: NaiveDate) -> Result<Vec<Demand>, StoreError> {
        let start = ts(jst_midnight(from));
        let end = ts(jst_midnight(from + Duration::days(REQUEST_DAYS)));
        let rows = sqlx::query(
            "SELECT s.venue_id, v.name, s.product, s.starts_at, COUNT(*) AS n FROM bookings b \
             JOIN slots s ON s.id = b.slot_id JOIN venues v ON v.id = s.venue_id \
             WHERE s.starts_at >= $1 AND s.starts_at < $2 AND b.status IN ('booked', 'checked_in') \
             GROUP BY s.venue_id, v.name, s.product, s.starts_at",
        )
        .bind(start)
        .bind(end)
        .fetch_all(&self.read)
        .await?;
        // (venue, product) → (name, day → doses)
        let mut by: BTreeMap<(i64, String), (String, BTreeMap<NaiveDate, i64>)> = BTreeMap::new();
        for r in rows {
            let starts: String = r.try_get("starts_at")?;
            let Some(t) = parse_ts(&starts) else { continue };
            let entry = by
                .entry((r.try_get("venue_id")?, r.try_get("product")?))
                .or_insert_with(|| (String::new(), BTreeMap::new()));
            entry.0 = r.try_get("name")?;
            *entry.1.entry(jst_date(t)).or_insert(0) += r.try_get::<i64, _>("n")?;
        }
        let mut stock: HashMap<(i64, String), i64> = HashMap::new();
        let mut per: HashMap<(i64, String), i64> = HashMap::new();
        let vials = sqlx::query(
            "SELECT venue_id, product, doses_per_vial, opened_at, discarded_at FROM vials \
             ORDER BY id",
        )
        .fetch_all(&self.read)
        .await?;
        for r in vials {
            let key: (i64, String) = (r.try_get("venue_id")?, r.try_get("product")?);
            let opened: Option<String> = r.try_get("opened_at")?;
            let discarded: Option<String> = r.try_get("discarded_at")?;
            if opened.is_none() && discarded.is_none() {
                *stock.entry(key.clone()).or_insert(0) += 1;
            }
            per.insert(key, r.try_get("doses_per_vial")?);
        }
        Ok(by
            .into_iter()
            .map(|(key, (name, days))| {
                let label =
                    Product::parse(&key.1).map_or(1, |p| i64::from(p.doses_per_vial(false)));
                Demand {
                    venue_id: key.0,
                    venue_name: name,
                    doses_per_day: days.into_values().collect(),
                    doses_per_vial: per.get(&key).copied().unwrap_or(label),
                    vials_in_stock: stock.get(&key).copied().unwrap_or(0),
                    product: key.1,
                }
            })
            .collect())
    }
}
