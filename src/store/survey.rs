//! The intent survey's answers written to the ledger (`madoguchi import survey`): one write
//! transaction for the whole file, or nothing.

use super::Store;
use crate::domain::Intent;
use anyhow::Context;
use sqlx::Row;
use std::fmt;

/// Who a row is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResidentKey {
    AddressNo(String),
    TicketNo(String),
}

impl fmt::Display for ResidentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResidentKey::AddressNo(a) => write!(f, "宛名番号 {a}"),
            ResidentKey::TicketNo(t) => write!(f, "券番号 {t}"),
        }
    }
}

/// One resident's answers. `None` keeps what the ledger has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyAnswer {
    pub row: usize,
    pub key: ResidentKey,
    pub intent: Intent,
    pub needs_transport: Option<bool>,
    pub pickup: Option<String>,
}

/// Rows whose resident is not in the ledger (or is not one resident), with the reason.
pub type Unknown = Vec<(usize, String)>;

impl Store {
    /// Writes the survey's answers in one transaction, auditing each resident whose answers
    /// changed; returns how many changed. When a row names no resident of the ledger (or a
    /// 券番号 shared by residents of two municipalities) nothing is written and those rows come
    /// back instead.
    pub async fn apply_survey(
        &self,
        answers: &[SurveyAnswer],
    ) -> anyhow::Result<Result<usize, Unknown>> {
        let mut tx = self.begin_write().await?;
        let lock = tx.for_update();
        let mut unknown = Vec::new();
        let mut found = Vec::with_capacity(answers.len());
        for a in answers {
            let (sql, value) = match &a.key {
                ResidentKey::AddressNo(v) => ("address_no", v),
                ResidentKey::TicketNo(v) => ("ticket_no", v),
            };
            let rows = sqlx::query(&format!(
                "SELECT id, intent, needs_transport, pickup_pref FROM residents WHERE {sql} = $1 LIMIT 2{lock}"
            ))
            .bind(value.clone())
            .fetch_all(tx.conn())
            .await
            .context("looking up the survey's residents")?;
            match rows.as_slice() {
                [one] => found.push((
                    a,
                    one.try_get::<i64, _>("id")?,
                    one.try_get::<String, _>("intent")?,
                    one.try_get::<i64, _>("needs_transport")? != 0,
                    one.try_get::<String, _>("pickup_pref")?,
                )),
                [] => unknown.push((a.row, format!("{} is not in the ledger", a.key))),
                _ => unknown.push((
                    a.row,
                    format!("{} names more than one resident; give the 宛名番号", a.key),
                )),
            }
        }
        if !unknown.is_empty() {
            tx.rollback().await?;
            return Ok(Err(unknown));
        }
        let now = super::now();
        let mut changed = 0;
        for (a, id, intent, transport, pickup) in found {
            let new_transport = a.needs_transport.unwrap_or(transport);
            let new_pickup = a.pickup.clone().unwrap_or_else(|| pickup.clone());
            if a.intent.code() == intent && new_transport == transport && new_pickup == pickup {
                continue;
            }
            sqlx::query(
                "UPDATE residents SET intent = $1, needs_transport = $2, pickup_pref = $3, updated_at = $4 WHERE id = $5",
            )
            .bind(a.intent.code())
            .bind(i64::from(new_transport))
            .bind(new_pickup.clone())
            .bind(now.clone())
            .bind(id)
            .execute(tx.conn())
            .await
            .context("writing the survey's answers")?;
            let detail = serde_json::json!({
                "row": a.row,
                "intent": [intent, a.intent.code()],
                "needs_transport": [transport, new_transport],
                "pickup": [pickup, new_pickup],
            })
            .to_string();
            Store::audit_in(&mut tx, None, "survey_import", Some(id), &detail, "").await?;
            changed += 1;
        }
        tx.commit().await?;
        Ok(Ok(changed))
    }
}
