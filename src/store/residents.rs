//! 接種者台帳: residents, their phones, and the record an agent sees (with history).

use super::{calls::CallRow, inquiries::InquiryRow, Store, StoreError, WriteTx};
use crate::domain::{BirthDate, Kana, PhoneKind, PhoneNumber, TicketNo};
use anyhow::Context;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// How many calls and inquiries a record carries: the whole history for any real resident,
/// bounded so a pathological number cannot make a pop megabytes long.
pub const HISTORY_LIMIT: i64 = 500;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhoneRow {
    pub e164: String,
    pub written: String,
    pub kind: String,
}

/// One person of the register, as the screens show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Resident {
    pub id: i64,
    pub address_no: String,
    pub municipality_code: String,
    pub ticket_no: String,
    pub name: String,
    pub name_kana: String,
    pub birth_date: String,
    pub sex: String,
    pub postal_code: String,
    pub address: String,
    pub town: String,
    pub district: String,
    pub household_no: Option<String>,
    pub intent: String,
    pub needs_transport: bool,
    pub notes: String,
    pub phones: Vec<PhoneRow>,
}

/// A resident with everything an agent needs while the phone rings.
#[derive(Debug, Clone, Serialize)]
pub struct ResidentRecord {
    #[serde(flatten)]
    pub resident: Resident,
    /// 予約: every booking of the resident, by dose (see [`super::bookings`]).
    pub bookings: Vec<super::bookings::BookingRow>,
    /// 接種記録: every record of the resident by dose, corrected ones included (with
    /// `superseded_at`; see [`super::vaccinations`]).
    pub vaccinations: Vec<super::vaccinations::VaccinationRow>,
    pub inquiries: Vec<InquiryRow>,
    pub calls: Vec<CallRow>,
}

/// A resident to insert: the domain's parsed record.
pub use crate::domain::NewResident;

const RESIDENT_COLUMNS: &str = "r.id, r.address_no, r.municipality_code, r.ticket_no, r.name, \
    r.name_kana, r.birth_date, r.sex, r.postal_code, r.address, r.town, r.district, \
    r.household_no, r.intent, r.needs_transport, r.notes";

fn resident_from_row(row: &AnyRow) -> Result<Resident, sqlx::Error> {
    Ok(Resident {
        id: row.try_get("id")?,
        address_no: row.try_get("address_no")?,
        municipality_code: row.try_get("municipality_code")?,
        ticket_no: row.try_get("ticket_no")?,
        name: row.try_get("name")?,
        name_kana: row.try_get("name_kana")?,
        birth_date: row.try_get("birth_date")?,
        sex: row.try_get("sex")?,
        postal_code: row.try_get("postal_code")?,
        address: row.try_get("address")?,
        town: row.try_get("town")?,
        district: row.try_get("district")?,
        household_no: row.try_get("household_no")?,
        intent: row.try_get("intent")?,
        needs_transport: row.try_get::<i64, _>("needs_transport")? != 0,
        notes: row.try_get("notes")?,
        phones: Vec::new(),
    })
}

impl Store {
    /// Fills in the phones of a list of residents (one query).
    async fn attach_phones(&self, residents: &mut [Resident]) -> anyhow::Result<()> {
        if residents.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = residents.iter().map(|r| r.id.to_string()).collect();
        // ids are integers we produced, so inlining them is safe and keeps one query text.
        let sql = format!(
            "SELECT resident_id, e164, written, kind FROM phones WHERE resident_id IN ({}) ORDER BY id",
            ids.join(",")
        );
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        for row in rows {
            let rid: i64 = row.try_get("resident_id")?;
            if let Some(r) = residents.iter_mut().find(|r| r.id == rid) {
                r.phones.push(PhoneRow {
                    e164: row.try_get("e164")?,
                    written: row.try_get("written")?,
                    kind: row.try_get("kind")?,
                });
            }
        }
        Ok(())
    }

