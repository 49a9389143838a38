//! The call log across a crash or a deploy: the real binary is killed (SIGKILL) or stopped
//! (SIGTERM) with 40 calls live, restarted against a PBX on which half of them are still up,
//! and every call ends up logged once, with what was learned before the restart kept. And
//! rebooks across a SIGKILL: every move the server answered is in the database, whole.

use crate::common::*;
use crate::pbx::{ScriptCall, ScriptedPbx};
use madoguchi::domain::{Extension, Role};
use madoguchi::store::calls::CallRow;
use madoguchi::store::testing::{TempDir, TestDb};
use madoguchi::store::Store;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server as its own process, so it can be killed like a real one.
pub struct ServerProcess {
    child: Child,
    pub url: String,
}

impl ServerProcess {
    pub async fn start(db_url: &str, ami: &str, spool: &std::path::Path) -> ServerProcess {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
            .arg("serve")
            .env("MADOGUCHI_DATABASE_URL", db_url)
            .env("MADOGUCHI_LISTEN", format!("127.0.0.1:{port}"))
            .env("MADOGUCHI_AMI_ADDRESS", ami)
            .env("MADOGUCHI_AMI_USERNAME", "madoguchi")
            .env("MADOGUCHI_AMI_SECRET", "s3cret")
            .env("MADOGUCHI_SPOOL_DIR", spool)
            .env("MADOGUCHI_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start madoguchi serve");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
                if r.status() == 200 {
                    return ServerProcess { child, url };
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("madoguchi serve did not come up on {url}");
    }

    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub fn terminate(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "a SIGTERM shutdown exits 0: {status:?}");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn add_user(store: &Store, name: &str, role: Role, ext: Option<&str>) {
    let hash = madoguchi::store::users::hash_password(name).expect("hash");
    let ext = ext.map(|e| Extension::parse(e).expect("extension"));
    store
        .upsert_user(name, name, &hash, role, ext.as_ref())
        .await
        .expect("user");
}

/// Polls the call log until `done` holds for it.
async fn wait_for(store: &Store, what: &str, done: impl Fn(&[CallRow]) -> bool) -> Vec<CallRow> {
    let mut calls = Vec::new();
    for _ in 0..300 {
        calls = store.calls_between(None, None, 1000).await.expect("calls");
        if done(&calls) {
            return calls;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}: {calls:#?}");
}

#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Kill,
    Term,
}

/// 40 calls: 1–20 answered, 21–40 ringing; call 1 is a household landline whose caller the
/// agent identifies. Then the server stops; calls 1–10 and 21–30 are still up at the PBX,
/// 11–20 and 31–40 are gone; the server restarts and the rest hang up.
async fn forty_calls_across_a_restart(engine: &str, stop: Stop) {
    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    let spool = TempDir::new("spool").expect("spool dir");
    store
        .insert_residents(&[
            resident(1, "舞鶴 一郎", "マイヅル　イチロウ", &["0773-62-1111"]),
            resident(2, "舞鶴 花子", "マイヅル　ハナコ", &["0773-62-1111"]),
        ])
        .await
        .expect("residents");
    let hanako = store
        .residents_by_phone(&madoguchi::domain::PhoneNumber::parse("0773-62-1111").unwrap())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == "舞鶴 花子")
        .expect("hanako")
        .id;
    for i in 1..=40 {
        add_user(
            &store,
            &format!("agent{i}"),
            Role::Agent,
            Some(&format!("{}", 200 + i)),
        )
        .await;
    }
    let calls: Vec<ScriptCall> = (1..=40)
        .map(|i| {
            let number = if i == 1 {
                "0773621111".to_string()
            } else {
                format!("0773{:06}", 700000 + i)
            };
            ScriptCall::new(i, &number, &format!("{}", 200 + i))
        })
        .collect();

    let mut pbx = ScriptedPbx::start().await;
    let server = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let agent1 = login(&server.url, "agent1").await;
    let mut ws1 = agent1.ws().await;
    // The resync listing of the first login is empty; give the link a moment to finish it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, c) in calls.iter().enumerate() {
        pbx.send(c.ring());
        if i < 20 {
            pbx.send(c.answer(3));
        }
    }
    let pop = ws1
        .pop_with_record(Duration::from_secs(10))
        .await
        .expect("agent1's pop");
    assert_eq!(pop["type"], "screen_pop", "{pop}");
    assert_eq!(
        pop["candidates"].as_array().map(Vec::len),
        Some(2),
        "a household: {pop}"
    );
    let call1 = pop["call"]["id"].as_str().expect("call id").to_string();
    let (status, _) = agent1
        .post(
            &format!("/api/calls/{call1}/resident"),
            json!({"resident_id": hanako}),
        )
        .await;
    assert_eq!(status, 204, "the agent identifies the caller");
    // Everything the PBX said before the crash is in the log (each call's offer too) before the
    // server is killed: what the test then checks is what survives, not what was still queued.
    wait_for(&store, "40 calls, 20 answered, each offered", |c| {
        c.len() == 40
            && c.iter().filter(|c| c.answered_at.is_some()).count() == 20
            && c.iter().all(|c| !c.agents_offered.is_empty())
    })
    .await;

    // Half the calls survive the restart at the PBX.
    let mut listing = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        if i < 10 || (20..30).contains(&i) {
            listing.extend(c.listing(i < 20));
        }
    }
    pbx.set_listing(listing);
    match stop {
        Stop::Kill => server.kill9(),
        Stop::Term => server.terminate(),
    }
    if stop == Stop::Term {
        // A deploy: the stopping server wrote the live calls as they stood, none ended.
        let open = store.open_calls().await.expect("open calls");
        assert_eq!(open.len(), 40, "a SIGTERM closes no live call by itself");
    }
    let server = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let gone = wait_for(&store, "the gone calls closed", |c| {
        c.iter().filter(|c| c.ended_at.is_some()).count() == 20
    })
    .await;
    for (i, c) in calls.iter().enumerate() {
        let row = gone
            .iter()
            .find(|r| r.id == format!("ami:{}", c.id))
            .expect("row");
        let still_up = i < 10 || (20..30).contains(&i);
        assert_eq!(row.ended_at.is_none(), still_up, "call {}: {row:?}", i + 1);
    }
    for c in calls
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < 10 || (20..30).contains(i))
    {
        pbx.send(c.1.hangup());
    }
    let log = wait_for(&store, "every call ended", |c| {
        c.iter()
            .all(|c| c.ended_at.is_some() && c.outcome.is_some())
    })
    .await;
    assert_eq!(log.len(), 40, "every call is exactly one row");
    assert_eq!(store.call_count().await.unwrap(), 40);
    for (i, c) in calls.iter().enumerate() {
        let row = log
            .iter()
            .find(|r| r.id == format!("ami:{}", c.id))
            .expect("row");
        let n = i + 1;
        if n <= 20 {
            assert_eq!(
                row.outcome.as_deref(),
                Some("answered"),
                "call {n}: {row:?}"
            );
            assert_eq!(row.answered_by.as_deref(), Some(c.ext.as_str()), "call {n}");
            assert!(row.answered_at.is_some(), "call {n} keeps answered_at");
            assert!(row.answered_user_id.is_some(), "call {n} keeps the agent");
            assert_eq!(row.end_estimated, n > 10, "call {n}: {row:?}");
        } else if n <= 30 {
            // Still ringing after the restart, then the caller hung up.
            assert_eq!(
                row.outcome.as_deref(),
                Some("abandoned"),
                "call {n}: {row:?}"
            );
            assert!(!row.end_estimated);
        } else {
            // Gone while nobody watched: nobody can say how it ended.
            assert_eq!(row.outcome.as_deref(), Some("unknown"), "call {n}: {row:?}");
            assert!(row.end_estimated);
        }
        assert_eq!(
            row.queue.as_deref(),
            Some("vaccine"),
            "call {n} keeps its queue"
        );
        assert_eq!(
            row.agents_offered,
            vec![c.ext.clone()],
            "call {n} keeps its offers"
        );
        assert!(row.rang_at.is_some() && row.queued_at.is_some(), "call {n}");
    }
    let first = log.iter().find(|r| r.id == call1).expect("call 1");
    assert_eq!(
        first.resident_id,
        Some(hanako),
        "the agent's identification survives"
    );
    assert!(first.resident_confirmed);
    drop(server);
    db.cleanup().await;
}

