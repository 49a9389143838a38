//! The venue day through HTTP, on every engine: reception by scan, check-in, recording a dose
//! (and each refusal as a 409 with its reason), corrections, the resident's record, progress
//! pushed on /ws/venues; and two screens recording the same dose at once.

use crate::common::*;
use chrono::{Duration, Utc};
use madoguchi::domain::vaccine::jst_date;
use madoguchi::domain::{Product, Role};
use madoguchi::store::bookings::NewSlot;
use serde_json::{json, Value};

/// A server with a venue user, two venues, a resident booked for dose 1 at the first venue
/// now (today in Japan), and a Pfizer lot received and opened there through the API.
pub(crate) struct VenueDay {
    pub srv: TestServer,
    pub venue: i64,
    pub other_venue: i64,
    pub resident: i64,
    pub ticket: String,
}

pub(crate) async fn venue_day(engine: &str) -> VenueDay {
    let srv = TestServer::start(engine, None).await;
    srv.add_user("venue1", Role::Venue, None).await;
    srv.add_user("venue2", Role::Venue, None).await;
    srv.add_user("super1", Role::Supervisor, None).await;
    let s = srv.store();
    s.insert_residents(&[
        resident(
            1,
            "舞鶴\u{3000}花子",
            "マイヅル\u{3000}ハナコ",
            &["0773-62-1111"],
        ),
        resident(
            2,
            "舞鶴\u{3000}太郎",
            "マイヅル\u{3000}タロウ",
            &["0773-62-1111"],
        ),
    ])
    .await
    .unwrap();
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
    // A slot around now, so the booking is today's wherever in the day the test runs.
    let starts = Utc::now() - Duration::minutes(10);
    let slot = s
        .insert_slots(&[NewSlot {
            venue_id: venue,
            starts_at: starts,
            ends_at: starts + Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 10,
        }])
        .await
        .unwrap()[0];
    s.book(ids[0], 1, slot).await.unwrap().unwrap();
    let venue1 = srv.login("venue1").await;
    let (status, got) = venue1
        .post(
            "/api/venue/vials",
            json!({"venue_id": venue, "product": "pfizer", "lot": "FA4597", "count": 2}),
        )
        .await;
    assert_eq!(status, 201, "{got}");
    assert_eq!(got["doses_per_vial"], 5);
    for id in got["ids"].as_array().unwrap() {
        let (status, vial) = venue1
            .post(&format!("/api/venue/vials/{id}/open"), json!({}))
            .await;
        assert_eq!(status, 200, "{vial}");
        assert_eq!(vial["state"], "open");
    }
    VenueDay {
        srv,
        venue,
        other_venue,
        resident: ids[0],
        ticket: format!("{:010}", 1235),
    }
}

fn dose_body(d: &VenueDay, dose: u8, lot: &str) -> Value {
    json!({
        "resident_id": d.resident, "dose": dose, "product": "pfizer", "lot": lot,
        "vaccinator": "多々見 良三", "given_at": Utc::now().to_rfc3339(),
        "venue_id": d.venue, "injection_site": "left_arm",
    })
}

#[tokio::test]
async fn a_venue_day_sqlite() {
    a_venue_day("sqlite").await;
}

#[tokio::test]
async fn a_venue_day_postgres() {
    if require_postgres() {
        a_venue_day("postgres").await;
    }
}

