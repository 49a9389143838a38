//! Write transactions that compose: one [`WriteTx`] carries several changes (both doses of a
//! booking, the slot counts, the ride) and commits them together or not at all.
//!
//! - SQLite: the single writer, opened with `BEGIN IMMEDIATE`, so the transaction holds the
//!   write lock from its first statement (on the direct connection of [`super::native`], which
//!   holds the pool's one writer meanwhile). A deferred transaction that reads and then
//!   writes can fail with SQLITE_BUSY_SNAPSHOT under load; this one cannot, and since it is the
//!   only writer, what it reads stays true until it commits.
//! - PostgreSQL: a pooled connection in a READ COMMITTED transaction. Rows a decision depends
//!   on are locked with [`WriteTx::for_update`] appended to the `SELECT` (`… FOR UPDATE`), so a
//!   concurrent transaction waits instead of deciding on the same stale row.
//!
//! Store functions that take part in a larger change take `&mut WriteTx` and never commit;
//! the caller that began the transaction commits it. Dropping a `WriteTx` without
//! [`WriteTx::commit`] rolls it back, so an early `?` leaves nothing behind.

use super::native::{TxConn, Via};
use super::{Engine, Store, StoreError};

/// An open write transaction (see the module doc).
pub struct WriteTx {
    tx: TxConn,
    engine: Engine,
}

impl Store {
    /// Begins a write transaction: `BEGIN IMMEDIATE` on SQLite's writer, `BEGIN` on PostgreSQL.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let tx = match (self.engine, &self.native) {
            (Engine::Sqlite, Some(native)) => TxConn::Native(native.begin(&self.write).await?),
            (Engine::Sqlite, None) => TxConn::Pool(self.write.begin_with("BEGIN IMMEDIATE").await?),
            (Engine::Postgres, _) => TxConn::Pool(self.write.begin().await?),
        };
        Ok(WriteTx {
            tx,
            engine: self.engine,
        })
    }
}

