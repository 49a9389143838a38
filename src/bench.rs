//! `madoguchi bench …`: benchmarks that print their figures (never timed tests).
//!
//! `bench pop` measures what an agent feels: a fake PBX (the AMI simulator, a real TCP server)
//! drives the real server; every agent has a WebSocket open; latency runs from the instant the
//! simulator has written and flushed the ringing events to the instant the agent's socket has
//! read the pop frame.
//!
//! `bench rebook` (`src/bench/rebook.rs`) measures rebooking: agents moving bookings at once
//! through the real server, and whether any slot ended over capacity (it must not).
//!
//! `bench assign` (`src/bench/assign.rs`) times the city's assignment of a synthetic city.
//! `bench venue` (`src/bench/venue.rs`) measures recording doses: venue screens each recording
//! a dose every 2 s through the real server while supervisors watch `/ws/venues`.

mod assign;
mod rebook;
mod supervisors;
mod venue;

use crate::domain::{Extension, PhoneNumber, Role};
use crate::pbx::ami::{SimCall, SimOutcome, Simulator};
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Context;
use clap::Subcommand;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Pop latency: a fake PBX over TCP drives the real server; a WebSocket client per agent.
    Pop {
        #[arg(long, default_value_t = 1_000_000)]
        residents: usize,
        #[arg(long, default_value_t = 500)]
        agents: usize,
        #[arg(long, default_value_t = 5_000)]
        calls: usize,
        /// Calls per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
        /// Agents rung at once per call (ring-all).
        #[arg(long, default_value_t = 3)]
        ring: usize,
        /// Keep the database here and reuse it next time (generating 1,000,000 residents takes a while).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Rebooking under load: agents move assigned dose-1 bookings (dose 2 follows) into the
    /// same few days through the real server; prints rebooks/s and checks no slot is over
    /// capacity.
    Rebook {
        #[arg(long, default_value_t = 20_000)]
        residents: usize,
        #[arg(long, default_value_t = 5_000)]
        moves: usize,
        /// Agents moving at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// `sqlite` (a temporary file) or `postgres` (a fresh database created through
        /// MADOGUCHI_TEST_POSTGRES_URL and dropped afterwards).
        #[arg(long, default_value = "sqlite")]
        engine: String,
        /// Each agent keeps one HTTP connection open for all its moves, as a browser does
        /// (without it, every move opens a connection of its own).
        #[arg(long)]
        keep_alive: bool,
    },
    /// The city's assignment of a synthetic city: read, plan, write timed; a second run must
    /// assign nobody; no slot or run over capacity.
    Assign {
        #[arg(long, default_value_t = 80_000)]
        residents: usize,
        /// `sqlite` (a temporary file) or `postgres` (through MADOGUCHI_TEST_POSTGRES_URL).
        #[arg(long, default_value = "sqlite")]
        engine: String,
    },
    /// Supervisor screens: `clients` supervisor WebSockets receiving the live board while
    /// calls flow through the AMI simulator; prints board delivery p50/p99/max.
    Supervisors {
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        #[arg(long, default_value_t = 1_000)]
        calls: usize,
        /// Calls per second.
        #[arg(long, default_value_t = 50.0)]
        rate: f64,
    },
    /// Venue screens recording doses (each one every --every-ms) through the real server
    /// while supervisors watch /ws/venues; prints the p99 of a recording.
    Venue {
        #[arg(long, default_value_t = 100)]
        screens: usize,
        /// Doses each screen records.
        #[arg(long, default_value_t = 10)]
        doses: usize,
        #[arg(long, default_value_t = 2000)]
        every_ms: u64,
        /// Supervisor screens on /ws/venues.
        #[arg(long, default_value_t = 5)]
        supervisors: usize,
        /// `sqlite` (a temporary file) or `postgres` (through MADOGUCHI_TEST_POSTGRES_URL).
        #[arg(long, default_value = "sqlite")]
        engine: String,
    },
}

