//! 問い合わせ: what a caller asked and what the agent answered.

use super::Store;
use crate::domain::InquiryCategory;
use anyhow::Context;
use serde::Serialize;
use sqlx::Row;

/// The categories an agent picks from, as stored.
pub const CATEGORIES: &[&str] = InquiryCategory::CODES;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InquiryRow {
    pub id: i64,
    pub resident_id: Option<i64>,
    pub call_id: Option<String>,
    pub user_id: i64,
    pub username: String,
    /// 担当: the staff member's name as colleagues know it (the login id when none is set).
    pub user_name: String,
    pub category: String,
    pub note: String,
    pub follow_up: bool,
    pub caller_kind: String,
    pub relationship: String,
    pub created_at: String,
}

/// What an agent submits, checked: the domain's [`NewInquiry`].
pub use crate::domain::inquiry::{InquiryForm, NewInquiry};

const INQUIRY_SELECT: &str =
    "SELECT i.id, i.resident_id, i.call_key, i.user_id, COALESCE(u.username, '') AS username, \
    COALESCE(NULLIF(u.display_name, ''), u.username, '') AS user_name, i.category, i.note, i.follow_up, i.caller_kind, i.relationship, i.created_at \
    FROM inquiries i LEFT JOIN users u ON u.id = i.user_id";

fn inquiry_from_row(row: &sqlx::any::AnyRow) -> Result<InquiryRow, sqlx::Error> {
    Ok(InquiryRow {
        id: row.try_get("id")?,
        resident_id: row.try_get("resident_id")?,
        call_id: row.try_get("call_key")?,
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        user_name: row.try_get("user_name")?,
        category: row.try_get("category")?,
        note: row.try_get("note")?,
        follow_up: row.try_get::<i64, _>("follow_up")? != 0,
        caller_kind: row.try_get("caller_kind")?,
        relationship: row.try_get("relationship")?,
        created_at: row.try_get("created_at")?,
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
        .bind(n.resident_id())
        .bind(n.call_id().map(str::to_string))
        .bind(user_id)
        .bind(n.category().code())
        .bind(n.note().to_string())
        .bind(i64::from(n.follow_up()))
        .bind(n.caller_kind().code())
        .bind(n.relationship().to_string())
        .bind(at.to_string())
        .fetch_one(&self.write)
        .await
        .context("saving an inquiry")?;
        let id: i64 = row.try_get("id")?;
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

    /// Inquiries recorded between two timestamps (RFC 3339 text, either bound open), oldest
    /// first: the inquiry log export.
    pub async fn inquiries_between(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<InquiryRow>> {
        let sql = format!(
            "{INQUIRY_SELECT} WHERE i.created_at >= $1 AND i.created_at < $2 ORDER BY i.created_at, i.id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(from.unwrap_or("0000").to_string())
            .bind(to.unwrap_or("9999").to_string())
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(inquiry_from_row)
            .collect::<Result<_, _>>()?)
    }
}
