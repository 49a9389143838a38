//! バイアル: vials received at a venue by lot, opened (diluted: the 6-hour clock starts),
//! discarded with a reason. The doses drawn from a vial are the current vaccination records
//! that name it ([`super::vaccinations`]), so the count cannot drift from the records.

use super::vaccinations::Actor;
use super::{parse_ts, ts, Store, StoreError};
use crate::domain::dose::{LotNo, VIAL_HOURS};
use crate::domain::vaccine::{jst_date, jst_midnight};
use crate::domain::Product;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The most vials received in one go (a Pfizer tray is 195).
pub const MAX_RECEIVE: i64 = 1000;

/// A vial as the venue screen shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VialRow {
    pub id: i64,
    pub venue_id: i64,
    pub product: String,
    pub lot: String,
    pub doses_per_vial: i64,
    pub received_at: String,
    pub opened_at: Option<String>,
    /// When the 6 hours after opening end.
    pub expires_at: Option<String>,
    pub discarded_at: Option<String>,
    pub discard_reason: String,
    /// Doses recorded from this vial.
    pub drawn: i64,
    /// `unopened`, `open`, `expired` (opened over 6 hours ago, not discarded yet), `empty`
    /// (every dose recorded) or `discarded`, as of when it was read.
    pub state: String,
}

const VIAL_SELECT: &str = "SELECT id, venue_id, product, lot, doses_per_vial, received_at, \
    opened_at, discarded_at, discard_reason, \
    (SELECT COUNT(*) FROM vaccinations x WHERE x.vial_id = vials.id AND x.superseded_at IS NULL) \
    AS drawn FROM vials";

fn vial_from_row(row: &AnyRow, at: DateTime<Utc>) -> Result<VialRow, sqlx::Error> {
    let opened_at: Option<String> = row.try_get("opened_at")?;
    let discarded_at: Option<String> = row.try_get("discarded_at")?;
    let expires = opened_at
        .as_deref()
        .and_then(parse_ts)
        .map(|o| o + Duration::hours(VIAL_HOURS));
    let drawn: i64 = row.try_get("drawn")?;
    let holds: i64 = row.try_get("doses_per_vial")?;
    let state = if discarded_at.is_some() {
        "discarded"
    } else if opened_at.is_none() {
        "unopened"
    } else if drawn >= holds {
        "empty"
    } else if expires.is_some_and(|e| at >= e) {
        "expired"
    } else {
        "open"
    };
    Ok(VialRow {
        id: row.try_get("id")?,
        venue_id: row.try_get("venue_id")?,
        product: row.try_get("product")?,
        lot: row.try_get("lot")?,
        doses_per_vial: holds,
        received_at: row.try_get("received_at")?,
        opened_at,
        expires_at: expires.map(ts),
        discarded_at,
        discard_reason: row.try_get("discard_reason")?,
        drawn,
        state: state.to_string(),
    })
}

/// Why a vial could not be opened or discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VialRefusal {
    #[error("vial {0} is already open (since {1})")]
    AlreadyOpen(i64, String),
    #[error("vial {0} was discarded")]
    Discarded(i64),
}

