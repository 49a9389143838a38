//! 問い合わせ: what a caller asked and what the agent answered.

use super::Store;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// The categories an agent picks from; the screen shows them in Japanese.
pub const CATEGORIES: &[&str] = &[
    "appointment_change", // 日時・会場の変更
    "appointment_cancel", // キャンセル
    "transport",          // 送迎バス
    "ticket",             // 接種券
    "side_effects",       // 副反応
    "eligibility",        // 接種対象・医療相談
    "general",            // その他の問い合わせ
    "complaint",          // 苦情
];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InquiryRow {
    pub id: i64,
    pub resident_id: Option<i64>,
    pub call_id: Option<String>,
    pub user_id: i64,
    pub username: String,
    pub category: String,
    pub note: String,
    pub follow_up: bool,
    pub caller_kind: String,
    pub relationship: String,
    pub created_at: String,
}

/// What an agent submits. Checked by [`NewInquiry::check`] before it reaches SQL.
#[derive(Debug, Clone, Deserialize)]
pub struct NewInquiry {
    pub resident_id: Option<i64>,
    pub call_id: Option<String>,
    pub category: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub follow_up: bool,
    #[serde(default = "default_caller_kind")]
    pub caller_kind: String,
    #[serde(default)]
    pub relationship: String,
}

fn default_caller_kind() -> String {
    "self".into()
}

impl NewInquiry {
    /// Returns the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !CATEGORIES.contains(&self.category.as_str()) {
            return Err(("category", format!("unknown category {:?}", self.category)));
        }
        if self.note.chars().count() > 4000 {
            return Err(("note", "at most 4000 characters".into()));
        }
        match self.caller_kind.as_str() {
            "self" => {}
            "proxy" if self.relationship.trim().is_empty() => {
                return Err((
                    "relationship",
                    "a proxy caller needs a relationship (続柄)".into(),
                ))
            }
            "proxy" => {}
            other => {
                return Err((
                    "caller_kind",
                    format!("must be self or proxy, got {other:?}"),
                ))
            }
        }
        if self.relationship.chars().count() > 40 {
            return Err(("relationship", "at most 40 characters".into()));
        }
        if self.resident_id.is_none() && self.call_id.is_none() {
            return Err((
                "resident_id",
                "an inquiry needs a resident or a call".into(),
            ));
        }
        Ok(())
    }
}

const INQUIRY_SELECT: &str =
    "SELECT i.id, i.resident_id, i.call_key, i.user_id, COALESCE(u.username, ''), \
    i.category, i.note, i.follow_up, i.caller_kind, i.relationship, i.created_at \
    FROM inquiries i LEFT JOIN users u ON u.id = i.user_id";

fn inquiry_from_row(row: &sqlx::any::AnyRow) -> Result<InquiryRow, sqlx::Error> {
    Ok(InquiryRow {
        id: row.try_get(0)?,
        resident_id: row.try_get(1)?,
        call_id: row.try_get(2)?,
        user_id: row.try_get(3)?,
        username: row.try_get(4)?,
        category: row.try_get(5)?,
        note: row.try_get(6)?,
        follow_up: row.try_get::<i64, _>(7)? != 0,
        caller_kind: row.try_get(8)?,
        relationship: row.try_get(9)?,
        created_at: row.try_get(10)?,
    })
}

impl Store {
    pub async fn insert_inquiry(
        &self,
        user_id: i64,
        n: &NewInquiry,
        at: &str,
    ) -> anyhow::Result<InquiryRow> {
        let row = sqlx::query(
            "INSERT INTO inquiries (resident_id, call_key, user_id, category, note, follow_up, \
             caller_kind, relationship, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) RETURNING id",
        )
        .bind(n.resident_id)
        .bind(n.call_id.clone())
        .bind(user_id)
        .bind(n.category.clone())
        .bind(n.note.clone())
        .bind(i64::from(n.follow_up))
        .bind(n.caller_kind.clone())
        .bind(n.relationship.trim().to_string())
        .bind(at.to_string())
        .fetch_one(&self.write)
        .await
        .context("saving an inquiry")?;
        let id: i64 = row.try_get(0)?;
        let sql = format!("{INQUIRY_SELECT} WHERE i.id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_one(&self.write).await?;
        Ok(inquiry_from_row(&row)?)
    }

    /// The inquiries of one resident, newest first.
    pub async fn inquiries_of(
        &self,
        resident_id: i64,
        limit: i64,
    ) -> anyhow::Result<Vec<InquiryRow>> {
        let sql = format!("{INQUIRY_SELECT} WHERE i.resident_id = $1 ORDER BY i.created_at DESC, i.id DESC LIMIT $2");
        let rows = sqlx::query(&sql)
            .bind(resident_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(inquiry_from_row)
            .collect::<Result<_, _>>()?)
    }
}
