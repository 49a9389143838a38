//! `madoguchi bench rebook`: agents rebooking at once through the real server, against the
//! synthetic city's assigned appointments.
//!
//! The demo city comes fully assigned, so before the agents start the bench does what a
//! planner does when the call center needs room: every slot gets more seats (and every bus run
//! more seats), except one contended "hot" slot per venue, in the first days, left with
//! [`HOT_SEATS`] seats. Agents then move dose-1 bookings (dose 2 follows) into slots of the
//! booking's venue in the first [`HOT_DAYS`] days, as the alternatives list offers them: one
//! move in [`HOT_SHARE`] aims at the venue's hot slot, the rest at a slot with seats. A
//! resident who rides the bus is moved only to a time the bus serves. Rebooks (moves that
//! changed a slot) are counted apart from refusals, by reason. Afterwards every slot's and
//! every run's counter must equal its live bookings and rides, none over capacity, and each
//! hot slot that was aimed at more often than it had seats must have ended exactly full.

use crate::domain::Role;
use crate::settings::Settings;
use crate::store::testing::TestDb;
use anyhow::Context;
use sqlx::Row;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Days (from the first) whose dose-1 slots the moves aim at.
const HOT_DAYS: i64 = 5;

/// Seats left in each venue's hot slot when the agents start.
const HOT_SEATS: i64 = 10;

/// One move in this many aims at the venue's hot slot.
const HOT_SHARE: usize = 10;

/// A booking the agents may move: its id, its venue, and whether it has a ride.
#[derive(Clone, Copy)]
struct Movable {
    booking: i64,
    venue: i64,
    rider: bool,
}

