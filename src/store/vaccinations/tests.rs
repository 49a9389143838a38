//! Recording doses on both engines: each refusal (nothing changes), the booking it completes,
//! corrections, vial limits, and two screens recording the same dose at once.

use super::*;
use crate::domain::{BirthDate, Product};
use crate::on_each_engine;
use crate::store::bookings::NewSlot;
use crate::store::testing::{sample_residents, TestDb};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

const ACTOR: Actor<'static> = Actor {
    user_id: None,
    remote_addr: "test",
};

/// A venue with a Pfizer lot opened on 2021-06-03 at 09:00 JST, a second venue, residents
/// (an adult booked for both doses at the first venue, and an 11-year-old).
struct Day {
    db: TestDb,
    adult: i64,
    child: i64,
    venue: i64,
    other_venue: i64,
    dose1_slot: i64,
}

async fn day(engine: &str) -> Day {
    let db = TestDb::new(engine).await.unwrap();
    let s = &db.store;
    let mut people = sample_residents(2);
    people[1].birth_date = BirthDate::new(
        NaiveDate::from_ymd_opt(2009, 6, 4).unwrap(),
        NaiveDate::from_ymd_opt(2021, 4, 1).unwrap(),
    )
    .unwrap();
    s.insert_residents(&people).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let venue = s
        .insert_venue("舞鶴文化公園体育館", "舞鶴市字上安久", &["西"])
        .await
        .unwrap();
    let other_venue = s
        .insert_venue("市総合文化会館", "舞鶴市字浜", &["東"])
        .await
        .unwrap();
    let slot = |starts: &str| NewSlot {
        venue_id: venue,
        starts_at: at(starts),
        ends_at: at(starts) + Duration::minutes(30),
        product: Product::Pfizer,
        capacity: 5,
    };
    let slots = s
        .insert_slots(&[
            slot("2021-06-03T10:00:00+09:00"),
            slot("2021-06-24T10:00:00+09:00"),
        ])
        .await
        .unwrap();
    s.book(ids[0], 1, slots[0]).await.unwrap().unwrap();
    s.book(ids[0], 2, slots[1]).await.unwrap().unwrap();
    open_lot(
        s,
        venue,
        "FA4597",
        Product::Pfizer,
        "2021-06-03T09:00:00+09:00",
        2,
    )
    .await;
    Day {
        adult: ids[0],
        child: ids[1],
        venue,
        other_venue,
        dose1_slot: slots[0],
        db,
    }
}

/// Receives `vials` vials of a lot (5 doses each) and opens them all at `opened`.
async fn open_lot(
    s: &Store,
    venue: i64,
    lot: &str,
    product: Product,
    opened: &str,
    vials: i64,
) -> Vec<i64> {
    let lot = LotNo::parse(lot).unwrap();
    let ids = s
        .receive_vials(
            venue,
            product,
            &lot,
            vials,
            5,
            at(opened) - Duration::hours(1),
            ACTOR,
        )
        .await
        .unwrap();
    for id in &ids {
        s.open_vial(*id, at(opened), ACTOR).await.unwrap().unwrap();
    }
    ids
}

fn dose(resident: i64, dose: u8, product: Product, lot: &str, given: &str) -> NewVaccination {
    NewVaccination {
        resident_id: resident,
        dose,
        product,
        lot: LotNo::parse(lot).unwrap(),
        vaccinator: "多々見\u{3000}良三".into(),
        injection_site: InjectionSite::LeftArm,
        given_at: at(given),
        venue_id: None,
    }
}

async fn counts(s: &Store) -> (i64, i64) {
    let v: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vaccinations")
        .fetch_one(&s.read)
        .await
        .unwrap();
    let a: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries")
        .fetch_one(&s.read)
        .await
        .unwrap();
    (v, a)
}

/// Asserts the dose is refused with `reason`, and that nothing was written.
async fn refused(s: &Store, v: NewVaccination, reason: &str, engine: &str) -> Refusal {
    let before = counts(s).await;
    let got = s.record_vaccination(&v, ACTOR).await.unwrap();
    let refusal = got.expect_err(&format!("{engine}: {reason} should be refused"));
    assert_eq!(refusal.reason, reason, "{engine}: {}", refusal.message);
    assert!(
        refusal.message.ends_with("nothing was recorded."),
        "{engine}"
    );
    assert_eq!(
        counts(s).await,
        before,
        "{engine}: a refusal changes nothing"
    );
    refusal
}

