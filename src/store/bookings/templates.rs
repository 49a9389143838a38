//! A venue's slots from a template, and one slot edited (capacity, seats held back, closed).

use super::super::{now, ts, Store, StoreError};
use super::{slot_from_row, Slot, SLOT_COLUMNS, SLOT_FULL};
use crate::domain::template::SlotTemplate;
use serde::{Deserialize, Serialize};

/// What a template created: new slots, and those that already existed (same venue, start and
/// product), left as they were.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Generated {
    pub created: usize,
    pub existing: usize,
}

/// A change to one slot; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlotEdit {
    pub capacity: Option<i64>,
    pub held: Option<i64>,
    pub closed: Option<bool>,
}

impl Store {
    /// Creates a venue's slots from a template in one transaction; slots that exist already are
    /// kept as they are.
    pub async fn generate_slots(
        &self,
        venue_id: i64,
        template: &SlotTemplate,
    ) -> Result<Generated, StoreError> {
        let slots = template.expand();
        let mut tx = self.begin_write().await?;
        let venue: Option<i64> = sqlx::query_scalar("SELECT id FROM venues WHERE id = $1")
            .bind(venue_id)
            .fetch_optional(tx.conn())
            .await?;
        if venue.is_none() {
            return Err(StoreError::NotFound);
        }
        let at = now();
        let mut created = 0;
        const BATCH: usize = 200;
        for chunk in slots.chunks(BATCH) {
            let mut sql = String::from(
                "INSERT INTO slots (venue_id, starts_at, ends_at, product, capacity, held, created_at) VALUES ",
            );
            // Numbered: $1 venue, $2 product, $3 capacity, $4 held, $5 created, then pairs.
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = 6 + i * 2;
                    format!("($1, ${b}, ${}, $2, $3, $4, $5)", b + 1)
                })
                .collect();
            sql.push_str(&values.join(","));
            sql.push_str(" ON CONFLICT (venue_id, starts_at, product) DO NOTHING");
            let mut q = sqlx::query(&sql)
                .bind(venue_id)
                .bind(template.product.code())
                .bind(template.capacity)
                .bind(template.held)
                .bind(at.clone());
            for s in chunk {
                q = q.bind(ts(s.starts_at)).bind(ts(s.ends_at));
            }
            created += q.execute(tx.conn()).await?.rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(Generated {
            created,
            existing: slots.len() - created,
        })
    }

    /// Edits one slot. A capacity below its live bookings is refused as
    /// [`SLOT_FULL`] (409); `held` above the capacity as invalid (422).
    pub async fn update_slot(&self, id: i64, edit: &SlotEdit) -> Result<Slot, StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {SLOT_COLUMNS} FROM slots WHERE id = $1{}",
            tx.for_update()
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .ok_or(StoreError::NotFound)?;
        let slot = slot_from_row(&row)?;
        let capacity = edit.capacity.unwrap_or(slot.capacity);
        let held = edit.held.unwrap_or(slot.held);
        let closed = edit.closed.unwrap_or(slot.closed);
        if !(0..=10_000).contains(&capacity) {
            return Err(StoreError::Invalid { field: "capacity" });
        }
        if capacity < slot.booked {
            return Err(StoreError::Conflict {
                constraint: SLOT_FULL.to_string(),
            });
        }
        if held < 0 || held > capacity {
            return Err(StoreError::Invalid { field: "held" });
        }
        sqlx::query("UPDATE slots SET capacity = $1, held = $2, closed = $3 WHERE id = $4")
            .bind(capacity)
            .bind(held)
            .bind(i64::from(closed))
            .bind(id)
            .execute(tx.conn())
            .await?;
        let row = sqlx::query(&format!("SELECT {SLOT_COLUMNS} FROM slots WHERE id = $1"))
            .bind(id)
            .fetch_one(tx.conn())
            .await?;
        let slot = slot_from_row(&row)?;
        tx.commit().await?;
        Ok(slot)
    }
}
