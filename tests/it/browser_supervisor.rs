//! The supervisors' wall screen in a real browser: a caller waits (the wait ticks), then an
//! agent answers, and the figures on the page change with the pushed board.

use crate::browser::browser_or_skip;
use crate::common::*;
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
