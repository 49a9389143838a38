//! Fresh databases for tests: a temporary SQLite file, and, when `MADOGUCHI_TEST_POSTGRES_URL`
//! is set, a new PostgreSQL database created for the test and dropped by [`TestDb::cleanup`].
//! Every store test runs through [`each_engine`], so it runs on both.

use super::Store;
use sqlx::Executor;

pub struct TestDb {
    pub store: Store,
    pub url: String,
    /// The temporary folder of a SQLite database (removed on drop).
    _dir: Option<TempDir>,
    pg_admin: Option<(String, String)>,
}

/// A folder removed when dropped.
pub struct TempDir(pub std::path::PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("madoguchi-{tag}-{}", unique_suffix()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut b = [0u8; 4];
    let _ = getrandom::getrandom(&mut b);
    format!(
        "{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        u32::from_le_bytes(b)
    )
}

/// The engines a store test must run on: SQLite always, PostgreSQL when configured.
pub fn engines() -> Vec<&'static str> {
    let mut v = vec!["sqlite"];
    if std::env::var("MADOGUCHI_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        v.push("postgres");
    } else if std::env::var("MADOGUCHI_REQUIRE_ALL").is_ok_and(|v| v == "1") {
        panic!("MADOGUCHI_REQUIRE_ALL=1 but MADOGUCHI_TEST_POSTGRES_URL is not set: PostgreSQL tests cannot run");
    } else {
        eprintln!("skipped: PostgreSQL not configured (set MADOGUCHI_TEST_POSTGRES_URL)");
    }
    v
}

impl TestDb {
    pub async fn new(engine: &str) -> anyhow::Result<TestDb> {
        match engine {
            "sqlite" => {
                let dir = TempDir::new("db")?;
                let url = format!("sqlite://{}/madoguchi.db", dir.0.display());
                let store = Store::open(&url).await?;
                Ok(TestDb {
                    store,
                    url,
                    _dir: Some(dir),
                    pg_admin: None,
                })
            }
            "postgres" => {
                let admin = std::env::var("MADOGUCHI_TEST_POSTGRES_URL")?;
                let name = format!("madoguchi_t_{}", unique_suffix());
                sqlx::any::install_default_drivers();
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await?;
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await?;
                let url = match admin.rfind('/') {
                    Some(i)
                        if admin[..i].contains("://") && i > admin.find("://").unwrap_or(0) + 2 =>
                    {
                        let (base, rest) = admin.split_at(i);
                        let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
                        format!("{base}/{name}{query}")
                    }
                    _ => anyhow::bail!("MADOGUCHI_TEST_POSTGRES_URL must name a database"),
                };
                let store = Store::open(&url).await?;
                Ok(TestDb {
                    store,
                    url,
                    _dir: None,
                    pg_admin: Some((admin, name)),
                })
            }
            other => anyhow::bail!("unknown engine {other}"),
        }
    }

    /// Closes the pools and drops a PostgreSQL test database.
    pub async fn cleanup(self) {
        self.store.close().await;
        if let Some((admin, name)) = &self.pg_admin {
            if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(admin).await {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
            }
        }
    }
}

/// One test per engine for each named `async fn NAME(engine: &str)`: `NAME::sqlite` and
/// `NAME::postgres` (skipped, or failed with `MADOGUCHI_REQUIRE_ALL=1`, without PostgreSQL),
/// so a failure on one engine never hides the other.
#[macro_export]
macro_rules! on_each_engine {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test]
            async fn postgres() {
                if $crate::store::testing::engines().contains(&"postgres") {
                    super::$name("postgres").await
                }
            }
        }
    )*};
}
