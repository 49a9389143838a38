//! Appointments through HTTP: slots, bookings, and rebooking under load — never over capacity,
//! on every engine.

use crate::common::*;
use madoguchi::domain::{Product, Role};
use madoguchi::store::bookings::NewSlot;
use madoguchi::store::testing::sample_residents;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn concurrent_moves_never_overfill_sqlite() {
    concurrent_moves_never_overfill("sqlite").await;
}

#[tokio::test]
async fn concurrent_moves_never_overfill_postgres() {
    if require_postgres() {
        concurrent_moves_never_overfill("postgres").await;
    }
}

/// 200 agents' moves into one slot with 10 seats left, all at once: exactly 10 succeed, 190
/// hear "fully booked" (409) and change nothing, and the slot ends at its capacity.
async fn concurrent_moves_never_overfill(engine: &str) {
    const MOVERS: usize = 200;
    const CAPACITY: i64 = 30;
    const ALREADY: usize = 20;
    let srv = TestServer::start(engine, None).await;
    srv.add_user("agent1", Role::Agent, Some("201")).await;
    srv.add_user("venue1", Role::Venue, None).await;
    let s = srv.store();
    s.insert_residents(&sample_residents(MOVERS + ALREADY))
        .await
        .expect("residents");
    let residents: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let venue = s
        .insert_venue("舞鶴市総合文化会館", "舞鶴市字浜", &["東"])
        .await
        .unwrap();
    let at = |day: u32, hour: u32| {
        chrono::NaiveDate::from_ymd_opt(2031, 6, day)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
    };
    let slot = |day, hour, capacity| NewSlot {
        venue_id: venue,
        starts_at: at(day, hour),
        ends_at: at(day, hour) + chrono::Duration::minutes(30),
        product: Product::Pfizer,
        capacity,
    };
    // Four slots the movers are booked in now, and the target.
    let ids = s
        .insert_slots(&[
            slot(3, 0, 60),
            slot(3, 1, 60),
            slot(4, 0, 60),
            slot(4, 1, 60),
            slot(5, 2, CAPACITY),
        ])
        .await
        .unwrap();
    let target = ids[4];
    let mut movers = Vec::new();
    for (i, r) in residents.iter().enumerate() {
        if i < ALREADY {
            s.book(*r, 1, target).await.unwrap().unwrap();
        } else {
            movers.push(s.book(*r, 1, ids[i % 4]).await.unwrap().unwrap());
        }
    }

    let agent = srv.login("agent1").await;
    let (mut seats, _) = agent.ws_at("/ws/slots").await;
    let (status, slots) = agent.get(&format!("/api/slots?venue={venue}")).await;
    assert_eq!(status, 200, "{engine}: {slots}");
    let listed = slots
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == target)
        .cloned()
        .unwrap();
    assert_eq!(
        (
            listed["booked"].as_i64(),
            listed["capacity"].as_i64(),
            listed["product"].as_str()
        ),
        (Some(ALREADY as i64), Some(CAPACITY), Some("pfizer"))
    );

    let tasks: Vec<_> = movers
        .iter()
        .enumerate()
        .map(|(i, booking)| {
            let http = agent.http.clone();
            let cookie = agent.cookie.clone();
            let url = format!("{}/api/bookings/{booking}/move", agent.base);
            tokio::spawn(async move {
                let res = http
                    .post(url)
                    .header("cookie", cookie)
                    .header("Idempotency-Key", format!("move-{i}"))
                    .json(&json!({"slot_id": target}))
                    .send()
                    .await
                    .expect("POST move");
                let status = res.status().as_u16();
                (i, status, res.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut ok = Vec::new();
    let mut full = 0;
    for t in tasks {
        let (i, status, body) = t.await.unwrap();
        match status {
            200 => ok.push(i),
            409 => {
                assert_eq!(body["reason"], "slot_full", "{engine}: {body}");
                assert!(
                    body["error"].as_str().unwrap().contains("fully booked"),
                    "{body}"
                );
                full += 1;
            }
            other => panic!("{engine}: move answered {other}: {body}"),
        }
    }
    assert_eq!((ok.len(), full), (10, MOVERS - 10), "{engine}");
    let after = s.slot(target).await.unwrap().unwrap();
    assert_eq!(
        after.booked, CAPACITY,
        "{engine}: the slot ends at capacity"
    );
    assert!(
        s.slot_count_mismatches().await.unwrap().is_empty(),
        "{engine}"
    );
    let (_, live) = agent.get(&format!("/api/bookings?slot_id={target}")).await;
    assert_eq!(
        live.as_array().unwrap().len(),
        CAPACITY as usize,
        "{engine}"
    );
    assert!(live[0]["resident_id"].is_i64() && live[0]["dose"] == 1);

    // The slot screens were told, in order: the counts they saw never go down, and the last
    // is the capacity. Moves that land together may share one message (the feed reads the
    // slot once for all of them), so there are between 1 and 10.
    let mut seen = Vec::new();
    while let Some(msg) = seats.next_json(Duration::from_millis(500)).await {
        assert_eq!(msg["type"], "slot_update");
        assert!(msg["seq"].is_u64());
        if msg["slot"]["id"] == target {
            seen.push(msg["slot"]["booked"].as_i64().unwrap());
        }
    }
    assert!((1..=10).contains(&seen.len()), "{engine}: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{engine}: {seen:?}");
    assert_eq!(seen.last(), Some(&CAPACITY), "{engine}");

    // A retry of a successful move answers the same and changes nothing.
    let first = ok[0];
    let retry = agent
        .http
        .post(format!(
            "{}/api/bookings/{}/move",
            agent.base, movers[first]
        ))
        .header("cookie", &agent.cookie)
        .header("Idempotency-Key", format!("move-{first}"))
        .json(&json!({"slot_id": target}))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status(), 200);
    let body: Value = retry.json().await.unwrap();
    assert_eq!(body["replayed"], true, "{body}");
    assert_eq!(s.slot(target).await.unwrap().unwrap().booked, CAPACITY);

    // The record shows the booking where it now is.
    let resident = residents[ALREADY + first];
    let (_, record) = agent.get(&format!("/api/residents/{resident}")).await;
    let b = &record["bookings"][0];
    assert_eq!(
        (b["id"].as_i64(), b["dose"].as_i64(), b["slot_id"].as_i64()),
        (Some(movers[first]), Some(1), Some(target)),
        "{engine}: {record}"
    );
    assert_eq!(b["venue_id"], venue);
    assert_eq!(b["status"], "booked");
    assert_eq!(b["starts_at"], "2031-06-05T02:00:00.000Z");

    // Without a key (DESIGN's contract names only the body) the move runs once, with nothing to
    // replay; a key that is sent but blank is 422 naming it. A venue login may not move bookings.
    let j = (0..MOVERS)
        .find(|j| !ok.contains(j))
        .expect("a refused mover");
    let to = ids[(ALREADY + j + 1) % 4];
    let before = s.slot(to).await.unwrap().unwrap().booked;
    let (status, body) = agent
        .post(
            &format!("/api/bookings/{}/move", movers[j]),
            json!({"slot_id": to}),
        )
        .await;
    assert_eq!(status, 200, "{engine}: {body}");
    assert_eq!(body["replayed"], false, "{body}");
    assert_eq!(s.slot(to).await.unwrap().unwrap().booked, before + 1);
    let blank = agent
        .http
        .post(format!("{}/api/bookings/{}/move", agent.base, movers[j]))
        .header("cookie", &agent.cookie)
        .header("Idempotency-Key", " ")
        .json(&json!({"slot_id": ids[(ALREADY + j + 2) % 4]}))
        .send()
        .await
        .unwrap();
    assert_eq!(blank.status(), 422);
    let body: Value = blank.json().await.unwrap();
    assert_eq!(body["field"], "Idempotency-Key", "{body}");
    assert_eq!(s.slot(to).await.unwrap().unwrap().booked, before + 1);
    // A bare POST (no body, no Content-Type) reads as `{}`: a move is told the field it lacks,
    // a cancel needs nothing more. An empty form post is still refused.
    let bare = |path: String| {
        agent
            .http
            .post(format!("{}{path}", agent.base))
            .header("cookie", &agent.cookie)
            .send()
    };
    let res = bare(format!("/api/bookings/{}/move", movers[j]))
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("slot_id"),
        "{body}"
    );
    let form = agent
        .http
        .post(format!("{}/api/bookings/{}/cancel", agent.base, movers[j]))
        .header("cookie", &agent.cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 422);
    assert_eq!(s.slot(to).await.unwrap().unwrap().booked, before + 1);
    let res = bare(format!("/api/bookings/{}/cancel", movers[j]))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["bookings"][0]["status"], "cancelled", "{body}");
    assert_eq!(s.slot(to).await.unwrap().unwrap().booked, before);
    let venue_staff = srv.login("venue1").await;
    let (status, _) = venue_staff.get("/api/slots").await;
    assert_eq!(status, 403);
    let (status, doc) = agent.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    for path in ["/api/slots", "/api/bookings", "/api/bookings/{id}/move"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn dose2_follows_and_refusals_read_aloud_sqlite() {
    dose2_follows_and_refusals_read_aloud("sqlite").await;
}

#[tokio::test]
async fn dose2_follows_and_refusals_read_aloud_postgres() {
    if require_postgres() {
        dose2_follows_and_refusals_read_aloud("postgres").await;
    }
}

/// Through HTTP: moving dose 1 brings dose 2 along at 21 days, a dose 2 before day +19 is a
/// 409 with the reason and the first legal day, and nothing changes.
async fn dose2_follows_and_refusals_read_aloud(engine: &str) {
    let srv = TestServer::start(engine, None).await;
    srv.add_user("planner1", Role::Planner, None).await;
    let s = srv.store();
    s.insert_residents(&sample_residents(1)).await.unwrap();
    let resident: i64 = sqlx::query_scalar("SELECT id FROM residents")
        .fetch_one(&s.read)
        .await
        .unwrap();
    let venue = s.insert_venue("中総合会館", "", &["中"]).await.unwrap();
    let first = chrono::NaiveDate::from_ymd_opt(2031, 6, 3).unwrap();
    let mut new = Vec::new();
    for day in 0..40 {
        let starts = madoguchi::domain::vaccine::jst_at(
            first + chrono::Duration::days(day),
            chrono::NaiveTime::from_hms_opt(10, 0, 0).unwrap(),
        );
        new.push(NewSlot {
            venue_id: venue,
            starts_at: starts,
            ends_at: starts + chrono::Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 4,
        });
    }
    let slots = s.insert_slots(&new).await.unwrap();
    let d1 = s.book(resident, 1, slots[0]).await.unwrap().unwrap();
    let d2 = s.book(resident, 2, slots[21]).await.unwrap().unwrap();
    let planner = srv.login("planner1").await;
    let post = |booking: i64, slot: i64, key: &'static str| {
        let http = planner.http.clone();
        let cookie = planner.cookie.clone();
        let url = format!("{}/api/bookings/{booking}/move", planner.base);
        async move {
            let res = http
                .post(url)
                .header("cookie", cookie)
                .header("Idempotency-Key", key)
                .json(&json!({"slot_id": slot}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = post(d1, slots[2], "a").await;
    assert_eq!(status, 200, "{engine}: {body}");
    let doses: Vec<(i64, i64)> = body["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["dose"].as_i64().unwrap(), b["slot_id"].as_i64().unwrap()))
        .collect();
    assert_eq!(doses, vec![(1, slots[2]), (2, slots[23])], "{engine}");

    let (status, body) = post(d2, slots[20], "b").await;
    assert_eq!(status, 409, "{engine}: {body}");
    assert_eq!(body["reason"], "too_early");
    let sentence = body["error"].as_str().unwrap();
    assert!(
        sentence.contains("2031-06-24") && sentence.contains("nothing was changed"),
        "{sentence}"
    );
    let (_, record) = planner.get(&format!("/api/residents/{resident}")).await;
    assert_eq!(record["bookings"][1]["slot_id"], slots[23], "{engine}");
    srv.stop().await;
}
