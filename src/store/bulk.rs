//! 一括処理: the set-at-a-time queries of imports and the demo. One row per statement is fine
//! for an agent saving a note, but 100,000 residents or a few thousand history calls need
//! multi-row statements inside one transaction to finish in seconds.

use super::calls::CallRow;
use super::inquiries::NewInquiry;
use super::residents::NewResident;
use super::{Engine, Store, StoreError};
use crate::domain::{AddressNo, MunicipalityCode, PhoneNumber, TicketNo};
use anyhow::Context;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Values per `IN (…)` list: far below both engines' parameter limits (SQLite 32,766,
/// PostgreSQL 65,535), large enough that 100,000 keys take a few hundred round trips.
const IN_CHUNK: usize = 900;

/// Rows per multi-row `INSERT` of residents (17 values each) and of phones (4 each).
const RESIDENT_BATCH: usize = 500;
const PHONE_BATCH: usize = 2000;

/// Placeholders for `count` parameters starting at number `from`.
///
/// PostgreSQL needs `$1,$2,…`. SQLite gets anonymous `?`: through sqlx, each *numbered*
/// SQLite parameter is bound after a linear walk of the statement's parameter names
/// (`sqlite3_bind_parameter_name`), so a statement of 8,000 `$N` values costs 8,000² steps and
/// 100,000 residents took 50 s; with `?` the same insert is linear. Positional `?` bind in
/// order, so callers bind exactly as they would for `$N`.
fn placeholders(engine: Engine, from: usize, count: usize) -> String {
    match engine {
        Engine::Postgres => (from..from + count)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(","),
        Engine::Sqlite => vec!["?"; count].join(","),
    }
}

