//! The synthetic register is realistic enough to demo on and valid enough to import.

use super::synth::{self, age_on, residents, REFERENCE_DATE};
use crate::domain::{MunicipalityCode, PhoneNumber, TicketNo};
use crate::store::testing::{engines, TestDb};
use chrono::NaiveDate;
use std::collections::{HashMap, HashSet};

fn reference() -> NaiveDate {
    let (y, m, d) = REFERENCE_DATE;
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

#[test]
fn same_seed_same_register() {
    let a = residents(300, 42);
    let b = residents(300, 42);
    let c = residents(300, 43);
    assert_eq!(a.len(), 300);
    assert_eq!(format!("{:?}", &a[..50]), format!("{:?}", &b[..50]));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_ne!(format!("{:?}", &a[..5]), format!("{:?}", &c[..5]));
    // A longer register starts with the same people as a shorter one.
    let longer = residents(1000, 42);
    assert_eq!(format!("{:?}", &a[..200]), format!("{:?}", &longer[..200]));
}

#[test]
fn an_ageing_population() {
    let people = residents(20_000, 7);
    let on = reference();
    let ages: Vec<u32> = people
        .iter()
        .map(|r| age_on(r.birth_date.date(), on))
        .collect();
    let share =
        |f: &dyn Fn(u32) -> bool| ages.iter().filter(|a| f(**a)).count() as f64 / ages.len() as f64;
    let old = share(&|a| a >= 65);
    let young = share(&|a| a < 12);
    let very_old = share(&|a| a >= 90);
    eprintln!("65+ {old:.3}, under 12 {young:.3}, 90+ {very_old:.3}");
    for (lo, hi) in [
        (0, 11),
        (12, 19),
        (20, 39),
        (40, 64),
        (65, 74),
        (75, 84),
        (85, 100),
    ] {
        eprintln!("{lo}-{hi}: {:.3}", share(&|a| a >= lo && a <= hi));
    }
    assert!((0.28..=0.38).contains(&old), "65+ share {old}");
    assert!((0.09..=0.15).contains(&young), "under-12 share {young}");
    assert!(ages.iter().all(|a| *a <= 100));
    assert!(very_old > 0.005 && very_old < 0.06, "90+ share {very_old}");
    // About one in ten of the 65+ needs the bus.
    let elders: Vec<_> = people
        .iter()
        .filter(|r| age_on(r.birth_date.date(), on) >= 65)
        .collect();
    let bus = elders.iter().filter(|r| r.needs_transport).count() as f64 / elders.len() as f64;
    eprintln!("65+ needing transport {bus:.3}");
    assert!((0.05..=0.15).contains(&bus), "transport share {bus}");
    assert!(people
        .iter()
        .filter(|r| age_on(r.birth_date.date(), on) < 65)
        .all(|r| !r.needs_transport));
    // Most want a dose.
    let wants = people
        .iter()
        .filter(|r| r.intent == crate::domain::Intent::Wants)
        .count() as f64
        / people.len() as f64;
    assert!(wants > 0.6, "wants {wants}");
}

#[test]
fn tickets_codes_and_numbers_are_valid_and_unique() {
    let people = residents(5_000, 11);
    let mut tickets = HashSet::new();
    let mut address_nos = HashSet::new();
    for r in &people {
        assert_eq!(
            MunicipalityCode::parse(r.municipality_code.as_str())
                .unwrap()
                .as_str(),
            "262021"
        );
        assert!(TicketNo::parse(r.ticket_no.as_str()).is_ok());
        assert!(
            tickets.insert(r.ticket_no.as_str().to_string()),
            "ticket {}",
            r.ticket_no
        );
        assert_eq!(r.address_no.as_str().len(), 10);
        assert!(
            address_nos.insert(r.address_no.clone()),
            "address_no {}",
            r.address_no
        );
        let postal = r.postal_code.as_ref().map_or("", |p| p.as_str());
        assert!(postal.starts_with("624-") || postal.starts_with("625-"));
        assert!(r.address.starts_with("京都府舞鶴市"), "{}", r.address);
        assert!(r.address.contains(&r.town));
        assert!(["西", "東", "中", "大浦", "加佐"].contains(&r.district.as_str()));
        assert!(r.name_kana.as_str().contains('\u{3000}'), "{}", r.name_kana);
        assert!(r.phones.len() <= 2);
        for (p, written, kind) in &r.phones {
            assert_eq!(&PhoneNumber::parse(written).unwrap(), p);
            assert!(p.as_str().starts_with("+81"));
            assert!(["home", "mobile", "family"].contains(kind));
        }
    }
    // Leading zeros are real: random start below 50,000,000.
    assert!(people[0].ticket_no.as_str().starts_with("00"));
    // The register passes the importer's own checks.
    let csv = crate::export::residents_csv(&people).unwrap();
    let back = crate::export::parse_residents(csv.as_bytes()).unwrap();
    assert_eq!(back.len(), people.len());
    assert_eq!(back[17].name_kana, people[17].name_kana);
    assert_eq!(back[17].phones.len(), people[17].phones.len());
}

#[test]
fn households_share_landlines_and_names_fit_their_era() {
    let people = residents(3_000, 5);
    let mut on_number: HashMap<&str, HashSet<&str>> = HashMap::new();
    for r in &people {
        for (p, _, kind) in &r.phones {
            if *kind == "home" {
                assert!(p.as_str().starts_with("+81773"), "{p}");
                let exchange: u32 = p.as_str()[6..8].parse().unwrap();
                assert!(
                    (60..=69).contains(&exchange) || (75..=79).contains(&exchange),
                    "{p}"
                );
            }
            on_number
                .entry(p.as_str())
                .or_default()
                .insert(r.address_no.as_str());
        }
    }
    let shared = on_number.values().filter(|s| s.len() >= 2).count();
    assert!(
        shared > 300,
        "only {shared} numbers reach two or more residents"
    );
    // A household shares address, surname (kana) and landline.
    let mut households: HashMap<&str, Vec<_>> = HashMap::new();
    for r in &people {
        households
            .entry(r.household_no.as_deref().unwrap())
            .or_default()
            .push(r);
    }
    let sizes: Vec<usize> = households.values().map(Vec::len).collect();
    assert!(sizes.iter().all(|s| (1..=5).contains(s)));
    let mean = people.len() as f64 / households.len() as f64;
    assert!((1.8..=2.8).contains(&mean), "mean household {mean}");
    for members in households.values() {
        assert!(members.iter().all(|m| m.address == members[0].address));
        let surname = members[0].name_kana.as_str().split('\u{3000}').next();
        assert!(members
            .iter()
            .all(|m| m.name_kana.as_str().split('\u{3000}').next() == surname));
    }
    // Given names of those born before 1956 come from that era's list.
    let old_names = ["清", "勇", "和子", "幸子", "節子", "茂", "実", "稔", "博"];
    let young_names = ["陽翔", "蓮", "結衣", "陽菜", "大翔", "湊", "凛"];
    for r in &people {
        let given = r.name.split('\u{3000}').nth(1).unwrap();
        if r.birth_date.date().year() <= 1955 {
            assert!(
                !young_names.contains(&given),
                "{} born {}",
                r.name,
                r.birth_date.date()
            );
        } else if r.birth_date.date().year() >= 1986 {
            assert!(
                !old_names.contains(&given),
                "{} born {}",
                r.name,
                r.birth_date.date()
            );
        }
    }
}
use chrono::Datelike;

#[test]
fn towns_and_districts() {
    let towns = synth::towns();
    assert_eq!(towns.len(), 189);
    let by_name = |n: &str| towns.iter().find(|t| t.name == n).unwrap();
    assert_eq!(by_name("北吸").district, "東");
    assert_eq!(by_name("北吸").postal_code, "625-0080");
    assert_eq!(by_name("南田辺").district, "西");
    assert_eq!(by_name("滝ケ宇呂").district, "加佐");
    assert_eq!(by_name("余部下").district, "中");
    assert_eq!(by_name("成生").district, "大浦");
    for d in ["西", "東", "中", "大浦", "加佐"] {
        assert!(towns.iter().any(|t| t.district == d), "{d}");
    }
    let strangers = synth::stranger_numbers(50, 1);
    let people = residents(2_000, 1);
    let known: HashSet<_> = people
        .iter()
        .flat_map(|r| r.phones.iter().map(|p| p.0.clone()))
        .collect();
    assert!(strangers
        .iter()
        .all(|s| !known.contains(&PhoneNumber::parse(s).unwrap())));
    let callers = synth::caller_numbers(&people, 40, 3);
    assert_eq!(callers.len(), 40);
    assert!(callers
        .iter()
        .all(|c| known.contains(&PhoneNumber::parse(c).unwrap())));
}

#[tokio::test]
async fn populate_gives_residents_a_history() {
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let store = &db.store;
        let summary = synth::populate(store, 500, 9).await.unwrap();
        assert_eq!(summary.residents, 500, "{engine}");
        assert_eq!(store.resident_count().await.unwrap(), 500);
        assert!(summary.calls >= 25, "{engine}: {} calls", summary.calls);
        assert!(summary.inquiries > 0);
        assert_eq!(store.call_count().await.unwrap(), summary.calls as i64);
        assert_eq!(summary.logins.len(), 12);
        // Appointments: both doses for those who want one, never over capacity, and the
        // record (and so the pop) shows them.
        assert_eq!(summary.appointments.venues, 5, "{engine}");
        assert!(
            summary.appointments.bookings > 100,
            "{engine}: {:?}",
            summary.appointments
        );
        assert_eq!(summary.appointments.bookings % 2, 0);
        assert_eq!(store.slots_over_capacity().await.unwrap(), 0);
        assert!(store.slot_count_mismatches().await.unwrap().is_empty());
        let wanting = store.residents_wanting_a_dose().await.unwrap();
        let booked = store.bookings_of(wanting[0].0).await.unwrap();
        assert_eq!(booked.len(), 2, "{engine}");
        let gap = crate::store::parse_ts(&booked[1].starts_at).unwrap()
            - crate::store::parse_ts(&booked[0].starts_at).unwrap();
        assert!(matches!(gap.num_days(), 21 | 28), "{engine}: {gap}");
        assert_eq!(booked[0].product, booked[1].product);
        assert!(summary
            .logins
            .iter()
            .any(|l| l.0 == "agent1" && l.1 == "agent1" && l.3.as_deref() == Some("201")));
        assert!(summary
            .logins
            .iter()
            .any(|l| l.0 == "supervisor" && l.2 == "supervisor" && l.3.is_none()));
        let users = store.users().await.unwrap();
        assert_eq!(users.iter().filter(|u| u.extension.is_some()).count(), 8);
        let (user, hash) = store.user_for_login("agent3").await.unwrap().unwrap();
        assert_eq!(user.extension.as_deref(), Some("203"));
        assert!(crate::store::users::verify_password("agent3", &hash));

        // Some caller of the history has calls and inquiries on their record, newest first.
        let calls = store.calls_between(None, None, 10_000).await.unwrap();
        assert_eq!(calls.len(), summary.calls);
        assert!(calls.iter().all(|c| c.id.starts_with("hist:")));
        let answered = calls
            .iter()
            .filter(|c| c.outcome.as_deref() == Some("answered"))
            .count();
        assert!(
            answered * 10 > calls.len() * 7,
            "{answered} of {}",
            calls.len()
        );
        let mut with_history = 0;
        for c in calls
            .iter()
            .filter(|c| c.outcome.as_deref() == Some("answered"))
            .take(20)
        {
            let id = c.resident_id.unwrap();
            let resident = store.resident(id).await.unwrap().unwrap();
            assert!(resident
                .phones
                .iter()
                .any(|p| Some(&p.e164) == c.caller_e164.as_ref()));
            assert!(c
                .answered_by
                .as_deref()
                .is_some_and(|e| ("201"..="208").contains(&e)));
            let record = store.resident_record(resident).await.unwrap();
            assert!(!record.calls.is_empty());
            if !record.inquiries.is_empty() {
                with_history += 1;
                let i = &record.inquiries[0];
                assert!(crate::store::inquiries::CATEGORIES.contains(&i.category.as_str()));
                assert!(!i.note.is_empty());
                assert!(i.username.starts_with("agent"));
                if i.caller_kind == "proxy" {
                    assert!(!i.relationship.is_empty());
                }
            }
            assert!(record
                .calls
                .windows(2)
                .all(|w| w[0].started_at >= w[1].started_at));
        }
        assert!(with_history > 0, "{engine}: no resident has inquiries");

        // The simulator's callers are numbers of the ledger.
        let phones = synth::sample_phones(store, 30, 1).await.unwrap();
        assert_eq!(phones.len(), 30, "{engine}");
        for p in &phones {
            let found = store
                .residents_by_phone(&PhoneNumber::parse(p).unwrap())
                .await
                .unwrap();
            assert!(!found.is_empty(), "{p}");
        }
        db.cleanup().await;
    }
}

