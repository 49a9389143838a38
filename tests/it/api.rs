//! The HTTP contract, on every engine: sessions, roles, search, records, inquiries, operations.

use crate::common::*;
use madoguchi::domain::Role;
use serde_json::json;

#[tokio::test]
async fn sessions_search_and_inquiries_sqlite() {
    sessions_search_and_inquiries("sqlite").await;
}

#[tokio::test]
async fn sessions_search_and_inquiries_postgres() {
    if require_postgres() {
        sessions_search_and_inquiries("postgres").await;
    }
}

async fn sessions_search_and_inquiries(engine: &str) {
    {
        let srv = TestServer::start(engine, None).await;
        srv.add_user("agent1", Role::Agent, Some("201")).await;
        srv.add_user("venue1", Role::Venue, None).await;
        srv.store()
            .insert_residents(&[
                resident(
                    1,
                    "舞鶴 花子",
                    "マイヅル　ハナコ",
                    &["0773-62-2300", "090-1111-2222"],
                ),
                resident(2, "舞鶴 太郎", "マイヅル　タロウ", &["0773622300"]),
                resident(3, "田中 一郎", "タナカ　イチロウ", &["0773-75-0001"]),
            ])
            .await
            .expect("residents");

        // A wrong password is refused, and says so in JSON.
        let http = reqwest::Client::new();
        let res = http
            .post(format!("{}/api/session", srv.url))
            .json(&json!({"username": "agent1", "password": "wrong"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{engine}");
        // No session, no data.
        let res = http
            .get(format!("{}/api/residents?phone=0773622300", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);

        let agent = srv.login("agent1").await;
        let (s, me) = agent.get("/api/me").await;
        assert_eq!((s, me["user"]["extension"].as_str()), (200, Some("201")));

        // Every spelling of the household landline finds both people on it.
        for spelling in [
            "0773-62-2300",
            "%2B81773622300",
            "%EF%BC%90%EF%BC%97%EF%BC%97%EF%BC%93622300",
        ] {
            let (s, found) = agent.get(&format!("/api/residents?phone={spelling}")).await;
            assert_eq!(s, 200, "{engine} {spelling}");
            let names: Vec<&str> = found
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["name"].as_str().unwrap())
                .collect();
            assert_eq!(names.len(), 2, "{engine} {spelling}: {names:?}");
            assert!(names.contains(&"舞鶴 花子") && names.contains(&"舞鶴 太郎"));
        }
        let (s, found) = agent.get("/api/residents?phone=anonymous").await;
        assert_eq!(s, 422, "withheld numbers search for no one: {found}");
        let (_, found) = agent.get("/api/residents?ticket=0000001237").await;
        assert_eq!(found[0]["name"], "田中 一郎");
        assert_eq!(found[0]["ticket_no"], "0000001237");
        let (_, found) = agent
            .get("/api/residents?kana=%E3%83%9E%E3%82%A4%E3%83%85%E3%83%AB&birth_date=1941-03-02")
            .await;
        assert_eq!(found.as_array().unwrap().len(), 2);
        // Typed without the space, in hiragana: still found.
        let (_, found2) = agent.get("/api/residents?kana=%E3%81%BE%E3%81%84%E3%81%A5%E3%82%8B%E3%81%AF%E3%81%AA%E3%81%93&birth_date=1941-03-02").await;
        assert_eq!(found2.as_array().map(|a| a.len()), Some(1), "{found2}");
        assert_eq!(found2[0]["name"], "舞鶴 花子");
        // The birth date in 和暦, as the caller says it or the agent types it (1941-03-02).
        for birth in ["昭和16年3月2日", "S16.3.2", "S160302", "16/3/2&era=showa"] {
            let (s, found) = agent
                .get(&format!("/api/residents?kana=マイヅル&birth_date={birth}"))
                .await;
            assert_eq!(s, 200, "{engine} {birth}: {found}");
            assert_eq!(found.as_array().map(|a| a.len()), Some(2), "{birth}");
        }
        for birth in ["16/3/2", "昭和64年1月8日", "S16.2.30"] {
            let (s, err) = agent
                .get(&format!("/api/residents?kana=マイヅル&birth_date={birth}"))
                .await;
            assert_eq!(
                (s, err["field"].as_str()),
                (422, Some("birth_date")),
                "{birth}: {err}"
            );
        }
        let (s, err) = agent.get("/api/residents?ticket=12").await;
        assert_eq!((s, err["field"].as_str()), (422, Some("ticket")));

        // An inquiry: a proxy caller without a relationship is refused, naming the field.
        let hanako = found
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "舞鶴 花子")
            .unwrap()["id"]
            .as_i64()
            .unwrap();
        let (s, err) = agent
            .post("/api/inquiries", json!({"resident_id": hanako, "category": "transport", "note": "バスの時間", "caller_kind": "proxy"}))
            .await;
        assert_eq!(
            (s, err["field"].as_str()),
            (422, Some("relationship")),
            "{err}"
        );
        let (s, err) = agent
            .post(
                "/api/inquiries",
                json!({"resident_id": hanako, "category": "nonsense"}),
            )
            .await;
        assert_eq!((s, err["field"].as_str()), (422, Some("category")));
        let (s, err) = agent
            .post("/api/inquiries", json!({"resident_id": "x"}))
            .await;
        assert_eq!(s, 422, "{err}");
        let (s, saved) = agent
            .post(
                "/api/inquiries",
                json!({"resident_id": hanako, "category": "transport", "note": "送迎バスの乗車場所を確認", "caller_kind": "proxy", "relationship": "長男", "follow_up": true}),
            )
            .await;
        assert_eq!(s, 201, "{saved}");
        let (s, record) = agent.get(&format!("/api/residents/{hanako}")).await;
        assert_eq!(s, 200);
        assert_eq!(record["inquiries"][0]["note"], "送迎バスの乗車場所を確認");
        assert_eq!(record["inquiries"][0]["relationship"], "長男");
        assert_eq!(record["inquiries"][0]["username"], "agent1");
        assert_eq!(record["bookings"], json!([]));
        let (s, _) = agent.get("/api/residents/999999").await;
        assert_eq!(s, 404);

        // Venue staff may read records but not take calls.
        let venue = srv.login("venue1").await;
        let (s, _) = venue
            .post(
                "/api/inquiries",
                json!({"resident_id": hanako, "category": "general"}),
            )
            .await;
        assert_eq!(s, 403);

        // An oversized WebSocket frame closes that socket with 1009 (too big), saying so; the
        // server goes on serving.
        let mut ws = agent.ws().await;
        ws.send_text(&"x".repeat(200 * 1024)).await;
        match ws.end(std::time::Duration::from_secs(3)).await {
            WsEnd::Closed(code) => assert_eq!(code, Some(1009), "closed as too big"),
            other => panic!("the oversized frame must close the socket, got {other:?}"),
        }
        // A ping is answered with a pong that, like every message, carries a seq: where this
        // socket stands (the hello's, nothing having been sent since).
        let (mut ws, hello) = agent.ws_at("/ws").await;
        ws.send_text(r#"{"type":"ping"}"#).await;
        let pong = ws.next_any(std::time::Duration::from_secs(3)).await;
        assert_eq!(
            pong,
            Some(json!({"type": "pong", "seq": hello["seq"]})),
            "{hello}"
        );
        let (s, _) = agent.get("/api/me").await;
        assert_eq!(s, 200);
        drop(ws);

        // Password guessing: after ten failures that desk may not try that account for a while,
        // not even with the right password; other accounts are unaffected.
        srv.add_user("agent2", Role::Agent, Some("202")).await;
        for _ in 0..10 {
            let res = http
                .post(format!("{}/api/session", srv.url))
                .json(&json!({"username": "agent2", "password": "guess"}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 401);
        }
        let res = http
            .post(format!("{}/api/session", srv.url))
            .json(&json!({"username": "agent2", "password": "agent2"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 429);
        let body: serde_json::Value = res.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("too many"),
            "{body}"
        );
        srv.login("agent1").await;

        // Operations.
        let res = http
            .get(format!("{}/healthz", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let res = http
            .get(format!("{}/readyz", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let metrics = http
            .get(format!("{}/metrics", srv.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains("madoguchi_pop_latency_seconds_count"),
            "{metrics}"
        );
        for help in metrics.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(
                help.split_whitespace().count() > 4 && !help.contains("see README"),
                "every metric is described: {help}"
            );
        }
        let (s, doc) = agent.get("/api/openapi.json").await;
        assert_eq!(s, 200);
        assert!(doc["paths"]["/api/residents/{id}"].is_object());
        srv.stop().await;
    }
}
