//! The agent screen in a real browser (Debian's Chromium, headless, through chromedriver): log
//! in, a call comes through the fake PBX, the resident pops, the agent saves an inquiry, and the
//! next call from that number shows it in the history. The resume: a page opened while its phone
//! rings shows that call, and a page whose server restarted is told of the gap, ends the call it
//! can no longer vouch for and shows the one ringing now. Also: the page's files (ES modules in
//! subfolders of web/) are all served, without a browser.

use crate::common::*;
use crate::pbx::{ScriptCall, ScriptedPbx};
use crate::restart::ServerProcess;
use crate::webdriver::{find_browser, Driver};
use madoguchi::domain::{Extension, Role};
use madoguchi::store::testing::{TempDir, TestDb};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// chromedriver and Chromium, or None (and why) when this machine has none; under
/// MADOGUCHI_REQUIRE_ALL=1 a missing browser fails the test instead.
pub(crate) fn browser_or_skip() -> Option<(String, String)> {
    match find_browser() {
        Ok(found) => Some(found),
        Err(why) => {
            if std::env::var("MADOGUCHI_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                panic!("MADOGUCHI_REQUIRE_ALL=1 but {why}");
            }
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Logs in through the form (password = username) and waits for the live connection.
async fn log_in(d: &Driver, url: &str, username: &str) {
    d.goto(url).await;
    let user = d.find("#login-username", WAIT).await.expect("login form");
    d.type_into(&user, username).await;
    let pw = d
        .find("#login-password", WAIT)
        .await
        .expect("password field");
    d.type_into(&pw, username).await;
    let submit = d.find("#login-submit", WAIT).await.expect("login button");
    d.click(&submit).await;
    let online = d
        .wait_for("const e = document.querySelector('#conn-state'); return e && e.dataset.state === 'online';", WAIT)
        .await;
    assert_eq!(online, json!(true), "the screen connects its WebSocket");
}

/// The captured call from 123 to extension 777 (fixture 01) while it rings, and from the
/// agent's pick-up on (their leg going Up) to the end, under another Linkedid when `n` is not 0
/// (so each n is a new call from the same caller). Returns (ringing, answer, call id).
fn call_from_123(n: u32) -> (Vec<u8>, Vec<u8>, String) {
    let capture = String::from_utf8_lossy(&fixture("01_"))
        .replace("1514295827.372", &format!("{}.372", 1514295827 + n * 1000))
        .replace("1514295839.373", &format!("{}.373", 1514295839 + n * 1000));
    let mut at = 0;
    let pick_up = loop {
        let Some(len) = capture[at..].find("\r\n\r\n") else {
            panic!("no pick-up in fixture 01");
        };
        let packet = &capture[at..at + len];
        if packet.contains("Event: Newstate")
            && packet.contains("Channel: SIP/777-")
            && packet.contains("ChannelStateDesc: Up")
        {
            break at;
        }
        at += len + 4;
    };
    let (ringing, answer) = capture.as_bytes().split_at(pick_up);
    (
        ringing.to_vec(),
        answer.to_vec(),
        format!("ami:{}.372", 1514295827 + n * 1000),
    )
}

/// The phase of the screen of call `id` (ringing, talking, ended…), or null when the page shows
/// no screen for it: the active screen (#pop), or a tab for one in the background.
async fn call_phase(d: &Driver, id: &str) -> Value {
    d.script(
        "const id = arguments[0]; \
         const pop = document.querySelector('#pop'); \
         if (pop && pop.dataset.callId === id) return pop.dataset.phase; \
         const tab = [...document.querySelectorAll('[data-testid=session-tab]')].find(t => t.dataset.callId === id); \
         return tab ? tab.dataset.phase : null;",
        vec![json!(id)],
    )
    .await
}

/// Waits until call `id` shows in `phase`; returns the last phase seen.
async fn wait_phase(d: &Driver, id: &str, phase: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = call_phase(d, id).await;
        if now == json!(phase) || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Console errors from the page, leaving out failed fetches the page expects and handles (the
/// 401 of GET /api/me before login, and a server that is down while the page reconnects).
pub(crate) async fn page_errors(d: &Driver) -> Vec<String> {
    d.console_errors()
        .await
        .into_iter()
        .filter(|m| {
            !m.contains("Failed to load resource") && !m.contains("WebSocket connection to")
        })
        .collect()
}

#[tokio::test]
async fn agent_sees_pop_and_saves_an_inquiry() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = FakeAsterisk::start().await;
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.store()
        .insert_residents(&[resident(20, "岡本 清", "オカモト　キヨシ", &["123"])])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, pbx.logins.recv())
        .await
        .expect("AMI login");

    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "sato").await;

    // A call from 123 rings extension 777 (the real capture, up to the answer).
    let capture = fixture("01_");
    let (ringing, rest) = split_before(&capture, "Event: AgentConnect");
    pbx.send(&ringing);
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("the pop shows a resident");
    assert_eq!(d.text(&name).await, "岡本 清");
    let number = d
        .find("[data-testid=caller-number]", WAIT)
        .await
        .expect("caller number");
    assert!(d.text(&number).await.contains("123"));
    pbx.send(&rest);

    // The agent writes down what was asked.
    let note = "2回目の送迎バスの時間を確認したい";
    d.script(
        "const s = document.querySelector('#inquiry-category'); s.value = 'transport'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    let field = d.find("#inquiry-note", WAIT).await.expect("note field");
    d.type_into(&field, note).await;
    let save = d.find("#inquiry-submit", WAIT).await.expect("save button");
    d.click(&save).await;
    let saved = d
        .wait_for(
            &format!("return [...document.querySelectorAll('[data-testid=history-item]')].some(e => e.textContent.includes({note:?}));"),
            WAIT,
        )
        .await;
    assert_eq!(saved, json!(true), "the saved inquiry shows in the history");
    let (_, rec) = srv.login("sato").await.get("/api/calls").await;
    assert_eq!(rec[0]["id"], "ami:1514295827.372");

    // The call ended: after-call work, which the agent ends by hand once the note is saved
    // (in after-call work the next call would wait as a tab).
    let acw = d
        .wait_for(
            "return document.querySelector('#desk').dataset.state === 'acw';",
            WAIT,
        )
        .await;
    assert_eq!(acw, json!(true), "after-call work follows the call");
    d.script(
        "const s = document.querySelector('#agent-state'); s.value = 'ready'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    let ready = d
        .wait_for(
            "return document.querySelector('#desk').dataset.state === 'ready';",
            WAIT,
        )
        .await;
    assert_eq!(ready, json!(true), "ready again");

    // The next call from the same number: a new Linkedid, same caller.
    let again = String::from_utf8_lossy(&capture)
        .replace("1514295827.372", "1514296827.372")
        .replace("1514295839.373", "1514296839.373");
    let (ringing2, _) = split_before(again.as_bytes(), "Event: AgentConnect");
    pbx.send(&ringing2);
    let popped = d
        .wait_for(
            "const p = document.querySelector('#pop'); return p && p.dataset.callId;",
            WAIT,
        )
        .await;
    let popped = d
        .wait_for(
            "const p = document.querySelector('#pop[data-call-id=\"ami:1514296827.372\"]'); return !!p;",
            WAIT,
        )
        .await
        .as_bool()
        .unwrap_or(false)
        || popped == json!("ami:1514296827.372");
    assert!(popped, "the second call pops");
    let in_history = d
        .wait_for(
            &format!("return [...document.querySelectorAll('#pop [data-testid=history-item], [data-testid=history-item]')].some(e => e.textContent.includes({note:?}));"),
            WAIT,
        )
        .await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-screen.png");
    d.screenshot(&shot).await;
    assert_eq!(
        in_history,
        json!(true),
        "the next pop carries the inquiry (screenshot: {})",
        shot.display()
    );
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// Every stylesheet and module the page loads is served from its subfolder with its content
/// type, following the imports from the entry module; an unknown file is a 404 and a path that
/// climbs out of web/ is refused.
#[tokio::test]
async fn the_page_and_every_module_it_imports_are_served() {
    let srv = TestServer::start("sqlite", None).await;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{}{path}", srv.url);
        async move {
            let res = http.get(url).send().await.expect("GET");
            let status = res.status().as_u16();
            let kind = res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            (status, kind, res.text().await.unwrap_or_default())
        }
    };
    let (status, kind, index) = get("/".into()).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(
        !index.contains("<script>") && !index.contains("<script type=\"module\">"),
        "no inline script"
    );
    let attr = |tag: &str, name: &str| -> Vec<String> {
        index
            .split(tag)
            .skip(1)
            .filter_map(|rest| rest.split_once(&format!("{name}=\"")))
            .filter_map(|(_, v)| v.split_once('"').map(|(v, _)| v.to_string()))
            .filter(|v| v.starts_with("/assets/"))
            .collect()
    };
    let styles = attr("<link rel=\"stylesheet\"", "href");
    assert!(
        styles.iter().any(|s| s.starts_with("/assets/css/")),
        "{styles:?}"
    );
    for href in styles {
        let (status, kind, _) = get(href.clone()).await;
        assert_eq!(status, 200, "{href}");
        assert!(kind.starts_with("text/css"), "{href}: {kind}");
    }
    let icons = attr("<link rel=\"icon\"", "href");
    assert_eq!(icons, ["/assets/favicon.svg"], "a file, not a data: URL");
    let (status, kind, _) = get(icons[0].clone()).await;
    assert_eq!((status, kind.as_str()), (200, "image/svg+xml"));
    let mut modules = attr("<script type=\"module\"", "src");
    assert_eq!(modules, ["/assets/js/app.js"]);
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = modules.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let (status, kind, body) = get(path.clone()).await;
        assert_eq!(status, 200, "{path}");
        assert!(kind.starts_with("text/javascript"), "{path}: {kind}");
        let dir = &path[..path.rfind('/').expect("a folder") + 1];
        for line in body.lines().filter(|l| l.starts_with("import ")) {
            let spec = line
                .rsplit_once(" from \"")
                .and_then(|(_, s)| s.split_once('"'))
                .map(|(s, _)| s)
                .unwrap_or_else(|| panic!("{path}: an import without from: {line}"));
            let spec = spec
                .strip_prefix("./")
                .unwrap_or_else(|| panic!("{path}: {spec}"));
            modules.push(format!("{dir}{spec}"));
        }
    }
    for module in [
        "app", "api", "live", "calls", "banner", "resident", "search", "i18n",
    ] {
        assert!(
            seen.contains(&format!("/assets/js/{module}.js")),
            "{module}: {seen:?}"
        );
    }

    assert_eq!(get("/assets/js/nope.js".into()).await.0, 404);
    assert_eq!(get("/assets/app.js".into()).await.0, 404, "moved to js/");
    assert_eq!(get("/assets/js%2F..%2F..%2FCargo.toml".into()).await.0, 400);
    assert_eq!(get("/assets/js%2F..%2Findex.html".into()).await.0, 400);
    srv.stop().await;
}

/// The agent opens the screen while the phone already rings: the pop went out to nobody, and
/// the hello's live calls bring the call, with the caller's record, onto the new page.
#[tokio::test]
async fn a_page_opened_while_its_phone_rings_shows_the_call() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = FakeAsterisk::start().await;
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.store()
        .insert_residents(&[resident(20, "岡本 清", "オカモト　キヨシ", &["123"])])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, pbx.logins.recv())
        .await
        .expect("AMI login");

    // The phone rings before any screen is open; a socket of the agent's sees the pop go out.
    let mut ws = srv.login("sato").await.ws().await;
    let (ringing, answer, call_id) = call_from_123(0);
    pbx.send(&ringing);
    let pop = ws.next_json(WAIT).await.expect("the pop goes out");
    assert_eq!(pop["type"], "screen_pop");
    drop(ws);

    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "sato").await;
    assert_eq!(
        wait_phase(&d, &call_id, "ringing").await,
        json!("ringing"),
        "the ringing call shows on the page opened after its pop"
    );
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("with the caller's record");
    assert_eq!(d.text(&name).await, "岡本 清");

    // And it goes on like any pop: the answer and the hang-up reach it.
    pbx.send(&answer);
    assert_eq!(wait_phase(&d, &call_id, "ended").await, json!("ended"));
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// A TCP relay in front of the server, so the page keeps one address while the server behind
/// it is killed and another started: cut, it drops every connection and refuses new ones;
/// opened, it relays to the server it is given.
struct Relay {
    url: String,
    /// Where new connections go; None while cut.
    target: Arc<Mutex<Option<String>>>,
    /// The relayed connections, to drop them on a cut.
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(target: &str) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let relay = Relay {
            url,
            target: Arc::new(Mutex::new(Some(target.to_string()))),
            conns: Arc::default(),
        };
        let (target, conns) = (relay.target.clone(), relay.conns.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Some(to) = target.lock().expect("relay target").clone() else {
                    continue; // cut: the page's attempt fails as against a dead server
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("relay conns").push(task.abort_handle());
            }
        });
        relay
    }

    fn cut(&self) {
        *self.target.lock().expect("relay target") = None;
        for conn in self.conns.lock().expect("relay conns").drain(..) {
            conn.abort();
        }
    }

    fn open(&self, server_url: &str) {
        *self.target.lock().expect("relay target") =
            Some(server_url.trim_start_matches("http://").to_string());
    }
}

