//! Whichever PBX speaks, the agent sees the same thing and the call log holds the same row:
//! one server linked at once to an Asterisk over AMI, an Asterisk over ARI, a SIP PBX by
//! dialog-event subscriptions (sipp) and a PBX over the webhook takes the same call (same
//! caller, same agent, answered, hung up) from each, and the pops and rows must agree on
//! everything but the call's id. Then every adapter is fed garbage
//! (random bytes over AMI, random and mutated JSON over ARI and the webhook): nothing panics,
//! nothing is logged, and a real call after it still pops and logs once.

use crate::ari::{channel, FakeAri};
use crate::common::*;
use crate::pbx::{ScriptCall, ScriptedPbx};
use crate::sip::{free_udp_port, sipp_or_skip, Sipp};
use madoguchi::domain::Role;
use madoguchi::settings::Settings;
use madoguchi::store::testing::TestDb;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);
const TOKEN: &str = "tok-adapters-7c1e";

struct Rig {
    srv: TestServer,
    ami: ScriptedPbx,
    ari: FakeAri,
    agent: Client,
    ws: Ws,
    http: reqwest::Client,
    /// sipp's path and the UDP port the SIP link subscribes to, when the rig has SIP.
    sip: Option<(std::path::PathBuf, u16)>,
    scratch: madoguchi::store::testing::TempDir,
}

/// A server linked to every adapter; SIP only when `with_sip` and sipp is installed.
async fn rig(engine: &str) -> Rig {
    rig_with(engine, false).await
}

async fn rig_with(engine: &str, with_sip: bool) -> Rig {
    let sip = if with_sip {
        sipp_or_skip().map(|p| (p, free_udp_port()))
    } else {
        None
    };
    let sip_pbx = sip.as_ref().map(|(_, port)| format!("127.0.0.1:{port}"));
    let mut ami = ScriptedPbx::start().await;
    let mut ari = FakeAri::start().await;
    let db = TestDb::new(engine).await.expect("test database");
    let store = db.store.clone();
    let (ami_addr, ari_url) = (ami.addr.clone(), format!("http://{}", ari.addr));
    let srv = TestServer::start_with(db, store, move |s: &mut Settings| {
        s.ami_address = Some(ami_addr);
        s.ami_username = "madoguchi".into();
        s.ami_secret = "s3cret".into();
        s.ari_url = Some(ari_url);
        s.ari_username = "asterisk".into();
        s.ari_password = "s3cret".into();
        s.ari_app = "madoguchi".into();
        s.webhook_token = Some(TOKEN.into());
        if let Some(pbx) = sip_pbx {
            s.sip_pbx = Some(pbx);
            s.sip_listen = Some(format!("127.0.0.1:{}", free_udp_port()));
        }
    })
    .await;
    srv.add_user("agent201", Role::Agent, Some("201")).await;
    srv.store()
        .insert_residents(&[
            resident(8, "舞鶴 八郎", "マイヅル　ハチロウ", &["0773-62-8888"]),
            resident(9, "舞鶴 九子", "マイヅル　キュウコ", &["0773-62-9999"]),
        ])
        .await
        .unwrap();
    let agent = srv.login("agent201").await;
    let ws = agent.ws().await;
    ami.wait_login().await;
    ari.wait_connect().await;
    // both links have listed their (empty) channels before the first call
    tokio::time::sleep(Duration::from_millis(300)).await;
    Rig {
        srv,
        ami,
        ari,
        agent,
        ws,
        http: reqwest::Client::new(),
        sip,
        scratch: madoguchi::store::testing::TempDir::new("adapters").unwrap(),
    }
}