async fn a_venue_day(engine: &str) {
    let d = venue_day(engine).await;
    let venue = d.srv.login("venue1").await;
    let supervisor = d.srv.login("super1").await;
    let (mut feed, _) = supervisor.ws_at("/ws/venues").await;

    // Reception by the 10-digit ticket, and by the 18-digit OCR line.
    let (status, r) = venue
        .get(&format!(
            "/api/venue/reception?venue={}&scan={}",
            d.venue, d.ticket
        ))
        .await;
    assert_eq!(status, 200, "{engine}: {r}");
    assert_eq!(r["resident"]["id"], d.resident);
    assert_eq!(r["warning"], "", "{engine}: booked here today");
    assert_eq!(r["proposed_dose"], 1);
    assert!(r["checkin"].is_null());
    let line = format!("11262021{}", d.ticket);
    let (status, r) = venue
        .get(&format!(
            "/api/venue/reception?venue={}&scan={line}",
            d.venue
        ))
        .await;
    assert_eq!((status, &r["resident"]["id"]), (200, &json!(d.resident)));
    assert_eq!(r["ticket_dose"], 1);
    // A misread municipality code (262024) fails its check digit: 422, naming it.
    let bad = format!("11262024{}", d.ticket);
    let (status, r) = venue
        .get(&format!(
            "/api/venue/reception?venue={}&scan={bad}",
            d.venue
        ))
        .await;
    assert_eq!(status, 422, "{engine}: {r}");
    assert!(r["error"].as_str().unwrap().contains("check digit"), "{r}");
    // At the other venue the booking is the wrong venue's.
    let (_, r) = venue
        .get(&format!(
            "/api/venue/reception?venue={}&scan={}",
            d.other_venue, d.ticket
        ))
        .await;
    assert_eq!(r["warning"], "wrong_venue", "{engine}");
    // The resident without a booking is a walk-in.
    let (_, r) = venue
        .get(&format!(
            "/api/venue/reception?venue={}&scan=0000001236",
            d.venue
        ))
        .await;
    assert_eq!(r["warning"], "walk_in", "{engine}");

    // Check in: once; a second scan finds the first check-in.
    let (status, c) = venue
        .post(
            "/api/venue/checkins",
            json!({"resident_id": d.resident, "venue_id": d.venue}),
        )
        .await;
    assert_eq!(status, 201, "{engine}: {c}");
    let (status, again) = venue
        .post(
            "/api/venue/checkins",
            json!({"resident_id": d.resident, "venue_id": d.venue}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["checkin"]["id"], c["checkin"]["id"]);
    let (_, rec) = venue.get(&format!("/api/residents/{}", d.resident)).await;
    assert_eq!(rec["bookings"][0]["status"], "checked_in", "{engine}");
    let pushed = next_progress(&mut feed, d.venue, |p| p["checked_in"] == 1).await;
    assert_eq!(pushed["vaccinated"], 0);
    // The forecast: one check-in just now measures 1 over the shortest span, 5 minutes; the
    // one booking is in today's arrivals; nobody else is due, so no queue and no warning.
    let f = &pushed["forecast"];
    assert_eq!(f["throughput_per_min"], 0.2, "{engine}: {f}");
    let booked: i64 = f["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["booked"].as_i64().unwrap())
        .sum();
    assert_eq!(booked, 1, "{f}");
    assert_eq!(
        (&f["warning"], &f["max_wait_min"]),
        (&json!(false), &json!(15))
    );

    // Bad fields: 422 naming the field, nothing recorded.
    let mut body = dose_body(&d, 1, "FA-4597");
    let (status, r) = venue.post("/api/vaccinations", body.clone()).await;
    assert_eq!((status, r["field"].as_str()), (422, Some("lot")), "{r}");
    body["lot"] = json!("FA4597");
    body["given_at"] = json!((Utc::now() + Duration::hours(2)).to_rfc3339());
    let (status, r) = venue.post("/api/vaccinations", body.clone()).await;
    assert_eq!(
        (status, r["field"].as_str()),
        (422, Some("given_at")),
        "{r}"
    );
    // A lot not opened here today.
    let (status, r) = venue
        .post("/api/vaccinations", dose_body(&d, 1, "EW0201"))
        .await;
    assert_eq!(status, 409, "{engine}: {r}");
    assert_eq!(r["reason"], "lot_not_opened");
    assert!(r["error"].as_str().unwrap().contains("EW0201"));

    // The dose.
    let (status, given) = venue
        .post("/api/vaccinations", dose_body(&d, 1, "fa4597"))
        .await;
    assert_eq!(status, 201, "{engine}: {given}");
    assert_eq!(given["lot"], "FA4597");
    assert_eq!(given["vaccinator"], "多々見\u{3000}良三");
    let pushed = next_progress(&mut feed, d.venue, |p| p["vaccinated"] == 1).await;
    assert_eq!(
        pushed["doses_left"], 9,
        "{engine}: 2 vials of 5, one dose drawn"
    );
    assert_eq!(pushed["waiting"], 0);
    // The same dose again: 409 with its reason.
    let (status, r) = venue
        .post("/api/vaccinations", dose_body(&d, 1, "FA4597"))
        .await;
    assert_eq!(
        (status, r["reason"].as_str()),
        (409, Some("already_recorded")),
        "{r}"
    );
    // Dose 2 the same day: too early.
    let (status, r) = venue
        .post("/api/vaccinations", dose_body(&d, 2, "FA4597"))
        .await;
    assert_eq!(
        (status, r["reason"].as_str()),
        (409, Some("too_early")),
        "{r}"
    );

    // The resident's record carries the dose; the booking is done.
    let (_, rec) = venue.get(&format!("/api/residents/{}", d.resident)).await;
    assert_eq!(rec["vaccinations"].as_array().unwrap().len(), 1, "{rec}");
    assert_eq!(rec["vaccinations"][0]["id"], given["id"]);
    assert_eq!(rec["bookings"][0]["status"], "vaccinated");

    // A correction: a new record; the old one superseded, both kept.
    let id = given["id"].as_i64().unwrap();
    let mut fix = dose_body(&d, 1, "FA4597");
    fix["injection_site"] = json!("right_arm");
    let (status, r) = venue
        .post(&format!("/api/vaccinations/{id}/correction"), fix.clone())
        .await;
    assert_eq!((status, r["field"].as_str()), (422, Some("reason")), "{r}");
    fix["reason"] = json!("接種部位の誤り");
    let (status, fixed) = venue
        .post(&format!("/api/vaccinations/{id}/correction"), fix.clone())
        .await;
    assert_eq!(status, 201, "{engine}: {fixed}");
    assert_eq!(fixed["corrects_id"], id);
    let (status, r) = venue
        .post(&format!("/api/vaccinations/{id}/correction"), fix)
        .await;
    assert_eq!(
        (status, r["reason"].as_str()),
        (409, Some("already_corrected"))
    );
    let (_, rec) = venue.get(&format!("/api/residents/{}", d.resident)).await;
    let doses = rec["vaccinations"].as_array().unwrap();
    assert_eq!(doses.len(), 2);
    assert!(doses[0]["superseded_at"].is_string() && doses[1]["superseded_at"].is_null());

    // Progress, as the supervisor reads it.
    let today = jst_date(Utc::now()).format("%Y-%m-%d").to_string();
    let (status, all) = supervisor
        .get(&format!("/api/venue/progress?date={today}"))
        .await;
    assert_eq!(status, 200);
    let here = all
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["venue_id"] == d.venue)
        .unwrap();
    assert_eq!(
        (&here["booked"], &here["checked_in"], &here["vaccinated"]),
        (&json!(1), &json!(1), &json!(1)),
        "{engine}: {here}"
    );
    let (_, list) = supervisor
        .get(&format!("/api/vaccinations?date={today}&venue={}", d.venue))
        .await;
    assert_eq!(list.as_array().unwrap().len(), 1, "current records only");
    // Every change was audited.
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_entries WHERE resident_id = $1 AND action <> 'view' ORDER BY id",
    )
    .bind(d.resident)
    .fetch_all(&d.srv.store().read)
    .await
    .unwrap();
    assert_eq!(
        actions,
        ["check_in", "record_vaccination", "correct_vaccination"],
        "{engine}"
    );
    d.srv.stop().await;
}

