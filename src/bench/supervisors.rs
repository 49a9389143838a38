//! `madoguchi bench supervisors`: supervisor screens receiving the live board while calls
//! flow. The AMI simulator (a real TCP server) places calls at a fixed rate into the real
//! server; every supervisor has `/ws/supervisor` open. Each board message carries the instant
//! the server built it (`at`); delivery latency runs from there to the instant the client read
//! it. The board is coalesced to at most two messages a second, so the time from a PBX event to
//! the screen adds up to half a second on top of the delivery measured here, by design.

use super::{peak_rss_kib, percentile, reqwest_free_login};
use crate::domain::Role;
use crate::pbx::ami::{SimCall, SimOutcome, Simulator};
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Context;
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub async fn supervisors(clients: usize, calls: usize, rate: f64) -> anyhow::Result<()> {
    let tmp = crate::store::testing::TempDir::new("bench-sup")?;
    let url = format!("sqlite://{}/bench.db", tmp.0.display());
    let store = Store::open(&url).await?;
    store
        .insert_residents(&crate::demo::synth::residents(2_000, 2021))
        .await?;
    let phones = crate::demo::synth::sample_phones(&store, 1_000, 7).await?;
    anyhow::ensure!(!phones.is_empty(), "no phone numbers in the bench database");
    let hash =
        tokio::task::spawn_blocking(|| crate::store::users::hash_password("bench")).await??;
    // Supervisors bench0…; eight agents to ring on extensions 2000….
    for i in 0..clients {
        store
            .upsert_user(&format!("bench{i}"), "", &hash, Role::Supervisor, None)
            .await?;
    }
    let mut exts = Vec::new();
    for i in 0..8 {
        let ext = format!("{}", 2000 + i);
        store
            .upsert_user(
                &format!("agent{i}"),
                "",
                &hash,
                Role::Agent,
                Some(&crate::domain::Extension::parse(&ext).map_err(anyhow::Error::msg)?),
            )
            .await?;
        exts.push(ext);
    }
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-load")
        .enable_all()
        .build()?;
    let sim_addr: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let sim = load
        .spawn(async move { Simulator::start(sim_addr, "bench", "bench").await })
        .await??;
    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        database_url: url.clone(),
        ami_address: Some(sim.local_addr().to_string()),
        ami_username: "bench".into(),
        ami_secret: "bench".into(),
        ..Settings::default()
    };
    let server = crate::app::build_with_store(settings, store.clone()).await?;
    let base = server.url();
    println!("logging in {clients} supervisors …");
    let cookies = reqwest_free_login(&base, clients).await?;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<Duration>();
    let mut sockets = Vec::new();
    for cookie in cookies {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req =
            format!("{}/ws/supervisor", base.replace("http://", "ws://")).into_client_request()?;
        req.headers_mut().insert("cookie", cookie.parse()?);
        let mut ws = load
            .spawn(super::ws_connect(req))
            .await?
            .context("opening a supervisor socket")?;
        let tx = seen_tx.clone();
        sockets.push(load.spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                    // A board leads with its type and `at` (after the hub's `seq`): only
                    // those first bytes are read, so the clients' parsing does not weigh on
                    // the measurement.
                    let head = t.get(..t.len().min(96)).unwrap_or("");
                    if head.contains("\"type\":\"board\"") {
                        let now = chrono::Utc::now();
                        let at = head
                            .find("\"at\":\"")
                            .and_then(|i| head.get(i + 6..))
                            .and_then(|rest| rest.split('"').next())
                            .and_then(crate::store::parse_ts);
                        if let Some(at) = at {
                            let us = (now - at).num_microseconds().unwrap_or(0).max(0);
                            let _ = tx.send(Duration::from_micros(us as u64));
                        }
                    }
                }
            }
        }));
    }
    drop(seen_tx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.state.links.iter().all(|l| l.up()) {
        anyhow::ensure!(Instant::now() < deadline, "the AMI link did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("placing {calls} calls at {rate}/s with {clients} supervisor screens open …");
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    let mut pending = Vec::new();
    for i in 0..calls {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        let first = next(exts.len());
        let _load = load.enter();
        let outcome = if i % 5 == 4 {
            SimOutcome::Abandoned
        } else {
            SimOutcome::Answered { by: 0 }
        };
        pending.push(sim.place_call(SimCall {
            caller_number: phones[next(phones.len())].clone(),
            caller_name: String::new(),
            queue: "vaccine".into(),
            members: vec![exts[first].clone(), exts[(first + 1) % exts.len()].clone()],
            outcome,
            ring: Duration::from_millis(300),
            talk: Duration::from_millis(500),
        }));
    }
    for h in pending {
        let _ = h.offered.await;
    }
    // The last calls end and their boards go out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for s in &sockets {
        s.abort();
    }
    let mut latencies = Vec::new();
    while let Ok(d) = seen_rx.try_recv() {
        latencies.push(d);
    }
    latencies.sort();
    let wall = started.elapsed().as_secs_f64();
    println!();
    println!("bench supervisors: {clients} screens, {calls} calls at {rate}/s");
    println!(
        "  board messages received {} ({:.1} per screen, {:.2} per screen per second)",
        latencies.len(),
        latencies.len() as f64 / clients.max(1) as f64,
        latencies.len() as f64 / clients.max(1) as f64 / wall
    );
    println!(
        "  delivery (board built → read by the screen): p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  wall time {wall:.1} s");
    if let Some(kib) = peak_rss_kib() {
        println!(
            "  peak RSS {:.1} MiB (whole process: server, simulator, clients)",
            kib as f64 / 1024.0
        );
    }
    server.shutdown().await?;
    {
        let _load = load.enter();
        drop(sim);
    }
    load.shutdown_background();
    Ok(())
}