/// `cargo test --release --lib demo::tests::bench_populate_80k -- --ignored --nocapture`
/// (residents from `MADOGUCHI_BENCH_ROWS`, default 80,000). A measurement, not a timed test.
#[tokio::test]
#[ignore]
async fn bench_populate_80k() {
    let n = std::env::var("MADOGUCHI_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80_000);
    let t = std::time::Instant::now();
    let people = residents(n, 1);
    let generate = t.elapsed();
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let t = std::time::Instant::now();
        db.store.bulk_insert_residents(&people).await.unwrap();
        let insert = t.elapsed();
        db.cleanup().await;
        let db = TestDb::new(engine).await.unwrap();
        let t = std::time::Instant::now();
        let summary = synth::populate(&db.store, n, 1).await.unwrap();
        let populate = t.elapsed();
        eprintln!(
            "{engine}: generate {n} residents {:.2} s, insert them {:.2} s; populate (residents, staff, {} calls, {} inquiries) {:.2} s",
            generate.as_secs_f64(),
            insert.as_secs_f64(),
            summary.calls,
            summary.inquiries,
            populate.as_secs_f64()
        );
        db.cleanup().await;
    }
}

/// `cargo test --release --lib demo::tests::bench_import_100k -- --ignored --nocapture`
/// (rows from `MADOGUCHI_BENCH_ROWS`, default 100,000): the synthetic city imported through the
/// real resident-CSV path. A measurement, not a timed test.
#[tokio::test]
#[ignore]
async fn bench_import_100k() {
    let n = std::env::var("MADOGUCHI_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let t = std::time::Instant::now();
        let csv = crate::export::residents_csv(&residents(n, 0xBE7C_4000)).unwrap();
        let bench = crate::export::bench_import(&db.store, &csv, t.elapsed())
            .await
            .unwrap();
        eprintln!("{engine}: {bench}");
        assert_eq!(db.store.resident_count().await.unwrap(), n as i64);
        db.cleanup().await;
    }
}

