//! 通話記録: the call log. The tracker upserts a call's whole current state by `call_key`, so
//! writing the same call twice (a retry, a replayed transcript, a resync) leaves one row.

use super::Store;
use anyhow::Context;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;

/// A call as the log and the history show it. `id` is the stable call key (`ami:<Linkedid>`).
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct CallRow {
    pub id: String,
    pub direction: String,
    pub caller_number: String,
    pub caller_e164: Option<String>,
    pub caller_name: String,
    pub dialled: String,
    pub queue: Option<String>,
    pub agents_offered: Vec<String>,
    pub answered_by: Option<String>,
    pub answered_user_id: Option<i64>,
    pub resident_id: Option<i64>,
    pub candidates: i64,
    pub started_at: String,
    pub queued_at: Option<String>,
    pub rang_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub hold_s: Option<i64>,
    pub outcome: Option<String>,
}

pub(super) const CALL_COLUMNS: &str =
    "call_key, direction, caller_number, caller_e164, caller_name, dialled, \
    queue, agents_offered, answered_by, answered_user_id, resident_id, candidates, started_at, \
    queued_at, rang_at, answered_at, ended_at, hold_s, outcome";

fn call_from_row(row: &AnyRow) -> Result<CallRow, sqlx::Error> {
    let offered: String = row.try_get(7)?;
    Ok(CallRow {
        id: row.try_get(0)?,
        direction: row.try_get(1)?,
        caller_number: row.try_get(2)?,
        caller_e164: row.try_get(3)?,
        caller_name: row.try_get(4)?,
        dialled: row.try_get(5)?,
        queue: row.try_get(6)?,
        agents_offered: offered
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        answered_by: row.try_get(8)?,
        answered_user_id: row.try_get(9)?,
        resident_id: row.try_get(10)?,
        candidates: row.try_get(11)?,
        started_at: row.try_get(12)?,
        queued_at: row.try_get(13)?,
        rang_at: row.try_get(14)?,
        answered_at: row.try_get(15)?,
        ended_at: row.try_get(16)?,
        hold_s: row.try_get(17)?,
        outcome: row.try_get(18)?,
    })
}

impl Store {
    /// Writes a call's current state; the first write inserts, later ones update.
    pub async fn upsert_call(&self, c: &CallRow) -> anyhow::Result<()> {
        self.upsert_calls(std::slice::from_ref(c)).await
    }

    /// Writes several calls' states in one transaction (the call log writer batches).
    pub async fn upsert_calls(&self, calls: &[CallRow]) -> anyhow::Result<()> {
        let mut tx = self.write.begin().await?;
        for c in calls {
            upsert_call_in(&mut tx, c).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Links a call to the resident the agent confirmed (household pick-list).
    pub async fn set_call_resident(
        &self,
        call_key: &str,
        resident_id: i64,
    ) -> anyhow::Result<bool> {
        let r = sqlx::query("UPDATE calls SET resident_id = $1 WHERE call_key = $2")
            .bind(resident_id)
            .bind(call_key.to_string())
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn call(&self, call_key: &str) -> anyhow::Result<Option<CallRow>> {
        let sql = format!("SELECT {CALL_COLUMNS} FROM calls WHERE call_key = $1");
        let row = sqlx::query(&sql)
            .bind(call_key.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(call_from_row).transpose()?)
    }

    /// The calls of one resident, newest first.
    pub async fn calls_of(&self, resident_id: i64, limit: i64) -> anyhow::Result<Vec<CallRow>> {
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE resident_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(resident_id)
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(call_from_row).collect::<Result<_, _>>()?)
    }

    /// The call log between two timestamps (RFC 3339 text, either bound open), oldest first.
    pub async fn calls_between(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<CallRow>> {
        let sql = format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE started_at >= $1 AND started_at < $2 \
             ORDER BY started_at, id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(from.unwrap_or("0000").to_string())
            .bind(to.unwrap_or("9999").to_string())
            .bind(limit)
            .fetch_all(&self.read)
            .await?;
        Ok(rows.iter().map(call_from_row).collect::<Result<_, _>>()?)
    }

    pub async fn call_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM calls")
            .fetch_one(&self.read)
            .await?
            .try_get(0)?)
    }
}

/// One upsert inside the writer's transaction.
async fn upsert_call_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    c: &CallRow,
) -> anyhow::Result<()> {
    let sql = format!(
            "INSERT INTO calls ({CALL_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19) \
             ON CONFLICT (call_key) DO UPDATE SET direction = excluded.direction, \
             caller_number = excluded.caller_number, caller_e164 = excluded.caller_e164, \
             caller_name = excluded.caller_name, dialled = excluded.dialled, queue = excluded.queue, \
             agents_offered = excluded.agents_offered, answered_by = excluded.answered_by, \
             answered_user_id = excluded.answered_user_id, resident_id = excluded.resident_id, \
             candidates = excluded.candidates, queued_at = excluded.queued_at, \
             rang_at = excluded.rang_at, answered_at = excluded.answered_at, \
             ended_at = excluded.ended_at, hold_s = excluded.hold_s, outcome = excluded.outcome"
        );
    bind_call(sqlx::query(&sql), c)
        .execute(&mut **tx)
        .await
        .with_context(|| format!("writing call {}", c.id))?;
    Ok(())
}

/// Binds a call's 19 values in [`CALL_COLUMNS`] order: the one place that knows that order.
pub(super) fn bind_call<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    c: &CallRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(c.id.clone())
        .bind(c.direction.clone())
        .bind(c.caller_number.clone())
        .bind(c.caller_e164.clone())
        .bind(c.caller_name.clone())
        .bind(c.dialled.clone())
        .bind(c.queue.clone())
        .bind(c.agents_offered.join(","))
        .bind(c.answered_by.clone())
        .bind(c.answered_user_id)
        .bind(c.resident_id)
        .bind(c.candidates)
        .bind(c.started_at.clone())
        .bind(c.queued_at.clone())
        .bind(c.rang_at.clone())
        .bind(c.answered_at.clone())
        .bind(c.ended_at.clone())
        .bind(c.hold_s)
        .bind(c.outcome.clone())
}
