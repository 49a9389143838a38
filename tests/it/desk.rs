//! The agent at a real desk: keeping the number a caller rang from (the next call from it pops
//! that resident), and the agent's own state (ready, break with a reason, after-call work that
//! ends by itself) as supervisors see it in `/api/queues`.

use crate::common::*;
use crate::pbx::{ScriptCall, ScriptedPbx};
use madoguchi::domain::Role;
use madoguchi::settings::Settings;
use madoguchi::store::testing::TestDb;
use serde_json::{json, Value};
use sqlx::Row;
use std::time::Duration;

/// Waits for the next message of `kind` on the socket (skipping others).
async fn next_of(ws: &mut Ws, kind: &str, event: Option<&str>) -> Value {
    for _ in 0..20 {
        let m = ws
            .next_json(Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("a {kind} message"));
        if m["type"] == kind && event.is_none_or(|e| m["event"] == e) {
            return m;
        }
    }
    panic!("no {kind} message");
}

async fn server_with_pbx(engine: &str, acw_seconds: u64) -> (TestServer, ScriptedPbx) {
    let mut pbx = ScriptedPbx::start().await;
    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    let addr = pbx.addr.clone();
    let srv = TestServer::start_with(db, store, move |s: &mut Settings| {
        s.ami_address = Some(addr);
        s.ami_username = "madoguchi".into();
        s.ami_secret = "s3cret".into();
        s.acw_seconds = acw_seconds;
    })
    .await;
    pbx.wait_login().await;
    (srv, pbx)
}

async fn the_number_kept_pops_the_resident(engine: &str) {
    let (srv, pbx) = server_with_pbx(engine, 60).await;
    let agent_id = srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.store()
        .insert_residents(&[
            resident(1, "舞鶴 花子", "マイヅル　ハナコ", &["0773-62-1111"]),
            resident(2, "舞鶴 一郎", "マイヅル　イチロウ", &[]),
        ])
        .await
        .unwrap();
    let found = srv
        .store()
        .residents_by_kana(
            &madoguchi::domain::Kana::parse("マイヅル　イチロウ").unwrap(),
            None,
        )
        .await
        .unwrap();
    let ichiro = found[0].id;
    let agent = srv.login("agent201").await;
    let mut ws = agent.ws().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // An unknown number: nobody pops; the agent finds the caller by hand and says who it is.
    let first = ScriptCall::new(11, "090-1234-5678", "201");
    pbx.send(first.ring());
    let pop = next_of(&mut ws, "screen_pop", None).await;
    assert_eq!(pop["candidates"], json!([]), "{pop}");
    pbx.send(first.answer(1));
    next_of(&mut ws, "call_update", Some("answered_here")).await;
    let call_id = format!("ami:{}", first.id);
    let (status, _) = agent
        .post(
            &format!("/api/calls/{call_id}/resident"),
            json!({"resident_id": ichiro}),
        )
        .await;
    assert_eq!(status, 204);

    // Bad input names its field; an unknown resident is 404.
    let path = format!("/api/residents/{ichiro}/phones");
    let (status, body) = agent
        .post(&path, json!({"number": "非通知", "kind": "mobile"}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("number")),
        "{body}"
    );
    let (status, body) = agent
        .post(&path, json!({"number": "090-1234-5678", "kind": "fax"}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("kind")),
        "{body}"
    );
    let (status, _) = agent
        .post(
            "/api/residents/999999/phones",
            json!({"number": "090-1234-5678", "kind": "mobile"}),
        )
        .await;
    assert_eq!(status, 404);

    // Keep the number.
    let (status, body) = agent
        .post(
            &path,
            json!({"number": "090-1234-5678", "kind": "mobile", "call_id": call_id}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["e164"], "+819012345678");
    assert_eq!(body["kind"], "mobile");
    let (status, body) = agent
        .post(&path, json!({"number": "09012345678", "kind": "home"}))
        .await;
    assert_eq!(status, 409, "the resident has it already: {body}");
    pbx.send(first.hangup());
    next_of(&mut ws, "call_update", Some("ended")).await;

    // The next call from that number pops the resident directly.
    let second = ScriptCall::new(12, "09012345678", "201");
    pbx.send(second.ring());
    let pop = next_of(&mut ws, "screen_pop", None).await;
    let mut candidates = pop["candidates"].as_array().cloned().unwrap_or_default();
    if candidates.is_empty() && pop["lookup"] == "pending" {
        let update = next_of(&mut ws, "candidates_update", None).await;
        candidates = update["candidates"].as_array().cloned().unwrap_or_default();
    }
    assert_eq!(candidates.len(), 1, "{pop}");
    assert_eq!(candidates[0]["id"], ichiro);
    assert_eq!(candidates[0]["name"], "舞鶴 一郎");
    pbx.send(second.hangup());

    // The change is in the audit log: who, which resident, what, from where.
    let rows = sqlx::query(
        "SELECT user_id, resident_id, detail, remote_addr FROM audit_entries WHERE action = 'add_phone'",
    )
    .fetch_all(&srv.store().read)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "one number kept, one entry");
    let row = &rows[0];
    assert_eq!(row.try_get::<i64, _>("user_id").unwrap(), agent_id);
    assert_eq!(row.try_get::<i64, _>("resident_id").unwrap(), ichiro);
    let detail: String = row.try_get("detail").unwrap();
    assert!(
        detail.contains("+819012345678") && detail.contains(&call_id),
        "{detail}"
    );
    let from: String = row.try_get("remote_addr").unwrap();
    assert!(from.starts_with("127.0.0.1:"), "{from}");
    srv.stop().await;
}