#[tokio::test]
async fn kill_9_with_40_live_calls_sqlite() {
    forty_calls_across_a_restart("sqlite", Stop::Kill).await;
}

#[tokio::test]
async fn kill_9_with_40_live_calls_postgres() {
    if require_postgres() {
        forty_calls_across_a_restart("postgres", Stop::Kill).await;
    }
}

#[tokio::test]
async fn sigterm_with_40_live_calls_sqlite() {
    forty_calls_across_a_restart("sqlite", Stop::Term).await;
}

#[tokio::test]
async fn sigterm_with_40_live_calls_postgres() {
    if require_postgres() {
        forty_calls_across_a_restart("postgres", Stop::Term).await;
    }
}

/// The figures of `/api/queues` that must not change across a restart.
fn figures(q: &serde_json::Value) -> serde_json::Value {
    let v = &q["queues"][0];
    json!({
        "name": v["name"], "offered": v["offered"], "answered": v["answered"],
        "abandoned": v["abandoned"], "short_abandoned": v["short_abandoned"],
        "service_level": v["service_level"], "asa_s": v["asa_s"],
        "aht_s": v["aht_s"],
        "waiting": v["waiting"].as_array().map(|w| w.iter().map(|c| c["call_id"].clone()).collect::<Vec<_>>()),
    })
}