pub async fn run(command: BenchCommand, _settings: Settings) -> anyhow::Result<()> {
    match command {
        BenchCommand::Pop {
            residents,
            agents,
            calls,
            rate,
            ring,
            data_dir,
        } => {
            pop(
                residents,
                agents,
                calls,
                rate,
                ring.clamp(1, agents.max(1)),
                data_dir,
            )
            .await
        }
        BenchCommand::Rebook {
            residents,
            moves,
            concurrency,
            engine,
            keep_alive,
        } => rebook::rebook(residents, moves, concurrency, &engine, keep_alive).await,
        BenchCommand::Assign { residents, engine } => assign::assign(residents, &engine).await,
        BenchCommand::Supervisors {
            clients,
            calls,
            rate,
        } => supervisors::supervisors(clients, calls, rate).await,
        BenchCommand::Venue {
            screens,
            doses,
            every_ms,
            supervisors,
            engine,
        } => venue::venue(screens, doses, every_ms, supervisors, &engine).await,
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn pop(
    residents: usize,
    agents: usize,
    calls: usize,
    rate: f64,
    ring: usize,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let tmp;
    let dir = match data_dir {
        Some(d) => d,
        None => {
            tmp = crate::store::testing::TempDir::new("bench")?;
            tmp.0.clone()
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let url = format!("sqlite://{}/bench.db", dir.display());
    let store = Store::open(&url).await?;
    // A reused bench database starts each run with no call history, so runs compare.
    sqlx::query("DELETE FROM calls")
        .execute(&store.write)
        .await?;
    sqlx::query("DELETE FROM inquiries")
        .execute(&store.write)
        .await?;
    let have = store.resident_count().await?;
    if have < residents as i64 {
        let t = Instant::now();
        println!("generating {residents} residents …");
        for (i, chunk) in crate::demo::synth::residents(residents, 2021)
            .chunks(50_000)
            .enumerate()
        {
            if (i as i64 * 50_000) < have {
                continue;
            }
            store.insert_residents(chunk).await?;
        }
        println!(
            "  {} residents in {:.1} s",
            store.resident_count().await?,
            t.elapsed().as_secs_f64()
        );
    }
    // Agents on extensions 1000…; password = username (the bench logs them in).
    let t = Instant::now();
    let hash =
        tokio::task::spawn_blocking(|| crate::store::users::hash_password("bench")).await??;
    let mut exts = Vec::with_capacity(agents);
    for i in 0..agents {
        let ext = format!("{}", 1000 + i);
        store
            .upsert_user(
                &format!("bench{i}"),
                "",
                &hash,
                Role::Agent,
                Some(&Extension::parse(&ext).map_err(anyhow::Error::msg)?),
            )
            .await?;
        exts.push(ext);
    }
    let phones = crate::demo::synth::sample_phones(&store, 20_000, 7).await?;
    anyhow::ensure!(!phones.is_empty(), "no phone numbers in the bench database");

    // Lookups per second, straight against the store (4 concurrent readers, 2 s).
    let lookups = {
        let stop = Instant::now() + Duration::from_secs(2);
        let mut tasks = Vec::new();
        for w in 0..4 {
            let (store, phones) = (store.clone(), phones.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                let mut i = w;
                while Instant::now() < stop {
                    if let Some(p) = PhoneNumber::from_caller_id(&phones[i % phones.len()]) {
                        let _ = store.residents_by_phone(&p).await;
                    }
                    n += 1;
                    i += 4;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await?;
        }
        total as f64 / 2.0
    };
    // The pop's lookup alone, one at a time, before any load.
    let unloaded = {
        let parsed: Vec<PhoneNumber> = phones
            .iter()
            .take(2000)
            .filter_map(|p| PhoneNumber::from_caller_id(p))
            .collect();
        let t = Instant::now();
        for p in &parsed {
            store.pop_candidates(p).await?;
        }
        t.elapsed().as_secs_f64() / parsed.len().max(1) as f64
    };
    println!(
        "  {agents} agents set up in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The load (the simulated PBX and the 500 agents' sockets) runs on a runtime of its own, so
    // the server's tasks are not queued behind the clients' in one scheduler. They still share
    // the machine's cores with the server.
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

    // One session and one socket per agent; each socket reports (extension, call id, read instant).
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, String, Instant)>();
    let http = reqwest_free_login(&base, agents).await?;
    let mut sockets = Vec::new();
    for (i, cookie) in http.into_iter().enumerate() {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{}/ws", base.replace("http://", "ws://")).into_client_request()?;
        req.headers_mut().insert("cookie", cookie.parse()?);
        let mut ws = load
            .spawn(ws_connect(req))
            .await?
            .context("opening an agent socket")?;
        let (tx, ext) = (seen_tx.clone(), exts[i].clone());
        sockets.push(load.spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                    if t.contains("\"screen_pop\"") {
                        let now = Instant::now();
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                        let id = v["call"]["id"].as_str().unwrap_or_default().to_string();
                        let _ = tx.send((ext.clone(), id, now));
                    }
                }
            }
        }));
    }
    drop(seen_tx);
    // Wait for the AMI link to log in.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.state.links.iter().all(|l| l.up()) {
        anyhow::ensure!(Instant::now() < deadline, "the AMI link did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    *server
        .state
        .metrics
        .pop_write_samples
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Vec::with_capacity(calls * ring));
    println!("placing {calls} calls at {rate}/s, ringing {ring} of {agents} agents each …");
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut offered: HashMap<String, Instant> = HashMap::new();
    let mut expect: HashMap<String, usize> = HashMap::new();
    let mut pending = Vec::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    for i in 0..calls {
        let at = started + interval * i as u32;
        tokio::time::sleep_until(at.into()).await;
        let first = next(agents);
        let members: Vec<String> = (0..ring)
            .map(|k| exts[(first + k * 7) % agents].clone())
            .collect();
        let _load = load.enter();
        let handle = sim.place_call(SimCall {
            caller_number: phones[next(phones.len())].clone(),
            caller_name: String::new(),
            queue: "vaccine".into(),
            members,
            outcome: SimOutcome::Answered { by: 0 },
            ring: Duration::from_millis(300),
            talk: Duration::from_millis(500),
        });
        expect.insert(format!("ami:{}", handle.call_id), ring);
        pending.push(handle);
    }
    for h in pending {
        let id = format!("ami:{}", h.call_id);
        if let Ok(t) = h.offered.await {
            offered.insert(id, t);
        }
    }
    // Collect pops until all arrived or 10 s of silence.
    let mut latencies = Vec::with_capacity(calls * ring);
    let want: usize = expect.values().sum();
    let mut got = 0usize;
    let mut early = Vec::new();
    while got < want {
        match tokio::time::timeout(Duration::from_secs(10), seen_rx.recv()).await {
            Ok(Some(p)) => {
                got += 1;
                early.push(p);
            }
            _ => break,
        }
    }
    for (_, id, read) in early {
        if let Some(t) = offered.get(&id) {
            latencies.push(read.saturating_duration_since(*t));
        }
    }
    latencies.sort();
    let wall = started.elapsed().as_secs_f64();
    println!();
    println!(
        "bench pop: {residents} residents, {agents} agents connected, {calls} calls at {rate}/s"
    );
    println!("  pops received     {got} of {want}");
    println!(
        "  pop latency       p50 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("  lookups/s         {lookups:.0} (phone → residents, 4 readers)");
    println!(
        "  pop lookup alone  {:.3} ms mean (one at a time, no load)",
        unloaded * 1e3
    );
    let m = &server.state.metrics;
    println!(
        "  inside the server caller lookup with history mean {:.3} ms (max {:.2} ms); first event → pop published mean {:.3} ms (max {:.2} ms)",
        m.lookup_latency.mean_us() / 1e3,
        m.lookup_latency.max_us() as f64 / 1e3,
        m.pop_latency.mean_us() / 1e3,
        m.pop_latency.max_us() as f64 / 1e3,
    );
    let mut server_side: Vec<Duration> = server
        .state
        .metrics
        .pop_write_samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_default()
        .into_iter()
        .map(Duration::from_micros)
        .collect();
    server_side.sort();
    println!(
        "  server's own      event read → pop frame written: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} frames)",
        percentile(&server_side, 0.50).as_secs_f64() * 1e3,
        percentile(&server_side, 0.99).as_secs_f64() * 1e3,
        server_side.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        server_side.len()
    );
    println!("  wall time         {wall:.1} s");
    if let Some(kib) = peak_rss_kib() {
        println!(
            "  peak RSS          {:.1} MiB (whole process: server, simulator, clients)",
            kib as f64 / 1024.0
        );
    }
    for s in sockets {
        s.abort();
    }
    server.shutdown().await?;
    {
        let _load = load.enter();
        drop(sim);
    }
    // A runtime may not be dropped inside another's task: let it go in the background.
    load.shutdown_background();
    Ok(())
}

/// Opens a screen's WebSocket as a browser would, with a read buffer sized for the messages a
/// screen gets (tungstenite zeroes its whole read buffer, 128 KiB by default, before each
/// read: a thousand screens on one client thread would measure memset, not the server).
pub(crate) async fn ws_connect(
    req: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio_tungstenite::tungstenite::Error,
> {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(16 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true).await?;
    Ok(ws)
}

/// Logs every bench agent in over HTTP with a minimal client (hyper is not a dependency; the
/// request is small enough to write by hand) and returns their session cookies.
async fn reqwest_free_login(base: &str, agents: usize) -> anyhow::Result<Vec<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_string();
    let mut cookies = Vec::with_capacity(agents);
    for i in 0..agents {
        let body = format!(r#"{{"username":"bench{i}","password":"bench"}}"#);
        let req = format!(
            "POST /api/session HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = tokio::net::TcpStream::connect(&addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        let text = String::from_utf8_lossy(&resp);
        let cookie = text
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
            .and_then(|l| l.split_once(':'))
            .and_then(|(_, v)| v.trim().split(';').next())
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "login of bench{i} failed: {}",
                    text.lines().next().unwrap_or("")
                )
            })?;
        cookies.push(cookie);
    }
    Ok(cookies)
}
