//! The database misbehaves, the phones keep ringing: a row PostgreSQL refuses is set aside
//! without blocking the log, and with the database unreachable for 20 s pops still arrive at
//! once (the record follows when it returns), and every call of the outage is logged once.

use crate::common::*;
use crate::pbx::{ScriptCall, ScriptedPbx};
use madoguchi::domain::Role;
use madoguchi::store::testing::TestDb;
use madoguchi::store::Store;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// A TCP proxy in front of PostgreSQL that a test can cut (every connection closed, new ones
/// refused) and restore: the database "goes away" for the server and for nobody else.
struct CuttableProxy {
    addr: String,
    cut: Arc<Mutex<bool>>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl CuttableProxy {
    async fn start(upstream: String) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let cut = Arc::new(Mutex::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (c, cs) = (cut.clone(), conns.clone());
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                if *c.lock().unwrap() {
                    drop(down);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                cs.lock().unwrap().push(task.abort_handle());
            }
        });
        CuttableProxy { addr, cut, conns }
    }

    fn cut(&self) {
        *self.cut.lock().unwrap() = true;
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        *self.cut.lock().unwrap() = false;
    }
}

/// `postgres://user@host:port/db` with host:port replaced.
fn via(url: &str, addr: &str) -> (String, String) {
    let at = url.find('@').expect("user@ in the PostgreSQL URL") + 1;
    let slash = url[at..].find('/').map(|i| at + i).unwrap_or(url.len());
    let upstream = url[at..slash].to_string();
    (format!("{}{addr}{}", &url[..at], &url[slash..]), upstream)
}

