//! VRS batches on both engines: doses over two days, day 1 exported twice (doses recorded
//! late go in the second batch) and day 2 once; every dose in exactly one batch; each batch
//! downloaded again byte for byte; the files read back and every field checked against the
//! layout of VACCINATION.md §1.5.

use super::*;
use crate::domain::dose::{InjectionSite, LotNo};
use crate::domain::{MunicipalityCode, Product};
use crate::on_each_engine;
use crate::store::exports::Batch;
use crate::store::testing::{sample_residents, TestDb};
use crate::store::vaccinations::NewVaccination;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

const ACTOR: Actor<'static> = Actor {
    user_id: None,
    remote_addr: "test",
};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn open_lot(s: &Store, venue: i64, lot: &str, product: Product, opened: &str) {
    let lot = LotNo::parse(lot).unwrap();
    let ids = s
        .receive_vials(venue, product, &lot, 4, 10, at(opened), ACTOR)
        .await
        .unwrap();
    for id in ids {
        s.open_vial(id, at(opened), ACTOR).await.unwrap().unwrap();
    }
}

async fn give(s: &Store, resident: i64, venue: i64, product: Product, lot: &str, when: &str) {
    let v = NewVaccination {
        resident_id: resident,
        dose: 1,
        product,
        lot: LotNo::parse(lot).unwrap(),
        vaccinator: "多々見\u{3000}良三".into(),
        injection_site: InjectionSite::LeftArm,
        given_at: at(when),
        venue_id: Some(venue),
    };
    s.record_vaccination(&v, ACTOR).await.unwrap().unwrap();
}

/// Reads a VRS file back: CRLF lines, no BOM, the header, and every field in its format.
/// Returns the rows as (券番号, 接種回数) → 接種日.
fn read_back(file: &str, day: NaiveDate) -> Vec<(String, String)> {
    assert!(!file.starts_with('\u{feff}'), "UTF-8 without BOM");
    assert!(file.ends_with("\r\n"));
    assert!(
        !file.replace("\r\n", "").contains('\n'),
        "every line ends in CRLF"
    );
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(file.as_bytes());
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, VRS_HEADER);
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let mut out = Vec::new();
    for rec in reader.records() {
        let r = rec.unwrap();
        assert_eq!(r.len(), 11, "{r:?}");
        // 1, 5: municipality codes with a valid check digit.
        assert!(MunicipalityCode::parse(&r[0]).is_ok(), "{r:?}");
        assert!(MunicipalityCode::parse(&r[4]).is_ok(), "{r:?}");
        assert!(digits(&r[0], 6) && digits(&r[4], 6));
        // 2: the 10-digit ticket, leading zeros kept.
        assert!(digits(&r[1], 10), "{r:?}");
        // 3: dose 1-9.
        assert!(matches!(r[2].as_bytes(), [b'1'..=b'9']), "{r:?}");
        // 4: YYYYMMDD, the day exported.
        assert!(digits(&r[3], 8));
        assert_eq!(NaiveDate::parse_from_str(&r[3], "%Y%m%d").unwrap(), day);
        // 6, 7: venue ≤ 30 characters, doctor ≤ 20, neither empty.
        assert!((1..=30).contains(&r[5].chars().count()), "{r:?}");
        assert!((1..=20).contains(&r[6].chars().count()), "{r:?}");
        // 8: exactly a VRS maker string.
        assert!(
            ["ファイザー", "武田/モデルナ", "アストラゼネカ"].contains(&&r[7]),
            "{r:?}"
        );
        // 9: lot, A-Z0-9, ≤ 20.
        assert!(
            (1..=20).contains(&r[8].len())
                && r[8]
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "{r:?}"
        );
        // 10: YYYYMMDDHHMMSS, a real time.
        assert!(digits(&r[9], 14));
        assert!(chrono::NaiveDateTime::parse_from_str(&r[9], "%Y%m%d%H%M%S").is_ok());
        // 11: 個別宛名番号.
        assert!(!r[10].is_empty());
        out.push((r[1].to_string(), r[2].to_string()));
    }
    out
}

async fn export(s: &Store, day: &str) -> Option<Batch> {
    export_vrs(s, d(day), ACTOR).await.unwrap()
}