#[tokio::test]
async fn a_number_kept_after_identifying_pops_that_resident_next_time_sqlite() {
    the_number_kept_pops_the_resident("sqlite").await;
}

#[tokio::test]
async fn a_number_kept_after_identifying_pops_that_resident_next_time_postgres() {
    if require_postgres() {
        the_number_kept_pops_the_resident("postgres").await;
    }
}

/// This agent's entry in `/api/queues`.
async fn me_in_queues(c: &Client, ext: &str) -> Value {
    let (status, body) = c.get("/api/queues").await;
    assert_eq!(status, 200, "{body}");
    body["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["extension"] == ext).cloned())
        .unwrap_or_else(|| panic!("agent {ext} in {body}"))
}

async fn break_and_after_call_work(engine: &str) {
    let (srv, pbx) = server_with_pbx(engine, 1).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.add_user("sv", Role::Supervisor, None).await;
    let agent = srv.login("agent201").await;
    let supervisor = srv.login("sv").await;
    let mut ws = agent.ws().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let me = me_in_queues(&supervisor, "201").await;
    assert_eq!(me["availability"]["state"], "ready", "{me}");

    // A break with its reason, seen by the supervisor.
    let (status, body) = agent
        .post(
            "/api/agent/state",
            json!({"state": "break", "reason": "昼休憩"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let me = me_in_queues(&supervisor, "201").await;
    assert_eq!(me["availability"]["state"], "break", "{me}");
    assert_eq!(me["availability"]["reason"], "昼休憩");
    assert!(me["availability"]["since"].as_str().is_some(), "{me}");
    // The agent's screens follow: a message to those open, the hello of those opened later.
    let told = next_of(&mut ws, "agent_state", None).await;
    assert_eq!(
        (&told["state"], &told["reason"]),
        (&json!("break"), &json!("昼休憩"))
    );
    let (_other, hello) = agent.ws_with("").await;
    assert_eq!(hello["agent_state"]["state"], "break", "{hello}");
    // Bad input names its field; someone without an extension has no desk state.
    let (status, body) = agent
        .post("/api/agent/state", json!({"state": "nap"}))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("state")),
        "{body}"
    );
    let (status, _) = supervisor
        .post("/api/agent/state", json!({"state": "ready"}))
        .await;
    assert_eq!(status, 409);
    let (status, body) = agent.get("/api/agent/state").await;
    assert_eq!((status, &body["state"]), (200, &json!("break")), "{body}");

    // Back to ready; a call answered here ends: after-call work, then ready by itself.
    let (status, _) = agent
        .post("/api/agent/state", json!({"state": "ready"}))
        .await;
    assert_eq!(status, 200);
    let call = ScriptCall::new(21, "0773620021", "201");
    pbx.send(call.ring());
    next_of(&mut ws, "screen_pop", None).await;
    pbx.send(call.answer(1));
    next_of(&mut ws, "call_update", Some("answered_here")).await;
    assert_eq!(
        me_in_queues(&supervisor, "201").await["availability"]["state"],
        "ready"
    );
    pbx.send(call.hangup());
    next_of(&mut ws, "call_update", Some("ended")).await;
    let me = me_in_queues(&supervisor, "201").await;
    assert_eq!(me["availability"]["state"], "acw", "{me}");
    assert!(me["availability"]["until"].as_str().is_some(), "{me}");
    let (_, mine) = agent.get("/api/agent/state").await;
    assert_eq!(mine["state"], "acw", "{mine}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let me = me_in_queues(&supervisor, "201").await;
    assert_eq!(
        me["availability"]["state"], "ready",
        "the timer ran out: {me}"
    );

    // A call that was never answered here leaves no after-call work.
    let missed = ScriptCall::new(22, "0773620022", "201");
    pbx.send(missed.ring());
    next_of(&mut ws, "screen_pop", None).await;
    pbx.send(missed.hangup());
    next_of(&mut ws, "call_update", Some("ended")).await;
    assert_eq!(
        me_in_queues(&supervisor, "201").await["availability"]["state"],
        "ready"
    );
    srv.stop().await;
}

#[tokio::test]
async fn an_agent_on_break_and_in_after_call_work_is_seen_by_supervisors_sqlite() {
    break_and_after_call_work("sqlite").await;
}

#[tokio::test]
async fn an_agent_on_break_and_in_after_call_work_is_seen_by_supervisors_postgres() {
    if require_postgres() {
        break_and_after_call_work("postgres").await;
    }
}