/// The next `venue_progress` for `venue` that satisfies `want`.
async fn next_progress(feed: &mut Ws, venue: i64, want: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(msg) = feed.next_json(left).await else {
            panic!("no venue_progress as wanted within 5 s");
        };
        if msg["type"] == "venue_progress"
            && msg["progress"]["venue_id"] == venue
            && want(&msg["progress"])
        {
            return msg["progress"].clone();
        }
    }
}

#[tokio::test]
async fn screens_recording_one_dose_at_once_sqlite() {
    screens_recording_one_dose_at_once("sqlite").await;
}

#[tokio::test]
async fn screens_recording_one_dose_at_once_postgres() {
    if require_postgres() {
        screens_recording_one_dose_at_once("postgres").await;
    }
}

/// Two venue screens (and then eight) record the same dose of the same resident at once:
/// exactly one 201; every other answer is 409 already_recorded; one record in the database.
async fn screens_recording_one_dose_at_once(engine: &str) {
    let d = venue_day(engine).await;
    let screens = [d.srv.login("venue1").await, d.srv.login("venue2").await];
    let body = dose_body(&d, 1, "FA4597");
    let (a, b) = tokio::join!(
        screens[0].post("/api/vaccinations", body.clone()),
        screens[1].post("/api/vaccinations", body.clone()),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{engine}: {a:?} {b:?}");
    let refused = if a.0 == 409 { &a.1 } else { &b.1 };
    assert_eq!(refused["reason"], "already_recorded");
    // Eight at once on the other resident (a walk-in, so the venue is given).
    let mut walk_in = body.clone();
    walk_in["resident_id"] = json!(d.resident + 1);
    let answers = futures_util::future::join_all(
        (0..8).map(|i| screens[i % 2].post("/api/vaccinations", walk_in.clone())),
    )
    .await;
    let created = answers.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 1, "{engine}: {answers:?}");
    assert!(answers
        .iter()
        .all(|(s, v)| *s == 201 || v["reason"] == "already_recorded"));
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vaccinations")
        .fetch_one(&d.srv.store().read)
        .await
        .unwrap();
    assert_eq!(n, 2, "{engine}: one record per resident");
    d.srv.stop().await;
}

