//! `madoguchi demo`: a fresh synthetic Maizuru on SQLite, the built-in AMI simulator placing
//! calls from residents' numbers (some unknown, some withheld) to the demo agents, and the
//! server, pointed at the simulator. Prints the URL and the logins.

use super::synth;
use crate::pbx::ami::{SimCall, SimOutcome, Simulator};
use crate::settings::Settings;
use crate::store::Store;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the agent screen is served.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The database is DIR/madoguchi.db, created anew.
    #[arg(long, default_value = "./madoguchi-demo")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 80_000)]
    pub residents: usize,
    /// Simulated calls per minute (0: none).
    #[arg(long, default_value_t = 6.0)]
    pub call_rate: f64,
    /// Seconds between the simulated venue day's steps at each venue (a check-in or a dose;
    /// 0: no simulated venue day).
    #[arg(long, default_value_t = 3.0)]
    pub venue_pace: f64,
    /// Seed of the synthetic population (same seed, same people).
    #[arg(long, default_value_t = 2021)]
    pub seed: u64,
}

/// The demo agents' extensions (agent1…agent8).
pub const DEMO_EXTENSIONS: &[&str] = &["201", "202", "203", "204", "205", "206", "207", "208"];

pub async fn run(args: DemoArgs, mut settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let db = args.data_dir.join("madoguchi.db");
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::fs::remove_file(&p)
                .with_context(|| format!("removing the old {}", p.display()))?;
        }
    }
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url).await?;
    let started = std::time::Instant::now();
    let summary = synth::populate(&store, args.residents, args.seed).await?;
    tracing::info!(
        residents = summary.residents,
        seconds = started.elapsed().as_secs_f64(),
        "synthetic Maizuru ready"
    );

    let sim = Simulator::start("127.0.0.1:0".parse()?, "madoguchi", "demo-secret").await?;
    settings.database_url = url.clone();
    settings.listen = args.listen.clone();
    settings.ami_address = Some(sim.local_addr().to_string());
    settings.ami_username = "madoguchi".into();
    settings.ami_secret = "demo-secret".into();
    let server = crate::app::build_with_store(settings, store.clone()).await?;

    println!();
    println!("  madoguchi 窓口 — demo");
    println!("  agent screen   {}/", server.url());
    println!(
        "  database       {url}  ({} residents, {} households, {} past calls, {} inquiries)",
        summary.residents, summary.households, summary.calls, summary.inquiries
    );
    println!(
        "  appointments   {} venues, {} slots, {} bookings (dose 1 and 2)",
        summary.appointments.venues, summary.appointments.slots, summary.appointments.bookings
    );
    println!(
        "  AMI simulator  {} (calls per minute: {})",
        sim.local_addr(),
        args.call_rate
    );
    println!("  logins (password = username):");
    for (user, password, role, ext) in &summary.logins {
        match ext {
            Some(ext) => println!("    {user:<12} {password:<12} {role:<10} extension {ext}"),
            None => println!("    {user:<12} {password:<12} {role}"),
        }
    }
    println!(
        "  metrics        {}/metrics   health {}/readyz",
        server.url(),
        server.url()
    );
    println!();

    let calls = if args.call_rate > 0.0 {
        let phones = synth::sample_phones(&store, 5_000, args.seed).await?;
        Some(tokio::spawn(place_calls(
            sim,
            phones,
            args.call_rate,
            args.seed,
        )))
    } else {
        None
    };
    let venue_day = if args.venue_pace > 0.0 {
        let venues = super::venue_day::prepare(&store, chrono::Utc::now())
            .await
            .context("preparing the venue day")?;
        let booked: usize = venues.iter().map(|v| v.expected.len()).sum();
        println!(
            "  venue day      {booked} residents booked today at {} venues; a step every {} s (venue screen {}/assets/venue.html, supervisor {}/supervisor)",
            venues.len(),
            args.venue_pace,
            server.url(),
            server.url()
        );
        Some(tokio::spawn(super::venue_day::run(
            server.state.clone(),
            venues,
            Duration::from_secs_f64(args.venue_pace),
        )))
    } else {
        None
    };
    let result = server.wait().await;
    if let Some(c) = calls {
        c.abort();
    }
    if let Some(v) = venue_day {
        v.abort();
    }
    result
}

/// Places calls at `per_minute` from residents' numbers, a few unknown and withheld callers,
/// ringing all demo agents (ring-all), with realistic outcomes.
async fn place_calls(sim: Simulator, phones: Vec<String>, per_minute: f64, seed: u64) {
    let mut rng = seed | 1;
    let mut next = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m.max(1)
    };
    let gap = Duration::from_secs_f64(60.0 / per_minute);
    let mut busy_until: std::collections::HashMap<String, std::time::Instant> =
        std::collections::HashMap::new();
    // The first call comes soon, so whoever opens the screen sees a pop quickly.
    tokio::time::sleep(Duration::from_secs(5)).await;
    loop {
        let roll = next(100);
        let caller_number = match roll {
            0..=6 => "anonymous".to_string(),
            7..=14 => format!("0773-{}-{:04}", 60 + next(20), next(10_000)),
            _ => phones
                .get(next(phones.len() as u64) as usize)
                .cloned()
                .unwrap_or_default(),
        };
        // Agents on a call are not rung (Asterisk's ringinuse=no); the others ring all at once.
        let now = std::time::Instant::now();
        busy_until.retain(|_, until| *until > now);
        let members: Vec<String> = DEMO_EXTENSIONS
            .iter()
            .filter(|e| !busy_until.contains_key(**e))
            .map(|s| s.to_string())
            .collect();
        let ring = Duration::from_secs(6 + next(10));
        let talk = Duration::from_secs(30 + next(90));
        let outcome = match next(100) {
            _ if members.is_empty() => SimOutcome::Abandoned,
            0..=74 => {
                let by = next(members.len() as u64) as usize;
                // Busy through the talk and a short wrap-up.
                busy_until.insert(
                    members[by].clone(),
                    now + ring + talk + Duration::from_secs(10),
                );
                SimOutcome::Answered { by }
            }
            75..=89 => SimOutcome::Abandoned,
            _ => SimOutcome::NoAnswer,
        };
        let _ = sim.place_call(SimCall {
            caller_number,
            caller_name: String::new(),
            queue: "vaccine".into(),
            members,
            outcome,
            ring,
            talk,
        });
        tokio::time::sleep(gap.mul_f64(0.5 + next(100) as f64 / 100.0)).await;
    }
}