impl Store {
    /// Receives `count` vials of a lot at a venue; returns their ids.
    #[allow(clippy::too_many_arguments)]
    pub async fn receive_vials(
        &self,
        venue_id: i64,
        product: Product,
        lot: &LotNo,
        count: i64,
        doses_per_vial: i64,
        at: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<Vec<i64>, StoreError> {
        if !(1..=MAX_RECEIVE).contains(&count) {
            return Err(StoreError::Invalid { field: "count" });
        }
        let mut tx = self.begin_write().await?;
        let mut ids = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO vials (venue_id, product, lot, doses_per_vial, received_at, \
                 received_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(venue_id)
            .bind(product.code())
            .bind(lot.as_str().to_string())
            .bind(doses_per_vial)
            .bind(ts(at))
            .bind(actor.user_id)
            .fetch_one(tx.conn())
            .await?;
            ids.push(id);
        }
        Store::audit_in(
            &mut tx,
            actor.user_id,
            "receive_vials",
            None,
            &format!("{count} vials of {product} lot {lot} at venue {venue_id}"),
            actor.remote_addr,
        )
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Opens (dilutes) a vial at `at`. `Ok(Err(_))` when it is open already or discarded.
    pub async fn open_vial(
        &self,
        id: i64,
        at: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<Result<VialRow, VialRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT opened_at, discarded_at, received_at FROM vials WHERE id = $1{}",
            tx.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        if row.try_get::<Option<String>, _>("discarded_at")?.is_some() {
            return Ok(Err(VialRefusal::Discarded(id)));
        }
        if let Some(o) = row.try_get::<Option<String>, _>("opened_at")? {
            return Ok(Err(VialRefusal::AlreadyOpen(id, o)));
        }
        // Opened no earlier than received (a clock that disagrees is taken as "received now").
        let received: String = row.try_get("received_at")?;
        let at = parse_ts(&received).map_or(at, |r| at.max(r));
        sqlx::query("UPDATE vials SET opened_at = $1, opened_by = $2 WHERE id = $3")
            .bind(ts(at))
            .bind(actor.user_id)
            .bind(id)
            .execute(tx.conn())
            .await?;
        let detail = format!("vial {id}");
        audited(tx, actor, "open_vial", &detail, id, at)
            .await
            .map(Ok)
    }

    /// Discards a vial (廃棄) with a reason. Its recorded doses stay recorded.
    pub async fn discard_vial(
        &self,
        id: i64,
        reason: &str,
        at: DateTime<Utc>,
        actor: Actor<'_>,
    ) -> Result<Result<VialRow, VialRefusal>, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT discarded_at FROM vials WHERE id = $1{}",
            tx.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        if row.try_get::<Option<String>, _>("discarded_at")?.is_some() {
            return Ok(Err(VialRefusal::Discarded(id)));
        }
        sqlx::query(
            "UPDATE vials SET discarded_at = $1, discard_reason = $2, discarded_by = $3 \
             WHERE id = $4",
        )
        .bind(ts(at))
        .bind(reason.to_string())
        .bind(actor.user_id)
        .bind(id)
        .execute(tx.conn())
        .await?;
        let detail = format!("vial {id}: {reason}");
        audited(tx, actor, "discard_vial", &detail, id, at)
            .await
            .map(Ok)
    }

    /// A venue's vials that matter on `day`: those not opened yet and not discarded, and
    /// those opened that day; states as of `at`.
    pub async fn vials_of(
        &self,
        venue_id: i64,
        day: NaiveDate,
        at: DateTime<Utc>,
    ) -> Result<Vec<VialRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{VIAL_SELECT} WHERE venue_id = $1 AND ((opened_at IS NULL AND discarded_at IS NULL) \
             OR (opened_at >= $2 AND opened_at < $3)) ORDER BY opened_at IS NULL, opened_at, id"
        ))
        .bind(venue_id)
        .bind(ts(jst_midnight(day)))
        .bind(ts(jst_midnight(day + Duration::days(1))))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| vial_from_row(r, at))
            .collect::<Result<_, _>>()?)
    }

    /// Doses still drawable at a venue at `at`: open vials within their hours, not
    /// discarded, less what was recorded from them.
    pub async fn doses_left(&self, venue_id: i64, at: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(self
            .doses_left_by_venue(at, Some(venue_id))
            .await?
            .get(&venue_id)
            .copied()
            .unwrap_or(0))
    }

    /// Doses still drawable at `at` per venue (all venues, or the one named): open vials of
    /// the day within their hours, less what was recorded from them. One query.
    pub async fn doses_left_by_venue(
        &self,
        at: DateTime<Utc>,
        venue: Option<i64>,
    ) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
        let day = jst_date(at);
        let sql = format!(
            "{VIAL_SELECT} WHERE opened_at >= $1 AND opened_at < $2 AND discarded_at IS NULL{}",
            if venue.is_some() {
                " AND venue_id = $3"
            } else {
                ""
            }
        );
        let mut q = sqlx::query(&sql)
            .bind(ts(jst_midnight(day)))
            .bind(ts(jst_midnight(day + Duration::days(1))));
        if let Some(v) = venue {
            q = q.bind(v);
        }
        let mut left = std::collections::HashMap::new();
        for row in q.fetch_all(&self.read).await? {
            let v = vial_from_row(&row, at)?;
            if v.state == "open" {
                *left.entry(v.venue_id).or_insert(0) += (v.doses_per_vial - v.drawn).max(0);
            }
        }
        Ok(left)
    }
}

/// A vial's change ends the same way: its audit line, the vial as it now stands, the commit.
async fn audited(
    mut tx: super::WriteTx,
    actor: Actor<'_>,
    action: &str,
    detail: &str,
    id: i64,
    at: DateTime<Utc>,
) -> Result<VialRow, StoreError> {
    Store::audit_in(
        &mut tx,
        actor.user_id,
        action,
        None,
        detail,
        actor.remote_addr,
    )
    .await?;
    let row = sqlx::query(&format!("{VIAL_SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_one(tx.conn())
        .await?;
    let vial = vial_from_row(&row, at)?;
    tx.commit().await?;
    Ok(vial)
}