#[tokio::test]
async fn a_refused_row_is_set_aside_and_the_log_goes_on_postgres() {
    if !require_postgres() {
        return;
    }
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start("postgres", Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.add_user("admin", Role::Admin, None).await;
    pbx.wait_login().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bad = ScriptCall::new(1, "0773620001", "201");
    bad.name = "岡\u{0}本".into();
    pbx.send(bad.ring());
    pbx.send(bad.hangup());
    let after: Vec<ScriptCall> = (2..=6)
        .map(|i| ScriptCall::new(i, &format!("077362000{i}"), "201"))
        .collect();
    for c in &after {
        pbx.send(c.ring());
        pbx.send(c.hangup());
    }
    let store = srv.store();
    let t = Instant::now();
    let mut calls = Vec::new();
    while t.elapsed() < Duration::from_secs(5) {
        calls = store.calls_between(None, None, 100).await.unwrap();
        if after.iter().all(|c| {
            calls
                .iter()
                .any(|r| r.id == format!("ami:{}", c.id) && r.outcome.is_some())
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in &after {
        assert!(
            calls
                .iter()
                .any(|r| r.id == format!("ami:{}", c.id) && r.outcome.is_some()),
            "call {} logged within seconds of the bad one: {calls:?}",
            c.id
        );
    }
    // The refused state is kept whole for an administrator, and counted.
    let rejects = store.call_rejects(10).await.unwrap();
    assert!(
        rejects
            .iter()
            .any(|r| r["call_key"] == format!("ami:{}", bad.id)
                && r["row"].as_str().is_some_and(|j| j.contains("\\u0000"))),
        "{rejects:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", srv.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("madoguchi_call_log_rejected_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The call itself is still in the log, once, without the NUL.
    let row = calls
        .iter()
        .filter(|r| r.id == format!("ami:{}", bad.id))
        .collect::<Vec<_>>();
    assert_eq!(row.len(), 1);
    assert_eq!(row[0].caller_name, "岡本");
    // The writer is healthy again: ready.
    let ready = reqwest::get(format!("{}/readyz", srv.url)).await.unwrap();
    assert_eq!(ready.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn pops_go_on_while_the_database_is_away_postgres() {
    if !require_postgres() {
        return;
    }
    let outage = Duration::from_secs(
        std::env::var("MADOGUCHI_TEST_OUTAGE_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    let db = TestDb::new("postgres").await.expect("test database");
    let (proxied, upstream) = via(&db.url, "PROXY");
    let proxy = CuttableProxy::start(upstream).await;
    let proxied = proxied.replace("PROXY", &proxy.addr);
    let server_store = Store::open(&proxied)
        .await
        .expect("store through the proxy");
    let mut pbx = ScriptedPbx::start().await;
    let srv = TestServer::start_on(db, server_store, Some(pbx.addr.clone())).await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    let store = srv.store().clone();
    let mut residents = Vec::new();
    for i in 1..=60u32 {
        residents.push(resident(
            100 + i,
            &format!("住民 {i}"),
            "ジュウミン　イチ",
            &[&format!("0773-63-{:04}", i)],
        ));
    }
    store.insert_residents(&residents).await.unwrap();
    pbx.wait_login().await;
    let agent = srv.login("agent201").await;
    let mut ws = agent.ws().await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Before the outage: the pop carries the record.
    let first = ScriptCall::new(1, "0773630001", "201");
    pbx.send(first.ring());
    let pop = ws
        .pop_with_record(Duration::from_secs(5))
        .await
        .expect("pop");
    assert_eq!(pop["candidates"][0]["name"], "住民 1", "{pop}");
    pbx.send(first.hangup());
    let _ = ws.next_json(Duration::from_secs(5)).await;

    proxy.cut();
    let started = Instant::now();
    let mut placed = vec![first.clone()];
    let mut n = 2u32;
    let mut worst = Duration::ZERO;
    let mut last: Option<ScriptCall> = None;
    while started.elapsed() < outage {
        let c = ScriptCall::new(n, &format!("07736300{n:02}"), "201");
        n += 1;
        let rang = Instant::now();
        pbx.send(c.ring());
        let pop = loop {
            let m = ws
                .next_json(Duration::from_secs(2))
                .await
                .expect("a pop during the outage");
            if m["type"] == "screen_pop" {
                break m;
            }
        };
        let took = rang.elapsed();
        worst = worst.max(took);
        // The pop waits for the ledger 50 ms at most (one lookup attempt alone may take 2 s);
        // the bound leaves room for a loaded test machine. `madoguchi bench` measures speed.
        assert!(
            took < Duration::from_millis(500),
            "pop {} took {took:?} during the outage",
            c.id
        );
        assert_eq!(pop["call"]["id"], format!("ami:{}", c.id));
        assert_eq!(pop["lookup"], "pending", "{pop}");
        assert_eq!(pop["candidates"], serde_json::json!([]));
        placed.push(c.clone());
        if started.elapsed() + Duration::from_millis(1500) < outage {
            pbx.send(c.hangup());
        } else {
            // The last call rings across the database's return.
            last = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let remaining = outage.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;
    proxy.restore();
    eprintln!("outage: {} calls, worst pop {worst:?}", placed.len() - 1);

    // The record follows for the call still ringing.
    let last = last.expect("a call rings across the return");
    let update = loop {
        let m = ws
            .next_json(Duration::from_secs(15))
            .await
            .expect("the record follows when the database returns");
        if m["type"] == "candidates_update" && m["call"]["id"] == format!("ami:{}", last.id) {
            break m;
        }
    };
    assert_eq!(update["lookup"], "ok");
    assert_eq!(
        update["candidates"].as_array().map(Vec::len),
        Some(1),
        "{update}"
    );
    pbx.send(last.hangup());

    // Every call of the outage is in the log once, ended, linked to its resident.
    let t = Instant::now();
    let mut calls = Vec::new();
    while t.elapsed() < Duration::from_secs(20) {
        calls = store.calls_between(None, None, 1000).await.unwrap();
        if calls.len() == placed.len()
            && calls
                .iter()
                .all(|c| c.outcome.is_some() && c.resident_id.is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(calls.len(), placed.len(), "one row per call: {calls:?}");
    for c in &placed {
        let rows: Vec<_> = calls
            .iter()
            .filter(|r| r.id == format!("ami:{}", c.id))
            .collect();
        assert_eq!(rows.len(), 1, "call {}", c.id);
        assert!(rows[0].outcome.is_some(), "{:?}", rows[0]);
        assert!(
            rows[0].resident_id.is_some(),
            "the record was linked after the outage: {:?}",
            rows[0]
        );
    }
    srv.stop().await;
}
