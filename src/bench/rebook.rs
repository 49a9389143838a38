//! `madoguchi bench rebook`: agents rebooking at once through the real server, against the
//! synthetic city's assigned appointments. Prints rebooks per second, the refusals by reason,
//! and — the figure that matters — how many slots ended over capacity (must be zero) and
//! whether every slot's counter equals its live bookings.

use crate::domain::Role;
use crate::settings::Settings;
use crate::store::testing::TestDb;
use anyhow::Context;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Days (from the first) whose dose-1 slots the moves aim at: a narrow window, so seats run
/// out and moves contend for the last ones, as on a morning when everyone wants the same week.
const HOT_DAYS: i64 = 5;

pub async fn rebook(
    residents: usize,
    moves: usize,
    concurrency: usize,
    engine: &str,
    keep_alive: bool,
) -> anyhow::Result<()> {
    let db = TestDb::new(engine).await.with_context(|| {
        format!("a fresh {engine} database (postgres needs MADOGUCHI_TEST_POSTGRES_URL)")
    })?;
    let store = db.store.clone();
    let t = Instant::now();
    store
        .insert_residents(&crate::demo::synth::residents(residents, 2021))
        .await?;
    let today = crate::domain::vaccine::jst_date(chrono::Utc::now());
    let summary = crate::demo::appointments::create(&store, today).await?;
    println!(
        "{engine}: {residents} residents, {} venues, {} slots, {} bookings in {:.1} s",
        summary.venues,
        summary.slots,
        summary.bookings,
        t.elapsed().as_secs_f64()
    );
    let hash =
        tokio::task::spawn_blocking(|| crate::store::users::hash_password("rebook")).await??;
    store
        .upsert_user("rebook", "", &hash, Role::Agent, None)
        .await?;

    // Dose-1 bookings and, per venue, the hot dose-1 slots.
    let first = today + chrono::Duration::days(1);
    let mut bookings: Vec<(i64, i64)> = Vec::new(); // (booking, venue)
    let mut targets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for venue in store.venues().await? {
        for day in 0..crate::demo::appointments::DOSE1_DAYS {
            let date = first + chrono::Duration::days(day);
            for slot in store
                .slots(Some(venue.id), Some(date), chrono::Utc::now(), 1000)
                .await?
            {
                if day < HOT_DAYS {
                    targets.entry(venue.id).or_default().push(slot.id);
                }
                for b in store.live_bookings_in(slot.id).await? {
                    if b.dose == 1 {
                        bookings.push((b.id, venue.id));
                    }
                }
            }
        }
    }
    anyhow::ensure!(
        !bookings.is_empty(),
        "no bookings to move; give more --residents"
    );

    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        ..Settings::default()
    };
    let server = crate::app::build_with_store(settings, store.clone()).await?;
    let addr = server.addr.to_string();
    let cookie = login(&addr).await?;

    let next = Arc::new(AtomicUsize::new(0));
    let bookings = Arc::new(bookings);
    let targets = Arc::new(targets);
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency.max(1) {
        let (next, bookings, targets, addr, cookie) = (
            next.clone(),
            bookings.clone(),
            targets.clone(),
            addr.clone(),
            cookie.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
            let mut rand = move |m: usize| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % m.max(1) as u64) as usize
            };
            let mut out: Vec<(u16, String, Duration)> = Vec::new();
            let mut conn: Option<tokio::net::TcpStream> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= moves {
                    break;
                }
                let (booking, venue) = bookings[rand(bookings.len())];
                let Some(slots) = targets.get(&venue) else {
                    continue;
                };
                let slot = slots[rand(slots.len())];
                let t = Instant::now();
                let (status, reason) = if keep_alive {
                    post_move_kept(&mut conn, &addr, &cookie, booking, slot, i).await?
                } else {
                    post_move(&addr, &cookie, booking, slot, i).await?
                };
                out.push((status, reason, t.elapsed()));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();

    let moved = results.iter().filter(|r| r.0 == 200).count();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for r in results.iter().filter(|r| r.0 != 200) {
        *by_reason.entry(format!("{} {}", r.0, r.1)).or_default() += 1;
    }
    let mut latency: Vec<Duration> = results.iter().map(|r| r.2).collect();
    latency.sort();
    let pct = |p: f64| {
        latency
            .get(((latency.len() as f64 - 1.0) * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    let over = db.store.slots_over_capacity().await?;
    let mismatched = db.store.slot_count_mismatches().await?.len();
    // Shutting the server down closes the store, so the checks come first.
    server.shutdown().await?;
    println!(
        "{engine}: {} move requests by {concurrency} agents in {elapsed:.2} s ({})",
        results.len(),
        if keep_alive {
            "one kept connection per agent"
        } else {
            "a connection per request"
        }
    );
    println!(
        "  rebooks {moved} ({:.0} rebooks/s; {:.0} answers/s)",
        moved as f64 / elapsed,
        results.len() as f64 / elapsed
    );
    for (reason, n) in &by_reason {
        println!("  refused {reason}: {n}");
    }
    println!(
        "  latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!("  slots over capacity: {over}; slots whose count differs from their bookings: {mismatched}");
    db.cleanup().await;
    anyhow::ensure!(over == 0 && mismatched == 0, "capacity rule broken");
    Ok(())
}

/// Logs in the bench agent with a hand-written request (no HTTP client among the dependencies).
async fn login(addr: &str) -> anyhow::Result<String> {
    let body = r#"{"username":"rebook","password":"rebook"}"#;
    let (_, head, _) = request(addr, "POST", "/api/session", &[], body).await?;
    head.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.trim().split(';').next())
        .map(str::to_string)
        .context("the bench agent could not log in")
}

async fn post_move(
    addr: &str,
    cookie: &str,
    booking: i64,
    slot: i64,
    n: usize,
) -> anyhow::Result<(u16, String)> {
    let key = format!("bench-{n}");
    let (status, _, body) = request(
        addr,
        "POST",
        &format!("/api/bookings/{booking}/move"),
        &[("Cookie", cookie), ("Idempotency-Key", &key)],
        &format!(r#"{{"slot_id":{slot}}}"#),
    )
    .await?;
    let reason = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["reason"].as_str().map(str::to_string))
        .unwrap_or_default();
    Ok((status, reason))
}

/// A move on the agent's kept connection (opened on first use, and again after the server
/// closed it).
async fn post_move_kept(
    conn: &mut Option<tokio::net::TcpStream>,
    addr: &str,
    cookie: &str,
    booking: i64,
    slot: i64,
    n: usize,
) -> anyhow::Result<(u16, String)> {
    let body = format!(r#"{{"slot_id":{slot}}}"#);
    let req = format!(
        "POST /api/bookings/{booking}/move HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCookie: {cookie}\r\nIdempotency-Key: bench-{n}\r\n\r\n{body}",
        body.len()
    );
    for attempt in 0..2 {
        if conn.is_none() {
            let s = tokio::net::TcpStream::connect(addr).await?;
            s.set_nodelay(true)?;
            *conn = Some(s);
        }
        let s = conn.as_mut().context("a connection")?;
        match exchange(s, req.as_bytes()).await {
            Ok((status, body)) => {
                let reason = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["reason"].as_str().map(str::to_string))
                    .unwrap_or_default();
                return Ok((status, reason));
            }
            // The server closed an idle connection: a new one, once. The key makes the
            // resent move harmless.
            Err(e) if attempt == 0 => {
                tracing::debug!("reconnecting: {e}");
                *conn = None;
            }
            Err(e) => return Err(e),
        }
    }
    anyhow::bail!("no answer")
}

/// Writes one request and reads its answer (by Content-Length): (status, body).
async fn exchange(s: &mut tokio::net::TcpStream, req: &[u8]) -> anyhow::Result<(u16, String)> {
    s.write_all(req).await?;
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP answer without a status")?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((
        status,
        String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string(),
    ))
}

/// One HTTP/1.1 request on its own connection: (status, head, body).
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<(u16, String, String)> {
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
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP answer without a status")?;
    Ok((status, head.to_string(), body.to_string()))
}
