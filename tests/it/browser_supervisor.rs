//! The supervisors' wall screen in a real browser: a caller waits (the wait ticks), then an
//! agent answers, and the figures on the page change with the pushed board.

use crate::browser::{browser_or_skip, log_in};
use crate::common::*;
use crate::pbx::ScriptedPbx;
use crate::supervisor::SupPbx;
use crate::webdriver::Driver;
use madoguchi::domain::Role;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_board_shows_a_caller_waiting_then_answered() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = SupPbx::start().await;
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    pbx.wait_login().await;
    srv.add_user("boss", Role::Supervisor, None).await;
    srv.add_user("sato", Role::Agent, Some("201")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let d = Driver::start(&driver_bin, &chrome).await;
    d.goto(&format!("{}/supervisor", srv.url)).await;
    let user = d.find("#sv-username", WAIT).await.expect("login form");
    d.type_into(&user, "boss").await;
    let pw = d.find("#sv-password", WAIT).await.expect("password");
    d.type_into(&pw, "boss").await;
    let submit = d.find("#sv-login-submit", WAIT).await.expect("submit");
    d.click(&submit).await;
    let online = d
        .wait_for(
            "return document.querySelector('#sv-status').dataset.state === 'online' && document.body.dataset.updates >= 1;",
            WAIT,
        )
        .await;
    assert_eq!(online, json!(true), "the board connects");
    let kpi = |which: &str, key: &str| {
        format!("return document.querySelector('#sv-{which} [data-kpi={key}]').textContent;")
    };
    assert_eq!(d.script(&kpi("today", "offered"), vec![]).await, json!("0"));

    // A caller joins the queue: one waiting, offered 1, and the wait ticks on the page.
    let id = "1700000300.1";
    pbx.send(format!(
        "Event: Newchannel\r\nChannel: PJSIP/trunk-1\r\nChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: 0773620001\r\nCallerIDName: \r\nExten: 0773689225\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n\
         Event: QueueCallerJoin\r\nChannel: PJSIP/trunk-1\r\nQueue: vaccine\r\nPosition: 1\r\nCount: 1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n"
    ));
    let waiting = d
        .wait_for(
            "return document.querySelector('[data-testid=sv-waiting-count]').textContent === '1' && document.querySelector('#sv-waiting tr td:nth-child(2)').textContent;",
            WAIT,
        )
        .await;
    assert_eq!(waiting, json!("0773620001"));
    assert_eq!(d.script(&kpi("today", "offered"), vec![]).await, json!("1"));
    let ticked = d
        .wait_for(
            "const t = document.querySelector('#sv-waiting tr td.wait').textContent; return t !== '0:00' && t;",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        ticked.as_str().is_some_and(|t| t.starts_with("0:0")),
        "{ticked}"
    );

    // Agent 201 answers after 4 s: nobody waits, answered 1, service level 100 %, the agent
    // talking.
    pbx.send(format!(
        "Event: AgentConnect\r\nChannel: PJSIP/trunk-1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nDestChannel: PJSIP/201-00000001\r\nDestUniqueid: {id}9\r\nQueue: vaccine\r\nInterface: PJSIP/201\r\nMemberName: PJSIP/201\r\nHoldTime: 4\r\nRingTime: 1\r\n\r\n"
    ));
    let answered = d
        .wait_for(
            "return document.querySelector('[data-testid=sv-waiting-count]').textContent === '0' && document.querySelector('#sv-today [data-kpi=answered]').textContent;",
            WAIT,
        )
        .await;
    assert_eq!(answered, json!("1"));
    assert_eq!(
        d.script(&kpi("today", "service_level"), vec![]).await,
        json!("100%"),
        "answered within 20 s of 1 counted"
    );
    assert_eq!(d.script(&kpi("today", "asa"), vec![]).await, json!("4秒"));
    let state = d
        .wait_for(
            "const r = document.querySelector('#sv-agents tr[data-ext=\"201\"]'); return r && r.dataset.state;",
            WAIT,
        )
        .await;
    assert_eq!(state, json!("talking"));
    let bars = d
        .script(
            "return document.querySelector('#sv-chart').dataset.total;",
            vec![],
        )
        .await;
    assert_eq!(bars, json!("1"), "the chart counts the one call");
    d.quit().await;
    srv.stop().await;
}