/// The server is killed (SIGKILL) under a page that shows two ringing calls and restarted on
/// the same database. Meanwhile one of those calls ended, the other still rings, and a third
/// call came in. The page reconnects only once the new server knows all that; it resumes with
/// its seq and the old epoch, is told of the gap, marks the ended call as ended while it was
/// away, keeps the one still ringing, and shows the new one with its record.
#[tokio::test]
async fn a_page_resumes_across_a_server_restart() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let db = TestDb::new("sqlite").await.expect("database");
    let spool = TempDir::new("spool").expect("spool");
    let hash = madoguchi::store::users::hash_password("sato").expect("hash");
    db.store
        .upsert_user(
            "sato",
            "sato",
            &hash,
            Role::Agent,
            Some(&Extension::parse("777").expect("extension")),
        )
        .await
        .expect("user");
    db.store
        .insert_residents(&[
            resident(20, "岡本 清", "オカモト　キヨシ", &["0773-62-1234"]),
            resident(21, "舞鶴 花子", "マイヅル　ハナコ", &["0773-62-5678"]),
        ])
        .await
        .unwrap();
    let mut pbx = ScriptedPbx::start().await;
    let first = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let relay = Relay::start(first.url.trim_start_matches("http://")).await;

    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &relay.url, "sato").await;
    let stays = ScriptCall::new(1, "0773621234", "777");
    let ends = ScriptCall::new(2, "0773620002", "777");
    let (stays_id, ends_id) = (format!("ami:{}", stays.id), format!("ami:{}", ends.id));
    pbx.send(stays.ring());
    assert_eq!(wait_phase(&d, &stays_id, "ringing").await, json!("ringing"));
    pbx.send(ends.ring());
    assert_eq!(wait_phase(&d, &ends_id, "ringing").await, json!("ringing"));
    // The agent starts a note on the second, so its screen stays whatever happens to the call.
    let field = d.find("#inquiry-note", WAIT).await.expect("note field");
    d.type_into(&field, "折り返し希望").await;

    // The server dies; the page loses it and cannot reach any server for now.
    relay.cut();
    first.kill9();
    let down = d
        .wait_for(
            "return document.querySelector('#conn-state').dataset.state !== 'online';",
            WAIT,
        )
        .await;
    assert_eq!(down, json!(true), "the page sees its server go");

    // A new server on the same database. The PBX still lists the first call; the second is
    // gone; a third rings while the page is away.
    pbx.set_listing(stays.listing(false));
    let second = ServerProcess::start(&db.url, &pbx.addr, &spool.0).await;
    pbx.wait_login().await;
    let agent = login(&second.url, "sato").await;
    let comes = ScriptCall::new(3, "0773625678", "777");
    let comes_id = format!("ami:{}", comes.id);
    let mut sent = false;
    let mut live = Vec::new();
    for _ in 0..100 {
        let (_ws, hello) = agent.ws_with("").await;
        live = hello["live_calls"]
            .as_array()
            .map(|l| l.iter().map(|c| c["call"]["id"].clone()).collect())
            .unwrap_or_default();
        if !sent && live == [json!(stays_id)] {
            pbx.send(comes.ring());
            sent = true;
        }
        if live.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        live,
        [json!(stays_id), json!(comes_id)],
        "the new server has resynced and the third call rings"
    );

    // Only now can the page reach the new server.
    relay.open(&second.url);
    let online = d
        .wait_for(
            "return document.querySelector('#conn-state').dataset.state === 'online';",
            Duration::from_secs(40),
        )
        .await;
    assert_eq!(online, json!(true), "the page reconnects to the new server");
    assert_eq!(
        wait_phase(&d, &comes_id, "ringing").await,
        json!("ringing"),
        "the call that came in while the page was away shows"
    );
    // It waits as a tab beside the screen with the note; the agent switches to it.
    let queued = d
        .script(
            "const t = [...document.querySelectorAll('[data-testid=session-tab]')].find(t => t.dataset.callId === arguments[0]); \
             if (!t || t.dataset.unseen !== 'true') return false; t.click(); return true;",
            vec![json!(comes_id)],
        )
        .await;
    assert_eq!(queued, json!(true), "the new call waits as a tab");
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("with its record");
    assert_eq!(d.text(&name).await, "舞鶴 花子");
    assert_eq!(
        call_phase(&d, &stays_id).await,
        json!("ringing"),
        "the call still ringing stays"
    );
    assert_eq!(
        wait_phase(&d, &ends_id, "ended").await,
        json!("ended"),
        "the call the new server does not list is no longer shown as ringing"
    );
    // Its screen says it ended unseen, with no made-up outcome or duration, and keeps the note.
    d.script(
        "[...document.querySelectorAll('[data-testid=session-tab]')].find(t => t.dataset.callId === arguments[0]).click();",
        vec![json!(ends_id)],
    )
    .await;
    let unseen = d
        .wait_for(
            &format!("const p = document.querySelector('#pop'); return !!p && p.dataset.callId === {ends_id:?} && !!p.querySelector('[data-testid=call-ended-unseen]') && !p.querySelector('#call-timer') && document.querySelector('#inquiry-note').value === '折り返し希望';"),
            WAIT,
        )
        .await;
    assert_eq!(
        unseen,
        json!(true),
        "the ended call says it ended while away"
    );
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    drop(second);
    db.cleanup().await;
}