    async fn residents_where(&self, clause: &str, binds: &[&str]) -> anyhow::Result<Vec<Resident>> {
        let sql = format!("SELECT {RESIDENT_COLUMNS} FROM residents r WHERE {clause} ORDER BY r.birth_date, r.id LIMIT 50");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b.to_string());
        }
        let rows = q
            .fetch_all(&self.read)
            .await
            .context("looking up residents")?;
        let mut out = rows
            .iter()
            .map(resident_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_phones(&mut out).await?;
        Ok(out)
    }

    /// Everyone on this number: a household landline gives the whole household.
    pub async fn residents_by_phone(&self, phone: &PhoneNumber) -> anyhow::Result<Vec<Resident>> {
        self.residents_where(
            "r.id IN (SELECT resident_id FROM phones WHERE e164 = $1)",
            &[phone.as_str()],
        )
        .await
    }

    pub async fn residents_by_ticket(&self, ticket: &TicketNo) -> anyhow::Result<Vec<Resident>> {
        self.residents_where("r.ticket_no = $1", &[ticket.as_str()])
            .await
    }

    /// The unknown caller: a prefix of the kana reading, spaces ignored (callers rarely say
    /// where the surname ends), and, when given, the birth date.
    pub async fn residents_by_kana(
        &self,
        kana: &Kana,
        birth_date: Option<BirthDate>,
    ) -> anyhow::Result<Vec<Resident>> {
        // A Kana holds only katakana and spaces; the pattern is escaped all the same, so what
        // was typed is matched literally whatever the parser lets through (`kana=%%` must
        // never list every resident).
        let mut pattern = String::new();
        for c in kana.without_spaces().chars() {
            if matches!(c, '\\' | '%' | '_') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        const NAME: &str = "REPLACE(REPLACE(r.name_kana, '　', ''), ' ', '') LIKE $1 ESCAPE '\\'";
        match birth_date {
            Some(b) => {
                self.residents_where(
                    &format!("r.birth_date = $2 AND {NAME}"),
                    &[&pattern, &b.iso()],
                )
                .await
            }
            None => self.residents_where(NAME, &[&pattern]).await,
        }
    }

    pub async fn resident(&self, id: i64) -> anyhow::Result<Option<Resident>> {
        let sql = format!("SELECT {RESIDENT_COLUMNS} FROM residents r WHERE r.id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut v = vec![resident_from_row(&row)?];
        self.attach_phones(&mut v).await?;
        Ok(v.pop())
    }

    /// A resident with the full history, newest first.
    pub async fn resident_record(&self, resident: Resident) -> anyhow::Result<ResidentRecord> {
        let inquiries = self.inquiries_of(resident.id, HISTORY_LIMIT).await?;
        let calls = self.calls_of(resident.id, HISTORY_LIMIT).await?;
        let bookings = self.bookings_of(resident.id).await?;
        let vaccinations = self.vaccinations_of(resident.id).await?;
        Ok(ResidentRecord {
            resident,
            bookings,
            vaccinations,
            inquiries,
            calls,
        })
    }

    pub async fn resident_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM residents")
            .fetch_one(&self.read)
            .await?
            .try_get("n")?)
    }

    /// Adds a number to a resident inside `tx` (the caller commits): `Ok(false)` when there is
    /// no such resident; a number the resident already has is refused by the constraint
    /// `phones_resident_number` (a [`StoreError::Conflict`]). The screen-pop lookup reads
    /// `phones`, so the next call from this number finds the resident.
    pub async fn add_phone(
        tx: &mut WriteTx,
        resident_id: i64,
        phone: &PhoneNumber,
        written: &str,
        kind: PhoneKind,
    ) -> Result<bool, StoreError> {
        let lock = tx.for_update();
        let found = sqlx::query(&format!("SELECT id FROM residents WHERE id = $1{lock}"))
            .bind(resident_id)
            .fetch_optional(tx.conn())
            .await?;
        if found.is_none() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO phones (resident_id, e164, written, kind) VALUES ($1, $2, $3, $4)",
        )
        .bind(resident_id)
        .bind(phone.as_str().to_string())
        .bind(written.to_string())
        .bind(kind.code().to_string())
        .execute(tx.conn())
        .await?;
        Ok(true)
    }

    /// Inserts residents and their phones in one transaction: all or nothing (the batched
    /// insert of [`bulk`](super::bulk)).
    pub async fn insert_residents(&self, residents: &[NewResident]) -> anyhow::Result<usize> {
        self.bulk_insert_residents(residents).await
    }
}
