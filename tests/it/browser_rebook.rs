//! Rebooking from the pop in a real browser: an agent's phone rings (the fake PBX), the pop
//! shows the caller's bookings, the agent opens the alternatives and moves dose 1 (a double
//! click), and sees both doses and their bus rides at their new times; a full slot answers with a sentence on the
//! screen and changes nothing; a second agent whose screen shows the slot sees its seats drop.

use crate::browser::{browser_or_skip, call_from_123, log_in, page_errors, wait_phase, WAIT};
use crate::common::*;
use crate::webdriver::Driver;
use chrono::{Duration, NaiveTime};
use madoguchi::domain::vaccine::{jst_at, jst_date};
use madoguchi::domain::{Product, Role};
use madoguchi::store::bookings::NewSlot;
use madoguchi::store::rebook::appointment_ja;
use serde_json::{json, Value};

/// The seats a row of the panel shows for `slot` (data-seats), or null when not shown.
async fn seats_shown(d: &Driver, slot: i64) -> Value {
    d.script(
        "const r = document.querySelector(`#rebook [data-testid=rebook-slot][data-slot-id=\"${arguments[0]}\"]`); \
         return r ? r.dataset.seats : null;",
        vec![json!(slot)],
    )
    .await
}

/// The text of the record's booking items, dose by dose.
async fn booking_texts(d: &Driver) -> Value {
    d.script(
        "return [...document.querySelectorAll('#bookings [data-testid=booking-item]')].map(e => e.textContent);",
        vec![],
    )
    .await
}

