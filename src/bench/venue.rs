//! `madoguchi bench venue`: venue screens recording doses through the real server while
//! supervisors watch `/ws/venues`. Each screen records a dose every `--every-ms` (2 s by
//! default), spread evenly so the load is steady; prints the latency of a recording (request
//! written to answer read, on a fresh connection) and how many progress messages reached the
//! supervisors.

use crate::domain::dose::LotNo;
use crate::domain::{Product, Role};
use crate::settings::Settings;
use crate::store::testing::{sample_residents, TestDb};
use crate::store::vaccinations::Actor;
use anyhow::Context;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub async fn venue(
    screens: usize,
    doses_per_screen: usize,
    every_ms: u64,
    supervisors: usize,
    engine: &str,
) -> anyhow::Result<()> {
    let screens = screens.max(1);
    let total = screens * doses_per_screen.max(1);
    let db = TestDb::new(engine).await.with_context(|| {
        format!("a fresh {engine} database (postgres needs MADOGUCHI_TEST_POSTGRES_URL)")
    })?;
    let store = db.store.clone();
    store.insert_residents(&sample_residents(total)).await?;
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM residents ORDER BY id")
        .fetch_all(&store.read)
        .await?;
    let venue = store
        .insert_venue("舞鶴文化公園体育館", "舞鶴市字上安久", &["西"])
        .await?;
    let actor = Actor {
        user_id: None,
        remote_addr: "bench",
    };
    let lot = LotNo::parse("FA4597").map_err(anyhow::Error::msg)?;
    let now = chrono::Utc::now();
    let vials = total.div_ceil(6) as i64 + 1;
    let mut left = vials;
    while left > 0 {
        let n = left.min(crate::store::vials::MAX_RECEIVE);
        for id in store
            .receive_vials(venue, Product::Pfizer, &lot, n, 6, now, actor)
            .await?
        {
            store
                .open_vial(id, now, actor)
                .await?
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        left -= n;
    }
    for (name, role) in [("venue", Role::Venue), ("watch", Role::Supervisor)] {
        let hash =
            tokio::task::spawn_blocking(move || crate::store::users::hash_password(name)).await??;
        store.upsert_user(name, "", &hash, role, None).await?;
    }
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        ..Settings::default()
    };
    let server = crate::app::build_with_store(settings, store.clone()).await?;
    let addr = server.addr.to_string();
    let cookie = login(&addr, "venue").await?;
    let watch_cookie = login(&addr, "watch").await?;

    // Supervisors' screens: count the progress messages they receive.
    let pushed = Arc::new(AtomicUsize::new(0));
    let mut watchers = Vec::new();
    for _ in 0..supervisors {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws/venues").into_client_request()?;
        req.headers_mut().insert("cookie", watch_cookie.parse()?);
        let mut ws = super::ws_connect(req).await?;
        let pushed = pushed.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if msg.to_text().is_ok_and(|t| t.contains("venue_progress")) {
                    pushed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let every = Duration::from_millis(every_ms.max(1));
    let started = Instant::now();
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for s in 0..screens {
        let (ids, addr, cookie) = (ids.clone(), addr.clone(), cookie.clone());
        // Screens start spread over one interval, so the server sees a steady stream.
        let offset = every.mul_f64(s as f64 / screens as f64);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(doses_per_screen);
            for k in 0..doses_per_screen {
                let due = started + offset + every * k as u32;
                tokio::time::sleep_until(due.into()).await;
                let resident = ids[s * doses_per_screen + k];
                let body = format!(
                    r#"{{"resident_id":{resident},"dose":1,"product":"pfizer","lot":"FA4597","vaccinator":"多々見 良三","venue_id":{venue}}}"#
                );
                let t = Instant::now();
                let (status, _) = request(&addr, "/api/vaccinations", &cookie, &body).await?;
                out.push((status, t.elapsed(), k));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let recorded = results.iter().filter(|r| r.0 == 201).count();
    let mut latency: Vec<Duration> = results.iter().map(|r| r.1).collect();
    latency.sort();
    // After the first round (every screen's first dose: connections and caches warm up).
    let mut warm: Vec<Duration> = results.iter().filter(|r| r.2 > 0).map(|r| r.1).collect();
    warm.sort();
    // Per round, the slowest answer: where the slow ones sit in time.
    let mut rounds = vec![Duration::ZERO; doses_per_screen.max(1)];
    for r in &results {
        rounds[r.2] = rounds[r.2].max(r.1);
    }
    let ms = |p: f64| super::percentile(&latency, p).as_secs_f64() * 1000.0;
    let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM vaccinations")
        .fetch_one(&store.read)
        .await?;
    for w in watchers {
        w.abort();
    }
    server.shutdown().await?;
    println!(
        "{engine}: {screens} venue screens, a dose each every {:.1} s, {} requests in {elapsed:.1} s ({:.0}/s)",
        every.as_secs_f64(),
        results.len(),
        results.len() as f64 / elapsed
    );
    println!(
        "  recorded {recorded} (in the database: {records}); other answers {}",
        results.len() - recorded
    );
    println!(
        "  recording latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (target p99 < 20 ms)",
        ms(0.5),
        ms(0.95),
        ms(0.99),
        ms(1.0)
    );
    if !warm.is_empty() {
        let w = |p: f64| super::percentile(&warm, p).as_secs_f64() * 1000.0;
        println!(
            "  after the first round: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; slowest per round (ms): {}",
            w(0.5),
            w(0.99),
            w(1.0),
            rounds
                .iter()
                .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    println!(
        "  {supervisors} supervisor screens on /ws/venues received {} venue_progress messages",
        pushed.load(Ordering::Relaxed)
    );
    db.cleanup().await;
    anyhow::ensure!(
        recorded == results.len() && records as usize == recorded,
        "some doses were not recorded"
    );
    Ok(())
}

async fn login(addr: &str, name: &str) -> anyhow::Result<String> {
    let body = format!(r#"{{"username":"{name}","password":"{name}"}}"#);
    let (_, head) = raw(addr, "POST", "/api/session", &[], &body).await?;
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.trim().split(';').next())
        .map(str::to_string)
        .context("the bench user could not log in")
}

async fn request(
    addr: &str,
    path: &str,
    cookie: &str,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    raw(addr, "POST", path, &[("Cookie", cookie)], body).await
}

/// One HTTP/1.1 request on its own connection: (status, head).
async fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP answer without a status")?;
    Ok((status, head))
}