async fn records_a_dose_and_completes_its_booking(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    let row = s
        .record_vaccination(
            &dose(
                d.adult,
                1,
                Product::Pfizer,
                "fa4597",
                "2021-06-03T10:05:00+09:00",
            ),
            ACTOR,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.dose, 1);
    assert_eq!(row.lot, "FA4597");
    assert_eq!(row.venue_id, d.venue, "{engine}: the venue of the booking");
    assert_eq!(row.given_on, "2021-06-03");
    assert_eq!(row.municipality_code, "262021");
    assert!(row.vial_id.is_some());
    // The booking is done and no longer holds its seat.
    let bookings = s.bookings_of(d.adult).await.unwrap();
    assert_eq!(bookings[0].status, "vaccinated", "{engine}");
    assert_eq!(bookings[1].status, "booked", "{engine}");
    assert_eq!(s.slot(d.dose1_slot).await.unwrap().unwrap().booked, 0);
    assert!(s.slot_count_mismatches().await.unwrap().is_empty());
    // The resident's record carries it.
    let r = s.resident(d.adult).await.unwrap().unwrap();
    let record = s.resident_record(r).await.unwrap();
    assert_eq!(record.vaccinations, vec![row.clone()], "{engine}");
    // Audited.
    let audit: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_entries WHERE action = 'record_vaccination' AND resident_id = $1",
    )
    .bind(d.adult)
    .fetch_one(&s.read)
    .await
    .unwrap();
    assert_eq!(audit, 1, "{engine}");
    // Dose 2 on day +19 at the same venue, from a lot opened that day.
    open_lot(
        s,
        d.venue,
        "EY0779",
        Product::Pfizer,
        "2021-06-22T09:00:00+09:00",
        1,
    )
    .await;
    let mut second = dose(
        d.adult,
        2,
        Product::Pfizer,
        "EY0779",
        "2021-06-22T09:30:00+09:00",
    );
    second.venue_id = Some(d.venue);
    let row2 = s.record_vaccination(&second, ACTOR).await.unwrap().unwrap();
    assert_eq!(row2.dose, 2);
    assert_eq!(
        s.bookings_of(d.adult).await.unwrap()[1].status,
        "vaccinated"
    );
    assert!(s.slot_count_mismatches().await.unwrap().is_empty());
    d.db.cleanup().await;
}

async fn refuses_the_same_dose_twice(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    let first = dose(
        d.adult,
        1,
        Product::Pfizer,
        "FA4597",
        "2021-06-03T10:05:00+09:00",
    );
    s.record_vaccination(&first, ACTOR).await.unwrap().unwrap();
    let mut again = first.clone();
    again.venue_id = Some(d.venue);
    again.given_at = at("2021-06-03T11:00:00+09:00");
    let r = refused(s, again, "already_recorded", engine).await;
    assert!(r.message.contains("2021-06-03"), "{engine}: {}", r.message);
    d.db.cleanup().await;
}

async fn refuses_dose2_before_the_minimum_interval(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    s.record_vaccination(
        &dose(
            d.adult,
            1,
            Product::Pfizer,
            "FA4597",
            "2021-06-03T10:05:00+09:00",
        ),
        ACTOR,
    )
    .await
    .unwrap()
    .unwrap();
    // Day +18: one day short of Pfizer's +19.
    open_lot(
        s,
        d.venue,
        "EY0779",
        Product::Pfizer,
        "2021-06-21T09:00:00+09:00",
        1,
    )
    .await;
    let r = refused(
        s,
        dose(
            d.adult,
            2,
            Product::Pfizer,
            "EY0779",
            "2021-06-21T10:00:00+09:00",
        ),
        "too_early",
        engine,
    )
    .await;
    assert!(r.message.contains("2021-06-22"), "{engine}: {}", r.message);
    d.db.cleanup().await;
}

async fn refuses_dose2_of_another_product(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    s.record_vaccination(
        &dose(
            d.adult,
            1,
            Product::Pfizer,
            "FA4597",
            "2021-06-03T10:05:00+09:00",
        ),
        ACTOR,
    )
    .await
    .unwrap()
    .unwrap();
    open_lot(
        s,
        d.venue,
        "3004734",
        Product::Moderna,
        "2021-07-05T09:00:00+09:00",
        1,
    )
    .await;
    refused(
        s,
        dose(
            d.adult,
            2,
            Product::Moderna,
            "3004734",
            "2021-07-05T10:00:00+09:00",
        ),
        "different_product",
        engine,
    )
    .await;
    d.db.cleanup().await;
}

async fn refuses_a_resident_too_young(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    // Born 2009-06-04: 11 on 2021-06-03, 12 from the next day.
    let mut v = dose(
        d.child,
        1,
        Product::Pfizer,
        "FA4597",
        "2021-06-03T10:05:00+09:00",
    );
    v.venue_id = Some(d.venue);
    let r = refused(s, v.clone(), "too_young", engine).await;
    assert!(r.message.contains("12"), "{engine}: {}", r.message);
    // A dose without a venue and without a booking to take one from names the field.
    v.venue_id = None;
    assert!(matches!(
        s.record_vaccination(&v, ACTOR).await,
        Err(StoreError::Invalid { field: "venue_id" })
    ));
    d.db.cleanup().await;
}