#[tokio::test]
async fn an_agent_moves_dose_1_from_the_pop_and_another_sees_the_seats_drop() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = FakeAsterisk::start().await;
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.add_user("suzuki", Role::Agent, Some("778")).await;
    let s = srv.store();
    s.insert_residents(&[
        resident(20, "岡本 清", "オカモト　キヨシ", &["123"]),
        resident(21, "山田 花子", "ヤマダ　ハナコ", &["0773-62-9999"]),
    ])
    .await
    .unwrap();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&s.read)
        .await
        .unwrap();
    let (okamoto, yamada) = (ids[0], ids[1]);

    // A venue's next 40 days at 09:30 and 14:00, three seats each.
    let venue = s
        .insert_venue("中総合会館", "舞鶴市字浜", &["東"])
        .await
        .unwrap();
    let first = jst_date(chrono::Utc::now()) + Duration::days(2);
    let mut new = Vec::new();
    for day in 0..40 {
        for (h, m) in [(9, 30), (14, 0)] {
            let starts = jst_at(
                first + Duration::days(day),
                NaiveTime::from_hms_opt(h, m, 0).unwrap(),
            );
            new.push(NewSlot {
                venue_id: venue,
                starts_at: starts,
                ends_at: starts + Duration::minutes(30),
                product: Product::Pfizer,
                capacity: 3,
            });
        }
    }
    let slot_ids = s.insert_slots(&new).await.unwrap();
    let slot = |day: usize, pm: bool| slot_ids[day * 2 + usize::from(pm)];
    let when = |day: usize, pm: bool| appointment_ja(new[day * 2 + usize::from(pm)].starts_at);
    let d1 = s.book(okamoto, 1, slot(0, false)).await.unwrap().unwrap();
    s.book(okamoto, 2, slot(21, false)).await.unwrap().unwrap();
    s.book(yamada, 1, slot(1, false)).await.unwrap().unwrap();
    let target = slot(1, true);

    // 岡本さん rides the bus (both residents of the fixture need it): a stop in 浜, 20
    // minutes from the venue; the day's plan gives dose 1 and dose 2 their 09:30 runs, and
    // 14:00 runs on the target's day and 21 days on take the rides when dose 1 moves.
    let stop = s
        .insert_stop("浜公民館前", &["浜"], &[(venue, 20)])
        .await
        .unwrap();
    for day in [0, 21] {
        s.plan_transport(first + Duration::days(day), 10, 1, false)
            .await
            .unwrap();
    }
    let mut afternoon = Vec::new();
    for day in [1, 22] {
        afternoon.push(
            s.insert_run(venue, new[day * 2 + 1].starts_at, "14:00便", 10, &[stop])
                .await
                .unwrap(),
        );
    }
    // The pickup the screen should show: HH:MM (JST) of the ride of a booking.
    let pickup_of = |booking: i64| {
        let s = s.clone();
        async move {
            let row: (i64, String) = sqlx::query_as(
                "SELECT x.run_id, rs.pickup_at FROM rides x JOIN run_stops rs \
                 ON rs.run_id = x.run_id AND rs.stop_id = x.stop_id \
                 WHERE x.booking_id = $1 AND x.status = 'booked'",
            )
            .bind(booking)
            .fetch_one(&s.read)
            .await
            .unwrap();
            let at = madoguchi::store::parse_ts(&row.1).unwrap();
            (
                row.0,
                appointment_ja(at).rsplit('）').next().unwrap().to_string(),
            )
        }
    };
    let (_, pickup_before) = pickup_of(d1).await;

    tokio::time::timeout(WAIT, pbx.logins.recv())
        .await
        .expect("AMI login");

    // The second agent looks at 山田さん's booking: the alternatives show the target slot.
    let other = Driver::start(&driver_bin, &chrome).await;
    log_in(&other, &srv.url, "suzuki").await;
    let api = srv.login("suzuki").await;
    let (status, record) = api.get(&format!("/api/residents/{yamada}")).await;
    assert_eq!(status, 200);
    let hub = &srv.running.as_ref().expect("running").state.hub;
    let pop = json!({"type": "screen_pop", "lookup": "ok", "candidates": [record],
        "call": {"id": "t:yamada", "caller_number": "0773629999", "caller_name": null, "queue": "vaccine",
                 "dialled": "0773-62-0000", "started_at": chrono::Utc::now().to_rfc3339(),
                 "resident_id": null, "state": "talking"}});
    hub.publish(&madoguchi::hub::agent_topic("778"), &pop.to_string());
    let change = other
        .find("[data-testid=booking-change]", WAIT)
        .await
        .expect("山田さん's booking has 変更");
    other.click(&change).await;
    let shown = other
        .wait_for(
            &format!("const r = document.querySelector('#rebook [data-testid=rebook-slot][data-slot-id=\"{target}\"]'); return r ? r.dataset.seats : null;"),
            WAIT,
        )
        .await;
    assert_eq!(
        shown,
        json!("3"),
        "the second screen shows the slot with 3 seats"
    );

    // 岡本さん calls: the pop on sato's screen, with both bookings.
    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "sato").await;
    let (ringing, answer, call_id) = call_from_123(0);
    pbx.send(&ringing);
    assert_eq!(wait_phase(&d, &call_id, "ringing").await, json!("ringing"));
    pbx.send(&answer);
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("the pop shows the caller");
    assert_eq!(d.text(&name).await, "岡本 清");
    let texts = booking_texts(&d).await;
    assert!(
        texts[0].as_str().unwrap().contains(&when(0, false)),
        "dose 1 reads with its weekday: {texts}"
    );
    let rides = d
        .script(
            "return [...document.querySelectorAll('#bookings [data-testid=booking-item]')].map(e => { const r = e.querySelector('[data-testid=booking-ride]'); return r ? r.textContent : null; });",
            vec![],
        )
        .await;
    assert!(
        rides[0]
            .as_str()
            .is_some_and(|r| r.contains("浜公民館前") && r.contains(&pickup_before)),
        "dose 1 shows its ride, the stop and the pickup at {pickup_before}: {rides}"
    );
    // The call is in the log before the change names it.
    let sato = srv.login("sato").await;
    for _ in 0..50 {
        let (_, calls) = sato.get("/api/calls").await;
        if calls
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["id"] == call_id.as_str()))
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The alternatives of dose 1.
    let button = d
        .find(
            &format!("[data-testid=booking-change][data-booking-id=\"{d1}\"]"),
            WAIT,
        )
        .await
        .expect("dose 1 has 変更");
    d.click(&button).await;
    let listed = d
        .wait_for(
            &format!("return document.querySelector('#rebook [data-testid=rebook-slot][data-slot-id=\"{target}\"]') !== null;"),
            WAIT,
        )
        .await;
    assert_eq!(listed, json!(true), "the panel offers the target slot");
    let order = d
        .script(
            "return [...document.querySelectorAll('#rebook [data-testid=rebook-slot]')].slice(0, 3).map(r => Number(r.dataset.slotId));",
            vec![],
        )
        .await;
    assert_eq!(
        order,
        json!([slot(0, true), slot(1, false), slot(1, true)]),
        "same venue, nearest first"
    );

    // A slot that filled behind the screen's back: 409, read aloud, nothing changed.
    let filled = slot(0, true);
    sqlx::query("UPDATE slots SET capacity = 0 WHERE id = $1")
        .bind(filled)
        .execute(&s.write)
        .await
        .unwrap();
    d.script(
        "document.querySelector(`#rebook [data-testid=rebook-slot][data-slot-id=\"${arguments[0]}\"] [data-testid=rebook-choose]`).click();",
        vec![json!(filled)],
    )
    .await;
    let refused = d
        .wait_for(
            "const m = document.querySelector('#rebook [data-testid=rebook-message]'); return m && m.dataset.kind === 'refused' ? m.textContent : null;",
            WAIT,
        )
        .await;
    assert!(
        refused
            .as_str()
            .is_some_and(|m| m.contains("fully booked") && m.contains("nothing was changed")),
        "the refusal is on the screen: {refused}"
    );
    assert_eq!(
        s.bookings_of(okamoto).await.unwrap()[0].slot_id,
        slot(0, false)
    );

    // A double click on the target: one move, dose 2 follows to the same time 21 days on.
    d.script(
        "const b = document.querySelector(`#rebook [data-testid=rebook-slot][data-slot-id=\"${arguments[0]}\"] [data-testid=rebook-choose]`); b.click(); b.click();",
        vec![json!(target)],
    )
    .await;
    let done = d
        .wait_for(
            "const m = document.querySelector('#rebook [data-testid=rebook-message]'); return m && m.dataset.kind === 'done' ? m.textContent : null;",
            WAIT,
        )
        .await;
    assert!(done.is_string(), "the move is confirmed: {done}");
    let (one, two) = (when(1, true), when(22, true));
    let both = d
        .wait_for(
            &format!(
                "const t = [...document.querySelectorAll('#bookings [data-testid=booking-item]')].map(e => e.textContent); \
                 return t.length === 2 && t[0].includes({one:?}) && t[1].includes({two:?});"
            ),
            WAIT,
        )
        .await;
    assert_eq!(
        both,
        json!(true),
        "both doses show their new times: {}",
        booking_texts(&d).await
    );
    let booked = s.bookings_of(okamoto).await.unwrap();
    assert_eq!(
        (booked[0].slot_id, booked[1].slot_id),
        (target, slot(22, true))
    );
    // The rides moved with the doses, in the same change, onto the afternoon runs; the
    // screen shows each dose's new pickup time.
    let (run1, pickup1) = pickup_of(booked[0].id).await;
    let (run2, pickup2) = pickup_of(booked[1].id).await;
    assert_eq!((run1, run2), (afternoon[0], afternoon[1]));
    assert_ne!(pickup1, pickup_before);
    let shown = d
        .wait_for(
            &format!(
                "const r = [...document.querySelectorAll('#bookings [data-testid=booking-item]')].map(e => {{ const x = e.querySelector('[data-testid=booking-ride]'); return x ? x.textContent : ''; }}); \
                 return r.length === 2 && r[0].includes({pickup1:?}) && r[1].includes({pickup2:?});"
            ),
            WAIT,
        )
        .await;
    assert_eq!(
        shown,
        json!(true),
        "both rides show their new pickup ({pickup1}, {pickup2})"
    );
    assert_eq!(
        s.slot(target).await.unwrap().unwrap().booked,
        1,
        "one seat, not two"
    );
    let inquiries: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM inquiries WHERE call_key = $1 AND category = 'appointment_change'",
    )
    .bind(call_id.clone())
    .fetch_one(&s.read)
    .await
    .unwrap();
    assert_eq!(inquiries, 1, "the change is attached to the call once");
    let noted = d
        .wait_for(
            "return [...document.querySelectorAll('[data-testid=history-item]')].some(e => e.textContent.includes('予約変更'));",
            WAIT,
        )
        .await;
    assert_eq!(noted, json!(true), "the change shows in the history");

    // The second screen: the seats dropped while it looked.
    let dropped = other
        .wait_for(
            &format!("const r = document.querySelector('#rebook [data-testid=rebook-slot][data-slot-id=\"{target}\"]'); return r && r.dataset.seats === '2';"),
            WAIT,
        )
        .await;
    assert_eq!(
        dropped,
        json!(true),
        "the second agent sees 2 seats left, now {}",
        seats_shown(&other, target).await
    );
    assert_eq!(page_errors(&d).await, Vec::<String>::new());
    assert_eq!(page_errors(&other).await, Vec::<String>::new());
    d.quit().await;
    other.quit().await;
    srv.stop().await;
}