/// The demo's venue day: today's slots are booked with residents who had no appointment, and
/// as the task steps, check-ins and doses appear in the venues' progress (the numbers the
/// venue screen and the supervisor page show), a vial opened first.
#[tokio::test]
async fn the_venue_day_moves_as_time_passes() {
    use crate::domain::vaccine::jst_date;
    for engine in engines() {
        let db = TestDb::new(engine).await.unwrap();
        let store = db.store.clone();
        synth::populate(&store, 500, 9).await.unwrap();
        let now = chrono::Utc::now();
        let venues = super::venue_day::prepare(&store, now).await.unwrap();
        assert_eq!(venues.len(), 5, "{engine}");
        let booked: usize = venues.iter().map(|v| v.expected.len()).sum();
        assert!(booked >= 10, "{engine}: {booked} booked today");
        let before = store.progress(jst_date(now), now, None, 15).await.unwrap();
        assert_eq!(before.iter().map(|p| p.vaccinated).sum::<i64>(), 0);
        assert_eq!(
            before.iter().map(|p| p.doses_left).sum::<i64>(),
            0,
            "no vial open yet"
        );
        let settings = crate::settings::Settings {
            listen: "127.0.0.1:0".into(),
            database_url: db.url.clone(),
            ..Default::default()
        };
        let server = crate::app::build_with_store(settings, store.clone())
            .await
            .unwrap();
        let task = tokio::spawn(super::venue_day::run(
            server.state.clone(),
            venues,
            std::time::Duration::from_millis(20),
        ));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let (checked_in, vaccinated, left) = loop {
            let t = chrono::Utc::now();
            let p = store.progress(jst_date(t), t, None, 15).await.unwrap();
            let sum =
                |f: fn(&crate::store::venue::VenueProgress) -> i64| p.iter().map(f).sum::<i64>();
            let got = (
                sum(|p| p.checked_in),
                sum(|p| p.vaccinated),
                sum(|p| p.doses_left),
            );
            if got.1 >= 5 || std::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        task.abort();
        assert!(vaccinated >= 5, "{engine}: {vaccinated} vaccinated");
        assert!(
            checked_in >= vaccinated,
            "{engine}: {checked_in} checked in"
        );
        assert!(left > 0, "{engine}: a vial was opened and has doses left");
        server.shutdown().await.unwrap();
    }
}
