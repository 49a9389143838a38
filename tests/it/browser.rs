//! The agent screen in a real browser (Debian's Chromium, headless, through chromedriver): log
//! in, a call comes through the fake PBX, the resident pops, the agent saves an inquiry, and the
//! next call from that number shows it in the history. Also: the page's files (ES modules in
//! subfolders of web/) are all served, without a browser.

use crate::common::*;
use crate::webdriver::{find_browser, Driver};
use madoguchi::domain::Role;
use serde_json::json;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn agent_sees_pop_and_saves_an_inquiry() {
    let (driver_bin, chrome) = match find_browser() {
        Ok(found) => found,
        Err(why) => {
            if std::env::var("MADOGUCHI_REQUIRE_ALL").is_ok_and(|v| v == "1") {
                panic!("MADOGUCHI_REQUIRE_ALL=1 but {why}");
            }
            eprintln!("skipped: {why}");
            return;
        }
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
    d.goto(&srv.url).await;
    let user = d.find("#login-username", WAIT).await.expect("login form");
    d.type_into(&user, "sato").await;
    let pw = d
        .find("#login-password", WAIT)
        .await
        .expect("password field");
    d.type_into(&pw, "sato").await;
    let submit = d.find("#login-submit", WAIT).await.expect("login button");
    d.click(&submit).await;
    let online = d
        .wait_for("const e = document.querySelector('#conn-state'); return e && e.dataset.state === 'online';", WAIT)
        .await;
    assert_eq!(online, json!(true), "the screen connects its WebSocket");

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
