//! Locked doors (issue 7): password storms, guessing, idle and half-sent connections, other
//! sites' pages, security headers, body limits, sessions that must end, and the small leaks.

use crate::common::*;
use madoguchi::app::build_with_store;
use madoguchi::domain::Role;
use madoguchi::settings::Settings;
use madoguchi::store::testing::{TempDir, TestDb};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The `madoguchi` binary, with its output and a `sh -c` prefix (e.g. `ulimit -n 1024`).
fn madoguchi_cli(db: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_madoguchi"))
        .args(args)
        .env("MADOGUCHI_DATABASE_URL", db)
        .env("MADOGUCHI_LOG", "warn")
        .output()
        .expect("run madoguchi");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `madoguchi serve` as its own process (so its memory and file limit are its own), on a
/// free port; returns the child and its URL once it serves.
fn spawn_server(db: &str, shell_prefix: &str, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("{shell_prefix} exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_madoguchi"))
        .env("MADOGUCHI_DATABASE_URL", db)
        .env("MADOGUCHI_LISTEN", "127.0.0.1:0")
        .env("MADOGUCHI_LOG_JSON", "1")
        .env("MADOGUCHI_LOG", "info,sqlx=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start madoguchi serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    // Read every line (a full pipe would stall the server's logging) and pass on the address.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if v["fields"]["message"] == "madoguchi serving" {
                    if let Some(a) = v["fields"]["addr"].as_str() {
                        let _ = tx.send(a.to_string());
                    }
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server logs its address");
    (child, format!("http://{addr}"))
}

/// Peak and current resident memory of a process, in MiB (`VmHWM`, `VmRSS`).
fn memory_mib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .expect("memory field")
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// A client whose connections come from `addr` (any 127.x.y.z reaches the server).
fn client_from(addr: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(addr))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

async fn try_login(http: &reqwest::Client, url: &str, user: &str, password: &str) -> u16 {
    http.post(format!("{url}/api/session"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .expect("login request")
        .status()
        .as_u16()
}

/// 256 failed logins at once, each from its own address (so the throttle does not stop
/// them): the argon2 checks are bounded, the server's memory stays flat and `/healthz`
/// answers throughout.
#[tokio::test]
async fn a_login_storm_keeps_memory_flat() {
    let dir = TempDir::new("storm").unwrap();
    let db = format!("sqlite://{}/m.db", dir.0.display());
    let (ok, out) = madoguchi_cli(
        &db,
        &[
            "user",
            "add",
            "--username",
            "agent1",
            "--password",
            "right-one",
            "--role",
            "agent",
        ],
    );
    assert!(ok, "{out}");
    let (mut child, url) = spawn_server(&db, "", &[]);
    let pid = child.id();
    let plain = reqwest::Client::new();
    assert_eq!(try_login(&plain, &url, "agent1", "right-one").await, 200);
    let (before, _) = memory_mib(pid);

    let storm: Vec<_> = (0..256u32)
        .map(|i| {
            let http = client_from(Ipv4Addr::new(127, 1, (i / 200) as u8, (i % 200 + 1) as u8));
            let url = url.clone();
            tokio::spawn(async move { try_login(&http, &url, "agent1", "wrong").await })
        })
        .collect();
    // The server still answers while the storm lasts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let health = plain
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/healthz answers during the storm");
    assert_eq!(health.status(), 200);
    let health_s = started.elapsed().as_secs_f64();
    let mut answers = std::collections::BTreeMap::<u16, u32>::new();
    for t in storm {
        *answers.entry(t.await.unwrap()).or_default() += 1;
    }
    let (peak, now) = memory_mib(pid);
    eprintln!(
        "login storm: answers {answers:?}; /healthz in {health_s:.3} s; VmHWM {before} MiB before, {peak} MiB after (VmRSS {now} MiB)"
    );
    assert!(
        answers.keys().all(|s| *s == 401 || *s == 503),
        "every guess fails or is told to come back: {answers:?}"
    );
    assert!(answers.get(&401).copied().unwrap_or(0) > 0, "{answers:?}");
    // Unbounded, 256 checks held ~19 MiB each (4.96 GB in all). Bounded, the peak grows by a
    // few checks' worth.
    assert!(
        peak < before + 200,
        "peak memory grew from {before} MiB to {peak} MiB"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The throttle counts before it checks: of 50 simultaneous guesses at one account from one
/// address at most 10 reach the password check; spraying across accounts from one address is
/// limited too; the counts live in the database, so another instance sees them.
#[tokio::test]
async fn guesses_are_counted_before_they_are_checked() {
    for engine in engines() {
        let srv = TestServer::start(engine, None).await;
        srv.add_user("agent1", Role::Agent, Some("201")).await;
        let checks = srv.running.as_ref().unwrap().state.password_checks.clone();
        let desk = client_from(Ipv4Addr::new(127, 0, 0, 1));
        let guesses: Vec<_> = (0..50)
            .map(|i| {
                let (http, url) = (desk.clone(), srv.url.clone());
                tokio::spawn(
                    async move { try_login(&http, &url, "agent1", &format!("guess{i}")).await },
                )
            })
            .collect();
        let mut answers = std::collections::BTreeMap::<u16, u32>::new();
        for g in guesses {
            *answers.entry(g.await.unwrap()).or_default() += 1;
        }
        assert!(checks.running() <= checks.size());
        assert_eq!(answers.get(&429), Some(&40), "{engine}: {answers:?}");
        assert_eq!(
            answers.get(&401).copied().unwrap_or(0) + answers.get(&503).copied().unwrap_or(0),
            10,
            "{engine}: at most ten reached the password check: {answers:?}"
        );
        // The right password is refused too while the window lasts.
        assert_eq!(
            try_login(&desk, &srv.url, "agent1", "agent1").await,
            429,
            "{engine}"
        );
        // Another instance, with its own connections to the same database, sees the count.
        let url = srv.db.as_ref().unwrap().url.clone();
        let other = madoguchi::app::build(Settings {
            listen: "127.0.0.1:0".into(),
            database_url: url,
            ..Settings::default()
        })
        .await
        .expect("second instance");
        assert_eq!(
            try_login(&desk, &other.url(), "agent1", "agent1").await,
            429,
            "{engine}: the second instance knows"
        );
        other.shutdown().await.expect("second instance stops");
        // Another desk is not locked out of the account.
        let other_desk = client_from(Ipv4Addr::new(127, 0, 0, 3));
        assert_eq!(
            try_login(&other_desk, &srv.url, "agent1", "agent1").await,
            200,
            "{engine}"
        );

        // Spraying: 100 wrong guesses across 10 accounts from one address.
        for i in 0..10 {
            srv.add_user(&format!("sprayed{i}"), Role::Venue, None)
                .await;
        }
        let sprayer = client_from(Ipv4Addr::new(127, 0, 0, 2));
        let mut answers = std::collections::BTreeMap::<u16, u32>::new();
        for round in 0..10 {
            for i in 0..10 {
                let s = try_login(
                    &sprayer,
                    &srv.url,
                    &format!("sprayed{i}"),
                    &format!("p{round}"),
                )
                .await;
                *answers.entry(s).or_default() += 1;
            }
        }
        assert_eq!(answers.get(&401), Some(&30), "{engine}: {answers:?}");
        assert_eq!(answers.get(&429), Some(&70), "{engine}: {answers:?}");
        srv.stop().await;
    }
}

/// 1,100 idle or half-sent connections against a server limited to 1,024 open files: they are
/// closed after the header timeout, and `/healthz` answers within 15 s all the same.
#[tokio::test]
async fn idle_connections_do_not_lock_the_door() {
    let own_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|n| n.parse::<u64>().ok())
        })
        .unwrap_or(0);
    assert!(
        own_limit >= 1400,
        "this test opens 1,100 sockets: raise the test's open-file limit (ulimit -n) above 1,400, it is {own_limit}"
    );
    let dir = TempDir::new("idle").unwrap();
    let db = format!("sqlite://{}/m.db", dir.0.display());
    let header_timeout = 2;
    let (mut child, url) = spawn_server(
        &db,
        "ulimit -n 1024 &&",
        &[("MADOGUCHI_HEADER_TIMEOUT_S", &header_timeout.to_string())],
    );
    let addr = url.trim_start_matches("http://").to_string();
    let opened = Instant::now();
    let mut sockets = Vec::new();
    for i in 0..1100 {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect (the kernel queues what the server has not accepted)");
        if i % 2 == 1 {
            // Half-sent: a request line and a header, never the blank line.
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("write");
        }
        sockets.push(s);
    }
    // /healthz, while all 1,100 are held open by this side.
    let started = Instant::now();
    let res = reqwest::Client::new()
        .get(format!("{url}/healthz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .expect("/healthz answers within 15 s");
    assert_eq!(res.status(), 200);
    let health_s = started.elapsed().as_secs_f64();

    // Every idle socket is closed by the server: the first ones after one header timeout,
    // those that waited in the listen backlog after two.
    let deadline = opened + Duration::from_secs(2 * header_timeout + 10);
    let mut closed_by = Duration::ZERO;
    for mut s in sockets {
        let mut buf = [0u8; 512];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(_)) => continue, // a 408 for the half-sent request, then the close
                Err(_) => panic!(
                    "a socket was still open {:?} after opening",
                    opened.elapsed()
                ),
            }
        }
        closed_by = closed_by.max(opened.elapsed());
    }
    eprintln!(
        "1,100 idle sockets: /healthz answered in {health_s:.2} s; all closed {:.2} s after opening (header timeout {header_timeout} s)",
        closed_by.as_secs_f64()
    );
    // The server still serves; a kept-alive connection left idle after its request is closed
    // after the header timeout too.
    let res = reqwest::get(format!("{url}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(res.status(), 200);
    let mut kept = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let idle_since = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(header_timeout + 5),
        kept.read_to_end(&mut answer),
    )
    .await
    .expect("the idle kept-alive connection is closed")
    .expect("read");
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "answered first"
    );
    assert!(
        idle_since.elapsed() >= Duration::from_secs(header_timeout) - Duration::from_millis(500)
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// Other sites' pages may not change anything nor open the agent's live feed.
#[tokio::test]
async fn foreign_origins_are_refused() {
    for engine in engines() {
        let db = TestDb::new(engine).await.expect("test database");
        let settings = Settings {
            listen: "127.0.0.1:0".into(),
            database_url: db.url.clone(),
            allowed_origins: vec!["https://madoguchi.city.example".into()],
            ..Settings::default()
        };
        let running = build_with_store(settings, db.store.clone())
            .await
            .expect("server starts");
        let srv = TestServer {
            url: running.url(),
            running: Some(running),
            db: Some(db),
        };
        srv.add_user("agent1", Role::Agent, Some("201")).await;
        let agent = srv.login("agent1").await;
        srv.store()
            .insert_residents(&[resident(
                1,
                "舞鶴 花子",
                "マイヅル　ハナコ",
                &["0773-62-2300"],
            )])
            .await
            .unwrap();
        let (_, found) = agent.get("/api/residents?phone=0773622300").await;
        let resident_id = found[0]["id"].as_i64().expect("a resident");
        let inquiry =
            json!({"resident_id": resident_id, "category": "general", "note": "from where?"});
        let post = |origin: &'static str| {
            agent
                .http
                .post(format!("{}/api/inquiries", srv.url))
                .header("cookie", &agent.cookie)
                .header("origin", origin)
                .json(&inquiry)
                .send()
        };
        let res = post("http://evil.example").await.unwrap();
        assert_eq!(res.status(), 403, "{engine}: a foreign page's POST");
        let res = post("null").await.unwrap();
        assert_eq!(res.status(), 403, "{engine}: an opaque origin");
        let own: &'static str = Box::leak(srv.url.clone().into_boxed_str());
        let res = post(own).await.unwrap();
        assert_eq!(res.status(), 201, "{engine}: the server's own page");
        let res = post("https://madoguchi.city.example").await.unwrap();
        assert_eq!(res.status(), 201, "{engine}: a configured origin");
        // Logging in from a foreign page (login CSRF) is refused too.
        let res = reqwest::Client::new()
            .post(format!("{}/api/session", srv.url))
            .header("origin", "http://evil.example")
            .json(&json!({"username": "agent1", "password": "agent1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{engine}");

        // The WebSocket: a foreign page is refused, the server's own page is served.
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let ws_url = format!("{}/ws", srv.url.replace("http://", "ws://"));
        let open = |origin: &str| {
            let mut req = ws_url.clone().into_client_request().unwrap();
            req.headers_mut()
                .insert("cookie", agent.cookie.parse().unwrap());
            req.headers_mut().insert("origin", origin.parse().unwrap());
            tokio_tungstenite::connect_async(req)
        };
        match open("http://evil.example").await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), 403, "{engine}")
            }
            Err(e) => panic!("{engine}: expected 403, got {e}"),
            Ok(_) => panic!("{engine}: a foreign page opened the agent's live feed"),
        }
        let (mut ws, _) = open(&srv.url).await.expect("the own page's WebSocket");
        use futures_util::StreamExt;
        let hello = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("hello in time")
            .expect("a frame")
            .expect("ok");
        assert!(hello.to_text().unwrap().contains("\"hello\""), "{engine}");
        srv.stop().await;
    }
}

