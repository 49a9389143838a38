//! 通話記録: the call log. The tracker upserts a call's whole current state by `call_key`, so
//! writing the same call twice (a retry, a replayed transcript, a resync) leaves one row.

use super::Store;
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::Row;

/// A call as the log and the history show it. `id` is the stable call key (`ami:<Linkedid>`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
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
    /// The answering agent's name (display name, else login), read with the row; never written.
    #[serde(default)]
    pub answered_by_name: Option<String>,
    pub resident_id: Option<i64>,
    pub candidates: i64,
    pub started_at: String,
    pub queued_at: Option<String>,
    pub rang_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub hold_s: Option<i64>,
    pub outcome: Option<String>,
    /// An agent said who is calling (the household pick-list); the tracker never replaces it.
    #[serde(skip)]
    pub resident_confirmed: bool,
    /// `ended_at` is when madoguchi noticed the end (a resync, the bound on calls nobody
    /// reports), not when the PBX said so.
    #[serde(skip)]
    pub end_estimated: bool,
}

pub(super) const CALL_COLUMNS: &str =
    "call_key, direction, caller_number, caller_e164, caller_name, dialled, \
    queue, agents_offered, answered_by, answered_user_id, resident_id, candidates, started_at, \
    queued_at, rang_at, answered_at, ended_at, hold_s, outcome, resident_confirmed, end_estimated";

/// How many columns [`CALL_COLUMNS`] names (and [`bind_call`] binds).
pub(super) const CALL_COLUMN_COUNT: usize = 21;

fn call_from_row(row: &AnyRow) -> Result<CallRow, sqlx::Error> {
    let offered: String = row.try_get("agents_offered")?;
    Ok(CallRow {
        id: row.try_get("call_key")?,
        direction: row.try_get("direction")?,
        caller_number: row.try_get("caller_number")?,
        caller_e164: row.try_get("caller_e164")?,
        caller_name: row.try_get("caller_name")?,
        dialled: row.try_get("dialled")?,
        queue: row.try_get("queue")?,
        agents_offered: offered
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        answered_by: row.try_get("answered_by")?,
        answered_user_id: row.try_get("answered_user_id")?,
        answered_by_name: row.try_get("answered_by_name")?,
        resident_id: row.try_get("resident_id")?,
        candidates: row.try_get("candidates")?,
        started_at: row.try_get("started_at")?,
        queued_at: row.try_get("queued_at")?,
        rang_at: row.try_get("rang_at")?,
        answered_at: row.try_get("answered_at")?,
        ended_at: row.try_get("ended_at")?,
        hold_s: row.try_get("hold_s")?,
        outcome: row.try_get("outcome")?,
        resident_confirmed: row.try_get::<i64, _>("resident_confirmed")? != 0,
        end_estimated: row.try_get::<i64, _>("end_estimated")? != 0,
    })
}

/// How a call row is read: its columns and the answering agent's name.
const CALL_READ: &str =
    "SELECT calls.call_key, direction, caller_number, caller_e164, caller_name, \
    dialled, queue, agents_offered, answered_by, answered_user_id, resident_id, candidates, \
    started_at, queued_at, rang_at, answered_at, ended_at, hold_s, outcome, resident_confirmed, \
    end_estimated, COALESCE(NULLIF(u.display_name, ''), u.username) AS answered_by_name \
    FROM calls LEFT JOIN users u ON u.id = calls.answered_user_id";

/// The earlier of two nullable timestamps (text sorts as time), for `ON CONFLICT` updates.
fn earliest(col: &str) -> String {
    format!(
        "CASE WHEN calls.{col} IS NULL THEN excluded.{col} \
              WHEN excluded.{col} IS NULL THEN calls.{col} \
              WHEN excluded.{col} < calls.{col} THEN excluded.{col} ELSE calls.{col} END"
    )
}