impl WriteTx {
    /// The connection to run statements on: `query.execute(tx.conn())`.
    pub fn conn(&mut self) -> Via<'_, &mut sqlx::AnyConnection> {
        self.tx.via()
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The row-locking suffix for a `SELECT` whose rows this transaction will change:
    /// ` FOR UPDATE` on PostgreSQL; nothing on SQLite, where `BEGIN IMMEDIATE` already holds
    /// the database's one write lock.
    pub fn for_update(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        }
    }

    /// [`WriteTx::for_update`] for a `SELECT` that joins other tables: only `alias`'s rows
    /// are locked (` FOR UPDATE OF alias` on PostgreSQL; nothing on SQLite).
    pub fn for_update_of(&self, alias: &str) -> String {
        match self.engine {
            Engine::Postgres => format!(" FOR UPDATE OF {alias}"),
            Engine::Sqlite => String::new(),
        }
    }

    /// Makes every change of the transaction visible, or none of them.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.tx {
            TxConn::Pool(tx) => tx.commit().await?,
            TxConn::Native(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Undoes the transaction now (dropping it does the same, a moment later).
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.tx {
            TxConn::Pool(tx) => tx.rollback().await?,
            TxConn::Native(tx) => tx.rollback()?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{engines, sample_residents, TestDb};
    use sqlx::Row;

    async fn notes_and_sex(store: &Store) -> Vec<(String, String)> {
        sqlx::query("SELECT notes, sex FROM residents ORDER BY id")
            .fetch_all(&store.read)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("notes"), r.get("sex")))
            .collect()
    }

    /// Two rows change in one transaction; the second breaks a CHECK; neither change stays.
    #[tokio::test]
    async fn a_failed_second_change_leaves_neither() {
        for engine in engines() {
            let db = TestDb::new(engine).await.unwrap();
            let s = &db.store;
            s.insert_residents(&sample_residents(2)).await.unwrap();
            let before = notes_and_sex(s).await;
            let ids: Vec<i64> = sqlx::query("SELECT id FROM residents ORDER BY id")
                .fetch_all(&s.read)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get("id"))
                .collect();

            let mut tx = s.begin_write().await.unwrap();
            let sql = format!(
                "SELECT id, notes FROM residents WHERE id = $1{}",
                tx.for_update()
            );
            sqlx::query(&sql)
                .bind(ids[0])
                .fetch_one(tx.conn())
                .await
                .unwrap();
            sqlx::query("UPDATE residents SET notes = 'moved' WHERE id = $1")
                .bind(ids[0])
                .execute(tx.conn())
                .await
                .unwrap();
            let err: StoreError = sqlx::query("UPDATE residents SET sex = 'X' WHERE id = $1")
                .bind(ids[1])
                .execute(tx.conn())
                .await
                .unwrap_err()
                .into();
            assert_eq!(
                err.constraint(),
                Some("residents_sex_check"),
                "{engine}: {err:?}"
            );
            drop(tx); // as an early `?` would

            assert_eq!(notes_and_sex(s).await, before, "{engine}");
            // The writer is free again: the next transaction commits.
            let mut tx = s.begin_write().await.unwrap();
            sqlx::query("UPDATE residents SET notes = 'moved' WHERE id = $1")
                .bind(ids[0])
                .execute(tx.conn())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(notes_and_sex(s).await[0].0, "moved", "{engine}");
            db.cleanup().await;
        }
    }

    /// UNIQUE and CHECK violations come back as conflicts naming the constraint, the same
    /// name on both engines.
    #[tokio::test]
    async fn violations_name_their_constraint() {
        for engine in engines() {
            let db = TestDb::new(engine).await.unwrap();
            let s = &db.store;
            let people = sample_residents(2);
            s.insert_residents(&people[..1]).await.unwrap();

            let insert = |address_no: &str, code: &str, ticket: &str, sex: &str| {
                sqlx::query(
                    "INSERT INTO residents (address_no, municipality_code, ticket_no, name, \
                     name_kana, birth_date, sex, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'x', 'x', '1941-03-02', $4, 'now', 'now')",
                )
                .bind(address_no.to_string())
                .bind(code.to_string())
                .bind(ticket.to_string())
                .bind(sex.to_string())
            };
            let first = &people[0];
            let cases = [
                // the same 宛名番号: a column UNIQUE
                (
                    insert(first.address_no.as_str(), "262021", "1111111111", "F"),
                    "residents_address_no_key",
                ),
                // the same ticket in the same municipality: a named table UNIQUE
                (
                    insert("X-1", "262021", first.ticket_no.as_str(), "F"),
                    "residents_ticket_unique",
                ),
                // a sex the CHECK does not list
                (
                    insert("X-2", "262021", "2222222222", "X"),
                    "residents_sex_check",
                ),
            ];
            for (query, constraint) in cases {
                let mut tx = s.begin_write().await.unwrap();
                let err: StoreError = query.execute(tx.conn()).await.unwrap_err().into();
                match &err {
                    StoreError::Conflict { constraint: c } => {
                        assert_eq!(c, constraint, "{engine}")
                    }
                    other => panic!("{engine}: expected a conflict, got {other:?}"),
                }
                tx.rollback().await.unwrap();
            }
            // A missing required value names its column.
            let mut tx = s.begin_write().await.unwrap();
            let err: StoreError = sqlx::query(
                "INSERT INTO residents (address_no, municipality_code, ticket_no, name, \
                 name_kana, birth_date, sex, created_at, updated_at) \
                 VALUES ('X-3', '262021', '3333333333', NULL, 'x', '1941-03-02', 'F', 'n', 'n')",
            )
            .execute(tx.conn())
            .await
            .unwrap_err()
            .into();
            assert!(
                matches!(err, StoreError::Invalid { field: "name" }),
                "{engine}: {err:?}"
            );
            drop(tx);
            assert_eq!(s.resident_count().await.unwrap(), 1, "{engine}");
            db.cleanup().await;
        }
    }

    /// The native pool does what `Any` cannot: a boolean from PostgreSQL, and an advisory lock
    /// that one session holds and another is refused.
    #[tokio::test]
    async fn postgres_has_a_native_pool_for_advisory_locks() {
        for engine in engines() {
            let db = TestDb::new(engine).await.unwrap();
            match db.store.postgres() {
                None => assert_eq!(engine, "sqlite"),
                Some(pg) => {
                    let mut holder = pg.acquire().await.unwrap();
                    let mut other = pg.acquire().await.unwrap();
                    let lock = "SELECT pg_try_advisory_lock(7301)";
                    let got: bool = sqlx::query_scalar(lock)
                        .fetch_one(&mut *holder)
                        .await
                        .unwrap();
                    let refused: bool = sqlx::query_scalar(lock)
                        .fetch_one(&mut *other)
                        .await
                        .unwrap();
                    assert!(got && !refused);
                }
            }
            db.cleanup().await;
        }
    }

    /// A second writer that wants the same row waits until the first commits, then sees its
    /// change: the writer connection on SQLite, the row lock on PostgreSQL.
    #[tokio::test]
    async fn a_second_writer_waits_for_the_first() {
        for engine in engines() {
            let db = TestDb::new(engine).await.unwrap();
            let s = db.store.clone();
            s.insert_residents(&sample_residents(1)).await.unwrap();
            let mut first = s.begin_write().await.unwrap();
            let lock = format!("SELECT notes FROM residents{}", first.for_update());
            sqlx::query(&lock).fetch_all(first.conn()).await.unwrap();
            sqlx::query("UPDATE residents SET notes = notes || 'a'")
                .execute(first.conn())
                .await
                .unwrap();

            let second = tokio::spawn({
                let s = s.clone();
                async move {
                    let mut tx = s.begin_write().await?;
                    let lock = format!("SELECT notes FROM residents{}", tx.for_update());
                    let row = sqlx::query(&lock).fetch_one(tx.conn()).await?;
                    let seen: String = row.try_get("notes")?;
                    sqlx::query("UPDATE residents SET notes = notes || 'b'")
                        .execute(tx.conn())
                        .await?;
                    tx.commit().await?;
                    Ok::<_, StoreError>(seen)
                }
            });
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            assert!(
                !second.is_finished(),
                "{engine}: the second writer did not wait"
            );
            first.commit().await.unwrap();
            assert_eq!(second.await.unwrap().unwrap(), "a", "{engine}");
            let notes: String = sqlx::query_scalar("SELECT notes FROM residents")
                .fetch_one(&s.read)
                .await
                .unwrap();
            assert_eq!(notes, "ab", "{engine}");
            db.cleanup().await;
        }
    }

    /// A closed pool is the store being unavailable, not a bug in the request.
    #[tokio::test]
    async fn a_closed_store_is_unavailable() {
        for engine in engines() {
            let db = TestDb::new(engine).await.unwrap();
            db.store.close().await;
            let err = db.store.begin_write().await.err();
            assert!(
                matches!(err, Some(StoreError::Unavailable(_))),
                "{engine}: {err:?}"
            );
            db.cleanup().await;
        }
    }
}