impl Rig {
    async fn webhook(&self, body: Value) -> u16 {
        self.http
            .post(format!("{}/api/pbx/webhook/{TOKEN}", self.srv.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Places one call from `number`, answered by 201 and hung up, through `adapter`; returns
    /// the pop and the answered update the agent's screen received.
    async fn call(&mut self, adapter: &str, n: u32, number: &str) -> (Value, Value) {
        match adapter {
            "ami" => {
                let call = ScriptCall::new(n, number, "201");
                self.ami.send(call.ring());
                let pop = self.ws.pop_with_record(WAIT).await.expect("ami pop");
                self.ami.send(call.answer(3));
                let up = self.update(&pop, "answered_here").await;
                self.ami.send(call.hangup());
                self.update(&pop, "ended").await;
                (pop, up)
            }
            "ari" => {
                let caller = channel(
                    &format!("1764374400.{n}"),
                    &format!("PJSIP/trunk-{n:08x}"),
                    "Ring",
                    number,
                );
                let leg = channel(
                    &format!("1764374400.{}", n + 1000),
                    &format!("PJSIP/201-{:08x}", n + 1000),
                    "Down",
                    "201",
                );
                self.ari
                    .send(json!({"type": "ChannelCreated", "channel": caller}));
                self.ari
                    .send(json!({"type": "ChannelCreated", "channel": leg}));
                self.ari.send(json!({"type": "Dial", "dialstatus": "", "caller": caller, "peer": leg, "dialstring": "201"}));
                let pop = self.ws.pop_with_record(WAIT).await.expect("ari pop");
                self.ari.send(
                    json!({"type": "Dial", "dialstatus": "ANSWER", "caller": caller, "peer": leg}),
                );
                let up = self.update(&pop, "answered_here").await;
                for ch in [&leg, &caller] {
                    self.ari.send(json!({"type": "ChannelDestroyed", "cause": 16, "cause_txt": "Normal Clearing", "channel": ch}));
                }
                self.update(&pop, "ended").await;
                (pop, up)
            }
            "sip" => {
                // The shared notifier scenario, for this caller and extension 201: sipp takes
                // the link's SUBSCRIBE, then NOTIFYs early (the caller), confirmed, terminated.
                let (sipp, port) = self.sip.clone().expect("a rig with SIP");
                let shared = include_str!("../../testdata/sip/pbx_notifier_uas.xml");
                let scenario = self.scratch.0.join(format!("call-{n}.xml"));
                std::fs::write(
                    &scenario,
                    shared
                        .replace("+15551234567", number)
                        .replace("ACME Corp", "")
                        .replace("2001", "201"),
                )
                .unwrap();
                let peer = Sipp::start(&sipp, scenario.to_str().unwrap(), port, 1);
                let pop = self
                    .ws
                    .pop_with_record(Duration::from_secs(20))
                    .await
                    .expect("sip pop");
                let up = self.update(&pop, "answered_here").await;
                self.update(&pop, "ended").await;
                let (code, errors) = peer.finish(Duration::from_secs(30)).await;
                assert_eq!(code, Some(0), "sipp: {errors}");
                (pop, up)
            }
            "webhook" => {
                let id = format!("zc-{n}");
                let base =
                    json!({"from": number, "to": "0773689225", "direction": "in", "callId": id});
                let with = |extra: Value| {
                    let mut b = base.clone();
                    b.as_object_mut()
                        .unwrap()
                        .extend(extra.as_object().unwrap().clone());
                    b
                };
                let new_call = with(json!({"event": "newCall", "user": ["201"]}));
                assert_eq!(self.webhook(new_call).await, 200);
                let pop = self.ws.pop_with_record(WAIT).await.expect("webhook pop");
                let answer = with(json!({"event": "answer", "answeringNumber": "201"}));
                assert_eq!(self.webhook(answer).await, 200);
                let up = self.update(&pop, "answered_here").await;
                let hangup = with(json!({"event": "hangup", "cause": "normalClearing"}));
                assert_eq!(self.webhook(hangup).await, 200);
                self.update(&pop, "ended").await;
                (pop, up)
            }
            other => panic!("no adapter {other}"),
        }
    }

    /// The `call_update` of `event` for the popped call (other messages are passed over).
    async fn update(&mut self, pop: &Value, event: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self
                .ws
                .next_json(left)
                .await
                .unwrap_or_else(|| panic!("no {event} for {}", pop["call"]["id"]));
            if m["type"] == "call_update"
                && m["call"]["id"] == pop["call"]["id"]
                && m["event"] == event
            {
                return m;
            }
        }
    }

    /// The call log once `n` calls have ended.
    async fn ended(&self, n: usize) -> Vec<madoguchi::store::calls::CallRow> {
        let mut calls = Vec::new();
        for _ in 0..200 {
            calls = self
                .srv
                .store()
                .calls_between(None, None, 100)
                .await
                .unwrap();
            if calls.iter().filter(|c| c.outcome.is_some()).count() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        calls
    }
}

const ADAPTERS: [&str; 3] = ["ami", "ari", "webhook"];

async fn the_same_call_from_every_adapter(engine: &str) {
    let mut rig = rig_with(engine, true).await;
    let mut adapters = ADAPTERS.to_vec();
    if rig.sip.is_some() {
        adapters.push("sip");
    }
    let mut seen = Vec::new();
    for (i, adapter) in adapters.iter().enumerate() {
        let (pop, up) = rig.call(adapter, 10 + i as u32, "0773628888").await;
        assert_eq!(pop["type"], "screen_pop", "{adapter}: {pop}");
        assert_eq!(up["type"], "call_update", "{adapter}: {up}");
        assert_eq!(up["event"], "answered_here", "{adapter}: {up}");
        assert_eq!(
            up["call"]["id"], pop["call"]["id"],
            "{adapter}: the update names the popped call"
        );
        seen.push((adapter, pop));
    }
    // The pops agree on everything the agent sees, but the id and times.
    let view = |pop: &Value| {
        let c = &pop["candidates"][0];
        json!({
            "caller_number": pop["call"]["caller_number"],
            "lookup": pop["lookup"],
            "candidates": pop["candidates"].as_array().map(|a| a.len()),
            "resident": [c["id"], c["name"], c["name_kana"], c["birth_date"], c["ticket_no"]],
        })
    };
    let first = view(&seen[0].1);
    assert_eq!(first["caller_number"], "0773628888", "{first}");
    assert_eq!(first["resident"][1], "舞鶴 八郎", "{first}");
    for (adapter, pop) in &seen[1..] {
        assert_eq!(view(pop), first, "{adapter} pops differently from ami");
    }

    // Each call is one row, and the rows agree on all but the id.
    let calls = rig.ended(adapters.len()).await;
    assert_eq!(calls.len(), adapters.len(), "one row per call: {calls:?}");
    let row = |c: &madoguchi::store::calls::CallRow| {
        json!({
            "caller_number": c.caller_number,
            "outcome": c.outcome,
            "answered_by": c.answered_by,
            "resident_id": c.resident_id,
            "end_estimated": c.end_estimated,
        })
    };
    let expected = json!({"caller_number": "0773628888", "outcome": "answered",
        "answered_by": "201", "resident_id": first["resident"][0], "end_estimated": false});
    for adapter in adapters {
        let prefix = match adapter {
            "ami" => "ami:",
            other => other,
        };
        let c = calls
            .iter()
            .find(|c| c.id.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {adapter} row in {calls:?}"));
        assert_eq!(row(c), expected, "{adapter}: {c:?}");
    }
    rig.srv.stop().await;
}

#[tokio::test]
async fn the_same_call_from_every_adapter_pops_and_logs_alike_sqlite() {
    the_same_call_from_every_adapter("sqlite").await;
}

#[tokio::test]
async fn the_same_call_from_every_adapter_pops_and_logs_alike_postgres() {
    if require_postgres() {
        the_same_call_from_every_adapter("postgres").await;
    }
}

/// xorshift, seeded: the garbage is the same on every run.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn garbage_into_every_adapter_logs_nothing_and_calls_go_on() {
    let mut rig = rig("sqlite").await;

    // AMI: random bytes, a packet cut in half, a line far over the limit, then a blank line.
    for seed in 0..20 {
        rig.ami.send(noise(seed, 2_000));
    }
    rig.ami
        .send(b"Event: Newchannel\r\nChannel: PJSIP/trunk-0000dead\r\nUniq");
    rig.ami.send(vec![b'x'; 200_000]);
    rig.ami.send(b"\r\n\r\n");

    // ARI: text that is not JSON, JSON of the wrong shapes, real events with wrong fields.
    for seed in 0..20u64 {
        let bytes = noise(seed, 300);
        rig.ari
            .send_text(String::from_utf8_lossy(&bytes).into_owned());
    }
    let caller = channel(
        "1764374400.900",
        "PJSIP/trunk-00000900",
        "Ring",
        "0773629999",
    );
    for ev in [
        json!(null),
        json!([1, 2, 3]),
        json!({"type": "ChannelCreated"}),
        json!({"type": "ChannelCreated", "channel": 42}),
        json!({"type": "ChannelCreated", "channel": {"id": null, "name": ["x"]}}),
        json!({"type": "Dial", "caller": caller, "peer": "nobody", "dialstatus": 7}),
        json!({"type": "ChannelDestroyed", "channel": {"id": "never-created"}, "cause": "x"}),
        json!({"type": "StasisStart", "args": {"deep": {"deeper": [null, {}]}}}),
    ] {
        rig.ari.send(ev);
    }

    // The webhook: bytes, wrong shapes, wrong types; each refused with a 4xx, none a 5xx.
    let url = format!("{}/api/pbx/webhook/{TOKEN}", rig.srv.url);
    for seed in 0..20u64 {
        let bytes = noise(seed, 500);
        for ct in ["application/json", "application/x-www-form-urlencoded"] {
            let status = rig
                .http
                .post(&url)
                .header("content-type", ct)
                .body(bytes.clone())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert!((400..500).contains(&status), "seed {seed} {ct}: {status}");
        }
    }
    for body in [
        json!({"event": "newCall"}),
        json!({"event": "newCall", "callId": "zc-typed", "from": []}),
        json!({"event": "newCall", "callId": {"id": 1}, "from": "1"}),
        json!({"event": "newCall", "callId": "zc-typed", "from": "1", "user": [201]}),
        json!({"event": "newCall", "callId": "x".repeat(300), "from": "1"}),
        json!({"event": "newCall", "callId": "zc-evil", "from": "1", "user": vec!["201"; 100]}),
        json!({"event": "answer", "callId": "zc-none"}),
        json!(["newCall"]),
    ] {
        let status = rig.webhook(body.clone()).await;
        assert!((400..500).contains(&status), "{body}: {status}");
    }

    // Nothing above was a call; the server serves and every link is still up.
    let (status, ready) = rig.agent.get("/readyz").await;
    assert_eq!(status, 200, "{ready}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logged = rig
        .srv
        .store()
        .calls_between(None, None, 100)
        .await
        .unwrap();
    assert!(logged.is_empty(), "garbage made calls: {logged:?}");

    // And a real call through each still pops and logs once.
    for (i, adapter) in ADAPTERS.iter().enumerate() {
        let (pop, up) = rig.call(adapter, 50 + i as u32, "0773629999").await;
        assert_eq!(
            pop["candidates"][0]["name"], "舞鶴 九子",
            "{adapter}: {pop}"
        );
        assert_eq!(up["event"], "answered_here", "{adapter}: {up}");
    }
    let calls = rig.ended(ADAPTERS.len()).await;
    assert_eq!(calls.len(), ADAPTERS.len(), "{calls:?}");
    assert!(
        calls
            .iter()
            .all(|c| c.outcome.as_deref() == Some("answered")),
        "{calls:?}"
    );
    rig.srv.stop().await;
}

/// Faults on every adapter, then every script replayed three times: the call log ends with
/// exactly the calls that happened, each once, and nobody's screen pops twice.
///
/// - AMI: a call answered, then half a packet and the connection closed; the PBX comes back
///   restarted (the call gone, new Uniqueids from then on).
/// - ARI: a call answered, the WebSocket closed; Asterisk comes back with the call gone.
/// - Webhook: every request of a call sent three times, as a PBX that retries does.
async fn faults_on_every_adapter(engine: &str) {
    let mut rig = rig(engine).await;

    // AMI, cut mid-call.
    let cut = ScriptCall::new(60, "0773628888", "201");
    rig.ami.send(cut.ring());
    let pop = rig.ws.pop_with_record(WAIT).await.expect("ami pop");
    rig.ami.send(cut.answer(2));
    rig.update(&pop, "answered_here").await;
    rig.ami
        .send(b"Event: Hangup\r\nChannel: PJSIP/trunk-0000003c\r\nUniqueid: 1700000000.60\r\nLink");
    rig.ami.set_listing(Vec::new());
    rig.ami.close();
    rig.ami.wait_login().await;
    let ended = rig.update(&pop, "ended").await;
    assert_eq!(ended["outcome"], "answered", "{ended}");

    // ARI, cut mid-call.
    let caller = channel(
        "1764374400.70",
        "PJSIP/trunk-00000070",
        "Ring",
        "0773629999",
    );
    let leg = channel("1764374400.71", "PJSIP/201-00000071", "Down", "201");
    rig.ari
        .send(json!({"type": "ChannelCreated", "channel": caller}));
    rig.ari
        .send(json!({"type": "ChannelCreated", "channel": leg}));
    rig.ari
        .send(json!({"type": "Dial", "dialstatus": "", "caller": caller, "peer": leg}));
    let pop = rig.ws.pop_with_record(WAIT).await.expect("ari pop");
    rig.ari
        .send(json!({"type": "Dial", "dialstatus": "ANSWER", "caller": caller, "peer": leg}));
    rig.update(&pop, "answered_here").await;
    *rig.ari.channels.lock().unwrap() = json!([]);
    rig.ari.send_text("\"CLOSE\"".into());
    rig.ari.wait_connect().await;
    let ended = rig.update(&pop, "ended").await;
    assert_eq!(ended["outcome"], "answered", "{ended}");

    // A call through each adapter, each script sent three times over.
    let mut pops = 0;
    for (i, adapter) in ADAPTERS.iter().enumerate() {
        let n = 80 + i as u32;
        rig.call(adapter, n, "0773628888").await;
        pops += 1;
        for _ in 0..2 {
            match *adapter {
                "ami" => {
                    let c = ScriptCall::new(n, "0773628888", "201");
                    rig.ami.send(c.ring() + &c.answer(3) + &c.hangup());
                }
                "ari" => {
                    let caller = channel(
                        &format!("1764374400.{n}"),
                        &format!("PJSIP/trunk-{n:08x}"),
                        "Ring",
                        "0773628888",
                    );
                    let leg = channel(
                        &format!("1764374400.{}", n + 1000),
                        &format!("PJSIP/201-{:08x}", n + 1000),
                        "Down",
                        "201",
                    );
                    for ev in [
                        json!({"type": "ChannelCreated", "channel": caller}),
                        json!({"type": "ChannelCreated", "channel": leg}),
                        json!({"type": "Dial", "dialstatus": "", "caller": caller, "peer": leg}),
                        json!({"type": "Dial", "dialstatus": "ANSWER", "caller": caller, "peer": leg}),
                        json!({"type": "ChannelDestroyed", "cause": 16, "channel": leg}),
                        json!({"type": "ChannelDestroyed", "cause": 16, "channel": caller}),
                    ] {
                        rig.ari.send(ev);
                    }
                }
                _ => {
                    let base = json!({"from": "0773628888", "to": "0773689225", "direction": "in", "callId": format!("zc-{n}")});
                    for extra in [
                        json!({"event": "newCall", "user": ["201"]}),
                        json!({"event": "answer", "answeringNumber": "201"}),
                        json!({"event": "hangup", "cause": "normalClearing"}),
                    ] {
                        let mut b = base.clone();
                        b.as_object_mut()
                            .unwrap()
                            .extend(extra.as_object().unwrap().clone());
                        assert_eq!(rig.webhook(b).await, 200);
                    }
                }
            }
        }
        // The replays are behind a marker: a fresh call through the same adapter.
        let (marker, _) = rig.call(adapter, n + 10, "0773629999").await;
        pops += 1;
        assert_eq!(
            marker["candidates"][0]["name"], "舞鶴 九子",
            "{adapter}: the next pop after the replays is the marker, not a replayed call: {marker}"
        );
    }

    // Nothing else popped; the log holds exactly the calls that happened.
    while let Some(m) = rig.ws.next_json(Duration::from_millis(300)).await {
        assert_ne!(m["type"], "screen_pop", "a replay popped again: {m}");
    }
    let calls = rig.ended(2 + pops).await;
    let mut ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "ami:1700000000.60",
            "ami:1700000000.80",
            "ami:1700000000.90",
            "ari:1764374400.70",
            "ari:1764374400.81",
            "ari:1764374400.91",
            "webhook:zc-82",
            "webhook:zc-92",
        ],
        "{calls:?}"
    );
    for c in &calls {
        assert_eq!(c.outcome.as_deref(), Some("answered"), "{c:?}");
        assert_eq!(c.answered_by.as_deref(), Some("201"), "{c:?}");
        assert!(c.resident_id.is_some(), "{c:?}");
        let cut_off = c.id.ends_with(".60") || c.id.ends_with(".70");
        assert_eq!(
            c.end_estimated, cut_off,
            "only the calls cut off have an estimated end: {c:?}"
        );
    }
    rig.srv.stop().await;
}

#[tokio::test]
async fn faults_on_every_adapter_log_each_call_once_sqlite() {
    faults_on_every_adapter("sqlite").await;
}

#[tokio::test]
async fn faults_on_every_adapter_log_each_call_once_postgres() {
    if require_postgres() {
        faults_on_every_adapter("postgres").await;
    }
}