/// A pop that went out before the ledger answered says so ("record not available yet") and
/// fills in when the record follows; a lookup that failed says the record will not come. The
/// messages are published on the agent's topic as the tracker sends them.
#[tokio::test]
async fn a_pop_without_the_record_fills_in_when_it_arrives() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.store()
        .insert_residents(&[resident(
            20,
            "岡本 清",
            "オカモト　キヨシ",
            &["0773-62-1234"],
        )])
        .await
        .unwrap();
    let api = srv.login("sato").await;
    let (_, found) = api.get("/api/residents?phone=0773621234").await;
    let id = found[0]["id"].clone();
    let (status, record) = api.get(&format!("/api/residents/{id}")).await;
    assert_eq!(status, 200);

    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "sato").await;
    let hub = &srv.running.as_ref().expect("running").state.hub;
    let topic = madoguchi::hub::agent_topic("777");
    let call = |id: &str| {
        json!({"id": id, "caller_number": "+81773621234", "caller_name": null, "queue": "Q1",
               "dialled": "0773-62-0000", "started_at": chrono::Utc::now().to_rfc3339(),
               "resident_id": null, "state": "ringing"})
    };

    let pop =
        json!({"type": "screen_pop", "call": call("t:1"), "candidates": [], "lookup": "pending"});
    hub.publish(&topic, &pop.to_string());
    assert_eq!(wait_phase(&d, "t:1", "ringing").await, json!("ringing"));
    let pending = d
        .find("[data-testid=lookup-pending]", WAIT)
        .await
        .expect("the screen says the record is still coming");
    assert!(d.text(&pending).await.contains("台帳を照会中"));
    assert!(
        d.find("#search-ticket", Duration::ZERO).await.is_none(),
        "not mistaken for an unknown caller"
    );

    let update = json!({"type": "candidates_update", "call": call("t:1"), "candidates": [record], "lookup": "ok"});
    hub.publish(&topic, &update.to_string());
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("the record fills in");
    assert_eq!(d.text(&name).await, "岡本 清");
    assert!(d
        .find("[data-testid=lookup-pending]", Duration::ZERO)
        .await
        .is_none());

    // Another call whose lookup fails: the screen says so and offers the search.
    let pop =
        json!({"type": "screen_pop", "call": call("t:2"), "candidates": [], "lookup": "pending"});
    hub.publish(&topic, &pop.to_string());
    assert_eq!(wait_phase(&d, "t:2", "ringing").await, json!("ringing"));
    d.find("[data-testid=lookup-pending]", WAIT)
        .await
        .expect("pending again");
    let failed = json!({"type": "candidates_update", "call": call("t:2"), "candidates": [], "lookup": "failed"});
    hub.publish(&topic, &failed.to_string());
    let panel = d
        .find("[data-testid=lookup-failed]", WAIT)
        .await
        .expect("the screen says the lookup failed");
    assert!(d.text(&panel).await.contains("台帳を照会できませんでした"));
    assert!(
        d.find("#search-ticket", WAIT).await.is_some(),
        "with the search"
    );
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// A fake call for the agent's topic, as the tracker sends it.
fn fake_call(id: &str, caller: &str, state: &str) -> Value {
    json!({"id": id, "caller_number": caller, "caller_name": null, "queue": "vaccine",
           "dialled": "0773-62-0000", "started_at": chrono::Utc::now().to_rfc3339(),
           "resident_id": null, "state": state})
}