/// A venue's targets: slots with seats, the subset a bus serves, and the hot slot.
#[derive(Default)]
struct Targets {
    open: Vec<i64>,
    bus: Vec<i64>,
    hot: Option<i64>,
}

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
        "{engine}: {residents} residents, {} venues, {} slots, {} bookings, {} rides in {:.1} s",
        summary.venues,
        summary.slots,
        summary.bookings,
        summary.rides,
        t.elapsed().as_secs_f64()
    );
    let hash =
        tokio::task::spawn_blocking(|| crate::store::users::hash_password("rebook")).await??;
    // An agent a login, as in a call center (the audit line and the inquiry name the agent).
    let agents = concurrency.max(1);
    for w in 0..agents {
        store
            .upsert_user(&format!("rebook{w}"), "", &hash, Role::Agent, None)
            .await?;
    }

    // Room to move into: every slot gets seats for the moves aimed at it and the doses 2
    // that follow; every run seats for the rides that follow.
    let per_slot = (moves as i64 / 10).max(50);
    sqlx::query("UPDATE slots SET capacity = capacity + $1")
        .bind(per_slot)
        .execute(&store.write)
        .await?;
    sqlx::query("UPDATE runs SET seats = seats + $1")
        .bind(per_slot)
        .execute(&store.write)
        .await?;
    let riders: HashSet<i64> =
        sqlx::query_scalar::<_, i64>("SELECT booking_id FROM rides WHERE status = 'booked'")
            .fetch_all(&store.read)
            .await?
            .into_iter()
            .collect();

    // Dose-1 bookings and, per venue, the target slots.
    let first = today + chrono::Duration::days(1);
    let bus_times: Vec<chrono::NaiveTime> = crate::demo::appointments::BUS_TIMES
        .iter()
        .filter_map(|&(h, m)| chrono::NaiveTime::from_hms_opt(h, m, 0))
        .collect();
    let mut bookings: Vec<Movable> = Vec::new();
    let mut targets: BTreeMap<i64, Targets> = BTreeMap::new();
    for venue in store.venues().await? {
        for day in 0..crate::demo::appointments::DOSE1_DAYS {
            let date = first + chrono::Duration::days(day);
            for slot in store
                .slots(Some(venue.id), Some(date), chrono::Utc::now(), 1000)
                .await?
            {
                if day < HOT_DAYS {
                    let t = targets.entry(venue.id).or_default();
                    let time = crate::store::parse_ts(&slot.starts_at)
                        .map(crate::domain::vaccine::jst_time);
                    // The hot slot: the first day's last morning slot no bus serves.
                    if day == 0
                        && t.hot.is_none()
                        && time.is_some_and(|x| x.format("%H:%M").to_string() == "11:30")
                    {
                        t.hot = Some(slot.id);
                    } else {
                        t.open.push(slot.id);
                        if time.is_some_and(|x| bus_times.contains(&x)) {
                            t.bus.push(slot.id);
                        }
                    }
                }
                let is_hot = targets.get(&venue.id).and_then(|t| t.hot) == Some(slot.id);
                for b in store.live_bookings_in(slot.id).await? {
                    if b.dose == 1 && !is_hot {
                        bookings.push(Movable {
                            booking: b.id,
                            venue: venue.id,
                            rider: riders.contains(&b.id),
                        });
                    }
                }
            }
        }
    }
    anyhow::ensure!(
        !bookings.is_empty(),
        "no bookings to move; give more --residents"
    );
    let hot: Vec<i64> = targets.values().filter_map(|t| t.hot).collect();
    for slot in &hot {
        sqlx::query("UPDATE slots SET capacity = booked + $1 WHERE id = $2")
            .bind(HOT_SEATS)
            .bind(*slot)
            .execute(&store.write)
            .await?;
    }

    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        ..Settings::default()
    };
    let server = crate::app::build_with_store(settings, store.clone()).await?;
    let addr = server.addr.to_string();
    let mut cookies = Vec::with_capacity(agents);
    for w in 0..agents {
        cookies.push(login(&addr, &format!("rebook{w}")).await?);
    }

    let next = Arc::new(AtomicUsize::new(0));
    let bookings = Arc::new(bookings);
    let targets = Arc::new(targets);
    let started = Instant::now();
    let mut workers = Vec::new();
    for (w, cookie) in cookies.into_iter().enumerate() {
        let (next, bookings, targets, addr) = (
            next.clone(),
            bookings.clone(),
            targets.clone(),
            addr.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
            let mut rand = move |m: usize| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % m.max(1) as u64) as usize
            };
            let mut out: Vec<Answer> = Vec::new();
            let mut conn: Option<tokio::net::TcpStream> = None;
            // Each agent moves its own share of the bookings (no two agents move one booking
            // at once), and never again one it moved into a hot slot, so the hot slots' seats
            // only fill.
            let mine: Vec<Movable> = bookings
                .iter()
                .enumerate()
                .filter(|(k, _)| k % agents == w)
                .map(|(_, m)| *m)
                .collect();
            let mut parked: HashSet<i64> = HashSet::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= moves {
                    break;
                }
                if mine.is_empty() {
                    continue;
                }
                let m = mine[rand(mine.len())];
                if parked.contains(&m.booking) {
                    continue;
                }
                let Some(t) = targets.get(&m.venue) else {
                    continue;
                };
                let (slot, aimed_hot) = match t.hot {
                    Some(hot) if !m.rider && i % HOT_SHARE == 0 => (hot, true),
                    _ => {
                        let pool = if m.rider { &t.bus } else { &t.open };
                        if pool.is_empty() {
                            continue;
                        }
                        (pool[rand(pool.len())], false)
                    }
                };
                if aimed_hot {
                    parked.insert(m.booking);
                }
                let t0 = Instant::now();
                let (status, reason, moved) = if keep_alive {
                    post_move_kept(&mut conn, &addr, &cookie, m.booking, slot, i).await?
                } else {
                    post_move(&addr, &cookie, m.booking, slot, i).await?
                };
                out.push(Answer {
                    status,
                    reason,
                    moved,
                    slot: aimed_hot.then_some(slot),
                    took: t0.elapsed(),
                });
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();

    let rebooks = results
        .iter()
        .filter(|r| r.status == 200 && r.moved)
        .count();
    let unchanged = results
        .iter()
        .filter(|r| r.status == 200 && !r.moved)
        .count();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for r in results.iter().filter(|r| r.status != 200) {
        *by_reason
            .entry(format!("{} {}", r.status, r.reason))
            .or_default() += 1;
    }
    let mut latency: Vec<Duration> = results.iter().map(|r| r.took).collect();
    latency.sort();
    let pct = |p: f64| {
        latency
            .get(((latency.len() as f64 - 1.0) * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    // The checks, before the server's shutdown closes the store.
    let over = store.slots_over_capacity().await?;
    let mismatched = store.slot_count_mismatches().await?.len();
    let runs_off = store.run_count_mismatches().await?.len();
    let mut hot_report = Vec::new();
    let mut hot_wrong = 0;
    for slot in &hot {
        let aimed = results.iter().filter(|r| r.slot == Some(*slot)).count();
        let got = results
            .iter()
            .filter(|r| r.slot == Some(*slot) && r.status == 200 && r.moved)
            .count();
        let row = sqlx::query("SELECT capacity, booked FROM slots WHERE id = $1")
            .bind(*slot)
            .fetch_one(&store.read)
            .await?;
        let (capacity, booked): (i64, i64) = (row.try_get("capacity")?, row.try_get("booked")?);
        let full = results
            .iter()
            .filter(|r| r.slot == Some(*slot) && r.reason == "slot_full")
            .count();
        // Nothing moves out of a hot slot (neither its own bookings nor those moved into it
        // move again), so exactly its seats can be taken: never more, and all of them once a
        // move was refused as full.
        if got as i64 > HOT_SEATS
            || booked > capacity
            || (full > 0 && (booked != capacity || got as i64 != HOT_SEATS))
        {
            hot_wrong += 1;
        }
        hot_report.push(format!(
            "slot {slot}: {aimed} aimed, {got} in, {full} refused as full, ends {booked}/{capacity}"
        ));
    }
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
        "  rebooks {rebooks} ({:.0} rebooks/s; {:.0} answers/s); answered unchanged {unchanged}",
        rebooks as f64 / elapsed,
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
    println!(
        "  hot slots ({HOT_SEATS} seats left at the start): {}",
        hot_report.join("; ")
    );
    println!(
        "  slots over capacity: {over}; slots whose count differs from their bookings: \
         {mismatched}; runs over seats or off their rides: {runs_off}"
    );
    db.cleanup().await;
    anyhow::ensure!(
        over == 0 && mismatched == 0 && runs_off == 0 && hot_wrong == 0,
        "capacity rule broken"
    );
    Ok(())
}

/// One answer as an agent saw it.
struct Answer {
    status: u16,
    reason: String,
    /// A 200 that changed a slot (a rebook), not one answered "already there".
    moved: bool,
    /// The hot slot, when the move aimed at it.
    slot: Option<i64>,
    took: Duration,
}

/// (reason, whether a slot changed) from a move's JSON answer.
fn read_answer(body: &str) -> (String, bool) {
    let v = serde_json::from_str::<serde_json::Value>(body).unwrap_or_default();
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    let moved = v["slots"].as_array().is_some_and(|s| !s.is_empty());
    (reason, moved)
}

/// Logs in the bench agent with a hand-written request (no HTTP client among the dependencies).
async fn login(addr: &str, username: &str) -> anyhow::Result<String> {
    let body = format!(r#"{{"username":"{username}","password":"rebook"}}"#);
    let (_, head, _) = request(addr, "POST", "/api/session", &[], &body).await?;
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
) -> anyhow::Result<(u16, String, bool)> {
    let key = format!("bench-{n}");
    let (status, _, body) = request(
        addr,
        "POST",
        &format!("/api/bookings/{booking}/move"),
        &[("Cookie", cookie), ("Idempotency-Key", &key)],
        &format!(r#"{{"slot_id":{slot}}}"#),
    )
    .await?;
    let (reason, moved) = read_answer(&body);
    Ok((status, reason, moved))
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
) -> anyhow::Result<(u16, String, bool)> {
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
                let (reason, moved) = read_answer(&body);
                return Ok((status, reason, moved));
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
