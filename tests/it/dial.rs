//! Click-to-dial through the AMI link: `POST /api/dial` makes the fake Asterisk receive the
//! exact `Originate` action, and its `OriginateResponse` (success, then a failure as in
//! capture 21) reaches the agent's screen as `dial_result`.

use crate::common::*;
use crate::pbx::ScriptedPbx;
use madoguchi::domain::Role;
use serde_json::{json, Value};
use std::time::Duration;

/// The next action of the given name the fake PBX received, as (lower-case key, value) pairs.
async fn next_action(pbx: &mut ScriptedPbx, name: &str) -> Vec<(String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let action = tokio::time::timeout_at(deadline, pbx.actions.recv())
            .await
            .unwrap_or_else(|_| panic!("the PBX receives an {name} action"))
            .expect("pbx running");
        if action
            .iter()
            .any(|(k, v)| k == "action" && v.eq_ignore_ascii_case(name))
        {
            return action;
        }
    }
}

fn field<'a>(action: &'a [(String, String)], key: &str) -> Option<&'a str> {
    action
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The next `dial_result` on the socket (other messages skipped).
async fn dial_result(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = ws
            .next_json(left)
            .await
            .expect("a dial_result reaches the agent");
        if m["type"] == "dial_result" {
            return m;
        }
    }
}

async fn click_to_dial(engine: &str) {
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start(engine, Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.add_user("agent202", Role::Agent, Some("202")).await;
    pbx.wait_login().await;
    let agent = srv.login("agent201").await;
    let mut ws = agent.ws().await;
    let other = srv.login("agent202").await;
    let mut other_ws = other.ws().await;

    // Bad numbers are refused and nothing is sent.
    for bad in ["077-368-9225", "", "123456789012345678901", "12a"] {
        let (status, body) = agent.post("/api/dial", json!({ "number": bad })).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert_eq!(body["field"], "number");
    }

    // The link may still be resyncing just after login: wait until a dial is accepted.
    let mut accepted = None;
    for _ in 0..50 {
        let (status, body) = agent
            .post(
                "/api/dial",
                json!({ "number": "0773689225", "resident_id": 1 }),
            )
            .await;
        if status == 202 {
            accepted = Some(body);
            break;
        }
        assert_eq!(status, 503, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = accepted.expect("202 once the link is up");
    let action_id = body["action_id"].as_str().expect("action_id").to_string();
    assert!(!action_id.is_empty());

    let action = next_action(&mut pbx, "Originate").await;
    assert_eq!(field(&action, "channel"), Some("PJSIP/201"));
    assert_eq!(field(&action, "context"), Some("from-internal"));
    assert_eq!(field(&action, "exten"), Some("0773689225"));
    assert_eq!(field(&action, "priority"), Some("1"));
    assert_eq!(
        field(&action, "callerid"),
        Some("\"0773689225\" <0773689225>")
    );
    assert_eq!(field(&action, "actionid"), Some(action_id.as_str()));
    assert_eq!(field(&action, "async"), Some("true"));

    // The fake answered `Response: Success` (queued); the outcome follows.
    pbx.send(format!(
        "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {action_id}\r\nResponse: Success\r\n\
         Channel: PJSIP/201-00000001\r\nContext: from-internal\r\nExten: 0773689225\r\nReason: 4\r\n\
         Uniqueid: 1700000000.77\r\nCallerIDNum: 0773689225\r\nCallerIDName: <unknown>\r\n\r\n"
    ));
    let result = dial_result(&mut ws).await;
    assert_eq!(result["action_id"], action_id.as_str());
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["reason"], "4");

    // A second dial fails at the PBX: Response: Failure, Reason: 0 (capture 21, part B).
    let (status, body) = agent
        .post("/api/dial", json!({ "number": "+81773689226" }))
        .await;
    assert_eq!(status, 202, "{body}");
    let second = body["action_id"].as_str().expect("action_id").to_string();
    assert_ne!(second, action_id);
    let action = next_action(&mut pbx, "Originate").await;
    assert_eq!(field(&action, "exten"), Some("+81773689226"));
    assert_eq!(field(&action, "actionid"), Some(second.as_str()));
    pbx.send(format!(
        "Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {second}\r\nResponse: Failure\r\n\
         Channel: PJSIP/201\r\nApplication: park\r\nData: \r\nReason: 0\r\nUniqueid: test 12 123 1236\r\n\
         CallerIDNum: <unknown>\r\nCallerIDName: <unknown>\r\n\r\n"
    ));
    let result = dial_result(&mut ws).await;
    assert_eq!(result["action_id"], second.as_str());
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["reason"], "0");

    // Only the agent who dialled hears of it.
    let mut leaked = None;
    while let Some(m) = other_ws.next_json(Duration::from_millis(300)).await {
        if m["type"] == "dial_result" {
            leaked = Some(m);
        }
    }
    assert_eq!(leaked, None, "another agent got a dial_result");

    // The server keeps serving.
    let (status, _) = agent.get("/api/agent/state").await;
    assert_eq!(status, 200);
    srv.stop().await;
}

#[tokio::test]
async fn click_to_dial_originate_and_its_outcomes_sqlite() {
    click_to_dial("sqlite").await;
}

#[tokio::test]
async fn click_to_dial_originate_and_its_outcomes_postgres() {
    if !require_postgres() {
        return;
    }
    click_to_dial("postgres").await;
}

#[tokio::test]
async fn without_a_pbx_link_dialling_is_unavailable() {
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    let agent = srv.login("agent201").await;
    let (status, body) = agent
        .post("/api/dial", json!({ "number": "0773689225" }))
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("PBX")),
        "{body}"
    );
    srv.stop().await;
}