/// What has the focus, and the note's text: `[id, value of #inquiry-note, shown call id]`.
async fn focus_and_note(d: &Driver) -> Value {
    d.script(
        "const n = document.querySelector('#inquiry-note'); const p = document.querySelector('#pop'); \
         return [document.activeElement && (document.activeElement.id || document.activeElement.tagName), \
                 n ? n.value : null, p ? p.dataset.callId : null];",
        vec![],
    )
    .await
}

/// At a 1366×768 desk the agent is typing the note of call A when call B pops: the note, its
/// text and the caret stay on A; B waits as a tab that says so, and the banner counts it. F2
/// goes to B, A's tab comes back to the note with everything typed, even the keys pressed
/// after B popped. Enter is a new line there; Ctrl+Enter saves.
#[tokio::test]
async fn a_new_call_waits_beside_the_note_being_typed() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.store()
        .insert_residents(&[
            resident(20, "岡本 清", "オカモト　キヨシ", &["0773-62-1234"]),
            resident(21, "舞鶴 花子", "マイヅル　ハナコ", &["0773-62-5678"]),
        ])
        .await
        .unwrap();
    let api = srv.login("sato").await;
    let mut records = Vec::new();
    for phone in ["0773621234", "0773625678"] {
        let (_, found) = api.get(&format!("/api/residents?phone={phone}")).await;
        records.push(
            api.get(&format!("/api/residents/{}", found[0]["id"]))
                .await
                .1,
        );
    }

    let d = Driver::start(&driver_bin, &chrome).await;
    d.set_window(1366, 768).await;
    log_in(&d, &srv.url, "sato").await;
    let hub = &srv.running.as_ref().expect("running").state.hub;
    let topic = madoguchi::hub::agent_topic("777");
    let pop = |id: &str, caller: &str, rec: &Value| {
        json!({"type": "screen_pop", "call": fake_call(id, caller, "ringing"), "candidates": [rec]})
            .to_string()
    };

    hub.publish(&topic, &pop("t:a", "+81773621234", &records[0]));
    assert_eq!(wait_phase(&d, "t:a", "ringing").await, json!("ringing"));
    let answered = json!({"type": "call_update", "event": "answered_here",
                          "call": fake_call("t:a", "+81773621234", "talking")});
    hub.publish(&topic, &answered.to_string());
    assert_eq!(wait_phase(&d, "t:a", "talking").await, json!("talking"));
    let note = d.find("#inquiry-note", WAIT).await.expect("note field");
    d.click(&note).await;
    d.keys("2回目の日程を").await;

    hub.publish(&topic, &pop("t:b", "+81773625678", &records[1]));
    let tab = d
        .wait_for(
            "const t = [...document.querySelectorAll('[data-testid=session-tab]')].find(t => t.dataset.callId === 't:b'); \
             return !!t && t.dataset.unseen === 'true' && t.dataset.phase === 'ringing';",
            WAIT,
        )
        .await;
    assert_eq!(tab, json!(true), "B shows as a tab marked new");
    let waiting = d
        .wait_for(
            "const w = document.querySelector('#call-banner [data-testid=calls-waiting]'); return w && w.dataset.count;",
            WAIT,
        )
        .await;
    assert_eq!(waiting, json!("1"), "the banner counts the call waiting");
    assert_eq!(
        focus_and_note(&d).await,
        json!(["inquiry-note", "2回目の日程を", "t:a"]),
        "A's note keeps its text and the caret"
    );
    // The agent goes on typing without looking: the keys land in A's note.
    d.keys("変更したい").await;
    assert_eq!(
        focus_and_note(&d).await,
        json!(["inquiry-note", "2回目の日程を変更したい", "t:a"])
    );
    let hint = d
        .script(
            "return document.querySelector('#sessions').textContent;",
            vec![],
        )
        .await;
    assert!(
        hint.as_str().unwrap_or_default().contains("F2"),
        "the switch key is shown: {hint}"
    );

    // A click on B's tab (the focus leaves the note for the tab first), then F2 back to A,
    // where nothing was lost.
    let tab_b = d
        .find("[data-testid=session-tab][data-call-id='t:b']", WAIT)
        .await
        .expect("B's tab");
    d.click(&tab_b).await;
    assert_eq!(
        d.wait_for(
            "const p = document.querySelector('#pop'); return p && p.dataset.callId;",
            WAIT
        )
        .await,
        json!("t:b")
    );
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("B's record");
    assert_eq!(d.text(&name).await, "舞鶴 花子");
    d.keys("\u{E032}").await;
    let back = d
        .wait_for(
            "const p = document.querySelector('#pop'); return !!p && p.dataset.callId === 't:a' && document.activeElement.id === 'inquiry-note';",
            WAIT,
        )
        .await;
    assert_eq!(back, json!(true), "A's screen with the caret in its note");
    d.keys("。").await;
    assert_eq!(
        focus_and_note(&d).await,
        json!(["inquiry-note", "2回目の日程を変更したい。", "t:a"])
    );

    // Enter is a new line, Ctrl+Enter saves (the category first).
    d.keys("\u{E007}").await;
    assert_eq!(
        focus_and_note(&d).await[1],
        json!("2回目の日程を変更したい。\n"),
        "Enter adds a line"
    );
    d.script(
        "const s = document.querySelector('#inquiry-category'); s.value = 'appointment_change'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    let note = d.find("#inquiry-note", WAIT).await.expect("note field");
    d.type_into(&note, "\u{E009}\u{E007}\u{E000}").await;
    let saved = d
        .wait_for(
            "return [...document.querySelectorAll('[data-testid=history-item]')].some(e => e.textContent.includes('2回目の日程を変更したい。'));",
            WAIT,
        )
        .await;
    assert_eq!(saved, json!(true), "Ctrl+Enter saves the whole note");
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// A walk-in's record is open when the phone rings: the call waits as a tab and the walk-in
/// stays. A reload (F5) while the call rings: the page comes back on that call's screen, with
/// the caller's record, the inquiry the agent had started (category and note), and both tabs.
#[tokio::test]
async fn a_reload_during_a_call_restores_its_screen_and_draft() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = FakeAsterisk::start().await;
    let srv = TestServer::start("sqlite", Some(pbx.addr.clone())).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.store()
        .insert_residents(&[resident(20, "岡本 清", "オカモト　キヨシ", &["123"])])
        .await
        .unwrap();
    tokio::time::timeout(WAIT, pbx.logins.recv())
        .await
        .expect("AMI login");

    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "sato").await;
    // A walk-in's record is open (by ticket) when the phone rings: the call waits as a tab.
    let ticket = d.find("#search-ticket", WAIT).await.expect("ticket field");
    d.type_into(&ticket, "0000001254\u{E007}").await;
    d.find("#lookup [data-testid=resident-name]", WAIT)
        .await
        .expect("the walk-in's record");
    let (ringing, _answer, call_id) = call_from_123(0);
    pbx.send(&ringing);
    assert_eq!(wait_phase(&d, &call_id, "ringing").await, json!("ringing"));
    assert!(
        d.find("#lookup", Duration::ZERO).await.is_some(),
        "the walk-in stays on screen"
    );
    d.keys("\u{E032}").await;
    assert_eq!(
        d.wait_for(
            "const p = document.querySelector('#pop'); return p && p.dataset.callId;",
            WAIT
        )
        .await,
        json!(call_id)
    );
    d.script(
        "const s = document.querySelector('#inquiry-category'); s.value = 'transport'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    let note = d.find("#inquiry-note", WAIT).await.expect("note field");
    d.type_into(&note, "送迎バスの乗り場を確認").await;

    d.refresh().await;
    let back = d
        .wait_for(
            &format!(
                "const p = document.querySelector('#pop'); const n = document.querySelector('#inquiry-note'); \
                 return !!p && p.dataset.callId === {call_id:?} && p.dataset.phase === 'ringing' && !!n && \
                 n.value === '送迎バスの乗り場を確認' && document.querySelector('#inquiry-category').value === 'transport' && \
                 document.querySelector('#conn-state').dataset.state === 'online';"
            ),
            WAIT,
        )
        .await;
    assert_eq!(
        back,
        json!(true),
        "the call's screen and its draft are back"
    );
    let tabs = d
        .script(
            "return [...document.querySelectorAll('[data-testid=session-tab]')].map(t => t.dataset.callId || 'walk-in');",
            vec![],
        )
        .await;
    assert_eq!(tabs, json!(["walk-in", call_id]), "and both tabs");
    let name = d
        .find("[data-testid=resident-name]", WAIT)
        .await
        .expect("with the caller's record");
    assert_eq!(d.text(&name).await, "岡本 清");
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// The controls whose text does not fit: inputs, selects and buttons on screen whose content is
/// wider than their box (a select by its longest option, as the open list would show it; an
/// empty input by its placeholder).
const CLIPPED: &str = "\
    const out = []; const probe = document.createElement('span'); \
    probe.style.cssText = 'position:absolute;visibility:hidden;white-space:pre'; document.body.append(probe); \
    for (const el of document.querySelectorAll('input, select, button')) { \
      if (!el.offsetParent || el.type === 'radio' || el.type === 'checkbox' || el.type === 'hidden') continue; \
      let clipped = el.scrollWidth > el.clientWidth; \
      if (el.tagName === 'SELECT') { \
        const cs = getComputedStyle(el); probe.style.font = cs.font; \
        const room = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight); \
        for (const o of el.options) { probe.textContent = o.textContent; if (probe.offsetWidth > room) clipped = true; } \
      } \
      if (el.tagName === 'INPUT' && !el.value && el.placeholder) { \
        const cs = getComputedStyle(el); probe.style.font = cs.font; probe.textContent = el.placeholder; \
        if (probe.offsetWidth > el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)) clipped = true; \
      } \
      if (clipped) out.push((el.id || el.className || el.tagName) + ': ' + (el.value || el.placeholder || el.textContent).trim().slice(0, 30)); \
    } \
    probe.remove(); return out;";

/// Where the essentials sit on the screen: each is inside the viewport, or the rectangle that
/// is not (for the failure message).
const ESSENTIALS: &str = "\
    const vh = innerHeight, vw = innerWidth, out = {}; \
    const place = (name, el) => { if (!el) { out[name] = 'missing'; return; } \
      const r = el.getBoundingClientRect(); \
      out[name] = r.height > 0 && r.top >= 0 && r.bottom <= vh && r.left >= 0 && r.right <= vw \
        ? true : `${Math.round(r.left)},${Math.round(r.top)} ${Math.round(r.width)}x${Math.round(r.height)} in ${vw}x${vh}`; }; \
    const q = (s) => document.querySelector(s); \
    place('name', q('[data-testid=resident-name]')); place('age', q('[data-testid=resident-age]')); \
    place('intent', q('[data-testid=resident-intent]')); place('transport', q('[data-testid=resident-transport]')); \
    place('booking', q('[data-testid=booking-item], [data-testid=bookings-empty]')); \
    place('follow_ups', q('[data-testid=follow-ups]')); \
    const rows = [...document.querySelectorAll('[data-testid=history-item]')]; \
    for (let i = 0; i < 3; i++) place(`contact_${i + 1}`, rows[i]); \
    return out;";

/// At a 1366×768 desk the pop shows the caller's name, age, intent, transport, booking (here
/// its empty state), open follow-ups and the last three contacts without scrolling; at 1366 and
/// at 1920 no control's text is clipped. The idle search reads a 和暦 birth date back in 西暦
/// and 和暦 before searching with it.
#[tokio::test]
async fn the_pop_fits_a_1366_by_768_desk_and_nothing_is_clipped() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    srv.store()
        .insert_residents(&[resident(
            20,
            "岡本 清",
            "オカモト　キヨシ",
            &["0773-62-1234"],
        )])
        .await
        .unwrap();
    let api = srv.login("sato").await;
    let (_, found) = api.get("/api/residents?phone=0773621234").await;
    let id = found[0]["id"].clone();
    for (n, follow_up) in [
        (1, true),
        (2, false),
        (3, false),
        (4, true),
        (5, false),
        (6, false),
    ] {
        let note = format!(
            "{n}件目: 2回目の接種日時と送迎バスの乗り場について確認したいとのこと。家族が代わりに電話することもある。"
        );
        let (status, _) = api
            .post(
                "/api/inquiries",
                json!({"resident_id": id, "category": "transport", "note": note,
                       "follow_up": follow_up, "caller_kind": "self"}),
            )
            .await;
        assert_eq!(status, 201, "inquiry {n}");
    }
    let (_, record) = api.get(&format!("/api/residents/{id}")).await;

    let d = Driver::start(&driver_bin, &chrome).await;
    d.set_window(1366, 768).await;

    // A wrong password: the error follows the language switch.
    d.goto(&srv.url).await;
    let user = d.find("#login-username", WAIT).await.expect("login form");
    d.type_into(&user, "sato").await;
    let pw = d.find("#login-password", WAIT).await.expect("password");
    d.type_into(&pw, "wrong").await;
    let submit = d.find("#login-submit", WAIT).await.expect("login button");
    d.click(&submit).await;
    let error = |text: &'static str| {
        let d = &d;
        async move {
            d.wait_for(
                &format!("const e = document.querySelector('#login-error'); return !e.hidden && e.textContent.includes({text:?});"),
                WAIT,
            )
            .await
        }
    };
    assert_eq!(error("パスワードが違います").await, json!(true));
    let toggle = d.find("#lang-toggle", WAIT).await.expect("language");
    d.click(&toggle).await;
    assert_eq!(error("Wrong username or password").await, json!(true));
    d.click(&toggle).await;
    assert_eq!(error("パスワードが違います").await, json!(true));
    log_in(&d, &srv.url, "sato").await;

    // Idle: a 和暦 birth date, read back before the search.
    let kana = d.find("#search-kana", WAIT).await.expect("kana field");
    d.type_into(&kana, "オカモト").await;
    let birth = d.find("#search-birth", WAIT).await.expect("birth field");
    d.type_into(&birth, "S16.3.2").await;
    let readback = d
        .wait_for(
            "const e = document.querySelector('[data-testid=birth-readback]'); return e && e.dataset.birthIso && e.textContent;",
            WAIT,
        )
        .await;
    let readback = readback.as_str().unwrap_or_default().to_string();
    assert!(
        readback.contains("1941年3月2日") && readback.contains("昭和16年3月2日"),
        "{readback}"
    );
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "idle at 1366×768"
    );
    let submit = d.find("#search-submit", WAIT).await.expect("search button");
    d.click(&submit).await;
    let name = d
        .find("#lookup [data-testid=resident-name]", WAIT)
        .await
        .expect("the walk-in's record opens");
    assert_eq!(d.text(&name).await, "岡本 清");

    // A call pops for the same person (the walk-in stays as a tab: the agent switches).
    let hub = &srv.running.as_ref().expect("running").state.hub;
    let topic = madoguchi::hub::agent_topic("777");
    let pop = json!({"type": "screen_pop", "call": fake_call("t:1", "+81773621234", "ringing"),
                     "candidates": [record]});
    hub.publish(&topic, &pop.to_string());
    assert_eq!(wait_phase(&d, "t:1", "ringing").await, json!("ringing"));
    d.keys("\u{E032}").await;
    assert_eq!(
        d.wait_for(
            "const p = document.querySelector('#pop'); return p && p.dataset.callId;",
            WAIT
        )
        .await,
        json!("t:1")
    );
    d.find("[data-testid=follow-up-item]", WAIT)
        .await
        .expect("open follow-ups are summarised");
    let all_in = json!({"name": true, "age": true, "intent": true, "transport": true,
                        "booking": true, "follow_ups": true,
                        "contact_1": true, "contact_2": true, "contact_3": true});
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-1366.png");
    d.screenshot(&shot).await;
    assert_eq!(
        d.script(ESSENTIALS, vec![]).await,
        all_in,
        "at 1366×768 (screenshot: {})",
        shot.display()
    );
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "pop at 1366×768"
    );
    let follow_ups = d
        .script(
            "return document.querySelector('[data-testid=follow-ups]').dataset.count;",
            vec![],
        )
        .await;
    assert_eq!(follow_ups, json!("2"));

    d.set_window(1920, 1080).await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-1920.png");
    d.screenshot(&shot).await;
    assert_eq!(
        d.script(ESSENTIALS, vec![]).await,
        all_in,
        "at 1920×1080 (screenshot: {})",
        shot.display()
    );
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "pop at 1920×1080"
    );

    // Talking: the same at both sizes (these screenshots are the README's).
    let answered = json!({"type": "call_update", "event": "answered_here",
                          "call": fake_call("t:1", "+81773621234", "talking")});
    hub.publish(&topic, &answered.to_string());
    assert_eq!(wait_phase(&d, "t:1", "talking").await, json!("talking"));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-1920-talking.png");
    d.screenshot(&shot).await;
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "talking at 1920"
    );
    d.set_window(1366, 768).await;
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("desk-1366-talking.png");
    d.screenshot(&shot).await;
    assert_eq!(
        d.script(ESSENTIALS, vec![]).await,
        all_in,
        "talking at 1366×768 (screenshot: {})",
        shot.display()
    );
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "talking at 1366"
    );

    // In English too, at both sizes.
    let toggle = d.find("#lang-toggle", WAIT).await.expect("language");
    d.click(&toggle).await;
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "English at 1366×768"
    );
    d.set_window(1920, 1080).await;
    assert_eq!(
        d.script(CLIPPED, vec![]).await,
        json!([]),
        "English at 1920×1080"
    );
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// The words on a call's screen: a withheld caller is 番号非通知 (not "a number the ledger does
/// not know"), the queue shows by its name for people, and the outcome is plain Japanese.
#[tokio::test]
async fn a_withheld_call_reads_in_plain_words() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    srv.add_user("sato", Role::Agent, Some("777")).await;
    let d = Driver::start(&driver_bin, &chrome).await;
    log_in(&d, &srv.url, "sato").await;
    let hub = &srv.running.as_ref().expect("running").state.hub;
    let topic = madoguchi::hub::agent_topic("777");
    let pop = json!({"type": "screen_pop", "call": fake_call("t:w", "anonymous", "ringing"),
                     "candidates": []});
    hub.publish(&topic, &pop.to_string());
    assert_eq!(wait_phase(&d, "t:w", "ringing").await, json!("ringing"));
    let words = d
        .wait_for(
            "const b = document.querySelector('#call-banner'); const h = document.querySelector('#search-heading'); \
             return b && h && [document.querySelector('[data-testid=caller-number]').textContent, h.textContent, \
                               b.querySelector('.banner-facts dd').textContent];",
            WAIT,
        )
        .await;
    assert_eq!(
        words,
        json!(["番号非通知", "番号非通知の着信です", "ワクチン接種"])
    );
    // The search in the record's column, narrow on a 1366 desk: nothing clipped either.
    for (w, h) in [(1366, 768), (1920, 1080)] {
        d.set_window(w, h).await;
        let shot =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("withheld-{w}.png"));
        d.screenshot(&shot).await;
        assert_eq!(
            d.script(CLIPPED, vec![]).await,
            json!([]),
            "search for a withheld caller at {w}×{h} (screenshot: {})",
            shot.display()
        );
    }
    let ended = json!({"type": "call_update", "event": "ended", "outcome": "abandoned",
                       "call": fake_call("t:w", "anonymous", "ended")});
    hub.publish(&topic, &ended.to_string());
    assert_eq!(wait_phase(&d, "t:w", "ended").await, json!("ended"));
    let banner = d
        .script(
            "return document.querySelector('#call-banner').textContent;",
            vec![],
        )
        .await;
    let banner = banner.as_str().unwrap_or_default();
    assert!(
        banner.contains("結果")
            && banner.contains("つながる前に切れた")
            && !banner.contains("放棄"),
        "{banner}"
    );
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    d.quit().await;
    srv.stop().await;
}

