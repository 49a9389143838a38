//! The supervisors' board, black-box: real captures and scripted calls from a fake Asterisk over
//! TCP into the running server, and every figure `/api/queues` shows checked against a number
//! worked out by hand (each assertion says why it is that number).

use crate::common::*;
use madoguchi::domain::Role;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A fake Asterisk for the board: like the scripted one, plus a `QueueStatus` listing the test
/// sets and a way to drop the link.
pub struct SupPbx {
    pub addr: String,
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>>,
    /// Aborts the current connection's tasks (dropping the socket).
    conn: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    listing: Arc<Mutex<Vec<String>>>,
    /// `QueueStatus` items: whole packets without ActionID (`Event: QueueEntry\r\n…`).
    queue_items: Arc<Mutex<Vec<String>>>,
    logins: mpsc::UnboundedReceiver<()>,
}

impl SupPbx {
    pub async fn start() -> SupPbx {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind pbx");
        let addr = listener.local_addr().expect("addr").to_string();
        let current: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
        let conn: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let listing: Arc<Mutex<Vec<String>>> = Arc::default();
        let queue_items: Arc<Mutex<Vec<String>>> = Arc::default();
        let (login_tx, logins) = mpsc::unbounded_channel();
        let (cur, cn, list, qi) = (
            current.clone(),
            conn.clone(),
            listing.clone(),
            queue_items.clone(),
        );
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                let (read, mut write) = sock.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                let _ = tx.send(b"Asterisk Call Manager/7.0.3\r\n".to_vec());
                let writer = tokio::spawn(async move {
                    while let Some(chunk) = rx.recv().await {
                        if write.write_all(&chunk).await.is_err() {
                            break;
                        }
                    }
                });
                let (cur, list, qi, login_tx) =
                    (cur.clone(), list.clone(), qi.clone(), login_tx.clone());
                let reader = tokio::spawn(async move {
                    let mut lines = BufReader::new(read).lines();
                    let mut action = Vec::<(String, String)>::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let line = line.trim_end().to_string();
                        if !line.is_empty() {
                            if let Some((k, v)) = line.split_once(':') {
                                action.push((k.trim().to_string(), v.trim().to_string()));
                            }
                            continue;
                        }
                        let get = |k: &str| {
                            action
                                .iter()
                                .find(|(kk, _)| kk.eq_ignore_ascii_case(k))
                                .map(|(_, v)| v.clone())
                        };
                        let id = get("actionid")
                            .map(|i| format!("ActionID: {i}\r\n"))
                            .unwrap_or_default();
                        let name = get("action").unwrap_or_default().to_ascii_lowercase();
                        let reply = match name.as_str() {
                            "login" => {
                                *cur.lock().unwrap() = Some(tx.clone());
                                let _ = login_tx.send(());
                                format!("Response: Success\r\n{id}Message: Authentication accepted\r\n\r\n")
                            }
                            "coreshowchannels" => {
                                let items = list.lock().unwrap().clone();
                                let mut r = format!("Response: Success\r\n{id}EventList: start\r\nMessage: Channels will follow\r\n\r\n");
                                for item in &items {
                                    r.push_str(&format!("Event: CoreShowChannel\r\n{id}{item}\r\n"));
                                }
                                r.push_str(&format!("Event: CoreShowChannelsComplete\r\n{id}EventList: Complete\r\nListItems: {}\r\n\r\n", items.len()));
                                r
                            }
                            "queuestatus" => {
                                let items = qi.lock().unwrap().clone();
                                let mut r = format!("Response: Success\r\n{id}EventList: start\r\nMessage: Queue status will follow\r\n\r\n");
                                for item in &items {
                                    // Each item ends with CRLF: then our ActionID and the blank line.
                                    r.push_str(&format!("{item}{id}\r\n"));
                                }
                                r.push_str(&format!("Event: QueueStatusComplete\r\n{id}EventList: Complete\r\nListItems: {}\r\n\r\n", items.len()));
                                r
                            }
                            "ping" => format!("Response: Success\r\n{id}Ping: Pong\r\nTimestamp: 1.0\r\n\r\n"),
                            "originate" => format!("Response: Success\r\n{id}Message: Originate successfully queued\r\n\r\n"),
                            _ => format!("Response: Success\r\n{id}\r\n"),
                        };
                        let _ = tx.send(reply.into_bytes());
                        action.clear();
                    }
                });
                *cn.lock().unwrap() = vec![writer.abort_handle(), reader.abort_handle()];
            }
        });
        SupPbx {
            addr,
            current,
            conn,
            listing,
            queue_items,
            logins,
        }
    }

    pub fn send(&self, bytes: impl AsRef<[u8]>) {
        let cur = self.current.lock().unwrap();
        cur.as_ref()
            .expect("a client is logged in")
            .send(bytes.as_ref().to_vec())
            .expect("client connection open");
    }

    pub fn set_listing(&self, items: Vec<String>) {
        *self.listing.lock().unwrap() = items;
    }

    pub fn set_queue_status(&self, items: Vec<String>) {
        *self.queue_items.lock().unwrap() = items;
    }

    /// Drops the TCP connection, as an Asterisk restart or a network cut does.
    pub fn drop_link(&self) {
        *self.current.lock().unwrap() = None;
        for h in self.conn.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    pub async fn wait_login(&mut self) {
        tokio::time::timeout(Duration::from_secs(20), self.logins.recv())
            .await
            .expect("the server logs in to the PBX")
            .expect("pbx running");
    }
}

