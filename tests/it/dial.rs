//! Click-to-dial through the AMI link: `POST /api/dial` makes the fake Asterisk receive the
//! exact `Originate` action, and its `OriginateResponse` (success, then a failure as in
//! capture 21) reaches the agent's screen as `dial_result`.

use crate::common::*;
use crate::pbx::ScriptedPbx;
use madoguchi::domain::Role;
use serde_json::{json, Value};
use std::time::Duration;

/// The next action of the given name the fake PBX received, as (lower-case key, value) pairs.
pub(crate) async fn next_action(pbx: &mut ScriptedPbx, name: &str) -> Vec<(String, String)> {
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

pub(crate) fn field<'a>(action: &'a [(String, String)], key: &str) -> Option<&'a str> {
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

    // A resident that does not exist is refused.
    let (status, body) = agent
        .post(
            "/api/dial",
            json!({ "number": "0773689225", "resident_id": 999999 }),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("resident_id")),
        "{body}"
    );
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
            .post("/api/dial", json!({ "number": "0773689225" }))
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

/// The next message of `kind` on the socket (other messages skipped).
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = ws
            .next_json(left)
            .await
            .unwrap_or_else(|| panic!("a {kind} reaches the agent"));
        if m["type"] == kind {
            return m;
        }
    }
}

/// `QueueMemberPause` for PJSIP/201 in `vaccine`, as capture 19 has it.
fn member_pause(paused: bool, reason: &str) -> String {
    let p = u8::from(paused);
    format!(
        "Event: QueueMemberPause\r\nPrivilege: agent,all\r\nQueue: vaccine\r\nMemberName: PJSIP/201\r\n\
         Interface: PJSIP/201\r\nStateInterface: PJSIP/201\r\nMembership: static\r\nPenalty: 0\r\n\
         CallsTaken: 0\r\nLastCall: 0\r\nInCall: 0\r\nStatus: 1\r\nPaused: {p}\r\nPausedReason: {reason}\r\n\
         Ringinuse: 0\r\nReason: {reason}\r\n\r\n"
    )
}