/// The page's own reading of 和暦 birth dates and phone numbers (web/js/format.js) agrees with
/// the server's (domain::wareki): the same forms, the same era boundaries, the same refusals.
#[tokio::test]
async fn the_page_reads_wareki_and_phones_as_the_server_does() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let srv = TestServer::start("sqlite", None).await;
    let d = Driver::start(&driver_bin, &chrome).await;
    d.goto(&srv.url).await;
    d.find("#login-form", WAIT).await.expect("the page");
    let read = d
        .script(
            "return import('/assets/js/format.js').then(f => arguments[0].map(([text, era]) => { \
               const r = f.parseBirthInput(text, era); return r && r.date ? f.isoDate(r.date) : (r ? 'refused' : null); }));",
            vec![json!([
                ["昭和25年6月6日", null],
                ["昭和２５年６月６日", null],
                ["S25.6.6", null],
                ["s25/6/6", null],
                ["S250606", null],
                ["25/6/6", "showa"],
                ["250606", "showa"],
                ["25/6/6", null],
                ["昭和64年1月7日", null],
                ["昭和64年1月8日", null],
                ["平成元年1月8日", null],
                ["H1.1.8", null],
                ["昭和25年2月30日", null],
                ["S23.2.29", null],
                ["S25.2.29", null],
                ["1950-06-06", null],
                ["", null]
            ])],
        )
        .await;
    assert_eq!(
        read,
        json!([
            "1950-06-06",
            "1950-06-06",
            "1950-06-06",
            "1950-06-06",
            "1950-06-06",
            "1950-06-06",
            "1950-06-06",
            "refused",
            "1989-01-07",
            "refused",
            "1989-01-08",
            "1989-01-08",
            "refused",
            "1948-02-29",
            "refused",
            "1950-06-06",
            null
        ])
    );
    let phones = d
        .script(
            "return import('/assets/js/format.js').then(f => arguments[0].map(f.formatPhone));",
            vec![json!([
                "0773608318",
                "+81773608318",
                "0773-60-8318",
                "09012345678",
                "0752223333",
                "0312345678",
                "123"
            ])],
        )
        .await;
    assert_eq!(
        phones,
        json!([
            "0773-60-8318",
            "0773-60-8318",
            "0773-60-8318",
            "090-1234-5678",
            "075-222-3333",
            "03-1234-5678",
            "123"
        ])
    );
    d.quit().await;
    srv.stop().await;
}