/// The upsert that makes the call log move only forward, whichever writer comes last: a
/// restarted tracker that knows less, a replayed transcript, a retried batch. What was learned
/// is kept: times take the earliest known value, the queue and the answer are never cleared, the
/// agents offered only grow, an end is final, and the agent's identification of the caller
/// (`resident_confirmed`) is never replaced by the tracker's guess. An answered call stays
/// answered.
fn upsert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let answered_at = earliest("answered_at");
        format!(
            "INSERT INTO calls ({CALL_COLUMNS}) VALUES \
             ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21) \
             ON CONFLICT (call_key) DO UPDATE SET \
             direction = excluded.direction, \
             caller_number = CASE WHEN excluded.caller_number <> '' THEN excluded.caller_number ELSE calls.caller_number END, \
             caller_e164 = COALESCE(excluded.caller_e164, calls.caller_e164), \
             caller_name = CASE WHEN excluded.caller_name <> '' THEN excluded.caller_name ELSE calls.caller_name END, \
             dialled = CASE WHEN excluded.dialled <> '' THEN excluded.dialled ELSE calls.dialled END, \
             queue = COALESCE(calls.queue, excluded.queue), \
             agents_offered = CASE WHEN length(excluded.agents_offered) >= length(calls.agents_offered) \
                              THEN excluded.agents_offered ELSE calls.agents_offered END, \
             answered_by = COALESCE(excluded.answered_by, calls.answered_by), \
             answered_user_id = COALESCE(excluded.answered_user_id, calls.answered_user_id), \
             resident_id = CASE WHEN calls.resident_confirmed = 1 THEN calls.resident_id \
                           ELSE COALESCE(excluded.resident_id, calls.resident_id) END, \
             resident_confirmed = CASE WHEN calls.resident_confirmed = 1 OR excluded.resident_confirmed = 1 THEN 1 ELSE 0 END, \
             candidates = CASE WHEN excluded.candidates > 0 THEN excluded.candidates ELSE calls.candidates END, \
             started_at = CASE WHEN excluded.started_at < calls.started_at THEN excluded.started_at ELSE calls.started_at END, \
             queued_at = {queued_at}, rang_at = {rang_at}, answered_at = {answered_at}, \
             ended_at = COALESCE(calls.ended_at, excluded.ended_at), \
             end_estimated = CASE WHEN calls.ended_at IS NOT NULL THEN calls.end_estimated ELSE excluded.end_estimated END, \
             hold_s = COALESCE(excluded.hold_s, calls.hold_s), \
             outcome = CASE \
                 WHEN calls.outcome IS NOT NULL AND calls.outcome <> 'unknown' THEN calls.outcome \
                 WHEN COALESCE(excluded.outcome, calls.outcome) IS NULL THEN NULL \
                 WHEN ({answered_at}) IS NOT NULL THEN 'answered' \
                 ELSE COALESCE(excluded.outcome, calls.outcome) END",
            queued_at = earliest("queued_at"),
            rang_at = earliest("rang_at"),
        )
    })
}

impl Store {
    /// Writes a call's current state; the first write inserts, later ones update.
    pub async fn upsert_call(&self, c: &CallRow) -> anyhow::Result<()> {
        Ok(self.upsert_calls(std::slice::from_ref(c)).await?)
    }