/// Security headers on every answer, 413 above the body limit, `Secure` cookies behind https.
#[tokio::test]
async fn headers_limits_and_cookies() {
    let db = TestDb::new("sqlite").await.expect("test database");
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        public_url: Some("https://madoguchi.city.example".into()),
        ..Settings::default()
    };
    let running = build_with_store(settings, db.store.clone())
        .await
        .expect("server starts");
    let srv = TestServer {
        url: running.url(),
        running: Some(running),
        db: Some(db),
    };
    srv.add_user("agent1", Role::Agent, Some("201")).await;
    let http = reqwest::Client::new();
    for path in ["/", "/assets/app.js", "/healthz", "/api/me", "/nowhere"] {
        let res = http.get(format!("{}{path}", srv.url)).send().await.unwrap();
        let h = res.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    let res = http
        .post(format!("{}/api/session", srv.url))
        .json(&json!({"username": "agent1", "password": "agent1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let agent = Client {
        http: http.clone(),
        cookie: cookie.split(';').next().unwrap().to_string(),
        base: srv.url.clone(),
    };
    let (s, _) = agent
        .post(
            "/api/inquiries",
            json!({"category": "general", "note": "x".repeat(2 * 1024 * 1024)}),
        )
        .await;
    assert_eq!(s, 413);
    // Chunked, without a length: refused as it arrives.
    let addr = srv.url.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/inquiries HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        agent.cookie
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    for _ in 0..40 {
        if sock.write_all(chunk.as_bytes()).await.is_err() {
            break; // the server answered and closed
        }
    }
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    srv.stop().await;
}

/// A replaced password or a removed user ends that user's sessions; expired sessions are swept;
/// `/readyz` details are for admins; categories need a session; `kana=%%` finds no one.
#[tokio::test]
async fn sessions_end_and_small_leaks_are_closed() {
    for engine in engines() {
        let srv = TestServer::start(engine, None).await;
        srv.add_user("agent1", Role::Agent, Some("201")).await;
        srv.add_user("admin1", Role::Admin, None).await;
        let url = srv.db.as_ref().unwrap().url.clone();
        let old = srv.login("agent1").await;
        assert_eq!(old.get("/api/me").await.0, 200);
        let (ok, out) = madoguchi_cli(
            &url,
            &[
                "user",
                "add",
                "--username",
                "agent1",
                "--password",
                "a-new-password",
                "--role",
                "agent",
                "--extension",
                "201",
            ],
        );
        assert!(ok, "{out}");
        assert_eq!(
            old.get("/api/me").await.0,
            401,
            "{engine}: the old session ended"
        );
        let http = reqwest::Client::new();
        assert_eq!(
            try_login(&http, &srv.url, "agent1", "a-new-password").await,
            200
        );
        let admin = srv.login("admin1").await;
        let (ok, out) = madoguchi_cli(&url, &["user", "remove", "--username", "admin1"]);
        assert!(ok, "{out}");
        assert_eq!(admin.get("/api/me").await.0, 401, "{engine}: removed");
        let (ok, _) = madoguchi_cli(&url, &["user", "remove", "--username", "nobody"]);
        assert!(!ok);

        // Expired sessions are swept.
        let uid = srv.add_user("agent2", Role::Agent, Some("202")).await;
        srv.store()
            .create_session(uid, &"ab".repeat(32), -1)
            .await
            .unwrap();
        let swept = srv
            .store()
            .sweep_expired(&madoguchi::store::now())
            .await
            .unwrap();
        assert_eq!(swept, 1, "{engine}");

        // /readyz: whether, to anyone; what, to admins.
        let (s, body) = Client {
            http: http.clone(),
            cookie: String::new(),
            base: srv.url.clone(),
        }
        .get("/readyz")
        .await;
        assert_eq!((s, body.clone()), (200, json!({"ready": true})), "{engine}");
        srv.add_user("admin2", Role::Admin, None).await;
        let (s, body) = srv.login("admin2").await.get("/readyz").await;
        assert_eq!(s, 200);
        assert!(body["database"]["ok"] == true, "{engine}: {body}");

        let res = http
            .get(format!("{}/api/inquiry-categories", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let said: Value = res.json().await.unwrap();
        assert_eq!(said["error"], "login required", "{engine}");
        // A wrong password says so, in words a person at the login page understands.
        let res = http
            .post(format!("{}/api/session", srv.url))
            .json(&json!({"username": "admin2", "password": "not it"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
        let said: Value = res.json().await.unwrap();
        assert_eq!(said["error"], "wrong username or password", "{engine}");
        // A path nobody serves is a JSON 404, like every other error.
        let res = http
            .get(format!("{}/api/no-such-route", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
        let said: Value = res.json().await.unwrap();
        assert_eq!(said["error"], "not found", "{engine}");

        srv.store()
            .insert_residents(&[resident(
                1,
                "舞鶴 花子",
                "マイヅル　ハナコ",
                &["0773-62-2300"],
            )])
            .await
            .unwrap();
        let agent = srv.login("agent2").await;
        for wild in ["%25%25", "__", "%25", "%5C%25"] {
            let (s, found) = agent
                .get(&format!("/api/residents?kana={wild}&birth_date=1941-03-02"))
                .await;
            // Refused as no reading, or matched literally: never every resident.
            assert!(
                s == 422 || (s == 200 && found == json!([])),
                "{engine}: kana={wild}: {s} {found}"
            );
        }
        let (_, found) = agent.get("/api/residents?kana=%E3%83%9E%E3%82%A4").await;
        assert_eq!(found.as_array().map(Vec::len), Some(1), "{engine}");
        srv.stop().await;
    }
}
