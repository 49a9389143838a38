//! VRS連携: export batches. Each current vaccination record goes out in exactly one batch: a
//! batch takes, in one write transaction, the day's records no batch holds yet (locking them,
//! so two exports at once cannot both take a record), stores the file it wrote byte for byte,
//! and marks the records with its id. A batch is downloaded again from what was stored, never
//! rebuilt, so it is byte-identical however the records change later.

use super::vaccinations::{
    vaccination_from_row, Actor, VaccinationRow, VACCINATION_COLUMNS, VACCINATION_SELECT,
};
use super::{now, Store, StoreError};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// A record as an export writes it: the record and the resident's 宛名番号.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub record: VaccinationRow,
    pub address_no: String,
}

/// A batch without its content (lists).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BatchInfo {
    pub id: i64,
    pub kind: String,
    pub for_date: String,
    pub created_at: String,
    pub created_by: Option<i64>,
    pub row_count: i64,
    pub checksum: String,
}

/// A batch and the file it wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub info: BatchInfo,
    pub content: String,
}

/// BLAKE2b-512 of a file, in hex.
pub fn checksum(content: &str) -> String {
    use blake2::{Blake2b512, Digest};
    let digest = Blake2b512::digest(content.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

const BATCH_COLUMNS: &str = "id, kind, for_date, created_at, created_by, row_count, checksum";

fn info_from_row(r: &sqlx::any::AnyRow) -> Result<BatchInfo, sqlx::Error> {
    Ok(BatchInfo {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        for_date: r.try_get("for_date")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        row_count: r.try_get("row_count")?,
        checksum: r.try_get("checksum")?,
    })
}

/// The export rows of the records whose ids are given, in the order recorded.
async fn export_rows<'e>(
    conn: impl sqlx::Executor<'e, Database = sqlx::Any>,
    where_clause: &str,
    bind: String,
) -> Result<Vec<ExportRow>, StoreError> {
    let sql = format!(
        "SELECT {VACCINATION_COLUMNS}, r.address_no AS address_no FROM vaccinations x \
         JOIN venues v ON v.id = x.venue_id JOIN residents r ON r.id = x.resident_id \
         WHERE {where_clause} ORDER BY x.recorded_at, x.id"
    );
    let rows = sqlx::query(&sql).bind(bind).fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            Ok(ExportRow {
                record: vaccination_from_row(r)?,
                address_no: r.try_get("address_no")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(StoreError::from)
}

impl Store {
    /// Writes a VRS batch of `day`'s records that no batch holds yet: `render` turns them into
    /// the file, which is stored with the batch. `None` (and nothing written) when there is
    /// nothing new.
    pub async fn export_vrs_batch(
        &self,
        day: NaiveDate,
        actor: Actor<'_>,
        render: impl FnOnce(&[ExportRow]) -> String,
    ) -> Result<Option<Batch>, StoreError> {
        let day_text = day.format("%Y-%m-%d").to_string();
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT id FROM vaccinations WHERE given_on = $1 AND export_batch_id IS NULL \
             AND superseded_at IS NULL ORDER BY id{}",
            tx.for_update()
        );
        let ids: Vec<i64> = sqlx::query_scalar(&sql)
            .bind(day_text.clone())
            .fetch_all(tx.conn())
            .await?;
        if ids.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        // ids are integers read from the database: inlined, one query text on both engines.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let rows = export_rows(
            tx.conn(),
            &format!("x.id IN ({list}) AND x.given_on = $1"),
            day_text.clone(),
        )
        .await?;
        let content = render(&rows);
        let sum = checksum(&content);
        let created_at = now();
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO export_batches (kind, for_date, created_at, created_by, row_count, \
             checksum, content) VALUES ('vrs', $1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(day_text.clone())
        .bind(created_at.clone())
        .bind(actor.user_id)
        .bind(rows.len() as i64)
        .bind(sum.clone())
        .bind(content.clone())
        .fetch_one(tx.conn())
        .await?;
        let marked = sqlx::query(&format!(
            "UPDATE vaccinations SET export_batch_id = $1 WHERE id IN ({list}) \
             AND export_batch_id IS NULL"
        ))
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if marked != ids.len() as u64 {
            // Cannot happen while the rows are locked; if it does, nothing is kept.
            return Err(anyhow::anyhow!(
                "export batch for {day_text}: {marked} of {} records marked",
                ids.len()
            )
            .into());
        }
        Store::audit_in(
            &mut tx,
            actor.user_id,
            "export_vrs",
            None,
            &format!("batch {id}: {} records of {day_text}", rows.len()),
            actor.remote_addr,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Batch {
            info: BatchInfo {
                id,
                kind: "vrs".into(),
                for_date: day_text,
                created_at,
                created_by: actor.user_id,
                row_count: rows.len() as i64,
                checksum: sum,
            },
            content,
        }))
    }

    /// A batch and its file, as first written.
    pub async fn export_batch(&self, id: i64) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {BATCH_COLUMNS}, content FROM export_batches WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        Ok(match row {
            Some(r) => Some(Batch {
                info: info_from_row(&r)?,
                content: r.try_get("content")?,
            }),
            None => None,
        })
    }

    /// The batches of a day, or the latest 100.
    pub async fn export_batches(
        &self,
        day: Option<NaiveDate>,
    ) -> Result<Vec<BatchInfo>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {BATCH_COLUMNS} FROM export_batches WHERE ($1 = '' OR for_date = $1) \
             ORDER BY id DESC LIMIT 100"
        ))
        .bind(
            day.map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(info_from_row).collect::<Result<_, _>>()?)
    }

    /// The current records of a day that no batch holds yet.
    pub async fn unexported(&self, day: NaiveDate) -> Result<Vec<VaccinationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "{VACCINATION_SELECT} WHERE x.given_on = $1 AND x.export_batch_id IS NULL \
             AND x.superseded_at IS NULL ORDER BY x.recorded_at, x.id"
        ))
        .bind(day.format("%Y-%m-%d").to_string())
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(vaccination_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Every current record with its resident's 宛名番号, by resident and dose (the
    /// 予防接種台帳 export).
    pub async fn ledger_rows(&self) -> Result<Vec<ExportRow>, StoreError> {
        let mut rows = export_rows(
            &self.read,
            "x.superseded_at IS NULL AND $1 = ''",
            String::new(),
        )
        .await?;
        rows.sort_by(|a, b| {
            (a.record.resident_id, a.record.dose).cmp(&(b.record.resident_id, b.record.dose))
        });
        Ok(rows)
    }
}
