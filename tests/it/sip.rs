//! A PBX without AMI reports calls through SIP dialog events (RFC 4235): the server subscribes
//! to the agent's extension at a real SIP peer (sipp playing the PBX, the scenarios in
//! testdata/sip/) and the agent gets the pop of the ringing call, and the call log one row.
//! Also: a digest challenge, a retransmitted NOTIFY, unreadable bodies, a subscription the PBX
//! ends, random bytes into the SIP parser, and garbage datagrams to the SIP port.

use crate::common::*;
use madoguchi::domain::{Extension, Role};
use madoguchi::settings::Settings;
use madoguchi::store::testing::TestDb;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// sipp's path, or None after saying "skipped: sipp not found" (a failure under
/// MADOGUCHI_REQUIRE_ALL=1).
pub(crate) fn sipp_or_skip() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("sipp"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None => {
            if std::env::var("MADOGUCHI_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                panic!("MADOGUCHI_REQUIRE_ALL=1 but sipp not found (Debian package sip-tester)");
            }
            eprintln!("skipped: sipp not found");
            None
        }
    }
}

/// A UDP port free on 127.0.0.1 a moment ago.
pub(crate) fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

/// sipp playing the PBX: a UAS scenario on 127.0.0.1, for `calls` subscriptions.
pub(crate) struct Sipp {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl Sipp {
    pub fn start(sipp: &PathBuf, scenario: &str, port: u16, calls: u32) -> Sipp {
        let path =
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/sip")).join(scenario);
        // sipp writes its error log beside where it runs: a folder of its own.
        let dir =
            std::env::temp_dir().join(format!("madoguchi-sipp-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("sipp folder");
        let child = tokio::process::Command::new(sipp)
            .current_dir(&dir)
            .arg("-sf")
            .arg(&path)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-cp", &free_udp_port().to_string()])
            .args(["-m", &calls.to_string(), "-nostdin", "-trace_err"])
            .args(["-timeout", "40s", "-timeout_error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("sipp starts");
        Sipp { child, dir }
    }

    /// sipp's exit status (0: every call of the scenario went as written), after at most `wait`.
    pub async fn finish(mut self, wait: Duration) -> (Option<i32>, String) {
        let status = tokio::time::timeout(wait, self.child.wait()).await;
        let code = match status {
            Ok(Ok(s)) => s.code(),
            _ => {
                let _ = self.child.kill().await;
                None
            }
        };
        let mut errors = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                errors.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        (code, errors)
    }
}

/// A server on SQLite whose SIP link subscribes to `pbx_port` on 127.0.0.1 for agent2001's
/// extension 2001 (the user exists before the link starts).
async fn server(pbx_port: u16, sip_port: u16, username: &str, password: &str) -> TestServer {
    let db = TestDb::new("sqlite").await.expect("test database");
    let hash = madoguchi::store::users::hash_password("agent2001").expect("hash");
    db.store
        .upsert_user(
            "agent2001",
            "agent2001",
            &hash,
            Role::Agent,
            Some(&Extension::parse("2001").unwrap()),
        )
        .await
        .expect("user");
    let store = db.store.clone();
    let (username, password) = (username.to_string(), password.to_string());
    TestServer::start_with(db, store, move |s: &mut Settings| {
        s.sip_pbx = Some(format!("127.0.0.1:{pbx_port}"));
        s.sip_listen = Some(format!("127.0.0.1:{sip_port}"));
        s.sip_username = username;
        s.sip_password = password;
    })
    .await
}

/// Waits until every call in the log has ended, and returns them.
async fn ended_calls(srv: &TestServer) -> Vec<madoguchi::store::calls::CallRow> {
    let mut calls = Vec::new();
    for _ in 0..100 {
        calls = srv.store().calls_between(None, None, 10).await.unwrap();
        if !calls.is_empty() && calls.iter().all(|c| c.outcome.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    calls
}

/// One scenario end to end: the agent is on line before the PBX answers, the pop names
/// `caller`, the log ends with one answered call by 2001, sipp saw everything it expected.
/// Returns the link as an admin's `/readyz` shows it (None when sipp is missing).
async fn one_answered_call(
    scenario: &str,
    calls: u32,
    caller: &str,
    user: &str,
    pw: &str,
) -> Option<serde_json::Value> {
    let sipp = sipp_or_skip()?;
    let pbx_port = free_udp_port();
    let srv = server(pbx_port, free_udp_port(), user, pw).await;
    let agent = srv.login("agent2001").await;
    let mut ws = agent.ws().await;
    // The PBX comes up after madoguchi: the SUBSCRIBE's retransmission finds it.
    let peer = Sipp::start(&sipp, scenario, pbx_port, calls);
    let pop = ws
        .pop_with_record(Duration::from_secs(20))
        .await
        .expect("a screen pop");
    assert_eq!(pop["type"], "screen_pop");
    assert_eq!(pop["call"]["caller_number"], caller, "{pop}");
    let id = pop["call"]["id"].as_str().unwrap_or("").to_string();
    assert!(id.starts_with("sip:2001-"), "{pop}");
    let (code, errors) = peer.finish(Duration::from_secs(30)).await;
    assert_eq!(code, Some(0), "sipp ran {scenario} with errors: {errors}");
    let calls_logged = ended_calls(&srv).await;
    assert_eq!(calls_logged.len(), 1, "{calls_logged:?}");
    let c = &calls_logged[0];
    assert_eq!(c.id, id);
    assert_eq!(c.outcome.as_deref(), Some("answered"), "{c:?}");
    assert_eq!(c.answered_by.as_deref(), Some("2001"));
    assert_eq!(c.agents_offered, vec!["2001".to_string()]);
    // No second pop for the same call (a retransmission, a resubscription).
    while let Some(m) = ws.next_json(Duration::from_millis(300)).await {
        assert_ne!(m["type"], "screen_pop", "a second pop: {m}");
    }
    let admin = {
        srv.add_user("sipadmin", Role::Admin, None).await;
        srv.login("sipadmin").await
    };
    let (_, ready) = admin.get("/readyz").await;
    let sip = ready["pbx_links"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "sip"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(sip["detail"]["extensions"], 1, "{ready}");
    srv.stop().await;
    Some(sip)
}

#[tokio::test]
async fn sip_dialog_events_pop_the_caller_and_log_one_answered_call() {
    // The shared notifier: idle, early with +15551234567, confirmed, terminated.
    one_answered_call("pbx_notifier_uas.xml", 1, "+15551234567", "", "").await;
}

#[tokio::test]
async fn sip_subscriptions_answer_a_digest_challenge() {
    if let Some(sip) = one_answered_call(
        "auth_notifier_uas.xml",
        1,
        "0773625555",
        "cti",
        "s3cret-sip",
    )
    .await
    {
        assert_eq!(sip["detail"]["auth_failures"], 0, "{sip}");
    }
}

#[tokio::test]
async fn sip_wrong_credentials_are_not_retried_at_once() {
    let Some(sipp) = sipp_or_skip() else { return };
    let pbx_port = free_udp_port();
    let srv = server(pbx_port, free_udp_port(), "cti", "wrong").await;
    let peer = Sipp::start(&sipp, "auth_notifier_uas.xml", pbx_port, 1);
    let (code, _) = peer.finish(Duration::from_secs(20)).await;
    assert_ne!(code, Some(0), "sipp's check of the credentials must fail");
    assert!(srv
        .store()
        .calls_between(None, None, 10)
        .await
        .unwrap()
        .is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn sip_retransmitted_notifies_count_once_and_the_subscription_is_refreshed() {
    if let Some(sip) =
        one_answered_call("retransmit_notifier_uas.xml", 1, "0773625555", "", "").await
    {
        let d = &sip["detail"];
        assert!(d["notifies_retransmitted"].as_u64() >= Some(1), "{sip}");
        assert!(d["documents_stale"].as_u64() >= Some(1), "{sip}");
    }
}

#[tokio::test]
async fn sip_malformed_bodies_are_answered_and_ignored() {
    if let Some(sip) =
        one_answered_call("malformed_notifier_uas.xml", 1, "0773625555", "", "").await
    {
        assert_eq!(sip["detail"]["bodies_malformed"], 3, "{sip}");
    }
}

#[tokio::test]
async fn sip_a_subscription_the_pbx_ends_is_made_again() {
    if let Some(sip) =
        one_answered_call("terminated_notifier_uas.xml", 2, "0773625555", "", "").await
    {
        assert!(sip["reconnects"].as_u64() >= Some(1), "{sip}");
    }
}

/// A deterministic generator (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Real NOTIFYs (the scenario's early one, as the network carries it) to mutate.
fn real_notifies() -> Vec<Vec<u8>> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<dialog-info xmlns=\"urn:ietf:params:xml:ns:dialog-info\" version=\"1\" state=\"full\" entity=\"sip:2001@127.0.0.1\">\n <dialog id=\"2001\" direction=\"recipient\">\n  <remote>\n   <identity display=\"ACME Corp\">sip:+15551234567@127.0.0.1</identity>\n   <target uri=\"sip:+15551234567@127.0.0.1\"/>\n  </remote>\n  <state>early</state>\n </dialog>\n</dialog-info>\n";
    let notify = |cseq: u32, state: &str, body: &str| {
        format!(
            "NOTIFY sip:madoguchi@127.0.0.1:5071 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-17857-1-5\r\nFrom: <sip:2001@127.0.0.1>;tag=17857PBX1\r\nTo: <sip:madoguchi@127.0.0.1>;tag=17859CTI1\r\nCall-ID: 1-17859@127.0.0.1\r\nCSeq: {cseq} NOTIFY\r\nContact: <sip:2001@127.0.0.1:5070>\r\nMax-Forwards: 70\r\nEvent: dialog\r\nSubscription-State: {state}\r\nContent-Type: application/dialog-info+xml\r\nContent-Length:   {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    vec![
        notify(2, "active;expires=599", body),
        notify(4, "terminated;reason=noresource", &body.replace("early", "terminated")),
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKa\r\nFrom: <sip:madoguchi@127.0.0.1>;tag=a\r\nTo: <sip:2001@127.0.0.1>;tag=b\r\nCall-ID: x@madoguchi\r\nCSeq: 1 SUBSCRIBE\r\nWWW-Authenticate: Digest realm=\"asterisk\",nonce=\"1/2\",qop=\"auth\"\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ]
}

/// Random bytes and mutated real messages through the SIP parser and the dialog-info reader
/// never panic (they are answered, refused or dropped).
#[test]
fn sip_parsing_survives_random_and_mutated_input() {
    use madoguchi::pbx::sip::{dialog_info, link::parse_message};
    let mut rng = Rng(0x5eed_0f51_5119);
    let seeds = real_notifies();
    let mut parsed = 0;
    for round in 0..6_000 {
        let bytes: Vec<u8> = if round % 3 == 0 {
            let n = rng.below(600);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let mut b = seeds[rng.below(seeds.len())].clone();
            for _ in 0..=rng.below(8) {
                if b.is_empty() {
                    break;
                }
                let at = rng.below(b.len());
                match rng.below(5) {
                    0 => b[at] = rng.next() as u8,
                    1 => {
                        b.remove(at);
                    }
                    2 => b.insert(at, b"<>\r\n:;=\"&/ "[rng.below(11)]),
                    3 => b.truncate(at),
                    _ => {
                        let end = (at + rng.below(40)).min(b.len());
                        let chunk = b[at..end].to_vec();
                        b.splice(at..at, chunk);
                    }
                }
            }
            b
        };
        if let Ok(rsip::SipMessage::Request(req)) = parse_message(&bytes) {
            parsed += 1;
            let _ = dialog_info::parse(&req.body);
        }
        let _ = dialog_info::parse(&bytes);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let _ = dialog_info::parse(&bytes[at + 4..]);
        }
    }
    assert!(
        parsed > 100,
        "mutations too wild to reach the body reader: {parsed}"
    );
}

/// Garbage datagrams to the SIP port change nothing: the server keeps serving, and counts them.
#[tokio::test]
async fn sip_garbage_datagrams_leave_the_server_serving() {
    // No PBX answers on this port: only the garbage matters here.
    let sip_port = free_udp_port();
    let srv = server(free_udp_port(), sip_port, "", "").await;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = Rng(42);
    let seeds = real_notifies();
    for i in 0..400 {
        let bytes: Vec<u8> = match i % 4 {
            0 => (0..rng.below(1400) + 1).map(|_| rng.next() as u8).collect(),
            1 => {
                let mut b = seeds[0].clone();
                let at = rng.below(b.len());
                b.truncate(at.max(1));
                b
            }
            2 => seeds[i % seeds.len()].clone(),
            _ => b"\r\n\r\n".to_vec(),
        };
        sock.send_to(&bytes, ("127.0.0.1", sip_port)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{}/healthz", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    srv.add_user("sipadmin", Role::Admin, None).await;
    let admin = srv.login("sipadmin").await;
    let (_, ready) = admin.get("/readyz").await;
    let sip = ready["pbx_links"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["name"] == "sip"))
        .cloned()
        .expect("the SIP link in /readyz");
    assert_eq!(sip["up"], false, "no PBX answered: {sip}");
    assert!(
        sip["detail"]["datagrams_not_sip"].as_u64().unwrap_or(0) >= 50,
        "{sip}"
    );
    // A real NOTIFY of no subscription was answered 481, and the link still reads datagrams.
    assert!(
        sip["detail"]["notifies_of_no_subscription"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{sip}"
    );
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&seeds[0], ("127.0.0.1", sip_port)).unwrap();
    let mut buf = [0u8; 4096];
    let mut answered = false;
    while let Ok(n) = sock.recv(&mut buf) {
        if buf[..n].starts_with(b"SIP/2.0 481") {
            answered = true;
            break;
        }
    }
    assert!(answered, "the link still answers after the garbage");
    assert!(srv
        .store()
        .calls_between(None, None, 10)
        .await
        .unwrap()
        .is_empty());
    srv.stop().await;
}
