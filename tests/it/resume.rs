//! Honest resume: a screen opened while its phone rings shows the call, and a screen that
//! resumes with a `since` from before a restart is told of the gap and given the live calls.

use crate::common::*;
use crate::pbx::{ScriptCall, ScriptedPbx};
use crate::restart::ServerProcess;
use madoguchi::domain::Role;
use madoguchi::store::testing::{TempDir, TestDb};
use std::time::Duration;

async fn hello_shows_the_live_call(engine: &str) {
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start(engine, Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.store()
        .insert_residents(&[resident(
            1,
            "舞鶴 太郎",
            "マイヅル　タロウ",
            &["0773-62-3333"],
        )])
        .await
        .unwrap();
    pbx.wait_login().await;
    let agent = srv.login("agent201").await;
    let mut first = agent.ws().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let call = ScriptCall::new(7, "0773623333", "201");
    pbx.send(call.ring());
    let pop = first
        .pop_with_record(Duration::from_secs(5))
        .await
        .expect("pop");
    assert_eq!(pop["type"], "screen_pop");

    // A page opened while the phone rings.
    let (_ws, hello) = agent.ws_with("").await;
    let live = hello["live_calls"].as_array().expect("live_calls").clone();
    assert_eq!(live.len(), 1, "{hello}");
    assert_eq!(live[0]["call"]["id"], format!("ami:{}", call.id));
    assert_eq!(live[0]["call"]["state"], "ringing");
    assert_eq!(live[0]["candidates"][0]["name"], "舞鶴 太郎");
    assert_eq!(hello["gap"], false);
    assert!(hello["epoch"].as_str().is_some_and(|e| !e.is_empty()));

    pbx.send(call.answer(2));
    let update = first
        .next_json(Duration::from_secs(5))
        .await
        .expect("answered");
    assert_eq!(update["event"], "answered_here");
    let (_ws, hello) = agent.ws_with("").await;
    assert_eq!(
        hello["live_calls"][0]["call"]["state"], "talking",
        "{hello}"
    );

    pbx.send(call.hangup());
    let update = first
        .next_json(Duration::from_secs(5))
        .await
        .expect("ended");
    assert_eq!(update["event"], "ended");
    let (_ws, hello) = agent.ws_with("").await;
    assert_eq!(hello["live_calls"], serde_json::json!([]), "{hello}");
    srv.stop().await;
}

#[tokio::test]
async fn a_page_opened_while_the_phone_rings_shows_the_call_sqlite() {
    hello_shows_the_live_call("sqlite").await;
}

#[tokio::test]
async fn a_page_opened_while_the_phone_rings_shows_the_call_postgres() {
    if require_postgres() {
        hello_shows_the_live_call("postgres").await;
    }
}

async fn resume_across_a_restart(engine: &str) {
    let db = TestDb::new(engine).await.expect("test database");
    let spool = TempDir::new("spool").expect("spool");
    let store = db.store.clone();
    store
        .insert_residents(&[resident(
            2,
            "舞鶴 次郎",
            "マイヅル　ジロウ",
            &["0773-62-4444"],
        )])
        .await
        .unwrap();
    let hash = madoguchi::store::users::hash_password("agent201").unwrap();
    store
        .upsert_user(
            "agent201",
            "agent201",
            &hash,
            Role::Agent,
            Some(&madoguchi::domain::Extension::parse("201").unwrap()),
        )
        .await
        .unwrap();
    let mut pbx = ScriptedPbx::start().await;
    let a = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let agent = login(&a.url, "agent201").await;
    let (mut ws, hello) = agent.ws_with("").await;
    let epoch_a = hello["epoch"].as_str().expect("epoch").to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let x = ScriptCall::new(1, "0773620001", "201");
    let y = ScriptCall::new(2, "0773624444", "201");
    pbx.send(x.ring());
    pbx.send(x.hangup());
    pbx.send(y.ring());
    let mut seq = 0;
    for _ in 0..3 {
        let m = ws.next_json(Duration::from_secs(5)).await.expect("message");
        seq = m["seq"].as_u64().expect("seq");
    }
    assert!(seq >= 3);
    // The log has the ringing call (written beside the pop, a moment after it).
    for _ in 0..100 {
        let row = store.call(&format!("ami:{}", y.id)).await.unwrap();
        if row.is_some_and(|r| !r.agents_offered.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    pbx.set_listing(y.listing(false));
    a.kill9();
    let b = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let agent = login(&b.url, "agent201").await;
    // The resync continues call y; wait until the new process shows it.
    let mut hello = serde_json::Value::Null;
    for _ in 0..50 {
        let (_ws, h) = agent.ws_with(&format!("since={seq}&epoch={epoch_a}")).await;
        hello = h;
        if hello["live_calls"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        hello["gap"], true,
        "a since from before the restart is a gap: {hello}"
    );
    assert_ne!(hello["epoch"], epoch_a.as_str());
    let live = hello["live_calls"].as_array().expect("live calls");
    assert_eq!(live.len(), 1, "{hello}");
    assert_eq!(live[0]["call"]["id"], format!("ami:{}", y.id));
    assert_eq!(live[0]["call"]["state"], "ringing");
    assert_eq!(live[0]["candidates"][0]["name"], "舞鶴 次郎");
    // An old screen that sends no epoch: its seq is ahead of anything sent since the restart.
    let (_ws, h) = agent.ws_with(&format!("since={seq}")).await;
    assert_eq!(h["gap"], true, "{h}");
    // The new epoch resumes without a gap.
    let epoch_b = hello["epoch"].as_str().unwrap().to_string();
    let now = h["seq"].as_u64().unwrap();
    let (_ws, h) = agent.ws_with(&format!("since={now}&epoch={epoch_b}")).await;
    assert_eq!(h["gap"], false, "{h}");
    drop(b);
    db.cleanup().await;
}

#[tokio::test]
async fn resume_from_before_a_restart_is_told_of_the_gap_sqlite() {
    resume_across_a_restart("sqlite").await;
}

#[tokio::test]
async fn resume_from_before_a_restart_is_told_of_the_gap_postgres() {
    if require_postgres() {
        resume_across_a_restart("postgres").await;
    }
}