async fn batches_hold_each_dose_once(engine: &str) {
    let db = TestDb::new(engine).await.unwrap();
    let s = &db.store;
    s.insert_residents(&sample_residents(10)).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let west = s
        .insert_venue("舞鶴文化公園体育館", "舞鶴市字上安久", &["西"])
        .await
        .unwrap();
    let east = s
        .insert_venue("市総合文化会館", "舞鶴市字浜", &["東"])
        .await
        .unwrap();
    open_lot(
        s,
        west,
        "FA4597",
        Product::Pfizer,
        "2021-06-03T09:00:00+09:00",
    )
    .await;
    open_lot(
        s,
        east,
        "3004734",
        Product::Moderna,
        "2021-06-03T09:00:00+09:00",
    )
    .await;
    open_lot(
        s,
        west,
        "FC3661",
        Product::Pfizer,
        "2021-06-04T09:00:00+09:00",
    )
    .await;

    // Day 1: four doses, exported.
    for (i, r) in ids[..4].iter().enumerate() {
        let (venue, p, lot) = if i % 2 == 0 {
            (west, Product::Pfizer, "FA4597")
        } else {
            (east, Product::Moderna, "3004734")
        };
        give(s, *r, venue, p, lot, "2021-06-03T10:00:00+09:00").await;
    }
    let a = export(s, "2021-06-03").await.expect("batch A");
    assert_eq!(a.info.row_count, 4, "{engine}");
    // Two more day-1 doses entered late, and day 2's three.
    give(
        s,
        ids[4],
        west,
        Product::Pfizer,
        "FA4597",
        "2021-06-03T14:00:00+09:00",
    )
    .await;
    give(
        s,
        ids[5],
        east,
        Product::Moderna,
        "3004734",
        "2021-06-03T14:30:00+09:00",
    )
    .await;
    for r in &ids[6..9] {
        give(
            s,
            *r,
            west,
            Product::Pfizer,
            "FC3661",
            "2021-06-04T10:00:00+09:00",
        )
        .await;
    }
    let b = export(s, "2021-06-03").await.expect("batch B");
    assert_eq!(
        b.info.row_count, 2,
        "{engine}: only what was recorded since A"
    );
    let c = export(s, "2021-06-04").await.expect("batch C");
    assert_eq!(c.info.row_count, 3, "{engine}");
    assert!(
        export(s, "2021-06-03").await.is_none(),
        "{engine}: nothing new"
    );
    assert!(s.unexported(d("2021-06-03")).await.unwrap().is_empty());

    // Every dose in exactly one batch, and in that batch's file.
    let mut seen: HashMap<(String, String), i64> = HashMap::new();
    for (batch, day) in [(&a, "2021-06-03"), (&b, "2021-06-03"), (&c, "2021-06-04")] {
        let rows = read_back(&batch.content, d(day));
        assert_eq!(rows.len() as i64, batch.info.row_count);
        for key in rows {
            assert!(
                seen.insert(key.clone(), batch.info.id).is_none(),
                "{engine}: {key:?} in two batches"
            );
        }
        // Downloaded again: byte-identical, and its checksum still matches.
        let again = batch_file(s, batch.info.id).await.unwrap().unwrap();
        assert_eq!(
            again.content.as_bytes(),
            batch.content.as_bytes(),
            "{engine}"
        );
        assert_eq!(
            crate::store::exports::checksum(&again.content),
            batch.info.checksum
        );
    }
    let records: Vec<(String, i64, Option<i64>)> =
        sqlx::query("SELECT ticket_no, dose, export_batch_id FROM vaccinations ORDER BY id")
            .fetch_all(&s.read)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                use sqlx::Row;
                (r.get("ticket_no"), r.get("dose"), r.get("export_batch_id"))
            })
            .collect();
    assert_eq!(records.len(), 9);
    assert_eq!(seen.len(), 9, "{engine}");
    for (ticket, dose, batch) in records {
        assert_eq!(
            seen.get(&(ticket, dose.to_string())).copied(),
            batch,
            "{engine}: the record names the batch its row is in"
        );
    }
    // A record corrected after its export stays in its batch, which is unchanged; the
    // correction is new and goes in the next batch.
    let first = s.vaccinations_on(d("2021-06-03"), None).await.unwrap()[0].clone();
    let fixed = NewVaccination {
        resident_id: first.resident_id,
        dose: 1,
        product: Product::Pfizer,
        lot: LotNo::parse("FA4597").unwrap(),
        vaccinator: "医師\u{3000}二".into(),
        injection_site: InjectionSite::RightArm,
        given_at: at(&first.given_at),
        venue_id: Some(first.venue_id),
    };
    s.correct_vaccination(first.id, &fixed, "医師名の誤り", ACTOR)
        .await
        .unwrap()
        .unwrap();
    let again = batch_file(s, a.info.id).await.unwrap().unwrap();
    assert_eq!(again.content, a.content, "{engine}: a batch never changes");
    let e = export(s, "2021-06-03").await.expect("the correction");
    assert_eq!(e.info.row_count, 1);
    assert!(e.content.contains("医師\u{3000}二"));
    // The ledger: one row per resident with a dose, every current record in it.
    let ledger = export_ledger(s).await.unwrap();
    assert_eq!(ledger.trim_end().split("\r\n").count(), 1 + 9, "{engine}");
    assert!(
        ledger.contains("医師\u{3000}二"),
        "{engine}: the corrected record"
    );
    db.cleanup().await;
}

on_each_engine!(batches_hold_each_dose_once);
