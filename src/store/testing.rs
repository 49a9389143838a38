//! Fresh databases for tests: a temporary SQLite file, and, when `MADOGUCHI_TEST_POSTGRES_URL`
//! is set, a new PostgreSQL database created for the test and dropped by [`TestDb::cleanup`].
//! Every store test runs through [`each_engine`], so it runs on both.

use super::Store;
use crate::domain::{
    AddressNo, BirthDate, Intent, Kana, MunicipalityCode, NewResident, PhoneNumber, PostalCode,
    Sex, TicketNo,
};
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

/// Slots at 09:30 and 14:00 JST on `days` days from `first`, `capacity` seats each, of
/// `product`; their ids by (day, 0 = 09:30 | 1 = 14:00).
pub async fn calendar(
    s: &Store,
    venue: i64,
    product: crate::domain::Product,
    first: chrono::NaiveDate,
    days: i64,
    capacity: i64,
) -> Vec<[i64; 2]> {
    let mut new = Vec::new();
    for d in 0..days {
        for (h, m) in [(9, 30), (14, 0)] {
            let t = chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
            let starts = crate::domain::vaccine::jst_at(first + chrono::Duration::days(d), t);
            new.push(super::bookings::NewSlot {
                venue_id: venue,
                starts_at: starts,
                ends_at: starts + chrono::Duration::minutes(30),
                product,
                capacity,
            });
        }
    }
    let ids = s
        .insert_slots(&new)
        .await
        .expect("insert the calendar's slots");
    ids.chunks(2).map(|c| [c[0], c[1]]).collect()
}

/// `n` plain residents for store tests, in households of two sharing a 0773 landline; every
/// third also has a mobile. (The synthetic city of `demo` sits above the store, so store tests
/// build their own.)
pub fn sample_residents(n: usize) -> Vec<NewResident> {
    let today = chrono::NaiveDate::from_ymd_opt(2021, 4, 1).unwrap_or_default();
    let kana = [
        "ヤマダ\u{3000}タロウ",
        "ヤマダ\u{3000}ハナコ",
        "サトウ\u{3000}イチロウ",
    ];
    (0..n)
        .filter_map(|i| {
            let landline = format!("0773-62-{:04}", 1000 + i / 2);
            let mut phones = vec![(PhoneNumber::parse(&landline).ok()?, landline, "home")];
            if i % 3 == 0 {
                let mobile = format!("090-1000-{:04}", i);
                phones.push((PhoneNumber::parse(&mobile).ok()?, mobile, "mobile"));
            }
            let birth =
                chrono::NaiveDate::from_ymd_opt(1930 + (i % 60) as i32, 1 + (i % 12) as u32, 1)?;
            Some(NewResident {
                address_no: AddressNo::parse(&format!("{:010}", 7_000_000 + i)).ok()?,
                municipality_code: MunicipalityCode::parse("262021").ok()?,
                ticket_no: TicketNo::parse(&format!("{:010}", 900_000 + i)).ok()?,
                name: format!("試験\u{3000}{i}"),
                name_kana: Kana::parse(kana[i % kana.len()]).ok()?,
                birth_date: BirthDate::new(birth, today).ok()?,
                sex: if i % 2 == 0 { Sex::Male } else { Sex::Female },
                postal_code: PostalCode::parse("625-0036").ok(),
                address: format!("京都府舞鶴市字浜{}番地", i / 2),
                town: "浜".into(),
                district: "東".into(),
                household_no: Some(format!("H{}", i / 2)),
                intent: Intent::Wants,
                needs_transport: i % 5 == 0,
                notes: String::new(),
                phones,
            })
        })
        .collect()
}