/// A capture's bytes, as Asterisk sent them (the wire files start after login).
fn events_of(name: &str) -> Vec<u8> {
    fixture(name)
}

/// Polls `/api/queues` until `done` holds (or 10 s pass) and returns the last answer.
pub async fn queues_until(client: &Client, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..200 {
        let (status, v) = client.get("/api/queues").await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the board never got there: {last:#}");
}

fn queue<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == name))
        .unwrap_or_else(|| panic!("no queue {name} in {v:#}"))
}

fn agent<'a>(v: &'a Value, ext: &str) -> &'a Value {
    v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["extension"] == ext))
        .unwrap_or_else(|| panic!("no agent {ext} in {v:#}"))
}

async fn server(engine: &str) -> (TestServer, SupPbx, Client) {
    let mut pbx = SupPbx::start().await;
    let srv = TestServer::start(engine, Some(pbx.addr.clone())).await;
    pbx.wait_login().await;
    srv.add_user("boss", Role::Supervisor, None).await;
    let boss = srv.login("boss").await;
    // The first resync (empty) finishes before the test's events.
    tokio::time::sleep(Duration::from_millis(200)).await;
    (srv, pbx, boss)
}

#[tokio::test]
async fn fixture_03_an_abandon_counts_once_and_outside_the_service_level() {
    let (srv, pbx, boss) = server("sqlite").await;
    pbx.send(events_of("03_"));
    let v = queues_until(&boss, |v| {
        v["overall"]["today"]["abandoned"].as_u64() == Some(1)
    })
    .await;
    let q = queue(&v, "670100-540100");
    // The capture has no QueueCallerJoin: the QueueCallerAbandon (HoldTime 11) makes the board
    // count the caller as offered from 11 s before it.
    assert_eq!(q["offered"], 1, "one caller in the queue");
    assert_eq!(q["answered"], 0, "nobody answered");
    assert_eq!(
        q["abandoned"], 1,
        "HoldTime 11 s is not under the 5 s short abandon"
    );
    assert_eq!(q["short_abandoned"], 0);
    assert_eq!(
        q["timeouts"], 0,
        "the caller hung up; the queue did not time out"
    );
    assert_eq!(q["service_level"], 0.0, "0 within 20 s of 1 counted");
    assert_eq!(q["abandon_rate"], 1.0, "1 abandoned of 1 offered");
    assert!(q["asa_s"].is_null(), "no answer, no ASA");
    assert!(q["waiting"].as_array().unwrap().is_empty());
    assert!(q["longest_wait_s"].is_null());
    assert_eq!(v["overall"]["last_hour"]["offered"], 1, "it happened now");
    srv.stop().await;
}

#[tokio::test]
async fn fixtures_02_and_06_ring_agents_without_a_queue_and_count_nothing() {
    let (srv, pbx, boss) = server("sqlite").await;
    srv.add_user("a2", Role::Agent, Some("150010002")).await;
    srv.add_user("a3", Role::Agent, Some("150010003")).await;
    pbx.send(events_of("02_"));
    pbx.send(events_of("06_"));
    // Both captures dial the agents straight (DialBegin, no QueueCallerJoin): the agents'
    // states move, but no queue figure counts them.
    let v = queues_until(&boss, |v| {
        agent(v, "150010002")["live"]["state"] == "wrap_up"
    })
    .await;
    // 150010002 answered in 02 and hung up: after-call work (60 s by default), the phone idle.
    assert_eq!(agent(&v, "150010002")["state"], "idle");
    // 150010003 rang and never talked: idle.
    assert_eq!(agent(&v, "150010003")["live"]["state"], "idle");
    assert_eq!(v["overall"]["today"]["offered"], 0, "no queue was joined");
    assert!(v["queues"].as_array().unwrap().is_empty(), "{v:#}");
    srv.stop().await;
}

/// QueueStatus items of capture 17 (QueueParams, QueueMember), for the fake to list.
fn fixture_17_items() -> Vec<String> {
    let text = String::from_utf8(fixture("17_")).unwrap();
    text.split("\r\n\r\n")
        .filter(|p| p.starts_with("Event: QueueParams") || p.starts_with("Event: QueueMember"))
        .map(|p| {
            // Without the capture's own ActionID: the fake puts ours.
            p.lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with("actionid:"))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
        })
        .collect()
}