/// A supervisor's figures for today are the same after a restart mid-day: rebuilt from the call
/// log (an answered call, an abandoned one), with a call still talking and one still waiting
/// carried over from the PBX's listing.
async fn todays_figures_survive_a_restart(engine: &str) {
    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    let spool = TempDir::new("spool").expect("spool dir");
    for i in 1..=4 {
        add_user(
            &store,
            &format!("agent{i}"),
            Role::Agent,
            Some(&format!("{}", 200 + i)),
        )
        .await;
    }
    add_user(&store, "sup", Role::Supervisor, None).await;
    let calls: Vec<ScriptCall> = (1..=4)
        .map(|i| ScriptCall::new(i, &format!("07736200{i:02}"), &format!("{}", 200 + i)))
        .collect();
    let mut pbx = ScriptedPbx::start().await;
    let server = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    pbx.send(calls[0].ring());
    pbx.send(calls[0].answer(3));
    pbx.send(calls[1].ring());
    pbx.send(calls[2].ring());
    pbx.send(calls[2].answer(25));
    pbx.send(calls[3].ring());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    pbx.send(calls[0].hangup());
    pbx.send(calls[1].hangup());
    wait_for(&store, "two calls ended, two live", |c| {
        c.len() == 4 && c.iter().filter(|c| c.ended_at.is_some()).count() == 2
    })
    .await;
    let sup = login(&server.url, "sup").await;
    let (_, before) = sup.get("/api/queues").await;
    let before = figures(&before);
    assert_eq!(before["offered"], 4, "{before}");
    // The PBX's own waits (AgentConnect's HoldTime, 3 s and 25 s), not the instant of DialEnd.
    assert_eq!(before["asa_s"], 14.0, "{before}");
    // Call 2 hung up about a second after joining: a short abandon (under 5 s), counted apart
    // from the abandoned.
    assert_eq!(
        (
            before["answered"].as_u64(),
            before["abandoned"].as_u64(),
            before["short_abandoned"].as_u64()
        ),
        (Some(2), Some(0), Some(1)),
        "{before}"
    );

    let mut listing = calls[2].listing(true);
    listing.extend(calls[3].listing(false));
    pbx.set_listing(listing);
    server.terminate();
    let server = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let sup = login(&server.url, "sup").await;
    let mut after = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, q) = sup.get("/api/queues").await;
        after = figures(&q);
        if after == before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(after, before, "today's figures survive the restart");
    drop(server);
    db.cleanup().await;
}

#[tokio::test]
async fn todays_figures_survive_a_restart_sqlite() {
    todays_figures_survive_a_restart("sqlite").await;
}

#[tokio::test]
async fn todays_figures_survive_a_restart_postgres() {
    if require_postgres() {
        todays_figures_survive_a_restart("postgres").await;
    }
}