    /// Writes several calls' states in one transaction (the call log writer batches). The
    /// error is sqlx's own, so the writer can tell a lost connection from a refused row.
    pub async fn upsert_calls(&self, calls: &[CallRow]) -> Result<(), sqlx::Error> {
        let mut tx = self.write.begin().await?;
        for c in calls {
            upsert_call_in(&mut tx, c).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Calls an earlier process left open (no `ended_at`), to reconcile with the PBX at start.
    pub async fn open_calls(&self) -> anyhow::Result<Vec<CallRow>> {
        let sql = format!("{CALL_READ} WHERE ended_at IS NULL ORDER BY started_at, calls.id");
        let rows = sqlx::query(&sql).fetch_all(&self.read).await?;
        Ok(rows.iter().map(call_from_row).collect::<Result<_, _>>()?)
    }

    /// Keys of the calls that ended at or after `since`, newest first, at most `limit`: the
    /// tracker remembers them so a straggling event opens no second call after a restart.
    pub async fn ended_call_keys(&self, since: &str, limit: i64) -> anyhow::Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT call_key FROM calls WHERE ended_at >= $1 ORDER BY ended_at DESC LIMIT $2",
        )
        .bind(since.to_string())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get::<String, _>("call_key"))
            .collect::<Result<_, _>>()?)
    }

    /// Sets aside a call state the database refused, whole, for an administrator.
    pub async fn insert_call_reject(
        &self,
        call_key: &str,
        error: &str,
        row_json: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO call_log_rejects (call_key, at, error, row_json) VALUES ($1, $2, $3, $4)",
        )
        .bind(call_key.to_string())
        .bind(super::now())
        .bind(error.to_string())
        .bind(row_json.to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The call states set aside, newest first.
    pub async fn call_rejects(&self, limit: i64) -> anyhow::Result<Vec<serde_json::Value>> {
        let rows = sqlx::query(
            "SELECT id, call_key, at, error, row_json FROM call_log_rejects ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(serde_json::json!({
                    "id": r.try_get::<i64, _>("id")?,
                    "call_key": r.try_get::<String, _>("call_key")?,
                    "at": r.try_get::<String, _>("at")?,
                    "error": r.try_get::<String, _>("error")?,
                    "row": r.try_get::<String, _>("row_json")?,
                }))
            })
            .collect()
    }

    /// Links a call to the resident the agent confirmed (household pick-list).
    pub async fn set_call_resident(
        &self,
        call_key: &str,
        resident_id: i64,
    ) -> anyhow::Result<bool> {
        let r = sqlx::query(
            "UPDATE calls SET resident_id = $1, resident_confirmed = 1 WHERE call_key = $2",
        )
        .bind(resident_id)
        .bind(call_key.to_string())
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn call(&self, call_key: &str) -> anyhow::Result<Option<CallRow>> {
        let sql = format!("{CALL_READ} WHERE call_key = $1");
        let row = sqlx::query(&sql)
            .bind(call_key.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(call_from_row).transpose()?)
    }

    /// The calls of one resident, newest first.
    pub async fn calls_of(&self, resident_id: i64, limit: i64) -> anyhow::Result<Vec<CallRow>> {
        let sql = format!(
            "{CALL_READ} WHERE resident_id = $1 ORDER BY started_at DESC, calls.id DESC LIMIT $2"
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
            "{CALL_READ} WHERE started_at >= $1 AND started_at < $2 \
             ORDER BY started_at, calls.id LIMIT $3"
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
) -> Result<(), sqlx::Error> {
    bind_call(sqlx::query(upsert_sql()), c)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Binds a call's 21 values in [`CALL_COLUMNS`] order: the one place that knows that order.
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
        .bind(i64::from(c.resident_confirmed))
        .bind(i64::from(c.end_estimated))
}

#[cfg(test)]
mod tests {
    use super::CallRow;
    use crate::store::testing::TestDb;

    fn full() -> CallRow {
        CallRow {
            id: "ami:1.1".into(),
            direction: "inbound".into(),
            caller_number: "0773621111".into(),
            caller_e164: Some("+81773621111".into()),
            dialled: "0773689225".into(),
            queue: Some("vaccine".into()),
            agents_offered: vec!["201".into(), "202".into()],
            answered_by: Some("201".into()),
            candidates: 2,
            started_at: "2021-05-10T09:00:00.000Z".into(),
            queued_at: Some("2021-05-10T09:00:01.000Z".into()),
            rang_at: Some("2021-05-10T09:00:02.000Z".into()),
            answered_at: Some("2021-05-10T09:00:09.000Z".into()),
            ended_at: Some("2021-05-10T09:03:00.000Z".into()),
            hold_s: Some(8),
            outcome: Some("answered".into()),
            ..CallRow::default()
        }
    }

    /// A writer that knows less (a restarted tracker, a replay, a retried old batch) never
    /// takes back what the log learned; an agent's identification outlives the tracker's guess.
    async fn the_call_log_only_moves_forward(engine: &str) {
        {
            let db = TestDb::new(engine).await.unwrap();
            let s = &db.store;
            let mut first = Vec::new();
            for n in ["1", "2"] {
                let row = sqlx::query(
                    "INSERT INTO residents (address_no, municipality_code, ticket_no, name, \
                     name_kana, birth_date, sex, created_at, updated_at) \
                     VALUES ($1, '262021', $2, 'x', 'x', '1950-01-01', 'F', '', '') RETURNING id",
                )
                .bind(format!("A{n}"))
                .bind(format!("000000000{n}"))
                .fetch_one(&s.write)
                .await
                .unwrap();
                first.push(sqlx::Row::try_get::<i64, _>(&row, 0).unwrap());
            }
            s.upsert_call(&full()).await.unwrap();
            assert!(s.set_call_resident("ami:1.1", first[1]).await.unwrap());
            // A restarted process saw only the ringing, later, and then an unseen end.
            let less = CallRow {
                id: "ami:1.1".into(),
                direction: "inbound".into(),
                caller_number: "0773621111".into(),
                started_at: "2021-05-10T09:00:05.000Z".into(),
                rang_at: Some("2021-05-10T09:05:00.000Z".into()),
                resident_id: Some(first[0]),
                agents_offered: vec!["201".into()],
                ended_at: Some("2021-05-10T09:10:00.000Z".into()),
                end_estimated: true,
                outcome: Some("unknown".into()),
                ..CallRow::default()
            };
            s.upsert_call(&less).await.unwrap();
            let got = s.call("ami:1.1").await.unwrap().unwrap();
            let want = CallRow {
                resident_id: Some(first[1]),
                resident_confirmed: true,
                ..full()
            };
            assert_eq!(got, want, "{engine}");
            // A call still open learns its answer and end; an unknown end gives way to none.
            let open = CallRow {
                id: "ami:2.1".into(),
                direction: "inbound".into(),
                started_at: "2021-05-10T10:00:00.000Z".into(),
                ..CallRow::default()
            };
            s.upsert_call(&open).await.unwrap();
            let closed = CallRow {
                answered_at: Some("2021-05-10T10:00:05.000Z".into()),
                ended_at: Some("2021-05-10T10:01:00.000Z".into()),
                end_estimated: true,
                outcome: Some("unknown".into()),
                ..open.clone()
            };
            s.upsert_call(&closed).await.unwrap();
            let got = s.call("ami:2.1").await.unwrap().unwrap();
            assert_eq!(
                got.outcome.as_deref(),
                Some("answered"),
                "{engine}: an answered call stays answered"
            );
            assert!(got.end_estimated);
            db.cleanup().await;
        }
    }

    crate::on_each_engine!(the_call_log_only_moves_forward);
}