#[tokio::test]
async fn fixture_17_queue_status_lists_the_queues_and_their_members_at_login() {
    let mut pbx = SupPbx::start().await;
    pbx.set_queue_status(fixture_17_items());
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    pbx.wait_login().await;
    srv.add_user("boss", Role::Supervisor, None).await;
    let boss = srv.login("boss").await;
    let v = queues_until(&boss, |v| {
        v["queues"].as_array().is_some_and(|q| q.len() >= 2)
    })
    .await;
    // Capture 17 lists members of Shipping_12 and Books_12 (among others), no caller waiting.
    for name in ["Shipping_12", "Books_12"] {
        let q = queue(&v, name);
        assert_eq!(q["offered"], 0, "{name}: nobody called yet");
        assert!(q["waiting"].as_array().unwrap().is_empty());
    }
    // Its members (Status 1 = not in use, Paused 0) show as idle agents, though no login has
    // their extension (the member's Location Local/9170-12@from-queue/n → 9170-12).
    for ext in ["9170-12", "8194-12", "9921-12", "9922-12"] {
        assert_eq!(agent(&v, ext)["live"]["state"], "idle", "{ext}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn fixture_19_queue_pause_shows_the_agent_paused_with_its_reason() {
    let (srv, pbx, boss) = server("sqlite").await;
    pbx.send(events_of("19_"));
    // The capture unpauses 9921 (Paused 0), then pauses it with Reason Break (Paused 1).
    let v = queues_until(&boss, |v| {
        v["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["live"]["state"] == "paused"))
    })
    .await;
    let a = agent(&v, "9921-12");
    assert_eq!(a["live"]["state"], "paused");
    assert_eq!(a["live"]["reason"], "Break");
    srv.stop().await;
}

/// A caller waiting in `vaccine`: Newchannel and QueueCallerJoin.
fn join(id: &str, number: &str) -> String {
    format!(
        "Event: Newchannel\r\nChannel: PJSIP/trunk-{id}\r\nChannelState: 4\r\nChannelStateDesc: Ring\r\nCallerIDNum: {number}\r\nCallerIDName: \r\nExten: 0773689225\r\nContext: from-trunk\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n\
         Event: QueueCallerJoin\r\nChannel: PJSIP/trunk-{id}\r\nCallerIDNum: {number}\r\nQueue: vaccine\r\nPosition: 1\r\nCount: 1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n"
    )
}

/// Agent `ext` answers after `hold` s (AgentCalled, the agent leg, AgentConnect, QueueCallerLeave).
fn answer(id: &str, ext: &str, hold: u32) -> String {
    let leg = format!("{id}9");
    format!(
        "Event: Newchannel\r\nChannel: PJSIP/{ext}-0000{ext}\r\nChannelState: 0\r\nChannelStateDesc: Down\r\nCallerIDNum: {ext}\r\nExten: {ext}\r\nUniqueid: {leg}\r\nLinkedid: {id}\r\n\r\n\
         Event: AgentCalled\r\nChannel: PJSIP/trunk-{id}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nDestChannel: PJSIP/{ext}-0000{ext}\r\nDestUniqueid: {leg}\r\nQueue: vaccine\r\nInterface: PJSIP/{ext}\r\nMemberName: PJSIP/{ext}\r\n\r\n\
         Event: QueueCallerLeave\r\nChannel: PJSIP/trunk-{id}\r\nQueue: vaccine\r\nCount: 0\r\nPosition: 1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n\
         Event: AgentConnect\r\nChannel: PJSIP/trunk-{id}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nDestChannel: PJSIP/{ext}-0000{ext}\r\nDestUniqueid: {leg}\r\nQueue: vaccine\r\nInterface: PJSIP/{ext}\r\nMemberName: PJSIP/{ext}\r\nHoldTime: {hold}\r\nRingTime: 1\r\n\r\n"
    )
}

fn abandon(id: &str, hold: u32) -> String {
    format!(
        "Event: QueueCallerAbandon\r\nChannel: PJSIP/trunk-{id}\r\nQueue: vaccine\r\nPosition: 1\r\nOriginalPosition: 1\r\nHoldTime: {hold}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n\
         Event: QueueCallerLeave\r\nChannel: PJSIP/trunk-{id}\r\nQueue: vaccine\r\nCount: 0\r\nPosition: 1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n"
    )
}

/// The queue's own timeout: QueueCallerLeave with no agent and no abandon.
fn timeout(id: &str) -> String {
    format!(
        "Event: QueueCallerLeave\r\nChannel: PJSIP/trunk-{id}\r\nQueue: vaccine\r\nCount: 0\r\nPosition: 1\r\nUniqueid: {id}\r\nLinkedid: {id}\r\n\r\n"
    )
}

fn hangup(id: &str, legs: &[String]) -> String {
    let mut s = format!(
        "Event: Hangup\r\nChannel: PJSIP/trunk-{id}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nCause: 16\r\n\r\n"
    );
    for leg in legs {
        s.push_str(&format!(
            "Event: Hangup\r\nChannel: PJSIP/x-{leg}\r\nUniqueid: {leg}\r\nLinkedid: {id}\r\nCause: 16\r\n\r\n"
        ));
    }
    s
}

/// Seven callers through the `vaccine` queue, every way a queued call can go; then the server
/// restarts and shows the same figures from the call log.
#[tokio::test]
async fn a_scripted_day_gives_every_figure_and_the_same_after_a_restart_sqlite() {
    scripted_day("sqlite").await;
}

#[tokio::test]
async fn a_scripted_day_gives_every_figure_and_the_same_after_a_restart_postgres() {
    if require_postgres() {
        scripted_day("postgres").await;
    }
}

async fn scripted_day(engine: &str) {
    let (mut srv, mut pbx, boss) = server(engine).await;
    srv.add_user("a201", Role::Agent, Some("201")).await;
    srv.add_user("a202", Role::Agent, Some("202")).await;
    // c1: answered by 201 after 8 s (within 20 s).
    // c2: answered by 202 after 35 s (outside 20 s).
    // c3: answered by 201 after 20 s (exactly 20 s counts as within).
    // c4: abandons after 3 s (short: under 5 s, counted apart).
    // c5: abandons after 40 s.
    // c6: the queue times out on them (QueueCallerLeave, no agent, no abandon).
    // c7: still waiting at the end.
    let ids: Vec<String> = (1..=7).map(|i| format!("1700000100.{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        pbx.send(join(id, &format!("07736200{:02}", i + 1)));
    }
    pbx.send(answer(&ids[0], "201", 8));
    pbx.send(hangup(&ids[0], &[format!("{}9", ids[0])]));
    pbx.send(answer(&ids[1], "202", 35));
    pbx.send(hangup(&ids[1], &[format!("{}9", ids[1])]));
    pbx.send(answer(&ids[2], "201", 20));
    pbx.send(hangup(&ids[2], &[format!("{}9", ids[2])]));
    pbx.send(abandon(&ids[3], 3));
    pbx.send(hangup(&ids[3], &[]));
    pbx.send(abandon(&ids[4], 40));
    pbx.send(hangup(&ids[4], &[]));
    pbx.send(timeout(&ids[5]));
    pbx.send(hangup(&ids[5], &[]));

    let check = |v: &Value| {
        let q = queue(v, "vaccine");
        assert_eq!(q["offered"], 7, "c1..c7 joined");
        assert_eq!(q["answered"], 3, "c1, c2, c3");
        assert_eq!(q["abandoned"], 1, "c5 (40 s); c4 is short");
        assert_eq!(q["short_abandoned"], 1, "c4 gave up after 3 s");
        assert_eq!(q["timeouts"], 1, "c6");
        // Within 20 s: c1 (8 s), c3 (20 s) = 2, of answered 3 + abandoned 1 + timeouts 1 = 5.
        assert_eq!(q["service_level"], 2.0 / 5.0);
        // ASA: (8 + 35 + 20) / 3 = 21.
        assert_eq!(q["asa_s"], 21.0);
        // Abandon rate: 1 abandoned of 7 offered − 1 short = 6.
        assert_eq!(q["abandon_rate"], 1.0 / 6.0);
        // AHT: each answered call hung up within the same second of the script: 0 s of talk
        // (at most 1 s if the machine is slow).
        assert!(q["aht_s"].as_f64().unwrap() <= 1.0, "{}", q["aht_s"]);
    };
    let v = queues_until(&boss, |v| {
        v["overall"]["today"]["timeouts"].as_u64() == Some(1)
            && v["overall"]["today"]["answered"].as_u64() == Some(3)
            && v["overall"]["today"]["short_abandoned"].as_u64() == Some(1)
            && v["overall"]["today"]["abandoned"].as_u64() == Some(1)
    })
    .await;
    check(&v);
    let q = queue(&v, "vaccine");
    let waiting = q["waiting"].as_array().unwrap();
    assert_eq!(waiting.len(), 1, "c7 still waits");
    assert_eq!(waiting[0]["caller_number"], "0773620007");
    assert_eq!(
        q["longest_wait_s"], waiting[0]["wait_s"],
        "the longest wait is c7's"
    );
    // The overall figures are the one queue's, and all of it happened in the last hour.
    for w in ["today", "last_hour"] {
        assert_eq!(v["overall"][w]["offered"], 7, "{w}");
        assert_eq!(v["overall"][w]["service_level"], 0.4, "{w}");
    }
    assert_eq!(v["overall"]["today"]["waiting"], 1);
    // 201 answered c1 and c3 and hung up: wrap-up; 202 likewise.
    assert_eq!(agent(&v, "201")["live"]["state"], "wrap_up");
    let slices = v["slices"].as_array().unwrap();
    let total: u64 = slices.iter().map(|s| s["offered"].as_u64().unwrap()).sum();
    assert_eq!(total, 7, "the chart counts each caller once");

    // c7 hangs up (a 0-second wait: short), so nothing is open; then a restart.
    pbx.send(hangup(&ids[6], &[]));
    queues_until(&boss, |v| {
        v["overall"]["today"]["short_abandoned"].as_u64() == Some(2)
    })
    .await;
    let before = queues_until(&boss, |_| true).await;
    let running = srv.running.take().expect("running");
    running.shutdown().await.expect("clean shutdown");
    let db = srv.db.take().expect("db");
    // The first server closed its pool on shutdown; the second opens its own.
    let store = madoguchi::store::Store::open(&db.url)
        .await
        .expect("reopen");
    let srv2 = TestServer::start_on(db, store, Some(pbx.addr.clone())).await;
    pbx.wait_login().await;
    let boss2 = srv2.login("boss").await;
    let after = queues_until(&boss2, |v| {
        v["overall"]["today"]["offered"].as_u64() == Some(7)
    })
    .await;
    for k in [
        "offered",
        "answered",
        "abandoned",
        "short_abandoned",
        "timeouts",
        "service_level",
        "asa_s",
        "aht_s",
        "abandon_rate",
    ] {
        assert_eq!(
            after["overall"]["today"][k], before["overall"]["today"][k],
            "{k} after the restart"
        );
        assert_eq!(
            queue(&after, "vaccine")[k],
            queue(&before, "vaccine")[k],
            "{k} of vaccine after the restart"
        );
    }
    srv2.stop().await;
}

/// The link drops while two callers wait; at the new login QueueStatus lists them with the
/// PBX's own wait. The board shows the same two callers with that wait, counted once each.
#[tokio::test]
async fn after_a_reconnect_the_same_two_callers_wait_with_their_real_wait() {
    let (srv, mut pbx, boss) = server("sqlite").await;
    let (a, b) = ("1700000200.1", "1700000200.2");
    pbx.send(join(a, "0773621001"));
    pbx.send(join(b, "0773621002"));
    queues_until(&boss, |v| {
        v["overall"]["today"]["waiting"].as_u64() == Some(2)
    })
    .await;
    // What the PBX will list at the next login: both callers' channels, and both in the queue
    // having waited 42 s and 17 s (Asterisk's own count).
    let chan = |id: &str, n: &str| {
        format!("Channel: PJSIP/trunk-{id}\r\nUniqueid: {id}\r\nLinkedid: {id}\r\nChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: {n}\r\nCallerIDName: \r\nExten: 0773689225\r\nApplication: Queue\r\n")
    };
    pbx.set_listing(vec![chan(a, "0773621001"), chan(b, "0773621002")]);
    let entry = |id: &str, n: &str, pos: u32, wait: u32| {
        format!("Event: QueueEntry\r\nQueue: vaccine\r\nPosition: {pos}\r\nChannel: PJSIP/trunk-{id}\r\nUniqueid: {id}\r\nCallerIDNum: {n}\r\nCallerIDName: \r\nWait: {wait}\r\nPriority: 0\r\n")
    };
    pbx.set_queue_status(vec![
        "Event: QueueParams\r\nQueue: vaccine\r\nMax: 0\r\nStrategy: ringall\r\nCalls: 2\r\nHoldtime: 0\r\nTalkTime: 0\r\nCompleted: 0\r\nAbandoned: 0\r\nServiceLevel: 20\r\nServicelevelPerf: 0.0\r\nWeight: 0\r\n".into(),
        entry(a, "0773621001", 1, 42),
        entry(b, "0773621002", 2, 17),
    ]);
    pbx.drop_link();
    pbx.wait_login().await;
    // The QueueEntry items land one after the other: wait for both.
    let v = queues_until(&boss, |v| {
        queue(v, "vaccine")["waiting"].as_array().is_some_and(|w| {
            w.len() == 2
                && w[0]["wait_s"].as_i64() >= Some(42)
                && w[1]["wait_s"].as_i64() >= Some(17)
        })
    })
    .await;
    let q = queue(&v, "vaccine");
    let w = q["waiting"].as_array().unwrap();
    assert_eq!(w.len(), 2, "the same two callers, no more: {w:#?}");
    assert_eq!(w[0]["caller_number"], "0773621001");
    assert_eq!(w[1]["caller_number"], "0773621002");
    // Their wait is the PBX's (42 s, 17 s) plus the moment since the listing, not the ~0 s the
    // test has really run.
    let (wa, wb) = (
        w[0]["wait_s"].as_i64().unwrap(),
        w[1]["wait_s"].as_i64().unwrap(),
    );
    assert!((42..45).contains(&wa), "{wa}");
    assert!((17..20).contains(&wb), "{wb}");
    assert_eq!(
        q["offered"], 2,
        "each caller counted once across the reconnect"
    );
    assert_eq!(q["abandoned"], 0, "nobody ended");
    srv.stop().await;
}

/// Abandoned and timed-out callers become callbacks, one per number per day; the number that
/// calls again and is answered is cleared; an agent takes one and marks it done.
#[tokio::test]
async fn missed_callers_become_callbacks_sqlite() {
    callbacks("sqlite").await;
}

#[tokio::test]
async fn missed_callers_become_callbacks_postgres() {
    if require_postgres() {
        callbacks("postgres").await;
    }
}

async fn callbacks(engine: &str) {
    let (srv, pbx, _boss) = server(engine).await;
    srv.add_user("a201", Role::Agent, Some("201")).await;
    srv.add_user("a202", Role::Agent, Some("202")).await;
    srv.store()
        .insert_residents(&[resident(
            31,
            "舞鶴 一郎",
            "マイヅル　イチロウ",
            &["0773620031"],
        )])
        .await
        .unwrap();
    let agent = srv.login("a201").await;
    let other = srv.login("a202").await;
    let ids: Vec<String> = (1..=5).map(|i| format!("1700000400.{i}")).collect();
    // c1 and c2 from 0773620031 both abandon: one entry, missed twice, matched to 舞鶴 一郎.
    // c3 from 0773620032 times out: a second entry.
    // c4 from 0773620033 abandons, then c5 from the same number is answered: cleared.
    let numbers = [
        "0773620031",
        "0773620031",
        "0773620032",
        "0773620033",
        "0773620033",
    ];
    for (id, n) in ids.iter().zip(numbers) {
        pbx.send(join(id, n));
    }
    pbx.send(abandon(&ids[0], 30));
    pbx.send(hangup(&ids[0], &[]));
    pbx.send(abandon(&ids[1], 12));
    pbx.send(hangup(&ids[1], &[]));
    pbx.send(timeout(&ids[2]));
    pbx.send(hangup(&ids[2], &[]));
    pbx.send(abandon(&ids[3], 9));
    pbx.send(hangup(&ids[3], &[]));
    // The answer comes a moment later, so the miss is written before it clears.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pbx.send(answer(&ids[4], "201", 2));
    pbx.send(hangup(&ids[4], &[format!("{}9", ids[4])]));

    let mut list = Value::Null;
    for _ in 0..100 {
        let (status, v) = agent.get("/api/callbacks").await;
        assert_eq!(status, 200, "{v}");
        list = v;
        let done = srv
            .store()
            .callbacks(Some("cleared"), "2000-01-01", 10)
            .await
            .unwrap();
        if list.as_array().is_some_and(|a| a.len() == 2) && done.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = list.as_array().expect("a list").clone();
    assert_eq!(list.len(), 2, "0773620031 once, 0773620032 once: {list:#?}");
    let first = list.iter().find(|c| c["number"] == "0773620031").unwrap();
    assert_eq!(first["missed"], 2, "two abandoned calls, one entry");
    assert_eq!(
        first["call_id"],
        format!("ami:{}", ids[1]),
        "the last missed call"
    );
    assert!(first["resident_id"].is_i64(), "matched to the one resident");
    let second = list.iter().find(|c| c["number"] == "0773620032").unwrap();
    assert_eq!(second["missed"], 1);
    assert_eq!(second["status"], "open");

    // a201 takes the first; a202 cannot, nor mark it done.
    let id = first["id"].as_i64().unwrap();
    let (s, v) = agent
        .post(&format!("/api/callbacks/{id}/take"), serde_json::json!({}))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("taken")), "{v}");
    let (s, _) = other
        .post(&format!("/api/callbacks/{id}/take"), serde_json::json!({}))
        .await;
    assert_eq!(s, 409, "another agent holds it");
    let (s, _) = other
        .post(
            &format!("/api/callbacks/{id}/done"),
            serde_json::json!({"outcome": "reached"}),
        )
        .await;
    assert_eq!(s, 409);
    let (s, v) = agent
        .post(
            &format!("/api/callbacks/{id}/done"),
            serde_json::json!({"outcome": "maybe"}),
        )
        .await;
    assert_eq!(s, 422, "an outcome not on the list: {v}");
    let (s, v) = agent
        .post(
            &format!("/api/callbacks/{id}/done"),
            serde_json::json!({"outcome": "reached", "note": "2回目を予約"}),
        )
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("done")), "{v}");
    let (_, v) = agent.get("/api/callbacks").await;
    assert_eq!(v.as_array().unwrap().len(), 1, "only 0773620032 is left");
    let (s, _) = agent
        .post("/api/callbacks/999999/take", serde_json::json!({}))
        .await;
    assert_eq!(s, 404);
    srv.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Reports: a hand-made day in the call log and the inquiry log, and every figure of
// `/api/reports` (by day and by hour) and `/api/reports.csv` worked out by hand.

/// A queued call of 2021-05-10 in Japan: joined at `hh:mm:ss` JST (`day_offset` days later),
/// waited `hold` s, then answered and talked `talk` s, or ended `outcome` after `hold` s.
#[allow(clippy::too_many_arguments)]
pub(crate) fn report_call(
    id: &str,
    day_offset: i64,
    joined_jst: (u32, u32, u32),
    started_before_s: i64,
    hold: i64,
    talk: Option<i64>,
    outcome: &str,
) -> madoguchi::store::calls::CallRow {
    let (h, m, s) = joined_jst;
    let day =
        chrono::NaiveDate::from_ymd_opt(2021, 5, 10).unwrap() + chrono::Duration::days(day_offset);
    let joined = day.and_hms_opt(h, m, s).unwrap().and_utc() - chrono::Duration::hours(9);
    let ts = madoguchi::store::ts;
    let answered = talk.map(|_| joined + chrono::Duration::seconds(hold));
    let ended = match (answered, talk) {
        (Some(a), Some(t)) => a + chrono::Duration::seconds(t),
        _ => joined + chrono::Duration::seconds(hold),
    };
    madoguchi::store::calls::CallRow {
        id: format!("ami:{id}"),
        direction: "inbound".into(),
        caller_number: "0773620099".into(),
        queue: Some("vaccine".into()),
        answered_by: answered.map(|_| "201".into()),
        started_at: ts(joined - chrono::Duration::seconds(started_before_s)),
        queued_at: Some(ts(joined)),
        answered_at: answered.map(ts),
        ended_at: Some(ts(ended)),
        hold_s: (outcome != "timeout").then_some(hold),
        outcome: Some(outcome.into()),
        ..Default::default()
    }
}

async fn reports(engine: &str) {
    let srv = TestServer::start(engine, None).await;
    let agent_id = srv.add_user("a201", Role::Agent, Some("201")).await;
    srv.add_user("boss", Role::Supervisor, None).await;
    let boss = srv.login("boss").await;
    let agent = srv.login("a201").await;
    let calls = vec![
        // c7: started 23:59:50 on 5/9, joined 00:00:05 on 5/10: counts on 5/10, hour 00.
        report_call("c7", 0, (0, 0, 5), 15, 15, Some(44), "answered"),
        // Hour 09: c1 answered in 10 s (inside the 20 s level), talked 120 s; c2 answered in
        // 30 s (outside), talked 60 s; c3 abandoned after 40 s; c4 abandoned after 3 s (short).
        report_call("c1", 0, (9, 0, 0), 2, 10, Some(120), "answered"),
        report_call("c2", 0, (9, 10, 0), 2, 30, Some(60), "answered"),
        report_call("c3", 0, (9, 20, 0), 2, 40, None, "abandoned"),
        report_call("c4", 0, (9, 30, 0), 2, 3, None, "abandoned"),
        // Hour 10: c5 timed out after 60 s; c6 answered in 5 s, talked 300 s.
        report_call("c5", 0, (10, 5, 0), 2, 60, None, "timeout"),
        report_call("c6", 0, (10, 15, 0), 2, 5, Some(300), "answered"),
        // Not counted on 5/10: c8 is on 5/11; c9 ended unseen (unknown).
        report_call("c8", 1, (1, 0, 0), 2, 8, Some(30), "answered"),
        report_call("c9", 0, (11, 0, 0), 2, 9, None, "unknown"),
    ];
    let mut outbound = report_call("out1", 0, (11, 30, 0), 0, 0, Some(90), "answered");
    // An agent's own outbound call joins no queue: not offered.
    outbound.direction = "outbound".into();
    outbound.queue = None;
    outbound.queued_at = None;
    for c in calls.iter().chain([&outbound]) {
        srv.store().upsert_call(c).await.unwrap();
    }
    // Inquiries (JST): 09:05 and 10:20 appointment_change, 10:30 transport on 5/10; a ticket
    // on 5/11.
    for (cat, day, h, m) in [
        ("appointment_change", 10, 9, 5),
        ("appointment_change", 10, 10, 20),
        ("transport", 10, 10, 30),
        ("ticket", 11, 9, 0),
    ] {
        let form = madoguchi::domain::inquiry::InquiryForm {
            call_id: Some("ami:c1".into()),
            category: cat.into(),
            note: "集計テスト".into(),
            caller_kind: "self".into(),
            ..Default::default()
        };
        let n = madoguchi::domain::inquiry::NewInquiry::parse(form).unwrap();
        let at = chrono::NaiveDate::from_ymd_opt(2021, 5, day)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
            .and_utc()
            - chrono::Duration::hours(9);
        srv.store()
            .insert_inquiry(agent_id, &n, &madoguchi::store::ts(at))
            .await
            .unwrap();
    }

    let (status, r) = boss
        .get("/api/reports?from=2021-05-10&to=2021-05-10&by=day")
        .await;
    assert_eq!(status, 200, "{r}");
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "one day");
    let d = &rows[0];
    assert_eq!(d["period"], "2021-05-10");
    // c1–c7 joined on 5/10 (c7 after midnight although it started before); c8 is on 5/11,
    // c9 ended unseen, the outbound call joined no queue.
    assert_eq!(d["offered"], 7);
    assert_eq!(d["answered"], 4, "c1, c2, c6, c7");
    assert_eq!(d["abandoned"], 1, "c3 (40 s)");
    assert_eq!(d["short_abandoned"], 1, "c4 (3 s, under 5 s)");
    assert_eq!(d["timeouts"], 1, "c5");
    assert_eq!(
        d["answered_within_sl"], 3,
        "c1 10 s, c6 5 s, c7 15 s; c2 took 30 s"
    );
    // 3 ÷ (4 answered + 1 abandoned + 1 timeout); the short abandon is in neither side.
    assert_eq!(d["service_level"], 0.5);
    // 1 abandoned ÷ (7 offered − 1 short abandon).
    assert!(
        (d["abandon_rate"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-9,
        "{d}"
    );
    // (10 + 30 + 5 + 15) ÷ 4 answered.
    assert_eq!(d["asa_s"], 15.0);
    // (120 + 60 + 300 + 44) ÷ 4 answered and ended.
    assert_eq!(d["aht_s"], 131.0);
    assert_eq!(d["inquiries_total"], 3, "the 5/11 ticket is another day");
    assert_eq!(d["inquiries"]["appointment_change"], 2);
    assert_eq!(d["inquiries"]["transport"], 1);
    assert_eq!(d["inquiries"]["ticket"], 0);
    assert_eq!(r["total"]["offered"], 7, "one day: the total is that day");

    // Two days: 5/11 adds c8 (answered in 8 s, talked 30 s) and the ticket.
    let (_, r2) = boss.get("/api/reports?from=2021-05-10&to=2021-05-11").await;
    let rows2 = r2["rows"].as_array().unwrap();
    assert_eq!(rows2.len(), 2);
    assert_eq!(rows2[1]["offered"], 1);
    assert_eq!(rows2[1]["service_level"], 1.0, "c8 within 20 s");
    assert_eq!(rows2[1]["inquiries"]["ticket"], 1);
    assert_eq!(r2["total"]["offered"], 8, "7 + 1");
    assert_eq!(r2["total"]["answered"], 5);
    // (120 + 60 + 300 + 44 + 30) ÷ 5.
    assert!((r2["total"]["aht_s"].as_f64().unwrap() - 110.8).abs() < 1e-9);
    assert_eq!(r2["total"]["inquiries_total"], 4);

    // By hour: 24 rows, 00:00 JST first.
    let (status, h) = boss
        .get("/api/reports?from=2021-05-10&to=2021-05-10&by=hour")
        .await;
    assert_eq!(status, 200, "{h}");
    let hours = h["rows"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    assert_eq!(hours[0]["period"], "2021-05-10 00:00");
    assert_eq!(hours[0]["start"], "2021-05-09T15:00:00.000Z");
    assert_eq!(hours[0]["offered"], 1, "c7");
    assert_eq!(hours[0]["aht_s"], 44.0);
    let nine = &hours[9];
    assert_eq!(nine["period"], "2021-05-10 09:00");
    assert_eq!(nine["offered"], 4, "c1–c4");
    assert_eq!(nine["answered"], 2);
    assert_eq!(nine["abandoned"], 1);
    assert_eq!(nine["short_abandoned"], 1);
    // c1 only within 20 s, over (2 answered + 1 abandoned).
    assert!((nine["service_level"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    // 1 abandoned ÷ (4 − 1 short).
    assert!((nine["abandon_rate"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(nine["asa_s"], 20.0, "(10 + 30) ÷ 2");
    assert_eq!(nine["aht_s"], 90.0, "(120 + 60) ÷ 2");
    assert_eq!(nine["inquiries"]["appointment_change"], 1, "09:05");
    let ten = &hours[10];
    assert_eq!(ten["offered"], 2, "c5, c6");
    assert_eq!(ten["timeouts"], 1);
    assert_eq!(ten["service_level"], 0.5, "c6 ÷ (1 answered + 1 timeout)");
    assert_eq!(ten["abandon_rate"], 0.0);
    assert_eq!(ten["inquiries_total"], 2, "10:20 and 10:30");
    assert_eq!(
        hours[11]["offered"], 0,
        "c9 unknown, the outbound call not queued"
    );
    assert_eq!(
        hours[11]["service_level"],
        Value::Null,
        "nothing to measure"
    );
    assert_eq!(h["total"]["offered"], 7, "the hours add up to the day");

    // CSV for Excel: UTF-8 with a BOM, a header, the day, then the total.
    let res = boss
        .http
        .get(format!(
            "{}/api/reports.csv?from=2021-05-10&to=2021-05-10",
            boss.base
        ))
        .header("cookie", &boss.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let bytes = res.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "UTF-8 BOM for Excel");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with("期間,入電,応答,放棄,短時間放棄(5秒未満),タイムアウト,サービスレベル(%・20秒以内),放棄率(%)"), "{}", lines[0]);
    assert!(lines[0].ends_with(",問合せ計,日時・会場の変更,キャンセル,送迎バス,接種券,副反応,接種対象・医療相談,その他,苦情"), "{}", lines[0]);
    // SL 50.0 %, abandon rate 1/6 = 16.7 %, ASA 15.0, AHT 131.0, 3 inquiries: 2 changes, 1 bus.
    assert_eq!(
        lines[1],
        "2021-05-10,7,4,1,1,1,50.0,16.7,15.0,131.0,3,2,0,1,0,0,0,0,0"
    );
    assert_eq!(
        lines[2],
        "2021-05-10〜2021-05-10,7,4,1,1,1,50.0,16.7,15.0,131.0,3,2,0,1,0,0,0,0,0"
    );
    // Shift_JIS for older Excel.
    let res = boss
        .http
        .get(format!(
            "{}/api/reports.csv?from=2021-05-10&to=2021-05-10&encoding=sjis",
            boss.base
        ))
        .header("cookie", &boss.cookie)
        .send()
        .await
        .unwrap();
    let bytes = res.bytes().await.unwrap();
    let (text, _, bad) = encoding_rs::SHIFT_JIS.decode(&bytes);
    assert!(!bad);
    assert!(text.starts_with("期間,入電"), "{text}");

    // Bad input: 422 naming the field; agents may not read reports.
    for (q, field) in [
        ("from=2021-13-01", "from"),
        ("from=2021-05-11&to=2021-05-10", "to"),
        ("from=2021-01-01&to=2021-03-01&by=hour", "to"),
        ("by=week", "by"),
    ] {
        let (status, v) = boss.get(&format!("/api/reports?{q}")).await;
        assert_eq!(
            (status, v["field"].as_str()),
            (422, Some(field)),
            "{q}: {v}"
        );
    }
    let (status, _) = agent.get("/api/reports").await;
    assert_eq!(status, 403);
    srv.stop().await;
}

#[tokio::test]
async fn reports_per_day_and_hour_with_every_figure_sqlite() {
    reports("sqlite").await;
}

#[tokio::test]
async fn reports_per_day_and_hour_with_every_figure_postgres() {
    if !require_postgres() {
        return;
    }
    reports("postgres").await;
}