/// Rebooks across a crash: agents move bookings through the real server (on SQLite, changes
/// queued together share one `COMMIT`), the process is killed (SIGKILL) in the middle, and every
/// move the server answered 200 is in the database with its dose 2, its audit line and its
/// inquiry; a move in flight at the kill is there whole or not at all; every slot's counter
/// equals its bookings.
async fn rebooks_across_a_kill_9(engine: &str) {
    use madoguchi::domain::Product;
    use madoguchi::store::bookings::NewSlot;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    let spool = TempDir::new("spool").expect("spool dir");
    store
        .insert_residents(&madoguchi::store::testing::sample_residents(120))
        .await
        .expect("residents");
    let residents: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&store.read)
        .await
        .unwrap();
    add_user(&store, "agent1", Role::Agent, Some("201")).await;
    let venue = store.insert_venue("東体育館", "", &["東"]).await.unwrap();
    let first = chrono::NaiveDate::from_ymd_opt(2031, 6, 3).unwrap();
    let new: Vec<NewSlot> = (0..60)
        .map(|day| {
            let starts = madoguchi::domain::vaccine::jst_at(
                first + chrono::Duration::days(day),
                chrono::NaiveTime::from_hms_opt(9, 30, 0).unwrap(),
            );
            NewSlot {
                venue_id: venue,
                starts_at: starts,
                ends_at: starts + chrono::Duration::minutes(30),
                product: Product::Pfizer,
                capacity: 500,
            }
        })
        .collect();
    let slots = store.insert_slots(&new).await.unwrap();
    // Each resident: dose 1 on one of the first five days, dose 2 three weeks later.
    let mut moves = Vec::new();
    for (i, r) in residents.iter().enumerate() {
        let Ok(dose1) = store.book(*r, 1, slots[i % 5]).await.unwrap() else {
            continue; // too young for the product
        };
        store.book(*r, 2, slots[i % 5 + 21]).await.unwrap().unwrap();
        moves.push((*r, dose1, 5 + i % 10));
    }
    assert!(moves.len() >= 100, "{} residents booked", moves.len());

    let server = ServerProcess::start(&db.url, "127.0.0.1:9", &spool.0).await;
    let agent = login(&server.url, "agent1").await;
    let acked: Arc<Mutex<HashMap<i64, usize>>> = Default::default();
    let mut agents = Vec::new();
    for share in moves.chunks(10) {
        let share = share.to_vec();
        let (http, cookie, base) = (agent.http.clone(), agent.cookie.clone(), agent.base.clone());
        let (acked, slots) = (acked.clone(), slots.clone());
        agents.push(tokio::spawn(async move {
            for (_, booking, day) in share {
                let sent = http
                    .post(format!("{base}/api/bookings/{booking}/move"))
                    .header("cookie", &cookie)
                    .header("Idempotency-Key", format!("kill-{booking}"))
                    .json(&json!({"slot_id": slots[day]}))
                    .send()
                    .await;
                let Ok(res) = sent else { return };
                if res.status() != 200 {
                    return;
                }
                acked.lock().unwrap().insert(booking, day);
            }
        }));
    }
    for _ in 0..4000 {
        if acked.lock().unwrap().len() >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for a in agents {
        a.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 40,
        "{engine}: only {} moves answered",
        acked.len()
    );

    let mut moved = 0;
    for (resident, booking, day) in &moves {
        let doses: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT dose, slot_id FROM bookings WHERE resident_id = $1 ORDER BY dose",
        )
        .bind(*resident)
        .fetch_all(&store.read)
        .await
        .unwrap();
        let inquiries: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM inquiries WHERE resident_id = $1")
                .bind(*resident)
                .fetch_one(&store.read)
                .await
                .unwrap();
        let audit: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_entries WHERE resident_id = $1 AND action = 'move_booking'",
        )
        .bind(*resident)
        .fetch_one(&store.read)
        .await
        .unwrap();
        let at_target = doses == [(1, slots[*day]), (2, slots[day + 21])];
        if acked.contains_key(booking) {
            assert!(
                at_target,
                "{engine}: answered move of booking {booking} lost: {doses:?}"
            );
        }
        if at_target {
            moved += 1;
            assert_eq!(
                (inquiries, audit),
                (1, 1),
                "{engine}: booking {booking}'s record"
            );
        } else {
            let at_start = doses.iter().map(|d| d.1).collect::<Vec<_>>();
            assert_eq!(at_start.len(), 2, "{engine}: booking {booking}: {doses:?}");
            assert_eq!(
                at_start[1] - at_start[0],
                slots[21] - slots[0],
                "{engine}: half a move"
            );
            assert_eq!(
                (inquiries, audit),
                (0, 0),
                "{engine}: a record without its move"
            );
        }
    }
    eprintln!(
        "{engine}: {} moves, {} answered before the kill, {moved} in the database",
        moves.len(),
        acked.len()
    );
    assert!(moved >= acked.len());
    assert!(
        store.slot_count_mismatches().await.unwrap().is_empty(),
        "{engine}"
    );
    assert_eq!(store.slots_over_capacity().await.unwrap(), 0, "{engine}");
    db.cleanup().await;
}

#[tokio::test]
async fn rebooks_across_a_kill_9_sqlite() {
    rebooks_across_a_kill_9("sqlite").await;
}

#[tokio::test]
async fn rebooks_across_a_kill_9_postgres() {
    if require_postgres() {
        rebooks_across_a_kill_9("postgres").await;
    }
}