async fn refuses_a_lot_not_opened_here_today(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    // A lot nobody opened.
    let r = refused(
        s,
        dose(
            d.adult,
            1,
            Product::Pfizer,
            "EW0201",
            "2021-06-03T10:05:00+09:00",
        ),
        "lot_not_opened",
        engine,
    )
    .await;
    assert!(r.message.contains("EW0201"), "{engine}: {}", r.message);
    // The lot is open at the first venue, not at the other.
    let mut elsewhere = dose(
        d.adult,
        1,
        Product::Pfizer,
        "FA4597",
        "2021-06-03T10:05:00+09:00",
    );
    elsewhere.venue_id = Some(d.other_venue);
    refused(s, elsewhere, "lot_not_opened", engine).await;
    // Opened on 06-03, not on 06-04.
    refused(
        s,
        dose(
            d.adult,
            1,
            Product::Pfizer,
            "FA4597",
            "2021-06-04T10:05:00+09:00",
        ),
        "lot_not_opened",
        engine,
    )
    .await;
    // Opened at 09:00, so not for a dose at 08:30.
    refused(
        s,
        dose(
            d.adult,
            1,
            Product::Pfizer,
            "FA4597",
            "2021-06-03T08:30:00+09:00",
        ),
        "lot_not_opened",
        engine,
    )
    .await;
    // A Pfizer lot recorded as Moderna.
    refused(
        s,
        dose(
            d.adult,
            1,
            Product::Moderna,
            "FA4597",
            "2021-06-03T10:05:00+09:00",
        ),
        "lot_other_product",
        engine,
    )
    .await;
    // Six hours after opening the vials are past use.
    refused(
        s,
        dose(
            d.adult,
            1,
            Product::Pfizer,
            "FA4597",
            "2021-06-03T15:00:00+09:00",
        ),
        "vial_expired",
        engine,
    )
    .await;
    d.db.cleanup().await;
}

async fn a_vial_gives_no_more_doses_than_it_holds(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    // One vial of 5 doses.
    let vial = open_lot(
        s,
        d.venue,
        "FF2153",
        Product::Pfizer,
        "2021-06-03T13:00:00+09:00",
        1,
    )
    .await[0];
    let mut people = sample_residents(8);
    for (i, p) in people.iter_mut().enumerate() {
        p.address_no = crate::domain::AddressNo::parse(&format!("{:010}", 8_000_000 + i)).unwrap();
        p.ticket_no = crate::domain::TicketNo::parse(&format!("{:010}", 800_000 + i)).unwrap();
    }
    s.insert_residents(&people).await.unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id DESC LIMIT 6")
        .fetch_all(&s.read)
        .await
        .unwrap();
    for id in &ids[..5] {
        let mut v = dose(
            *id,
            1,
            Product::Pfizer,
            "FF2153",
            "2021-06-03T13:30:00+09:00",
        );
        v.venue_id = Some(d.venue);
        let row = s.record_vaccination(&v, ACTOR).await.unwrap().unwrap();
        assert_eq!(row.vial_id, Some(vial), "{engine}");
    }
    let mut sixth = dose(
        ids[5],
        1,
        Product::Pfizer,
        "FF2153",
        "2021-06-03T13:30:00+09:00",
    );
    sixth.venue_id = Some(d.venue);
    refused(s, sixth.clone(), "vials_used_up", engine).await;
    let vials = s
        .vials_of(
            d.venue,
            NaiveDate::from_ymd_opt(2021, 6, 3).unwrap(),
            at("2021-06-03T13:31:00+09:00"),
        )
        .await
        .unwrap();
    let v = vials.iter().find(|v| v.id == vial).unwrap();
    assert_eq!((v.drawn, v.state.as_str()), (5, "empty"), "{engine}");
    // A discarded vial gives nothing after it was discarded.
    let other = open_lot(
        s,
        d.venue,
        "FF2154",
        Product::Pfizer,
        "2021-06-03T13:00:00+09:00",
        1,
    )
    .await[0];
    s.discard_vial(other, "落下破損", at("2021-06-03T13:10:00+09:00"), ACTOR)
        .await
        .unwrap()
        .unwrap();
    sixth.lot = LotNo::parse("FF2154").unwrap();
    refused(s, sixth, "vial_discarded", engine).await;
    d.db.cleanup().await;
}

