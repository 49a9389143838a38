//! Rebooking and slot edits over HTTP, on every engine: cancel and book again with a key per
//! change (a retry changes nothing), and the planner's PATCH /api/slots/{id} (capacity never
//! below the seats booked; closing; a slot_update goes out).

use crate::common::*;
use madoguchi::domain::{Product, Role};
use madoguchi::store::bookings::NewSlot;
use madoguchi::store::testing::sample_residents;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn cancel_book_and_edit_slots_sqlite() {
    cancel_book_and_edit_slots("sqlite").await;
}

#[tokio::test]
async fn cancel_book_and_edit_slots_postgres() {
    if require_postgres() {
        cancel_book_and_edit_slots("postgres").await;
    }
}

async fn send(
    c: &Client,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = c
        .http
        .request(method, format!("{}{}", c.base, path))
        .header("cookie", &c.cookie)
        .json(&body);
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await.expect("request");
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn cancel_book_and_edit_slots(engine: &str) {
    let srv = TestServer::start(engine, None).await;
    srv.add_user("agent1", Role::Agent, Some("201")).await;
    srv.add_user("plan1", Role::Planner, None).await;
    let s = srv.store();
    s.insert_residents(&sample_residents(2)).await.unwrap();
    let r: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let venue = s.insert_venue("東体育館", "", &["東"]).await.unwrap();
    let first = chrono::NaiveDate::from_ymd_opt(2031, 6, 3).unwrap();
    let mut new = Vec::new();
    for day in 0..40 {
        let starts = madoguchi::domain::vaccine::jst_at(
            first + chrono::Duration::days(day),
            chrono::NaiveTime::from_hms_opt(9, 30, 0).unwrap(),
        );
        new.push(NewSlot {
            venue_id: venue,
            starts_at: starts,
            ends_at: starts + chrono::Duration::minutes(30),
            product: Product::Pfizer,
            capacity: 2,
        });
    }
    let slots = s.insert_slots(&new).await.unwrap();
    let d1 = s.book(r[0], 1, slots[0]).await.unwrap().unwrap();
    s.book(r[0], 2, slots[21]).await.unwrap().unwrap();
    let agent = srv.login("agent1").await;
    let planner = srv.login("plan1").await;
    let (mut feed, _) = planner.ws_at("/ws/slots").await;

    // Cancel with a blank key: refused, nothing changed (the cancel below still finds both).
    let (status, body) = send(
        &agent,
        reqwest::Method::POST,
        &format!("/api/bookings/{d1}/cancel"),
        Some(""),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("Idempotency-Key")),
        "{engine}: {body}"
    );
    // Cancel: both doses; the retry answers the same and changes nothing.
    let (status, body) = send(
        &agent,
        reqwest::Method::POST,
        &format!("/api/bookings/{d1}/cancel"),
        Some("x1"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{engine}: {body}");
    assert_eq!(body["bookings"].as_array().unwrap().len(), 2);
    let (status, again) = send(
        &agent,
        reqwest::Method::POST,
        &format!("/api/bookings/{d1}/cancel"),
        Some("x1"),
        json!({}),
    )
    .await;
    assert_eq!(
        (status, again["replayed"].as_bool()),
        (200, Some(true)),
        "{engine}"
    );
    // An unknown call is refused before anything changes.
    let book = json!({"resident_id": r[0], "dose": 1, "slot_id": slots[2], "call_id": "nope"});
    let (status, body) = send(
        &agent,
        reqwest::Method::POST,
        "/api/bookings",
        Some("b0"),
        book,
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("call_id")),
        "{engine}: {body}"
    );
    // Book again: dose 2 follows 21 days on.
    let book = json!({"resident_id": r[0], "dose": 1, "slot_id": slots[2]});
    let (status, body) = send(
        &agent,
        reqwest::Method::POST,
        "/api/bookings",
        Some("b1"),
        book.clone(),
    )
    .await;
    assert_eq!(status, 200, "{engine}: {body}");
    let got: Vec<i64> = body["bookings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["slot_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![slots[2], slots[23]], "{engine}");
    let (status, body) = send(
        &agent,
        reqwest::Method::POST,
        "/api/bookings",
        Some("b2"),
        book,
    )
    .await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (409, Some("already_booked")),
        "{engine}: {body}"
    );

    // The planner: capacity below the seats booked is refused; raising it and closing works.
    let path = format!("/api/slots/{}", slots[2]);
    let (status, body) = send(
        &agent,
        reqwest::Method::PATCH,
        &path,
        None,
        json!({"capacity": 5}),
    )
    .await;
    assert_eq!(status, 403, "{engine}: agents do not edit slots: {body}");
    s.book(r[1], 1, slots[2]).await.unwrap().unwrap();
    let (status, body) = send(
        &planner,
        reqwest::Method::PATCH,
        &path,
        None,
        json!({"capacity": 1}),
    )
    .await;
    assert_eq!(status, 409, "{engine}: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("2 seats are booked"),
        "{body}"
    );
    let (status, body) = send(&planner, reqwest::Method::PATCH, &path, None, json!({})).await;
    assert_eq!(status, 422, "{engine}: {body}");
    let (status, body) = send(
        &planner,
        reqwest::Method::PATCH,
        &path,
        None,
        json!({"capacity": 4, "closed": true}),
    )
    .await;
    assert_eq!(status, 200, "{engine}: {body}");
    assert_eq!(
        (
            body["capacity"].as_i64(),
            body["closed"].as_bool(),
            body["booked"].as_i64()
        ),
        (Some(4), Some(true), Some(2))
    );
    // The seat feed carries the edit.
    let mut seen = None;
    while let Some(msg) = feed.next_json(Duration::from_secs(5)).await {
        if msg["type"] == "slot_update"
            && msg["slot"]["id"] == slots[2]
            && msg["slot"]["closed"] == true
        {
            seen = Some(msg);
            break;
        }
    }
    assert!(seen.is_some(), "{engine}: a slot_update for the edit");
    let (status, _) = send(
        &planner,
        reqwest::Method::PATCH,
        "/api/slots/999999",
        None,
        json!({"closed": false}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, venues) = agent.get("/api/venues").await;
    assert_eq!(
        (status, venues[0]["name"].as_str()),
        (200, Some("東体育館"))
    );
    assert!(
        s.slot_count_mismatches().await.unwrap().is_empty(),
        "{engine}"
    );
    srv.stop().await;
}