/// Issue 9 at the desk: on a break a call waits as a tab; the agent identifies an unknown
/// caller, keeps the number (the next call from it pops that resident), and after the call
/// the top bar shows after-call work until its timer returns the agent to ready.
#[tokio::test]
async fn the_agent_keeps_the_number_and_their_state_in_the_browser() {
    let Some((driver_bin, chrome)) = browser_or_skip() else {
        return;
    };
    let mut pbx = ScriptedPbx::start().await;
    let db = TestDb::new("sqlite").await.expect("test database");
    let store = db.store.clone();
    let addr = pbx.addr.clone();
    let srv = TestServer::start_with(db, store, move |s| {
        s.ami_address = Some(addr);
        s.ami_username = "madoguchi".into();
        s.ami_secret = "s3cret".into();
        s.acw_seconds = 3;
    })
    .await;
    pbx.wait_login().await;
    srv.add_user("sato", Role::Agent, Some("201")).await;
    srv.add_user("sv", Role::Supervisor, None).await;
    srv.store()
        .insert_residents(&[resident(31, "舞鶴 一郎", "マイヅル　イチロウ", &[])])
        .await
        .unwrap();
    let supervisor = srv.login("sv").await;
    let availability = || async {
        let (_, q) = supervisor.get("/api/queues").await;
        q["agents"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["extension"] == "201").cloned())
            .map(|a| a["availability"].clone())
            .unwrap_or(Value::Null)
    };

    let d = Driver::start(&driver_bin, &chrome).await;
    d.set_window(1366, 768).await;
    log_in(&d, &srv.url, "sato").await;
    let ready = d
        .wait_for(
            "const b = document.querySelector('#desk'); return !!b && !b.hidden && b.dataset.state === 'ready' && document.querySelector('#agent-state').value === 'ready';",
            WAIT,
        )
        .await;
    assert_eq!(ready, json!(true), "the top bar shows the agent ready");

    // A break, with its reason: the supervisor sees both.
    d.script(
        "const s = document.querySelector('#agent-state'); s.value = 'break'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    let reason = d
        .wait_for(
            "const r = document.querySelector('#agent-break-reason'); return !!r && !r.hidden && document.querySelector('#desk').dataset.state === 'break';",
            WAIT,
        )
        .await;
    assert_eq!(reason, json!(true), "a break asks for its reason");
    let field = d.find("#agent-break-reason", WAIT).await.expect("reason");
    d.type_into(&field, "昼休憩").await;
    d.keys("\u{E007}").await; // Enter
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = availability().await;
        if seen["reason"] == "昼休憩" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["state"], "break", "{seen}");
    assert_eq!(seen["reason"], "昼休憩", "{seen}");

    // On a break a call waits as a tab: the workspace stays as it was.
    let first = ScriptCall::new(41, "090-1234-5678", "201");
    pbx.send(first.ring());
    let call_id = format!("ami:{}", first.id);
    let tab = d
        .wait_for(
            &format!("const t = [...document.querySelectorAll('[data-testid=session-tab]')].find(t => t.dataset.callId === '{call_id}'); \
                      return !!t && t.dataset.unseen === 'true' && !document.querySelector('#pop');"),
            WAIT,
        )
        .await;
    assert_eq!(tab, json!(true), "the pop waits as a tab on a break");
    d.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-on-break.png"))
        .await;

    // Ready again; the agent takes the call and finds the caller by name.
    d.script(
        "const s = document.querySelector('#agent-state'); s.value = 'ready'; s.dispatchEvent(new Event('change', {bubbles: true}));",
        vec![],
    )
    .await;
    d.keys("\u{E032}").await; // F2: the waiting call
    assert_eq!(wait_phase(&d, &call_id, "ringing").await, json!("ringing"));
    pbx.send(first.answer(1));
    assert_eq!(wait_phase(&d, &call_id, "talking").await, json!("talking"));
    assert_eq!(availability().await["state"], "ready");
    let kana = d.find("#search-kana", WAIT).await.expect("the search");
    d.type_into(&kana, "マイヅル イチロウ").await;
    let submit = d.find("#search-submit", WAIT).await.expect("search button");
    d.click(&submit).await;
    // One match opens the record at once (and links the call to it).
    let keep = d
        .find("#keep-number", WAIT)
        .await
        .expect("the record offers to keep the number");
    let kind = d
        .script(
            "return document.querySelector('#keep-number-kind').value;",
            vec![],
        )
        .await;
    assert_eq!(kind, json!("mobile"), "a 090 number is a mobile");
    d.screenshot(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("agent-keep-number.png"))
        .await;
    d.click(&keep).await;
    let kept = d
        .wait_for(
            "return !document.querySelector('#keep-number') && [...document.querySelectorAll('.phone-calling .phone-number')].some(e => e.textContent === '090-1234-5678');",
            WAIT,
        )
        .await;
    assert_eq!(
        kept,
        json!(true),
        "the number shows on the record as the calling line"
    );

    // The call ends: after-call work with its timer, then ready by itself.
    pbx.send(first.hangup());
    assert_eq!(wait_phase(&d, &call_id, "ended").await, json!("ended"));
    let acw = d
        .wait_for(
            "return document.querySelector('#desk').dataset.state === 'acw' && /^0:0[0-3]$/.test(document.querySelector('#agent-state-timer').textContent);",
            WAIT,
        )
        .await;
    assert_eq!(acw, json!(true), "after-call work shows with its timer");
    assert_eq!(availability().await["state"], "acw");
    let back = d
        .wait_for(
            "return document.querySelector('#desk').dataset.state === 'ready' && document.querySelector('#agent-state').value === 'ready';",
            WAIT,
        )
        .await;
    assert_eq!(back, json!(true), "ready again when the timer ran out");

    // The next call from the kept number pops the resident directly.
    let second = ScriptCall::new(42, "09012345678", "201");
    pbx.send(second.ring());
    let popped = d
        .wait_for(
            &format!("const p = document.querySelector('#pop'); const n = document.querySelector('[data-testid=resident-name]'); \
                      return !!p && p.dataset.callId === 'ami:{}' && !!n && n.textContent;", second.id),
            WAIT,
        )
        .await;
    assert_eq!(popped, json!("舞鶴 一郎"));
    assert_eq!(
        page_errors(&d).await,
        Vec::<String>::new(),
        "no errors on the page"
    );
    pbx.send(second.hangup());
    d.quit().await;
    srv.stop().await;
}