#[tokio::test]
async fn vrs_export_by_command_and_by_http_sqlite() {
    vrs_export_by_command_and_by_http("sqlite").await;
}

#[tokio::test]
async fn vrs_export_by_command_and_by_http_postgres() {
    if require_postgres() {
        vrs_export_by_command_and_by_http("postgres").await;
    }
}

/// `madoguchi export vrs --date` makes a batch and writes it; `--batch ID` and
/// `GET /api/exports/vrs/{id}` give the same bytes; a second export has nothing new.
async fn vrs_export_by_command_and_by_http(engine: &str) {
    let d = venue_day(engine).await;
    let venue = d.srv.login("venue1").await;
    let (status, given) = venue
        .post("/api/vaccinations", dose_body(&d, 1, "FA4597"))
        .await;
    assert_eq!(status, 201, "{given}");
    let url = d.srv.db.as_ref().unwrap().url.clone();
    let dir = madoguchi::store::testing::TempDir::new("vrs").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_madoguchi"))
            .args(args)
            .env("MADOGUCHI_DATABASE_URL", &url)
            .env("MADOGUCHI_LOG", "warn")
            .output()
            .expect("run madoguchi");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let today = jst_date(Utc::now()).format("%Y-%m-%d").to_string();
    let first = dir.0.join("first.csv");
    let (ok, err) = run(&[
        "export",
        "vrs",
        "--date",
        &today,
        "--out",
        first.to_str().unwrap(),
    ]);
    assert!(ok, "{engine}: {err}");
    assert!(err.contains("1 doses"), "{err}");
    let written = std::fs::read(&first).unwrap();
    let text = String::from_utf8(written.clone()).unwrap();
    assert!(text.starts_with("自治体コード,券番号,接種回数,"), "{text}");
    assert!(text.contains(&format!("262021,{},1,", d.ticket)), "{text}");
    assert!(text.contains(",ファイザー,FA4597,"), "{text}");
    let id: i64 = sqlx::query_scalar("SELECT id FROM export_batches")
        .fetch_one(&d.srv.store().read)
        .await
        .unwrap();
    let again = dir.0.join("again.csv");
    let (ok, err) = run(&[
        "export",
        "vrs",
        "--batch",
        &id.to_string(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        std::fs::read(&again).unwrap(),
        written,
        "{engine}: byte-identical"
    );
    // The records clerk's download is the same bytes.
    let clerk = d.srv.login("super1").await;
    let res = clerk
        .http
        .get(format!("{}/api/exports/vrs/{id}", d.srv.url))
        .header("cookie", &clerk.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().to_vec(), written, "{engine}");
    // Nothing new: no batch, the header alone.
    let (ok, err) = run(&[
        "export",
        "vrs",
        "--date",
        &today,
        "--out",
        first.to_str().unwrap(),
    ]);
    assert!(ok && err.contains("nothing new"), "{err}");
    assert_eq!(std::fs::read_to_string(&first).unwrap().lines().count(), 1);
    let (status, pending) = clerk.get(&format!("/api/exports/vrs?date={today}")).await;
    assert_eq!(status, 200);
    assert_eq!(pending["unexported"].as_array().unwrap().len(), 0);
    assert_eq!(pending["batches"].as_array().unwrap().len(), 1);
    // A bad date says which flag.
    let (ok, err) = run(&["export", "vrs", "--date", "2021-13-01"]);
    assert!(!ok && err.contains("--date"), "{err}");
    // The ledger: a header and the resident's row.
    let ledger = dir.0.join("ledger.csv");
    let (ok, err) = run(&["export", "ledger", "--out", ledger.to_str().unwrap()]);
    assert!(ok, "{err}");
    let ledger = std::fs::read_to_string(&ledger).unwrap();
    assert!(
        ledger.starts_with("個別宛名番号,1回目接種履歴登録日時,"),
        "{ledger}"
    );
    assert_eq!(ledger.split("\r\n").filter(|l| !l.is_empty()).count(), 2);
    d.srv.stop().await;
}

#[tokio::test]
async fn standby_list_sqlite() {
    standby_list("sqlite").await;
}

#[tokio::test]
async fn standby_list_postgres() {
    if require_postgres() {
        standby_list("postgres").await;
    }
}

/// An agent puts a resident booked three weeks out on standby; the venue sees them beside the
/// doses that would go spare, takes them into today's slot (their booking moves there, the
/// seat counts follow) and the list empties.
async fn standby_list(engine: &str) {
    let d = venue_day(engine).await;
    d.srv.add_user("agent1", Role::Agent, Some("201")).await;
    let s = d.srv.store();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let later = Utc::now() + Duration::days(21);
    let later_slot = s
        .insert_slots(&[NewSlot {
            venue_id: d.venue,
            starts_at: later,
            ends_at: later + Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 10,
        }])
        .await
        .unwrap()[0];
    let booking = s.book(ids[1], 1, later_slot).await.unwrap().unwrap();
    let agent = d.srv.login("agent1").await;
    let yesterday = jst_date(Utc::now() - Duration::days(1)).to_string();
    let (status, r) = agent
        .post(
            "/api/standby",
            json!({"resident_id": ids[1], "venue_id": d.venue, "asked_on": yesterday}),
        )
        .await;
    assert_eq!(
        (status, r["field"].as_str()),
        (422, Some("asked_on")),
        "{r}"
    );
    let (status, entry) = agent
        .post(
            "/api/standby",
            json!({"resident_id": ids[1], "venue_id": d.venue, "note": "午前なら可"}),
        )
        .await;
    assert_eq!(status, 201, "{engine}: {entry}");
    assert_eq!(entry["dose"], 1, "the dose of the live booking");
    assert_eq!(
        entry["phone"], "0773-62-1111",
        "the resident's first number"
    );
    let (status, r) = agent
        .post(
            "/api/standby",
            json!({"resident_id": ids[1], "venue_id": d.venue}),
        )
        .await;
    assert_eq!(
        (status, r["reason"].as_str()),
        (409, Some("already_on_standby"))
    );

    // The venue's list: two open vials of 5 and one resident still expected: 9 spare.
    let venue = d.srv.login("venue1").await;
    let (status, list) = venue
        .get(&format!("/api/venue/standby?venue={}", d.venue))
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (&list["doses_left"], &list["expected"], &list["spare"]),
        (&json!(10), &json!(1), &json!(9)),
        "{engine}: {list}"
    );
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["name"], "舞鶴\u{3000}太郎");
    assert!(entries[0]["booked_at"].is_string(), "{list}");
    // Nobody is listed at the other venue.
    let (_, other) = venue
        .get(&format!("/api/venue/standby?venue={}", d.other_venue))
        .await;
    assert_eq!(other["entries"].as_array().unwrap().len(), 0);

    // A take into a full slot is refused in the one transaction: the resident stays on the
    // list and keeps their booking where it was.
    let id = entry["id"].as_i64().unwrap();
    let soon = Utc::now() + Duration::minutes(30);
    let full_slot = s
        .insert_slots(&[NewSlot {
            venue_id: d.venue,
            starts_at: soon,
            ends_at: soon + Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 0,
        }])
        .await
        .unwrap()[0];
    let (status, r) = venue
        .post(
            &format!("/api/venue/standby/{id}/take"),
            json!({"slot_id": full_slot}),
        )
        .await;
    assert_eq!(
        (status, r["reason"].as_str()),
        (409, Some("slot_full")),
        "{engine}: {r}"
    );
    let (_, list) = venue
        .get(&format!("/api/venue/standby?venue={}", d.venue))
        .await;
    assert_eq!(
        list["entries"].as_array().unwrap().len(),
        1,
        "{engine}: still on the list"
    );
    let slot_now: i64 = sqlx::query_scalar("SELECT slot_id FROM bookings WHERE id = $1")
        .bind(booking)
        .fetch_one(&s.read)
        .await
        .unwrap();
    assert_eq!(slot_now, later_slot, "{engine}: the booking did not move");

    // Taken into today's slot: the live booking moves there.
    let (status, taken) = venue
        .post(&format!("/api/venue/standby/{id}/take"), json!({}))
        .await;
    assert_eq!(status, 200, "{engine}: {taken}");
    assert_eq!(taken["entry"]["booking_id"], booking);
    let live = s.live_bookings_of(ids[1]).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, booking);
    assert_ne!(live[0].slot_id, later_slot, "moved to today's slot");
    assert_eq!(
        jst_date(madoguchi::store::parse_ts(&live[0].starts_at).unwrap()),
        jst_date(Utc::now())
    );
    let seats: Vec<i64> = sqlx::query_scalar("SELECT booked FROM slots WHERE id = $1")
        .bind(later_slot)
        .fetch_all(&s.read)
        .await
        .unwrap();
    assert_eq!(seats, [0], "the later seat is free again");
    let (_, list) = venue
        .get(&format!("/api/venue/standby?venue={}", d.venue))
        .await;
    assert_eq!(list["entries"].as_array().unwrap().len(), 0);
    assert_eq!(list["expected"], 2, "{list}");
    let (status, r) = venue
        .post(&format!("/api/venue/standby/{id}/take"), json!({}))
        .await;
    assert_eq!((status, r["reason"].as_str()), (409, Some("closed")));
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_entries WHERE resident_id = $1 AND action LIKE 'standby%' ORDER BY id",
    )
    .bind(ids[1])
    .fetch_all(&s.read)
    .await
    .unwrap();
    assert_eq!(actions, ["standby_add", "standby_close"]);
    d.srv.stop().await;
}