/// The planner's week: a venue's slots as a grid with the seats left; a capacity changed on the
/// page is saved and shown, and one below the bookings is refused with the reason, changing
/// nothing.
#[tokio::test]
async fn the_planner_sees_the_week_and_changes_a_slots_capacity() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("yoshida", Role::Planner, None).await;
    let s = srv.store();
    s.insert_residents(&[resident(30, "岡本 清", "オカモト　キヨシ", &["123"])])
        .await
        .unwrap();
    let okamoto: i64 = sqlx::query_scalar("SELECT id FROM residents")
        .fetch_one(&s.read)
        .await
        .unwrap();
    let venue = s
        .insert_venue("西市民プラザ", "舞鶴市字円満寺", &["西"])
        .await
        .unwrap();
    let first = jst_date(chrono::Utc::now()) + Duration::days(1);
    let mut new = Vec::new();
    for day in 0..3 {
        for (h, m) in [(9, 30), (14, 0)] {
            let starts = jst_at(
                first + Duration::days(day),
                NaiveTime::from_hms_opt(h, m, 0).unwrap(),
            );
            new.push(NewSlot {
                venue_id: venue,
                starts_at: starts,
                ends_at: starts + Duration::minutes(30),
                product: Product::Pfizer,
                capacity: 4,
            });
        }
    }
    let ids = s.insert_slots(&new).await.unwrap();
    s.book(okamoto, 1, ids[0]).await.unwrap().unwrap();

    let d = Driver::start(&driver_bin, &chrome).await;
    // The login form (a planner has no agent screen whose connection `log_in` waits for).
    d.goto(&srv.url).await;
    for (field, text) in [
        ("#login-username", "yoshida"),
        ("#login-password", "yoshida"),
    ] {
        let el = d.find(field, WAIT).await.expect("login form");
        d.type_into(&el, text).await;
    }
    let submit = d.find("#login-submit", WAIT).await.expect("login button");
    d.click(&submit).await;
    let gone = d
        .wait_for(
            "const f = document.querySelector('#login-username'); return !f || f.offsetParent === null;",
            WAIT,
        )
        .await;
    assert_eq!(gone, json!(true), "logged in");
    d.goto(&format!(
        "{}/assets/planner.html?venue={venue}&week={first}",
        srv.url
    ))
    .await;
    let seats = |id: i64| {
        format!(
            "const c = document.querySelector('[data-testid=planner-cell][data-slot-id=\"{id}\"]'); return c ? c.dataset.seats : null;"
        )
    };
    assert_eq!(
        d.wait_for(&seats(ids[0]), WAIT).await,
        json!("3"),
        "one booked of 4"
    );
    assert_eq!(d.wait_for(&seats(ids[5]), WAIT).await, json!("4"));
    let cells = d
        .script(
            "return document.querySelectorAll('[data-testid=planner-cell]').length;",
            vec![],
        )
        .await;
    assert_eq!(cells, json!(6), "three days of two slots");

    // More seats for the first slot.
    let set = |id: i64, capacity: i64| {
        format!(
            "const c = document.querySelector('[data-testid=planner-cell][data-slot-id=\"{id}\"]'); \
             const i = c.querySelector('[data-testid=planner-capacity]'); i.value = '{capacity}'; \
             c.querySelector('[data-testid=planner-save]').click();"
        )
    };
    d.script(&set(ids[0], 9), vec![]).await;
    let kind = "const m = document.querySelector('#planner-message'); return m && !m.hidden ? m.dataset.kind + ':' + m.textContent : null;";
    let said = d.wait_for(kind, WAIT).await;
    assert!(
        said.as_str().is_some_and(|m| m.starts_with("done:")),
        "{said}"
    );
    assert_eq!(d.wait_for(&seats(ids[0]), WAIT).await, json!("8"));
    assert_eq!(s.slot(ids[0]).await.unwrap().unwrap().capacity, 9);

    // Below the one booking: refused, the reason on the page, nothing changed.
    d.script(
        "document.querySelector('#planner-message').hidden = true;",
        vec![],
    )
    .await;
    d.script(&set(ids[0], 0), vec![]).await;
    let said = d.wait_for(kind, WAIT).await;
    assert!(
        said.as_str().is_some_and(|m| m.starts_with("error:")),
        "{said}"
    );
    assert_eq!(s.slot(ids[0]).await.unwrap().unwrap().capacity, 9);
    assert_eq!(page_errors(&d).await, Vec::<String>::new());
    d.quit().await;
    srv.stop().await;
}
