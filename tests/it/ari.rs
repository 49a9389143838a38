//! An Asterisk reached over ARI: a local server speaks the events WebSocket and the REST
//! channel list; a queue call in ARI's JSON pops the same agent and logs one row, however
//! often it is replayed and across a reconnect.

use crate::common::*;
use futures_util::SinkExt;
use madoguchi::domain::Role;
use madoguchi::settings::Settings;
use madoguchi::store::testing::TestDb;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// A fake Asterisk HTTP server: `/ari/events` upgrades (with Basic credentials checked) and
/// relays what the test sends; `/ari/channels` answers the listing the test sets.
pub(crate) struct FakeAri {
    pub addr: String,
    current: Arc<Mutex<Option<mpsc::UnboundedSender<String>>>>,
    pub channels: Arc<Mutex<serde_json::Value>>,
    connects: mpsc::UnboundedReceiver<()>,
}

impl FakeAri {
    pub async fn start() -> FakeAri {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let current: Arc<Mutex<Option<mpsc::UnboundedSender<String>>>> = Arc::default();
        let channels = Arc::new(Mutex::new(json!([])));
        let (connect_tx, connects) = mpsc::unbounded_channel();
        let (cur, list) = (current.clone(), channels.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut head = [0u8; 2048];
                let n = sock.peek(&mut head).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
                // asterisk:s3cret
                let authorised = req.contains("authorization: basic yxn0zxjpc2s6cznjcmv0");
                if !authorised {
                    let _ = sock
                        .write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    continue;
                }
                if req.starts_with("get /ari/events") {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                        continue;
                    };
                    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                    *cur.lock().unwrap() = Some(tx);
                    let _ = connect_tx.send(());
                    tokio::spawn(async move {
                        while let Some(text) = rx.recv().await {
                            if text == "\"CLOSE\"" {
                                let _ = ws.close(None).await;
                                return;
                            }
                            if ws.send(Message::Text(text.into())).await.is_err() {
                                return;
                            }
                        }
                    });
                } else {
                    let mut buf = vec![0u8; n];
                    let _ = sock.read_exact(&mut buf).await;
                    let body = list.lock().unwrap().to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                }
            }
        });
        FakeAri {
            addr,
            current,
            channels,
            connects,
        }
    }

    pub fn send(&self, event: serde_json::Value) {
        self.send_text(event.to_string());
    }

    /// Sends `text` as one WebSocket text message, JSON or not.
    pub fn send_text(&self, text: String) {
        let cur = self.current.lock().unwrap();
        cur.as_ref()
            .expect("a client is connected")
            .send(text)
            .unwrap();
    }

    pub async fn wait_connect(&mut self) {
        tokio::time::timeout(Duration::from_secs(15), self.connects.recv())
            .await
            .expect("the server connects to ARI")
            .unwrap();
    }
}

pub(crate) fn channel(id: &str, name: &str, state: &str, number: &str) -> serde_json::Value {
    json!({"id": id, "name": name, "state": state, "caller": {"name": "", "number": number},
           "connected": {"name": "", "number": ""}, "accountcode": "",
           "dialplan": {"context": "from-trunk", "exten": "0773689225", "priority": 1, "app_name": "Queue", "app_data": "vaccine"},
           "creationtime": "2026-11-29T09:00:00.000+0900", "language": "ja"})
}

async fn ari_calls(engine: &str) {
    let mut ari = FakeAri::start().await;
    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    let url = format!("http://{}", ari.addr);
    let srv = TestServer::start_with(db, store, move |s: &mut Settings| {
        s.ari_url = Some(url);
        s.ari_username = "asterisk".into();
        s.ari_password = "s3cret".into();
        s.ari_app = "madoguchi".into();
    })
    .await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.store()
        .insert_residents(&[resident(
            8,
            "舞鶴 八郎",
            "マイヅル　ハチロウ",
            &["0773-62-8888"],
        )])
        .await
        .unwrap();
    let agent = srv.login("agent201").await;
    let mut ws = agent.ws().await;
    ari.wait_connect().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let caller = channel(
        "1764374400.10",
        "PJSIP/trunk-0000000a",
        "Ring",
        "0773628888",
    );
    let leg = channel("1764374400.11", "PJSIP/201-0000000b", "Down", "201");
    let script = vec![
        json!({"type": "ChannelCreated", "channel": caller, "application": "madoguchi"}),
        json!({"type": "ChannelCreated", "channel": leg, "application": "madoguchi"}),
        json!({"type": "Dial", "dialstatus": "", "caller": caller, "peer": leg, "dialstring": "201"}),
        json!({"type": "Dial", "dialstatus": "ANSWER", "caller": caller, "peer": leg}),
    ];
    for ev in &script {
        ari.send(ev.clone());
    }
    let pop = ws
        .pop_with_record(Duration::from_secs(5))
        .await
        .expect("pop");
    assert_eq!(pop["call"]["id"], "ari:1764374400.10", "{pop}");
    assert_eq!(pop["candidates"][0]["name"], "舞鶴 八郎");
    let up = ws
        .next_json(Duration::from_secs(5))
        .await
        .expect("answered");
    assert_eq!(up["event"], "answered_here", "{up}");

    // The link drops mid-call; on reconnect the listing shows the call still up (its dialled
    // leg is left out), and the replayed script adds nothing.
    *ari.channels.lock().unwrap() = json!([
        channel("1764374400.10", "PJSIP/trunk-0000000a", "Up", "0773628888"),
        {"id": "1764374400.11", "name": "PJSIP/201-0000000b", "state": "Up", "caller": {"number": "201"},
         "dialplan": {"app_name": "AppQueue", "exten": "201"}}
    ]);
    ari.send(json!("CLOSE"));
    ari.wait_connect().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for ev in &script {
        ari.send(ev.clone());
    }
    ari.send(json!({"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing", "channel": leg}));
    ari.send(json!({"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing", "channel": caller}));
    ari.send(json!({"type": "NotAnEvent", "garbage": [1, 2, 3]}));
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = srv.store().calls_between(None, None, 10).await.unwrap();
        if calls.iter().any(|c| c.outcome.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(calls.len(), 1, "one call, one row: {calls:?}");
    let c = &calls[0];
    assert_eq!(c.id, "ari:1764374400.10");
    assert_eq!(c.outcome.as_deref(), Some("answered"));
    assert_eq!(c.answered_by.as_deref(), Some("201"));
    assert!(c.resident_id.is_some());
    assert!(!c.end_estimated, "the end came from ARI");
    srv.stop().await;
}

#[tokio::test]
async fn an_asterisk_over_ari_pops_and_logs_once_sqlite() {
    ari_calls("sqlite").await;
}

#[tokio::test]
async fn an_asterisk_over_ari_pops_and_logs_once_postgres() {
    if require_postgres() {
        ari_calls("postgres").await;
    }
}
