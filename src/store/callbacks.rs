//! 折り返し: callers who abandoned or were missed, to be called back. One entry per number per
//! day in Japan (a second missed call adds to `missed`); cleared by itself when that number
//! calls again and is answered; taken by an agent and marked done with an outcome.

use super::Store;
use super::StoreError;
use serde::Serialize;
use sqlx::Row;

/// The outcomes an agent may record when a callback is done.
pub const OUTCOMES: &[&str] = &["reached", "no_answer", "voicemail", "wrong_number", "other"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallbackRow {
    pub id: i64,
    pub number: String,
    pub day: String,
    pub call_id: String,
    pub queue: Option<String>,
    pub resident_id: Option<i64>,
    pub candidates: i64,
    pub missed: i64,
    pub status: String,
    pub taken_by: Option<i64>,
    pub taken_at: Option<String>,
    pub outcome: Option<String>,
    pub note: String,
    pub done_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The outbound call placed to call back (click-to-dial), its call-log key.
    pub dialled_call_id: Option<String>,
}

const COLUMNS: &str = "id, number, day, call_key, queue, resident_id, candidates, missed, status, \
    taken_by, taken_at, outcome, note, done_at, created_at, updated_at, dialled_call_key";

fn from_row(r: &sqlx::any::AnyRow) -> Result<CallbackRow, sqlx::Error> {
    Ok(CallbackRow {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        day: r.try_get("day")?,
        call_id: r.try_get("call_key")?,
        queue: r.try_get("queue")?,
        resident_id: r.try_get("resident_id")?,
        candidates: r.try_get("candidates")?,
        missed: r.try_get("missed")?,
        status: r.try_get("status")?,
        taken_by: r.try_get("taken_by")?,
        taken_at: r.try_get("taken_at")?,
        outcome: r.try_get("outcome")?,
        note: r.try_get("note")?,
        done_at: r.try_get("done_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        dialled_call_id: r.try_get("dialled_call_key")?,
    })
}

/// Why a callback change was refused.
#[derive(Debug, PartialEq)]
pub enum CallbackRefused {
    NotFound,
    /// Someone else took it, or it is done or cleared (the state it is in).
    NotOpen(String),
}

impl Store {
    /// A missed call (abandoned, timeout, no answer, busy) from `number` on `day` (JST): a new
    /// entry, or one more miss on today's (reopened if it was done or cleared).
    #[allow(clippy::too_many_arguments)]
    pub async fn note_missed_call(
        &self,
        number: &str,
        day: &str,
        call_key: &str,
        queue: Option<&str>,
        resident_id: Option<i64>,
        candidates: i64,
        at: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO callbacks (number, day, call_key, queue, resident_id, candidates, missed, \
             status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, 'open', $7, $7) \
             ON CONFLICT (number, day) DO UPDATE SET \
               missed = CASE WHEN callbacks.call_key = excluded.call_key THEN callbacks.missed \
                             ELSE callbacks.missed + 1 END, \
               call_key = excluded.call_key, \
               queue = COALESCE(excluded.queue, callbacks.queue), \
               resident_id = COALESCE(callbacks.resident_id, excluded.resident_id), \
               candidates = excluded.candidates, \
               status = CASE WHEN callbacks.status IN ('done', 'cleared') \
                             AND callbacks.call_key <> excluded.call_key THEN 'open' \
                             ELSE callbacks.status END, \
               updated_at = excluded.updated_at",
        )
        .bind(number.to_string())
        .bind(day.to_string())
        .bind(call_key.to_string())
        .bind(queue.map(str::to_string))
        .bind(resident_id)
        .bind(candidates)
        .bind(at.to_string())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// The resident lookup of a missed call finished after the call ended: its entry learns
    /// who called (if it still names that call and knows nobody yet).
    pub async fn callback_resident(
        &self,
        call_key: &str,
        resident_id: Option<i64>,
        candidates: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE callbacks SET resident_id = COALESCE(resident_id, $2), candidates = $3 \
             WHERE call_key = $1",
        )
        .bind(call_key.to_string())
        .bind(resident_id)
        .bind(candidates)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// `number` called again and was answered: its open or taken entries are cleared.
    pub async fn clear_callbacks(&self, number: &str, at: &str) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "UPDATE callbacks SET status = 'cleared', done_at = $2, updated_at = $2 \
             WHERE number = $1 AND status IN ('open', 'taken')",
        )
        .bind(number.to_string())
        .bind(at.to_string())
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected())
    }

    /// Entries of `status` (all but done/cleared when None) from `since_day` on, oldest first.
    pub async fn callbacks(
        &self,
        status: Option<&str>,
        since_day: &str,
        limit: i64,
    ) -> Result<Vec<CallbackRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM callbacks WHERE day >= $1 AND \
             (($2 = '' AND status IN ('open', 'taken')) OR status = $2) \
             ORDER BY day, created_at, id LIMIT $3"
        ))
        .bind(since_day.to_string())
        .bind(status.unwrap_or("").to_string())
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(from_row).collect::<Result<_, _>>()?)
    }

    pub async fn callback(&self, id: i64) -> Result<Option<CallbackRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM callbacks WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.write)
            .await?;
        Ok(row.as_ref().map(from_row).transpose()?)
    }

    /// An agent takes an open entry (or one they hold already). One conditional UPDATE, so two
    /// agents taking the same entry at once cannot both have it.
    pub async fn take_callback(
        &self,
        id: i64,
        user_id: i64,
        at: &str,
    ) -> Result<Result<CallbackRow, CallbackRefused>, StoreError> {
        let r = sqlx::query(
            "UPDATE callbacks SET status = 'taken', taken_by = $2, taken_at = $3, updated_at = $3 \
             WHERE id = $1 AND (status = 'open' OR (status = 'taken' AND taken_by = $2))",
        )
        .bind(id)
        .bind(user_id)
        .bind(at.to_string())
        .execute(&self.write)
        .await?;
        self.after_change(id, r.rows_affected()).await
    }

    /// The agent who holds an entry (or anyone, for an open one) marks it done.
    pub async fn finish_callback(
        &self,
        id: i64,
        user_id: i64,
        outcome: &str,
        note: &str,
        at: &str,
    ) -> Result<Result<CallbackRow, CallbackRefused>, StoreError> {
        let r = sqlx::query(
            "UPDATE callbacks SET status = 'done', outcome = $3, note = $4, done_at = $5, \
             updated_at = $5, taken_by = COALESCE(taken_by, $2), taken_at = COALESCE(taken_at, $5) \
             WHERE id = $1 AND (status = 'open' OR (status = 'taken' AND taken_by = $2))",
        )
        .bind(id)
        .bind(user_id)
        .bind(outcome.to_string())
        .bind(note.to_string())
        .bind(at.to_string())
        .execute(&self.write)
        .await?;
        self.after_change(id, r.rows_affected()).await
    }

    /// Notes the outbound call placed to call an entry back (click-to-dial). False when there
    /// is no such entry.
    pub async fn callback_dialled(
        &self,
        id: i64,
        call_key: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE callbacks SET dialled_call_key = $2, updated_at = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(call_key.to_string())
        .bind(at.to_string())
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn after_change(
        &self,
        id: i64,
        changed: u64,
    ) -> Result<Result<CallbackRow, CallbackRefused>, StoreError> {
        let Some(row) = self.callback(id).await? else {
            return Ok(Err(CallbackRefused::NotFound));
        };
        if changed == 0 {
            return Ok(Err(CallbackRefused::NotOpen(row.status)));
        }
        Ok(Ok(row))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::TestDb;

    async fn one_entry_per_number_per_day_cleared_by_an_answered_call(engine: &str) {
        let db = TestDb::new(engine).await.unwrap();
        let store = &db.store;
        let at = "2021-05-10T01:00:00.000Z";
        store
            .note_missed_call(
                "0773620001",
                "2021-05-10",
                "ami:1",
                Some("q"),
                Some(7),
                1,
                at,
            )
            .await
            .unwrap();
        // The same call noted twice (the writer retried) is one miss; another call is two.
        store
            .note_missed_call(
                "0773620001",
                "2021-05-10",
                "ami:1",
                Some("q"),
                Some(7),
                1,
                at,
            )
            .await
            .unwrap();
        store
            .note_missed_call(
                "0773620001",
                "2021-05-10",
                "ami:2",
                Some("q"),
                Some(7),
                1,
                at,
            )
            .await
            .unwrap();
        store
            .note_missed_call("0773620002", "2021-05-10", "ami:3", None, None, 0, at)
            .await
            .unwrap();
        let open = store.callbacks(None, "2021-05-10", 100).await.unwrap();
        assert_eq!(open.len(), 2);
        assert_eq!((open[0].missed, open[0].call_id.as_str()), (2, "ami:2"));
        // Taken by user 1: user 2 cannot take it; user 1 can mark it done.
        let a = store
            .take_callback(open[0].id, 1, at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.status.as_str(), a.taken_by), ("taken", Some(1)));
        assert_eq!(
            store.take_callback(open[0].id, 2, at).await.unwrap(),
            Err(super::CallbackRefused::NotOpen("taken".into()))
        );
        let d = store
            .finish_callback(open[0].id, 1, "reached", "予約済み", at)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (d.status.as_str(), d.outcome.as_deref()),
            ("done", Some("reached"))
        );
        // The second number calls again and is answered: cleared.
        assert_eq!(store.clear_callbacks("0773620002", at).await.unwrap(), 1);
        assert!(store
            .callbacks(None, "2021-05-10", 100)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store.take_callback(999, 1, at).await.unwrap(),
            Err(super::CallbackRefused::NotFound)
        );
        db.cleanup().await;
    }

    crate::on_each_engine!(one_entry_per_number_per_day_cleared_by_an_answered_call);
}
