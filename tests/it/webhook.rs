//! A PBX without AMI reports calls over HTTP (Zammad's generic-CTI shape): the same pop to the
//! same agent and one call-log row, however often it retries; a wrong token or garbage changes
//! nothing.

use crate::common::*;
use madoguchi::domain::Role;
use madoguchi::settings::Settings;
use madoguchi::store::testing::TestDb;
use serde_json::json;
use std::time::Duration;

async fn start(engine: &str) -> TestServer {
    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    TestServer::start_with(db, store, |s: &mut Settings| {
        s.webhook_token = Some("tok-3f9a".into());
    })
    .await
}

async fn webhook_calls(engine: &str) {
    let srv = start(engine).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.add_user("agent202", Role::Agent, Some("202")).await;
    srv.store()
        .insert_residents(&[resident(
            5,
            "舞鶴 五郎",
            "マイヅル　ゴロウ",
            &["0773-62-5555"],
        )])
        .await
        .unwrap();
    let a201 = srv.login("agent201").await;
    let mut ws201 = a201.ws().await;
    let a202 = srv.login("agent202").await;
    let mut ws202 = a202.ws().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/pbx/webhook/tok-3f9a", srv.url);
    let post = |body: serde_json::Value| http.post(&url).json(&body).send();

    let new_call = json!({"event": "newCall", "from": "0773625555", "to": "0773689225",
        "direction": "in", "callId": "zc-1", "user": ["201", "202"], "queue": "vaccine"});
    let res = post(new_call.clone()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({}));
    for ws in [&mut ws201, &mut ws202] {
        let pop = ws
            .pop_with_record(Duration::from_secs(5))
            .await
            .expect("pop");
        assert_eq!(pop["type"], "screen_pop");
        assert_eq!(pop["call"]["id"], "webhook:zc-1");
        assert_eq!(pop["candidates"][0]["name"], "舞鶴 五郎");
    }
    // A retried newCall pops nobody again.
    assert_eq!(post(new_call.clone()).await.unwrap().status(), 200);
    // The answer, as form data.
    let res = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("event=answer&from=0773625555&to=0773689225&direction=in&callId=zc-1&answeringNumber=202&user%5B%5D=202")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let up = ws202
        .next_json(Duration::from_secs(5))
        .await
        .expect("update");
    assert_eq!(
        (up["type"].as_str(), up["event"].as_str()),
        (Some("call_update"), Some("answered_here")),
        "{up}"
    );
    let up = ws201
        .next_json(Duration::from_secs(5))
        .await
        .expect("update");
    assert_eq!(up["event"], "answered_elsewhere", "{up}");
    let hangup = json!({"event": "hangup", "from": "0773625555", "to": "0773689225",
        "direction": "in", "callId": "zc-1", "cause": "normalClearing"});
    assert_eq!(post(hangup.clone()).await.unwrap().status(), 200);
    assert_eq!(
        post(hangup).await.unwrap().status(),
        200,
        "a retried hangup is fine"
    );
    assert_eq!(
        post(new_call).await.unwrap().status(),
        200,
        "a late retry opens nothing"
    );

    // Refusals change nothing.
    let wrong = http
        .post(format!("{}/api/pbx/webhook/nope", srv.url))
        .json(&json!({"event": "newCall", "callId": "evil", "from": "1", "user": ["201"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let garbage = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 422);
    let unknown = post(json!({"event": "teleport", "callId": "x"}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 422);
    assert_eq!(
        unknown.json::<serde_json::Value>().await.unwrap()["field"],
        "event"
    );

    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = srv.store().calls_between(None, None, 10).await.unwrap();
        if calls.iter().all(|c| c.outcome.is_some()) && !calls.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.id, "webhook:zc-1");
    assert_eq!(c.outcome.as_deref(), Some("answered"));
    assert_eq!(c.answered_by.as_deref(), Some("202"));
    assert_eq!(c.queue.as_deref(), Some("vaccine"));
    assert_eq!(c.agents_offered, vec!["201".to_string(), "202".to_string()]);
    assert!(c.resident_id.is_some());
    srv.stop().await;
}

#[tokio::test]
async fn a_pbx_reports_calls_over_the_webhook_sqlite() {
    webhook_calls("sqlite").await;
}

#[tokio::test]
async fn a_pbx_reports_calls_over_the_webhook_postgres() {
    if require_postgres() {
        webhook_calls("postgres").await;
    }
}