/// 折り返し in a real browser: the agent opens the list from the top bar, takes the missed
/// caller's entry, calls back with one click (the PBX receives the Originate for the agent's
/// phone and the number, and its answer reaches the screen), and marks the entry done with an
/// outcome; the list is then empty and the store has the outcome.
#[tokio::test]
async fn an_agent_takes_a_callback_dials_it_and_marks_it_done() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.store()
        .insert_residents(&[resident(
            51,
            "舞鶴 花子",
            "マイヅル　ハナコ",
            &["0773620051"],
        )])
        .await
        .unwrap();
    let day = madoguchi::calls::Board::day_start(chrono::Utc::now()) + chrono::Duration::hours(9);
    let day = day.date_naive().to_string();
    let at = madoguchi::store::ts(chrono::Utc::now());
    for call in ["ami:1700000700.1", "ami:1700000700.2"] {
        srv.store()
            .note_missed_call("0773620051", &day, call, Some("vaccine"), None, 2, &at)
            .await
            .unwrap();
    }
    let entry = srv.store().callbacks(None, &day, 10).await.unwrap()[0].clone();
    pbx.wait_login().await;
    // The link is up (ready) before the agent dials.
    let ready = reqwest::Client::new();
    for _ in 0..100 {
        let r = ready.get(format!("{}/readyz", srv.url)).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "agent201").await;
    let toggle = d
        .find("[data-testid=callbacks-toggle]", WAIT)
        .await
        .expect("the callbacks button");
    let label = d
        .wait_for(
            "const b = document.querySelector('[data-testid=callbacks-toggle]'); return !b.hidden && b.textContent;",
            WAIT,
        )
        .await;
    assert_eq!(
        label,
        json!("折り返し 1件"),
        "one entry for two missed calls"
    );
    d.click(&toggle).await;
    let shown = d
        .wait_for(
            "const e = document.querySelector('[data-testid=callback]'); return e && [e.dataset.id, e.dataset.status, e.querySelector('.cb-meta').textContent];",
            WAIT,
        )
        .await;
    assert_eq!(
        shown,
        json!([entry.id.to_string(), "open", format!("{day}・不在2回")])
    );

    // Take it: the entry is this agent's.
    let take = d
        .find("[data-testid=callback-take]", WAIT)
        .await
        .expect("take button");
    d.click(&take).await;
    let taken = d
        .wait_for(
            "const e = document.querySelector('[data-testid=callback]'); return e && e.dataset.status === 'taken' && !e.querySelector('[data-testid=callback-take]');",
            WAIT,
        )
        .await;
    assert_eq!(taken, json!(true));

    // Call back with one click: the agent's phone first, then the number.
    let dial = d
        .find("[data-testid=callback] [data-testid=dial]", WAIT)
        .await
        .expect("dial button");
    d.click(&dial).await;
    let action = crate::dial::next_action(&mut pbx, "Originate").await;
    let field = |key: &str| crate::dial::field(&action, key);
    assert_eq!(field("channel"), Some("PJSIP/201"));
    assert_eq!(field("exten"), Some("0773620051"));
    let action_id = field("actionid").expect("an ActionID").to_string();
    // The screen has its answer to the request (the agent's phone is about to ring) before
    // the PBX's word on the call comes.
    let asked = d
        .wait_for(
            "const t = document.querySelector('#toast'); return !t.hidden && t.textContent.includes('に発信します');",
            WAIT,
        )
        .await;
    assert_eq!(asked, json!(true), "the request is answered on screen");
    pbx.send(format!(
        "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {action_id}\r\nResponse: Success\r\n\
         Channel: PJSIP/201-00000007\r\nContext: from-internal\r\nExten: 0773620051\r\nReason: 4\r\n\
         Uniqueid: 1700000701.1\r\nCallerIDNum: 0773620051\r\nCallerIDName: <unknown>\r\n\r\n"
    ));
    let told = d
        .wait_for(
            "const t = document.querySelector('#toast'); return !t.hidden && t.textContent === '発信しました。相手を呼び出しています';",
            WAIT,
        )
        .await;
    assert_eq!(told, json!(true), "the PBX's answer reaches the screen");

    // Done, with an outcome and a note: the list empties and the store keeps both.
    d.script(
        "document.querySelector('[data-testid=callback-outcome]').value = 'reached';",
        vec![],
    )
    .await;
    let note = d
        .find("[data-testid=callback-note]", WAIT)
        .await
        .expect("note field");
    d.type_into(&note, "2回目の予約を確認").await;
    let done = d
        .find("[data-testid=callback-done]", WAIT)
        .await
        .expect("done button");
    d.click(&done).await;
    let empty = d
        .wait_for(
            "return !document.querySelector('[data-testid=callback]') && document.querySelector('[data-testid=callbacks-toggle]').textContent;",
            WAIT,
        )
        .await;
    assert_eq!(empty, json!("折り返し 0件"));
    let after = srv.store().callbacks(Some("done"), &day, 10).await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].outcome.as_deref(), Some("reached"), "{after:?}");
    assert_eq!(after[0].note, "2回目の予約を確認", "{after:?}");
    d.quit().await;
    srv.stop().await;
}