/// Polls `/api/queues` until agent 201's live state is `state`; returns that agent.
async fn agent_201_until(boss: &Client, state: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, v) = boss.get("/api/queues").await;
        assert_eq!(status, 200, "{v}");
        if let Some(a) = v["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["extension"] == "201"))
        {
            if a["live"]["state"] == state {
                return a.clone();
            }
            last = a.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent 201 never became {state}: {last:#}");
}

/// A break on the agent's screen pauses them in the PBX's queues with the reason (the exact
/// `QueuePause`), the PBX's answer comes back to that agent, and the dashboard follows the
/// PBX's `QueueMemberPause`; ending the break unpauses; an error from the PBX is reported.
async fn pause_from_the_agent_screen(engine: &str) {
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start(engine, Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.add_user("boss", Role::Supervisor, None).await;
    pbx.wait_login().await;
    let agent = srv.login("agent201").await;
    let boss = srv.login("boss").await;
    let mut ws = agent.ws().await;

    // The link may still be resyncing just after login: until then the break is madoguchi's
    // alone and the answer says the PBX could not be asked.
    let mut asked = None;
    for _ in 0..50 {
        let (status, body) = agent
            .post(
                "/api/agent/state",
                json!({"state": "break", "reason": "昼休憩"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["state"], "break");
        if body["pbx_pause"]["action_id"].is_string() {
            asked = Some(body);
            break;
        }
        assert!(body["pbx_pause"]["error"].is_string(), "{body}");
        let (status, _) = agent
            .post("/api/agent/state", json!({"state": "ready"}))
            .await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = asked.expect("the PBX is asked once the link is up");
    assert_eq!(body["pbx_pause"]["paused"], true);
    let action_id = body["pbx_pause"]["action_id"].as_str().unwrap().to_string();

    let action = next_action(&mut pbx, "QueuePause").await;
    assert_eq!(field(&action, "actionid"), Some(action_id.as_str()));
    assert_eq!(field(&action, "interface"), Some("PJSIP/201"));
    assert_eq!(field(&action, "paused"), Some("true"));
    assert_eq!(field(&action, "reason"), Some("昼休憩"));
    assert_eq!(field(&action, "queue"), None, "every queue of the member");

    let result = next_of(&mut ws, "pause_result").await;
    assert_eq!(result["action_id"], action_id.as_str());
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["paused"], true);
    assert_eq!(result["reason"], "Interface paused successfully");

    // The PBX confirms with QueueMemberPause: the dashboard shows 201 paused with its reason.
    pbx.send(member_pause(true, "昼休憩"));
    let a = agent_201_until(&boss, "paused").await;
    assert_eq!(a["live"]["reason"], "昼休憩");

    // Back to ready: QueuePause Paused false, without a reason.
    let (status, body) = agent
        .post("/api/agent/state", json!({"state": "ready"}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pbx_pause"]["paused"], false);
    let action = next_action(&mut pbx, "QueuePause").await;
    assert_eq!(field(&action, "interface"), Some("PJSIP/201"));
    assert_eq!(field(&action, "paused"), Some("false"));
    assert_eq!(field(&action, "reason"), None);
    let result = next_of(&mut ws, "pause_result").await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["paused"], false);
    // Until the PBX says the member is unpaused, the dashboard keeps the PBX's word.
    let (_, v) = boss.get("/api/queues").await;
    let a = v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["extension"] == "201"))
        .cloned()
        .expect("agent 201");
    assert_eq!(a["live"]["state"], "paused", "the PBX still has 201 paused");
    pbx.send(member_pause(false, ""));
    agent_201_until(&boss, "idle").await;

    // Ready again does not ask the PBX anything.
    let (_, body) = agent
        .post("/api/agent/state", json!({"state": "ready"}))
        .await;
    assert_eq!(body["pbx_pause"], Value::Null, "{body}");

    // The PBX refuses (a member it does not know): the error reaches the agent.
    pbx.reply_next(
        "queuepause",
        "Response: Error\r\nMessage: Interface not found\r\n",
    );
    let (status, body) = agent
        .post(
            "/api/agent/state",
            json!({"state": "break", "reason": "研修"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let refused = body["pbx_pause"]["action_id"].as_str().unwrap().to_string();
    let result = next_of(&mut ws, "pause_result").await;
    assert_eq!(result["action_id"], refused.as_str());
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["reason"], "Interface not found");
    srv.stop().await;
}

#[tokio::test]
async fn pause_from_the_agent_screen_sqlite() {
    pause_from_the_agent_screen("sqlite").await;
}

#[tokio::test]
async fn pause_from_the_agent_screen_postgres() {
    if !require_postgres() {
        return;
    }
    pause_from_the_agent_screen("postgres").await;
}

/// Calling back from a callback entry: the PBX gets the Originate; when the originated call's
/// events arrive, the call log has exactly one row for it, outbound, with the agent and the
/// resident the agent dialled (not a guess from the household's shared number), and the entry
/// names that call; then the entry is marked done.
async fn dial_from_a_callback(engine: &str) {
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start(engine, Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    // A household landline: two residents share it, so the number alone names nobody.
    srv.store()
        .insert_residents(&[
            resident(41, "舞鶴 花子", "マイヅル　ハナコ", &["0773620041"]),
            resident(42, "舞鶴 太郎", "マイヅル　タロウ", &["0773620041"]),
        ])
        .await
        .unwrap();
    let phone = madoguchi::domain::PhoneNumber::parse("0773620041").unwrap();
    let (_, ids) = srv.store().pop_candidates(&phone).await.unwrap();
    assert_eq!(ids.len(), 2);
    let taro = ids[1];
    let day = madoguchi::calls::Board::day_start(chrono::Utc::now()) + chrono::Duration::hours(9);
    let day = day.date_naive().to_string();
    let at = madoguchi::store::ts(chrono::Utc::now());
    srv.store()
        .note_missed_call(
            "0773620041",
            &day,
            "ami:1700000599.1",
            Some("vaccine"),
            None,
            2,
            &at,
        )
        .await
        .unwrap();
    let entry = srv.store().callbacks(None, &day, 10).await.unwrap()[0].clone();
    pbx.wait_login().await;
    let agent = srv.login("agent201").await;
    let mut ws = agent.ws().await;

    let (status, body) = agent
        .post(&format!("/api/callbacks/{}/take", entry.id), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    // A callback that does not exist is refused and nothing is sent.
    let (status, body) = agent
        .post(
            "/api/dial",
            json!({"number": "0773620041", "resident_id": taro, "callback_id": 999999}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("callback_id")),
        "{body}"
    );

    let mut accepted = None;
    for _ in 0..50 {
        let (status, body) = agent
            .post(
                "/api/dial",
                json!({"number": "0773620041", "resident_id": taro, "callback_id": entry.id}),
            )
            .await;
        if status == 202 {
            accepted = Some(body);
            break;
        }
        assert_eq!(status, 503, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let action_id = accepted.expect("202 once the link is up")["action_id"]
        .as_str()
        .unwrap()
        .to_string();
    let action = next_action(&mut pbx, "Originate").await;
    assert_eq!(field(&action, "channel"), Some("PJSIP/201"));
    assert_eq!(field(&action, "exten"), Some("0773620041"));
    assert_eq!(field(&action, "actionid"), Some(action_id.as_str()));

    // Asterisk rings 201 (the originated channel, Uniqueid = the call's Linkedid); 201 answers,
    // so the OriginateResponse says Success; then the dialplan dials the resident on the trunk,
    // who answers, talks and hangs up.
    let (u, t) = ("1700000600.1", "1700000600.2");
    let (agent_ch, trunk_ch) = ("PJSIP/201-00000020", "PJSIP/trunk-00000021");
    pbx.send(format!(
        "Event: Newchannel\r\nChannel: {agent_ch}\r\nChannelState: 0\r\nChannelStateDesc: Down\r\n\
         CallerIDNum: 0773620041\r\nCallerIDName: 0773620041\r\nContext: from-internal\r\nExten: 0773620041\r\n\
         Uniqueid: {u}\r\nLinkedid: {u}\r\n\r\n\
         Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: {action_id}\r\nResponse: Success\r\n\
         Channel: {agent_ch}\r\nContext: from-internal\r\nExten: 0773620041\r\nReason: 4\r\n\
         Uniqueid: {u}\r\nCallerIDNum: 0773620041\r\nCallerIDName: 0773620041\r\n\r\n\
         Event: Newchannel\r\nChannel: {trunk_ch}\r\nChannelState: 0\r\nChannelStateDesc: Down\r\n\
         CallerIDNum: 201\r\nCallerIDName: \r\nContext: from-internal\r\nExten: 0773620041\r\n\
         Uniqueid: {t}\r\nLinkedid: {u}\r\n\r\n\
         Event: DialBegin\r\nChannel: {agent_ch}\r\nUniqueid: {u}\r\nLinkedid: {u}\r\n\
         DestChannel: {trunk_ch}\r\nDestUniqueid: {t}\r\nDestLinkedid: {u}\r\nDialString: trunk/0773620041\r\n\r\n\
         Event: DialEnd\r\nChannel: {agent_ch}\r\nUniqueid: {u}\r\nLinkedid: {u}\r\n\
         DestChannel: {trunk_ch}\r\nDestUniqueid: {t}\r\nDestLinkedid: {u}\r\nDialStatus: ANSWER\r\n\r\n"
    ));
    let result = next_of(&mut ws, "dial_result").await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(result["call_id"], format!("ami:{u}"));
    assert_eq!(result["resident_id"], taro);
    assert_eq!(result["callback_id"], entry.id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    pbx.send(format!(
        "Event: Hangup\r\nChannel: {trunk_ch}\r\nUniqueid: {t}\r\nLinkedid: {u}\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n\
         Event: Hangup\r\nChannel: {agent_ch}\r\nUniqueid: {u}\r\nLinkedid: {u}\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n\r\n"
    ));

    let key = format!("ami:{u}");
    let mut row = None;
    for _ in 0..100 {
        if let Some(r) = srv.store().call(&key).await.unwrap() {
            if r.outcome.is_some() && r.resident_id == Some(taro) {
                row = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let row = match row {
        Some(r) => r,
        None => panic!(
            "the call is logged, ended and linked: {:#?}",
            srv.store().call(&key).await.unwrap()
        ),
    };
    let all = srv.store().calls_between(None, None, 100).await.unwrap();
    assert_eq!(
        all.len(),
        1,
        "one call, one row (both legs share the Linkedid): {all:#?}"
    );
    assert_eq!(
        row.direction, "outbound",
        "placed from the agent's own phone"
    );
    assert_eq!(
        row.answered_by.as_deref(),
        Some("201"),
        "the agent on the call"
    );
    assert!(row.answered_user_id.is_some(), "the agent's login");
    assert_eq!(row.agents_offered, vec!["201".to_string()]);
    assert_eq!(
        row.outcome.as_deref(),
        Some("answered"),
        "the resident answered"
    );
    assert_eq!(
        row.resident_id,
        Some(taro),
        "the resident dialled, not the household's first"
    );
    assert!(
        row.resident_confirmed,
        "linked by the agent's dial, kept for good"
    );
    assert_eq!(row.candidates, 2, "the number alone matched both");

    let entry_now = srv.store().callback(entry.id).await.unwrap().unwrap();
    assert_eq!(entry_now.dialled_call_id.as_deref(), Some(key.as_str()));
    let (status, body) = agent
        .post(
            &format!("/api/callbacks/{}/done", entry.id),
            json!({"outcome": "reached", "note": "2回目を予約"}),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("done")),
        "{body}"
    );
    assert_eq!(body["dialled_call_id"], key.as_str());
    // The outbound call made no callback entry of its own.
    let open = srv.store().callbacks(None, &day, 10).await.unwrap();
    assert!(open.is_empty(), "{open:#?}");
    srv.stop().await;
}

#[tokio::test]
async fn dial_from_a_callback_logs_one_outbound_call_linked_to_the_resident_sqlite() {
    dial_from_a_callback("sqlite").await;
}

#[tokio::test]
async fn dial_from_a_callback_logs_one_outbound_call_linked_to_the_resident_postgres() {
    if !require_postgres() {
        return;
    }
    dial_from_a_callback("postgres").await;
}