impl Store {
    /// Inserts residents and their phones in one transaction: all or nothing. The same as
    /// [`Store::insert_residents`], with statements shaped for bulk on each engine (see
    /// [`placeholders`]): the import and the demo load tens of thousands of rows through here.
    pub async fn bulk_insert_residents(&self, residents: &[NewResident]) -> anyhow::Result<usize> {
        const COLS: usize = 17;
        let mut tx = self.begin_write().await?;
        let now = super::now();
        for chunk in residents.chunks(RESIDENT_BATCH) {
            let mut sql = String::from(
                "INSERT INTO residents (address_no, municipality_code, ticket_no, name, name_kana, \
                 birth_date, sex, postal_code, address, town, district, household_no, intent, \
                 needs_transport, notes, created_at, updated_at) VALUES ",
            );
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(self.engine, i * COLS + 1, COLS)))
                .collect();
            sql.push_str(&values.join(","));
            sql.push_str(" RETURNING id, address_no");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(r.address_no.as_str().to_string())
                    .bind(r.municipality_code.as_str().to_string())
                    .bind(r.ticket_no.as_str().to_string())
                    .bind(r.name.clone())
                    .bind(r.name_kana.as_str().to_string())
                    .bind(r.birth_date.iso())
                    .bind(r.sex.code())
                    .bind(
                        r.postal_code
                            .as_ref()
                            .map_or(String::new(), |p| p.as_str().to_string()),
                    )
                    .bind(r.address.clone())
                    .bind(r.town.clone())
                    .bind(r.district.clone())
                    .bind(r.household_no.clone())
                    .bind(r.intent.code())
                    .bind(i64::from(r.needs_transport))
                    .bind(r.notes.clone())
                    .bind(now.clone())
                    .bind(now.clone());
            }
            let rows = q
                .fetch_all(tx.conn())
                .await
                .map_err(StoreError::from)
                .context("inserting residents")?;
            let mut ids = HashMap::with_capacity(rows.len());
            for row in &rows {
                ids.insert(
                    row.try_get::<String, _>("address_no")?,
                    row.try_get::<i64, _>("id")?,
                );
            }
            let mut phones: Vec<(i64, &(PhoneNumber, String, &'static str))> = Vec::new();
            for r in chunk {
                let id = ids.get(r.address_no.as_str()).copied().with_context(|| {
                    format!("resident {} was not returned by its insert", r.address_no)
                })?;
                let mut seen = HashSet::new();
                phones.extend(
                    r.phones
                        .iter()
                        .filter(|p| seen.insert(&p.0))
                        .map(|p| (id, p)),
                );
            }
            for pchunk in phones.chunks(PHONE_BATCH) {
                let mut sql =
                    String::from("INSERT INTO phones (resident_id, e164, written, kind) VALUES ");
                let values: Vec<String> = (0..pchunk.len())
                    .map(|i| format!("({})", placeholders(self.engine, i * 4 + 1, 4)))
                    .collect();
                sql.push_str(&values.join(","));
                let mut q = sqlx::query(&sql);
                for (id, (number, written, kind)) in pchunk {
                    q = q
                        .bind(*id)
                        .bind(number.as_str().to_string())
                        .bind(written.clone())
                        .bind(*kind);
                }
                q.execute(tx.conn())
                    .await
                    .map_err(StoreError::from)
                    .context("inserting phones")?;
            }
        }
        tx.commit().await?;
        self.refresh_statistics(&["residents", "phones"]).await?;
        Ok(residents.len())
    }

    /// Which of these 宛名番号 are already in the ledger.
    pub async fn existing_address_nos(
        &self,
        address_nos: &[&AddressNo],
    ) -> anyhow::Result<HashSet<String>> {
        Ok(self
            .resident_ids_by_address_no(address_nos)
            .await?
            .into_keys()
            .collect())
    }

    /// Which of these tickets (市区町村コード, 券番号) are already in the ledger. Grouped by
    /// municipality so each query walks the `(municipality_code, ticket_no)` unique index.
    pub async fn existing_tickets(
        &self,
        tickets: &[(&MunicipalityCode, &TicketNo)],
    ) -> anyhow::Result<HashSet<(String, String)>> {
        let mut by_code: HashMap<&str, Vec<&str>> = HashMap::new();
        for (code, ticket) in tickets {
            by_code
                .entry(code.as_str())
                .or_default()
                .push(ticket.as_str());
        }
        let mut found = HashSet::new();
        for (code, tickets) in by_code {
            for chunk in tickets.chunks(IN_CHUNK) {
                let sql = format!(
                    "SELECT municipality_code, ticket_no FROM residents \
                     WHERE municipality_code = {} AND ticket_no IN ({})",
                    placeholders(self.engine, 1, 1),
                    placeholders(self.engine, 2, chunk.len())
                );
                let mut q = sqlx::query(&sql).bind(code.to_string());
                for t in chunk {
                    q = q.bind(t.to_string());
                }
                for row in q
                    .fetch_all(&self.read)
                    .await
                    .context("looking up tickets")?
                {
                    found.insert((row.try_get("municipality_code")?, row.try_get("ticket_no")?));
                }
            }
        }
        Ok(found)
    }

    /// The ledger ids of residents by 宛名番号 (those not found are absent from the map).
    pub async fn resident_ids_by_address_no(
        &self,
        address_nos: &[&AddressNo],
    ) -> anyhow::Result<HashMap<String, i64>> {
        let mut ids = HashMap::with_capacity(address_nos.len());
        for chunk in address_nos.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT address_no, id FROM residents WHERE address_no IN ({})",
                placeholders(self.engine, 1, chunk.len())
            );
            let mut q = sqlx::query(&sql);
            for a in chunk {
                q = q.bind(a.as_str().to_string());
            }
            for row in q
                .fetch_all(&self.read)
                .await
                .context("looking up residents by address number")?
            {
                ids.insert(row.try_get("address_no")?, row.try_get("id")?);
            }
        }
        Ok(ids)
    }

    /// Inserts finished calls (a history, a migration from an older call log) in one
    /// transaction. Unlike [`Store::upsert_call`] a key that exists is an error: history is
    /// written once, and a clash means the wrong database.
    pub async fn insert_calls(&self, calls: &[CallRow]) -> anyhow::Result<usize> {
        const COLS: usize = super::calls::CALL_COLUMN_COUNT;
        const BATCH: usize = 200;
        let mut tx = self.begin_write().await?;
        for chunk in calls.chunks(BATCH) {
            let mut sql = format!("INSERT INTO calls ({}) VALUES ", super::calls::CALL_COLUMNS);
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(self.engine, i * COLS + 1, COLS)))
                .collect();
            sql.push_str(&values.join(","));
            let mut q = sqlx::query(&sql);
            for c in chunk {
                q = super::calls::bind_call(q, c);
            }
            q.execute(tx.conn())
                .await
                .map_err(StoreError::from)
                .context("inserting calls")?;
        }
        tx.commit().await?;
        Ok(calls.len())
    }

    /// Inserts inquiries `(user id, inquiry, created_at)` in one transaction (each already
    /// checked: a [`NewInquiry`] is only made by parsing).
    pub async fn insert_inquiries(
        &self,
        inquiries: &[(i64, NewInquiry, String)],
    ) -> anyhow::Result<usize> {
        const COLS: usize = 9;
        const BATCH: usize = 400;
        let mut tx = self.begin_write().await?;
        for chunk in inquiries.chunks(BATCH) {
            let mut sql = String::from(
                "INSERT INTO inquiries (resident_id, call_key, user_id, category, note, follow_up, \
                 caller_kind, relationship, created_at) VALUES ",
            );
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({})", placeholders(self.engine, i * COLS + 1, COLS)))
                .collect();
            sql.push_str(&values.join(","));
            let mut q = sqlx::query(&sql);
            for (user_id, n, at) in chunk {
                q = q
                    .bind(n.resident_id())
                    .bind(n.call_id().map(str::to_string))
                    .bind(*user_id)
                    .bind(n.category().code())
                    .bind(n.note().to_string())
                    .bind(i64::from(n.follow_up()))
                    .bind(n.caller_kind().code())
                    .bind(n.relationship().to_string())
                    .bind(at.clone());
            }
            q.execute(tx.conn())
                .await
                .map_err(StoreError::from)
                .context("inserting inquiries")?;
        }
        tx.commit().await?;
        Ok(inquiries.len())
    }

    /// The lowest and highest phone row ids, for sampling callers (None when there are none).
    pub async fn phone_id_range(&self) -> anyhow::Result<Option<(i64, i64)>> {
        let row = sqlx::query("SELECT MIN(id) AS lo, MAX(id) AS hi FROM phones")
            .fetch_one(&self.read)
            .await?;
        Ok(
            match (
                row.try_get::<Option<i64>, _>("lo")?,
                row.try_get::<Option<i64>, _>("hi")?,
            ) {
                (Some(lo), Some(hi)) => Some((lo, hi)),
                _ => None,
            },
        )
    }

    /// Phones as written, by row id (ids with no row are absent from the map).
    pub async fn phones_by_ids(&self, ids: &[i64]) -> anyhow::Result<HashMap<i64, String>> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let list: Vec<String> = chunk.iter().map(i64::to_string).collect();
            // ids are integers, so inlining them is safe and keeps one query text per size.
            let sql = format!(
                "SELECT id, written FROM phones WHERE id IN ({})",
                list.join(",")
            );
            for row in sqlx::query(&sql).fetch_all(&self.read).await? {
                found.insert(row.try_get("id")?, row.try_get("written")?);
            }
        }
        Ok(found)
    }
}
