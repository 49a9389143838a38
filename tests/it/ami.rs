//! Real captures replayed byte for byte from a fake Asterisk over TCP into the running server:
//! the right agent's screen pops before the answer, the others see nothing, and the call log
//! holds one row per call with the right outcome, also when the transcript is replayed.

use crate::common::*;
use madoguchi::domain::Role;
use serde_json::{json, Value};
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(400);

/// Waits until the call log holds `n` ended calls.
async fn ended_calls(client: &Client, n: usize) -> Vec<Value> {
    for _ in 0..100 {
        let (_, calls) = client.get("/api/calls").await;
        let calls = calls.as_array().cloned().unwrap_or_default();
        if calls.iter().filter(|c| !c["outcome"].is_null()).count() >= n {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("call log never reached {n} ended calls");
}

#[tokio::test]
async fn replayed_captures_pop_the_right_agent_before_answer_sqlite() {
    replayed_captures("sqlite").await;
}

#[tokio::test]
async fn replayed_captures_pop_the_right_agent_before_answer_postgres() {
    if require_postgres() {
        replayed_captures("postgres").await;
    }
}

async fn replayed_captures(engine: &str) {
    {
        let pbx = FakeAsterisk::start().await;
        let mut pbx = pbx;
        let srv = TestServer::start(engine, Some(pbx.addr.clone())).await;
        srv.add_user("agent777", Role::Agent, Some("777")).await;
        srv.add_user("agent150010002", Role::Agent, Some("150010002"))
            .await;
        srv.add_user("agent150010003", Role::Agent, Some("150010003"))
            .await;
        srv.add_user("agent201", Role::Agent, Some("201")).await;
        let store = srv.store();
        store
            .insert_residents(&[
                resident(10, "岡本 清", "オカモト　キヨシ", &["123"]),
                resident(11, "Jansen Pieter", "ヤンセン　ピーター", &["+31150010001"]),
            ])
            .await
            .unwrap();
        let okamoto = store
            .residents_by_ticket(&madoguchi::domain::TicketNo::parse("0000001244").unwrap())
            .await
            .unwrap()[0]
            .id;
        // A history, so the pop has something to show.
        let a777 = srv.login("agent777").await;
        let (s, _) = a777
            .post("/api/inquiries", json!({"resident_id": okamoto, "category": "ticket", "note": "接種券の再発行を希望"}))
            .await;
        assert_eq!(s, 201);
        let mut ws777 = a777.ws().await;
        let a2 = srv.login("agent150010002").await;
        let mut ws2 = a2.ws().await;
        let a3 = srv.login("agent150010003").await;
        let mut ws3 = a3.ws().await;
        let a201 = srv.login("agent201").await;
        let mut ws201 = a201.ws().await;
        tokio::time::timeout(Duration::from_secs(10), pbx.logins.recv())
            .await
            .expect("the server logs in to AMI");

        // Garbage from the PBX is refused packet by packet; the link stays up.
        pbx.send(b"this is not AMI\r\n\x00\xff\xfe\r\n\r\nEvent: Hangup\r\nno colon here\r\n\r\n");

        // --- 01: queue Q1, agent SIP/777 answers.
        let (before, after) = split_before(&fixture("01_"), "Event: AgentConnect");
        pbx.send(&before);
        let pop = ws777
            .pop_with_record(Duration::from_secs(5))
            .await
            .expect("777 gets a pop");
        assert_eq!(pop["type"], "screen_pop", "{pop}");
        assert!(pop["seq"].as_u64().is_some());
        assert_eq!(pop["call"]["caller_number"], "123");
        assert_eq!(pop["candidates"][0]["name"], "岡本 清");
        assert_eq!(pop["candidates"][0]["ticket_no"], "0000001244");
        assert_eq!(
            pop["candidates"][0]["inquiries"][0]["note"],
            "接種券の再発行を希望"
        );
        assert!(
            pop["candidates"][0]["calls"].is_array() && pop["candidates"][0]["bookings"].is_array()
        );
        // DialEnd ANSWER came before AgentConnect in the capture: the update may already be
        // here; what matters is that the pop came first. Nothing reached the others.
        assert!(ws201.next_json(QUIET).await.is_none(), "201 never rang");
        pbx.send(&after);
        let mut events = Vec::new();
        while let Some(m) = ws777.next_json(Duration::from_secs(3)).await {
            events.push(m["event"].as_str().unwrap_or_default().to_string());
            if m["event"] == "ended" {
                break;
            }
        }
        assert_eq!(events, vec!["answered_here", "ended"], "{engine}");

        // --- 02: ring-all; 150010002 answers, 150010003 busy.
        let (before, after) = split_before(&fixture("02_"), "DialStatus: ANSWER");
        // Cut at the start of the packet that holds the first ANSWER.
        let cut = String::from_utf8_lossy(&before).rfind("Event: ").unwrap();
        let (b1, b2) = before.split_at(cut);
        pbx.send(b1);
        let pop2 = ws2
            .pop_with_record(Duration::from_secs(5))
            .await
            .expect("150010002 pops");
        let pop3 = ws3
            .pop_with_record(Duration::from_secs(5))
            .await
            .expect("150010003 pops");
        for p in [&pop2, &pop3] {
            assert_eq!(p["type"], "screen_pop");
            assert_eq!(p["candidates"][0]["name"], "Jansen Pieter");
        }
        pbx.send(b2);
        pbx.send(&after);
        let mut saw_here = false;
        while let Some(m) = ws2.next_json(Duration::from_secs(3)).await {
            saw_here |= m["event"] == "answered_here";
            if m["event"] == "ended" {
                break;
            }
        }
        assert!(saw_here);
        let mut saw_elsewhere = false;
        while let Some(m) = ws3.next_json(Duration::from_secs(3)).await {
            saw_elsewhere |= m["event"] == "answered_elsewhere";
            assert_ne!(m["event"], "answered_here");
            if m["event"] == "ended" {
                break;
            }
        }
        assert!(
            saw_elsewhere,
            "the ring-all screen that did not answer is cleared"
        );

        // --- 03: abandoned.
        pbx.send(fixture("03_"));
        let calls = ended_calls(&a777, 3).await;
        assert_eq!(calls.len(), 3, "{engine}: {calls:#?}");
        let by_id = |id: &str| {
            calls
                .iter()
                .find(|c| c["id"] == id)
                .cloned()
                .unwrap_or_else(|| panic!("{id} in {calls:#?}"))
        };
        let c1 = by_id("ami:1514295827.372");
        assert_eq!(
            (c1["outcome"].as_str(), c1["answered_by"].as_str()),
            (Some("answered"), Some("777"))
        );
        assert_eq!(c1["resident_id"].as_i64(), Some(okamoto));
        let c2 = by_id("ami:195176c06ab8-1529939196.518");
        assert_eq!(
            (c2["outcome"].as_str(), c2["answered_by"].as_str()),
            (Some("answered"), Some("150010002"))
        );
        let c3 = by_id("ami:40a7a1f2a669-1585318545.326");
        assert_eq!(
            (c3["outcome"].as_str(), c3["hold_s"].as_i64()),
            (Some("abandoned"), Some(11))
        );
        assert!(
            ws201.next_json(QUIET).await.is_none(),
            "201 saw nothing of three calls"
        );

        // --- Replaying all three again changes no row, field for field.
        let (_, before) = a777.get("/api/calls").await;
        let stored_before = store.calls_between(None, None, 100).await.unwrap();
        for f in ["01_", "02_", "03_"] {
            pbx.send(fixture(f));
        }
        // A marker call after the replay: once it is logged, the replay has been handled.
        pbx.send(
            b"Event: Newchannel\r\nChannel: PJSIP/trunk-00000099\r\nCallerIDNum: 0773629999\r\nUniqueid: marker.1\r\nLinkedid: marker.1\r\n\r\n\
              Event: Hangup\r\nChannel: PJSIP/trunk-00000099\r\nUniqueid: marker.1\r\nLinkedid: marker.1\r\nCause: 16\r\n\r\n",
        );
        let after = ended_calls(&a777, 4).await;
        let after: Vec<Value> = after
            .into_iter()
            .filter(|c| c["id"] != "ami:marker.1")
            .collect();
        assert_eq!(
            Value::Array(after),
            before,
            "{engine}: the replay changed the call log"
        );
        let stored_after: Vec<_> = store
            .calls_between(None, None, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.id != "ami:marker.1")
            .collect();
        assert_eq!(stored_after, stored_before, "{engine}: rows changed");

        // The next pop for that number carries the call just logged in the history.
        let (_, rec) = a777.get(&format!("/api/residents/{okamoto}")).await;
        assert_eq!(rec["calls"][0]["id"], "ami:1514295827.372");
        // The agent says which household member called: the call log follows.
        let jansen = store
            .residents_by_ticket(&madoguchi::domain::TicketNo::parse("0000001245").unwrap())
            .await
            .unwrap()[0]
            .id;
        let (s, _) = a777
            .post(
                "/api/calls/ami:1514295827.372/resident",
                json!({"resident_id": jansen}),
            )
            .await;
        assert_eq!(s, 204);
        let (_, calls) = a777.get("/api/calls").await;
        let c1 = calls
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "ami:1514295827.372")
            .unwrap()
            .clone();
        assert_eq!(c1["resident_id"].as_i64(), Some(jansen));
        let (s, _) = a777
            .post(
                "/api/calls/ami:nope/resident",
                json!({"resident_id": jansen}),
            )
            .await;
        assert_eq!(s, 404);
        drop((ws777, ws2, ws3, ws201));
        srv.stop().await;
    }
}