/// 集計 in a real browser: a supervisor logs in on `/reports`, asks for one day by hour, and
/// the table shows the hour's figures as the API computes them (c1–c4 of the reports test:
/// two answered in 10 s and 30 s, talking 120 s and 60 s; one abandoned after 40 s; one short
/// abandon after 3 s), with the CSV link following the form.
#[tokio::test]
async fn the_reports_page_shows_an_hour_with_every_figure() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("boss", Role::Supervisor, None).await;
    for c in [
        crate::supervisor::report_call("c1", 0, (9, 0, 0), 2, 10, Some(120), "answered"),
        crate::supervisor::report_call("c2", 0, (9, 10, 0), 2, 30, Some(60), "answered"),
        crate::supervisor::report_call("c3", 0, (9, 20, 0), 2, 40, None, "abandoned"),
        crate::supervisor::report_call("c4", 0, (9, 30, 0), 2, 3, None, "abandoned"),
    ] {
        srv.store().upsert_call(&c).await.unwrap();
    }

    let d = Driver::start(&driver_bin, &chrome).await;
    d.goto(&format!("{}/reports", srv.url)).await;
    let user = d.find("#rp-username", WAIT).await.expect("login form");
    d.type_into(&user, "boss").await;
    let pw = d.find("#rp-password", WAIT).await.expect("password");
    d.type_into(&pw, "boss").await;
    let submit = d
        .find("#rp-login-form button[type=submit]", WAIT)
        .await
        .expect("login button");
    d.click(&submit).await;
    let shown = d
        .wait_for("return !document.querySelector('#rp-main').hidden;", WAIT)
        .await;
    assert_eq!(shown, json!(true), "the form shows after the login");
    d.script(
        "document.querySelector('#rp-from').value = '2021-05-10';\
         document.querySelector('#rp-to').value = '2021-05-10';\
         const by = document.querySelector('#rp-by'); by.value = 'hour';\
         by.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await;
    let show = d.find("#rp-show", WAIT).await.expect("show button");
    d.click(&show).await;
    let rows = d
        .wait_for(
            "const rows = document.querySelectorAll('#rp-body tr'); return rows.length === 24 && \
             [...rows[9].children].slice(0, 11).map((c) => c.textContent);",
            WAIT,
        )
        .await;
    assert_eq!(
        rows,
        json!([
            "2021-05-10 09:00",
            "4",     // c1–c4 offered
            "2",     // c1, c2 answered
            "1",     // c3 abandoned after 40 s
            "1",     // c4 under 5 s: a short abandon
            "0",     // no timeouts
            "33.3%", // c1 within 20 s ÷ (2 answered + 1 abandoned)
            "33.3%", // 1 abandoned ÷ (4 − 1 short)
            "20秒",  // (10 + 30) ÷ 2
            "90秒",  // (120 + 60) ÷ 2
            "0"      // no inquiries
        ])
    );
    let total = d
        .script(
            "return [...document.querySelectorAll('#rp-total th')].slice(1, 3).map((c) => c.textContent);",
            vec![],
        )
        .await;
    assert_eq!(total, json!(["4", "2"]), "the hours add up to the day");
    let csv = d
        .script(
            "return document.querySelector('#rp-csv').getAttribute('href');",
            vec![],
        )
        .await;
    assert_eq!(
        csv,
        json!("/api/reports.csv?from=2021-05-10&to=2021-05-10&by=hour&encoding=utf8")
    );
    d.quit().await;
    srv.stop().await;
}