async fn a_correction_is_a_new_audited_record(engine: &str) {
    let d = day(engine).await;
    let s = &d.db.store;
    open_lot(
        s,
        d.venue,
        "FA5765",
        Product::Pfizer,
        "2021-06-03T09:10:00+09:00",
        1,
    )
    .await;
    let first = s
        .record_vaccination(
            &dose(
                d.adult,
                1,
                Product::Pfizer,
                "FA4597",
                "2021-06-03T10:05:00+09:00",
            ),
            ACTOR,
        )
        .await
        .unwrap()
        .unwrap();
    // The lot was mistyped: FA5765 was given.
    let mut fixed = dose(
        d.adult,
        1,
        Product::Pfizer,
        "FA5765",
        "2021-06-03T10:05:00+09:00",
    );
    fixed.venue_id = Some(d.venue);
    let second = s
        .correct_vaccination(first.id, &fixed, "ロット番号の誤入力", ACTOR)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.corrects_id, Some(first.id));
    assert_eq!(second.lot, "FA5765");
    assert_eq!(second.correction_reason, "ロット番号の誤入力");
    let all = s.vaccinations_of(d.adult).await.unwrap();
    assert_eq!(all.len(), 2, "{engine}: the corrected record is kept");
    assert!(all[0].superseded_at.is_some() && all[1].superseded_at.is_none());
    assert_eq!(all[0].lot, "FA4597", "{engine}: never edited");
    // The old record cannot be corrected again; the new one can.
    let again = s
        .correct_vaccination(first.id, &fixed, "もう一度", ACTOR)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(again.reason, "already_corrected", "{engine}");
    let audit: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_entries WHERE resident_id = $1 ORDER BY id")
            .bind(d.adult)
            .fetch_all(&s.read)
            .await
            .unwrap();
    assert_eq!(
        audit,
        ["record_vaccination", "correct_vaccination"],
        "{engine}"
    );
    d.db.cleanup().await;
}

/// Two (and more) venue screens record the same dose of the same resident at the same moment:
/// exactly one record, the others refused.
async fn screens_recording_the_same_dose_at_once_make_one_record(engine: &str) {
    let d = day(engine).await;
    let s = d.db.store.clone();
    for round in 0..3 {
        let resident = d.adult;
        let n = if round == 0 { 2 } else { 8 };
        let dose_no = 1 + round as u8;
        if dose_no == 2 {
            open_lot(
                &s,
                d.venue,
                "EY0779",
                Product::Pfizer,
                "2021-06-24T09:00:00+09:00",
                2,
            )
            .await;
        }
        if dose_no == 3 {
            open_lot(
                &s,
                d.venue,
                "FK0108",
                Product::Pfizer,
                "2022-01-24T09:00:00+09:00",
                2,
            )
            .await;
        }
        let given = [
            "2021-06-03T10:05:00+09:00",
            "2021-06-24T10:05:00+09:00",
            "2022-01-24T10:05:00+09:00",
        ][round];
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let s = s.clone();
                let barrier = barrier.clone();
                let mut v = dose(resident, dose_no, Product::Pfizer, "FA4597", given);
                v.lot = LotNo::parse(["FA4597", "EY0779", "FK0108"][round]).unwrap();
                v.venue_id = Some(d.venue);
                tokio::spawn(async move {
                    barrier.wait().await;
                    s.record_vaccination(&v, ACTOR).await
                })
            })
            .collect();
        let mut done = 0;
        let mut refusals = Vec::new();
        for t in tasks {
            match t.await.unwrap().unwrap() {
                Ok(_) => done += 1,
                Err(r) => refusals.push(r.reason),
            }
        }
        assert_eq!(done, 1, "{engine}: dose {dose_no}: exactly one record");
        assert!(
            refusals.iter().all(|r| r == "already_recorded"),
            "{engine}: {refusals:?}"
        );
        let records: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vaccinations WHERE resident_id = $1 AND dose = $2",
        )
        .bind(resident)
        .bind(i64::from(dose_no))
        .fetch_one(&s.read)
        .await
        .unwrap();
        assert_eq!(records, 1, "{engine}");
    }
    d.db.cleanup().await;
}

#[test]
fn the_select_names_the_columns() {
    assert_eq!(
        VACCINATION_SELECT,
        format!(
            "SELECT {VACCINATION_COLUMNS} FROM vaccinations x JOIN venues v ON v.id = x.venue_id"
        )
    );
}

on_each_engine!(
    records_a_dose_and_completes_its_booking,
    refuses_the_same_dose_twice,
    refuses_dose2_before_the_minimum_interval,
    refuses_dose2_of_another_product,
    refuses_a_resident_too_young,
    refuses_a_lot_not_opened_here_today,
    a_vial_gives_no_more_doses_than_it_holds,
    a_correction_is_a_new_audited_record,
    screens_recording_the_same_dose_at_once_make_one_record,
);