#[tokio::test]
async fn vsys_request_sqlite() {
    vsys_request("sqlite").await;
}

#[tokio::test]
async fn vsys_request_postgres() {
    if require_postgres() {
        vsys_request("postgres").await;
    }
}

/// The V-SYS request by hand: one Pfizer dose booked today and one in 3 days at the venue,
/// vials of 5: each day takes a whole vial, 2 vials; the 2 vials of `venue_day` are open (not
/// stock) and 1 more unopened is in stock: ask for 1.
async fn vsys_request(engine: &str) {
    let d = venue_day(engine).await;
    let s = d.srv.store();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let at = Utc::now() + Duration::days(3);
    let slot = s
        .insert_slots(&[NewSlot {
            venue_id: d.venue,
            starts_at: at,
            ends_at: at + Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 10,
        }])
        .await
        .unwrap()[0];
    s.book(ids[1], 1, slot).await.unwrap().unwrap();
    let venue = d.srv.login("venue1").await;
    let (status, got) = venue
        .post(
            "/api/venue/vials",
            json!({"venue_id": d.venue, "product": "pfizer", "lot": "FA5765", "count": 1}),
        )
        .await;
    assert_eq!(status, 201, "{got}");
    let supervisor = d.srv.login("super1").await;
    let (status, req) = supervisor.get("/api/exports/vsys").await;
    assert_eq!(status, 200, "{engine}: {req}");
    let lines = req["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 1, "{req}");
    let l = &lines[0];
    assert_eq!(
        (
            &l["venue_id"],
            &l["doses_booked"],
            &l["doses_per_vial"],
            &l["vials_needed"],
            &l["vials_in_stock"],
            &l["vials_to_request"]
        ),
        (
            &json!(d.venue),
            &json!(2),
            &json!(5),
            &json!(2),
            &json!(1),
            &json!(1)
        ),
        "{engine}: {l}"
    );
    // The CSV for Excel: BOM, header, one row.
    let res = supervisor
        .http
        .get(format!("{}/api/exports/vsys?format=csv", d.srv.url))
        .header("cookie", &supervisor.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let bytes = res.bytes().await.unwrap().to_vec();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(text.starts_with('\u{feff}'), "{text}");
    let rows: Vec<&str> = text.trim_end().split("\r\n").collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[1].ends_with(",2,5,2,1,1"), "{text}");
    // The command writes the same file.
    let dir = madoguchi::store::testing::TempDir::new("vsys").unwrap();
    let file = dir.0.join("vsys.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .args(["export", "vsys", "--out", file.to_str().unwrap()])
        .env("MADOGUCHI_DATABASE_URL", &d.srv.db.as_ref().unwrap().url)
        .env("MADOGUCHI_LOG", "warn")
        .output()
        .expect("run madoguchi");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "{engine}");
    // Two weeks from after the later booking: nothing booked, no line.
    let later = jst_date(Utc::now() + Duration::days(4));
    let (_, none) = supervisor
        .get(&format!("/api/exports/vsys?from={later}"))
        .await;
    assert_eq!(none["lines"].as_array().unwrap().len(), 0, "{none}");
    d.srv.stop().await;
}

#[tokio::test]
async fn reception_forecast_warns_sqlite() {
    reception_forecast_warns("sqlite").await;
}

#[tokio::test]
async fn reception_forecast_warns_postgres() {
    if require_postgres() {
        reception_forecast_warns("postgres").await;
    }
}

/// Thirty residents due in the next quarter hour against a reception that has checked in one
/// (0.2 a minute over its first 5 minutes): the forecast wait is far over 15 minutes from that
/// quarter, and the progress (and its push) says so.
async fn reception_forecast_warns(engine: &str) {
    use madoguchi::domain::forecast::bucket_of;
    let d = venue_day(engine).await;
    let s = d.srv.store();
    let now = Utc::now();
    let next = bucket_of(now) + Duration::minutes(15);
    if jst_date(next) != jst_date(now) {
        eprintln!("skipped: the next quarter hour is tomorrow in Japan");
        d.srv.stop().await;
        return;
    }
    s.insert_residents(&madoguchi::store::testing::sample_residents(30))
        .await
        .unwrap();
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM residents WHERE address_no >= '0007000000' ORDER BY id")
            .fetch_all(&s.read)
            .await
            .unwrap();
    assert_eq!(ids.len(), 30);
    let slot = s
        .insert_slots(&[NewSlot {
            venue_id: d.venue,
            starts_at: next,
            ends_at: next + Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 40,
        }])
        .await
        .unwrap()[0];
    for id in &ids {
        s.book(*id, 1, slot).await.unwrap().unwrap();
    }
    let venue = d.srv.login("venue1").await;
    let (status, _) = venue
        .post(
            "/api/venue/checkins",
            json!({"resident_id": d.resident, "venue_id": d.venue}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, all) = venue
        .get(&format!("/api/venue/progress?venue={}", d.venue))
        .await;
    assert_eq!(status, 200, "{all}");
    let f = &all[0]["forecast"];
    assert_eq!(f["throughput_per_min"], 0.2, "{engine}: {f}");
    assert_eq!(f["warning"], true, "{engine}: {f}");
    let warn_from = chrono::DateTime::parse_from_rfc3339(f["warn_from"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc);
    assert_eq!(warn_from, next, "{f}");
    // 30 due, 3 handled in the quarter: 27 queued, 135 minutes at 0.2 a minute.
    let due = f["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["expected"] == 30)
        .unwrap();
    assert_eq!(
        (&due["queue"], &due["wait_min"]),
        (&json!(27.0), &json!(135.0)),
        "{f}"
    );
    d.srv.stop().await;
}
