//! The `madoguchi` command: parse the command line, load settings, call into the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use madoguchi::domain::{Extension, Role};
use madoguchi::settings::Settings;
use madoguchi::store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "madoguchi",
    version,
    about = "窓口: the ledger and screen pop of a municipal vaccination call center"
)]
struct Cli {
    /// Settings file (default: ./madoguchi.toml when it exists).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the ledger, the agent screen and the PBX links.
    Serve,
    /// A fresh synthetic Maizuru on SQLite, the AMI simulator placing calls, and the server.
    Demo(madoguchi::demo::DemoArgs),
    /// Staff logins.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Load data files into the ledger.
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// The city's assignment: both doses for every resident who wants one and has no booking.
    Assign(AssignArgs),
    /// 送迎: bus runs for the day's riders, and drivers' manifests.
    Transport {
        #[command(subcommand)]
        command: TransportCommand,
    },
    /// 予約の組み換え: close a slot, a venue's day or a whole venue and move its bookings to
    /// the nearest legal slots (all or nothing).
    Reshuffle(ReshuffleArgs),
    /// Files out of the ledger.
    Export {
        #[command(subcommand)]
        command: ExportCommand,
    },
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        command: madoguchi::bench::BenchCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user (or reset an existing one's password, role and extension; that ends the
    /// user's sessions).
    Add {
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: String,
        /// agent, supervisor, planner, venue or admin.
        #[arg(long)]
        role: String,
        /// The PBX extension an agent's phone rings on (e.g. 201).
        #[arg(long)]
        extension: Option<String>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// Disable a login and end its sessions.
    Remove {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// The resident master (CSV, UTF-8 or Shift_JIS; all rows or none).
    Residents { file: PathBuf },
    /// Asterisk's call records (cdr_csv Master.csv, with loguniqueid): fills in the calls
    /// missed while madoguchi could not see the PBX; calls already logged are left as they are.
    Cdr {
        file: PathBuf,
        /// The times are UTC (cdr.conf usegmtime = yes) rather than Japan's local time.
        #[arg(long)]
        utc: bool,
    },
    /// The intent survey (意向調査): intent, transport need and pickup place per resident, by
    /// 宛名番号 or 券番号 (CSV, UTF-8 or Shift_JIS; all rows or none).
    Survey { file: PathBuf },
}

#[derive(clap::Args)]
struct LogExport {
    /// First day, YYYY-MM-DD.
    #[arg(long)]
    from: chrono::NaiveDate,
    /// Last day, YYYY-MM-DD (default: FROM).
    #[arg(long)]
    to: Option<chrono::NaiveDate>,
    /// utf8 (with BOM, Excel's "CSV UTF-8") or sjis (Shift_JIS).
    #[arg(long, value_enum, default_value = "utf8")]
    encoding: madoguchi::export::excel::Encoding,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Writes an export to `--out` or standard output, and says what it wrote on standard error.
fn write_export(
    what: &str,
    file: madoguchi::export::excel::ExcelFile,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use std::io::Write;
    match out {
        Some(path) => std::fs::write(path, &file.bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?,
        None => std::io::stdout().write_all(&file.bytes)?,
    }
    let place = out.map_or("standard output".to_string(), |p| p.display().to_string());
    eprintln!("{} {what} written to {place}", file.rows);
    if file.replaced > 0 {
        eprintln!(
            "{} characters Shift_JIS cannot hold were written as 〓; use --encoding utf8 to keep them",
            file.replaced
        );
    }
    Ok(())
}

#[derive(clap::Args)]
struct AssignArgs {
    /// The first day dose 1 may fall on (YYYY-MM-DD, Japan).
    #[arg(long)]
    from: chrono::NaiveDate,
    /// The last day dose 1 may fall on; dose 2 follows at the product's interval.
    #[arg(long)]
    to: chrono::NaiveDate,
    /// Plan and report, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// 地区 in the order they are served among residents of the same age, comma-separated.
    #[arg(long, value_delimiter = ',')]
    district_order: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum TransportCommand {
    /// Seats on runs for the day's riders who have none: group by stop and slot, fill runs,
    /// add runs while a slot time has fewer than --max-runs; list riders not placed.
    Plan {
        #[arg(long)]
        date: chrono::NaiveDate,
        /// Seats of a run this adds.
        #[arg(long, default_value_t = 20)]
        seats: i64,
        #[arg(long, default_value_t = 2)]
        max_runs: usize,
        #[arg(long)]
        dry_run: bool,
    },
    /// A run's manifest for its driver, as CSV (UTF-8 with BOM).
    Manifest {
        #[arg(long)]
        run: i64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ReshuffleArgs {
    /// Close this slot.
    #[arg(long, conflicts_with_all = ["venue", "date"])]
    slot: Option<i64>,
    /// Close this venue (from now on), or with --date its day.
    #[arg(long)]
    venue: Option<i64>,
    #[arg(long, requires = "venue")]
    date: Option<chrono::NaiveDate>,
    /// Show the plan; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ExportCommand {
    /// The VRS upload CSV (VACCINATION.md §1.5) of a day's doses not yet exported: a new batch,
    /// kept so it can be written again byte for byte with --batch.
    Vrs {
        /// The day (in Japan) of the doses, YYYY-MM-DD.
        #[arg(long, required_unless_present = "batch")]
        date: Option<String>,
        /// Write an earlier batch again, exactly as it was first written, instead.
        #[arg(long, conflicts_with = "date")]
        batch: Option<i64>,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The 予防接種台帳 CSV (VACCINATION.md §1.4) of every dose on record.
    Ledger {
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The V-SYS weekly vaccine request: vials per venue and product for the 14 days from
    /// FROM, from the bookings and the doses a vial gives, less unopened stock; CSV for Excel.
    Vsys {
        /// The first day, YYYY-MM-DD (default: today in Japan).
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        /// utf8 (with BOM, for Excel) or sjis (Shift_JIS).
        #[arg(long, value_enum, default_value = "utf8")]
        encoding: madoguchi::export::excel::Encoding,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The call log of the days FROM..=TO (Japan's dates) as CSV for Excel.
    Calls(LogExport),
    /// The inquiry log of the days FROM..=TO (Japan's dates) as CSV for Excel.
    Inquiries(LogExport),
    /// Assignment notices for mail merge: name, address, each dose's venue, date with weekday,
    /// time, pickup stop and time.
    Notices {
        /// Only residents whose first dose falls from this day.
        #[arg(long)]
        from: Option<chrono::NaiveDate>,
        #[arg(long)]
        to: Option<chrono::NaiveDate>,
        /// utf8 (with BOM, for Excel) or sjis (Shift_JIS).
        #[arg(long, value_enum, default_value = "utf8")]
        encoding: madoguchi::export::excel::Encoding,
        /// The file to write (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn write_out(out: Option<&std::path::Path>, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    match out {
        Some(p) => {
            std::fs::write(p, bytes).with_context(|| format!("{}: cannot write", p.display()))
        }
        None => Ok(std::io::stdout().write_all(bytes)?),
    }
}

/// `default` is the filter when `MADOGUCHI_LOG` is unset (a benchmark logs warnings only: a
/// line per call would be part of what it measures).
fn init_logs(json: bool, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("MADOGUCHI_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal, never into a file or a collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("madoguchi: {e:#}");
            return ExitCode::from(2);
        }
    };
    let default_filter = match cli.command {
        Command::Bench { .. } => "warn",
        _ => "info,sqlx=warn",
    };
    init_logs(settings.log_json, default_filter);
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("madoguchi: {}", reason(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: a cause whose text its parent
/// already quotes (sqlx and io errors often do) is left out.
fn reason(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let running = madoguchi::app::build(settings).await?;
            if running
                .state
                .store
                .users()
                .await
                .map(|u| u.is_empty())
                .unwrap_or(false)
            {
                tracing::warn!(
                    "no staff login exists yet: add one with `madoguchi user add --username NAME --password PASSWORD --role admin` (agents also take --extension)"
                );
            }
            running.wait().await
        }
        Command::Demo(args) => madoguchi::demo::run(args, settings).await,
        Command::User {
            command:
                UserCommand::Add {
                    username,
                    password,
                    role,
                    extension,
                    display_name,
                },
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!(
                    "--role must be agent, supervisor, planner, venue or admin, got {role:?}"
                )
            })?;
            let extension = extension
                .as_deref()
                .map(Extension::parse)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--extension: {e}"))?;
            if username.trim().is_empty() || password.len() < 4 {
                anyhow::bail!(
                    "--username must not be empty and --password must have at least 4 characters"
                );
            }
            let store = Store::open(&settings.database_url).await?;
            let hash = tokio::task::spawn_blocking(move || {
                madoguchi::store::users::hash_password(&password)
            })
            .await??;
            let id = store
                .upsert_user(
                    username.trim(),
                    &display_name,
                    &hash,
                    role,
                    extension.as_ref(),
                )
                .await?;
            println!(
                "user {} (id {id}) saved as {role}; any earlier sessions are ended",
                username.trim()
            );
            store.close().await;
            Ok(())
        }
        Command::User {
            command: UserCommand::Remove { username },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let removed = store.remove_user(username.trim()).await;
            store.close().await;
            if !removed? {
                anyhow::bail!("--username: no active user {:?}", username.trim());
            }
            println!("user {} removed; their sessions are ended", username.trim());
            Ok(())
        }
        Command::Import {
            command: ImportCommand::Residents { file },
        } => {
            // A file that cannot be read fails before the database is opened (or created).
            std::fs::File::open(&file)
                .with_context(|| format!("{}: cannot read the file", file.display()))?;
            let store = Store::open(&settings.database_url).await?;
            let result = madoguchi::export::import_residents(&store, &file).await;
            store.close().await;
            let report = result?;
            println!("{report}");
            Ok(())
        }
        Command::Import {
            command: ImportCommand::Cdr { file, utc },
        } => {
            std::fs::File::open(&file)
                .with_context(|| format!("{}: cannot read the file", file.display()))?;
            let store = Store::open(&settings.database_url).await?;
            let result = madoguchi::export::cdr::import_cdr(&store, &file, utc).await;
            store.close().await;
            println!("{}", result?);
            Ok(())
        }
        Command::Import {
            command: ImportCommand::Survey { file },
        } => {
            std::fs::File::open(&file)
                .with_context(|| format!("{}: cannot read the file", file.display()))?;
            let store = Store::open(&settings.database_url).await?;
            let result = madoguchi::export::survey::import_survey(&store, &file).await;
            store.close().await;
            println!("{}", result?);
            Ok(())
        }
        Command::Export {
            command: ExportCommand::Calls(a),
        } => {
            let store = Store::open(&settings.database_url).await?;
            let to = a.to.unwrap_or(a.from);
            let result = madoguchi::export::logs::calls_file(&store, a.from, to, a.encoding).await;
            store.close().await;
            write_export("calls", result?, a.out.as_deref())
        }
        Command::Export {
            command: ExportCommand::Inquiries(a),
        } => {
            let store = Store::open(&settings.database_url).await?;
            let to = a.to.unwrap_or(a.from);
            let result =
                madoguchi::export::logs::inquiries_file(&store, a.from, to, a.encoding).await;
            store.close().await;
            write_export("inquiries", result?, a.out.as_deref())
        }
        Command::Assign(a) => {
            if a.to < a.from {
                anyhow::bail!("--to is before --from");
            }
            let store = Store::open(&settings.database_url).await?;
            let opts = madoguchi::store::bookings::assign::AssignOptions {
                from: a.from,
                to: a.to,
                dry_run: a.dry_run,
                district_order: a.district_order,
            };
            let report = store.assign(&opts).await;
            store.close().await;
            let report = report?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(())
        }
        Command::Transport {
            command:
                TransportCommand::Plan {
                    date,
                    seats,
                    max_runs,
                    dry_run,
                },
        } => {
            if !(1..=100).contains(&seats) {
                anyhow::bail!("--seats is 1 to 100");
            }
            let store = Store::open(&settings.database_url).await?;
            let plan = store
                .plan_transport(date, seats, max_runs.clamp(1, 50), dry_run)
                .await;
            store.close().await;
            let plan = plan?;
            println!(
                "transport {date}{}: {} riders placed, {} runs added, {} not placed",
                if dry_run {
                    " (dry run: nothing written)"
                } else {
                    ""
                },
                plan.placed.len(),
                plan.runs_created.len(),
                plan.unplaced.len()
            );
            for u in &plan.unplaced {
                println!(
                    "  not placed: booking {} (resident {}, slot {}): {}",
                    u.booking_id, u.resident_id, u.slot_id, u.reason
                );
            }
            Ok(())
        }
        Command::Transport {
            command: TransportCommand::Manifest { run, out },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let manifest = store.manifest(run).await;
            store.close().await;
            let (info, rows) = match manifest {
                Err(madoguchi::store::StoreError::NotFound) => anyhow::bail!("--run: no run {run}"),
                other => other?,
            };
            let csv = madoguchi::store::bookings::transport::manifest_csv(&info, &rows);
            write_out(out.as_deref(), csv.as_bytes())
        }
        Command::Reshuffle(r) => {
            use madoguchi::store::bookings::reshuffle::Scope;
            let scope = match (r.slot, r.venue, r.date) {
                (Some(s), None, None) => Scope::Slot(s),
                (None, Some(v), Some(d)) => Scope::VenueDay(v, d),
                (None, Some(v), None) => Scope::Venue(v),
                _ => anyhow::bail!("give --slot ID, or --venue ID (with --date for one day)"),
            };
            let store = Store::open(&settings.database_url).await?;
            let report = store.reshuffle(scope, r.dry_run, chrono::Utc::now()).await;
            store.close().await;
            let report = match report {
                Err(madoguchi::store::StoreError::NotFound) => {
                    anyhow::bail!("{scope}: no such slot, or the venue has no slots there")
                }
                other => other?,
            };
            if r.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
                return Ok(());
            }
            println!(
                "reshuffle {}{}: {} slots closed, {} bookings moved, {} not moved",
                report.scope,
                if report.dry_run {
                    " (dry run: nothing written)"
                } else {
                    ""
                },
                report.closed_slots.len(),
                report.moved.len(),
                report.not_moved.len()
            );
            for m in &report.moved {
                println!(
                    "  moved: booking {} (resident {}, dose {}) slot {} -> {} ({}){}{}",
                    m.booking_id,
                    m.resident_id,
                    m.dose,
                    m.from_slot,
                    m.to_slot,
                    m.starts_at,
                    if m.with_household {
                        ", with household"
                    } else {
                        ""
                    },
                    match &m.ride {
                        Some(r) => format!(", ride {} on run {}", r.status, r.run_id),
                        None => String::new(),
                    }
                );
            }
            for n in &report.not_moved {
                println!(
                    "  not moved: booking {} (resident {}, dose {}) in slot {}: {}: {}",
                    n.booking_id, n.resident_id, n.dose, n.slot_id, n.reason, n.why
                );
            }
            Ok(())
        }
        Command::Export {
            command:
                ExportCommand::Notices {
                    from,
                    to,
                    encoding,
                    out,
                },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let result =
                madoguchi::export::notices::export_notices(&store, from, to, encoding).await;
            store.close().await;
            write_export("notices", result?, out.as_deref())?;
            Ok(())
        }
        Command::Export {
            command: ExportCommand::Vrs { date, batch, out },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let result = export_vrs(&store, date, batch, out.as_deref()).await;
            store.close().await;
            result
        }
        Command::Export {
            command:
                ExportCommand::Vsys {
                    from,
                    encoding,
                    out,
                },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let from =
                from.unwrap_or_else(|| madoguchi::domain::vaccine::jst_date(chrono::Utc::now()));
            let result = madoguchi::export::vsys::vsys_file(&store, from, encoding).await;
            store.close().await;
            write_export("request lines", result?, out.as_deref())
        }
        Command::Export {
            command: ExportCommand::Ledger { out },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let result = madoguchi::export::vrs::export_ledger(&store).await;
            store.close().await;
            write_out(out.as_deref(), result?.as_bytes())
        }
        Command::Bench { command } => madoguchi::bench::run(command, settings).await,
    }
}

/// `madoguchi export vrs`: a new batch of a day's doses, or an earlier batch again.
async fn export_vrs(
    store: &Store,
    date: Option<String>,
    batch: Option<i64>,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use madoguchi::export::vrs;
    if let Some(id) = batch {
        let found = vrs::batch_file(store, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("--batch: no export batch {id}"))?;
        write_out(out, found.content.as_bytes())?;
        eprintln!(
            "batch {id} ({} doses of {}) written again",
            found.info.row_count, found.info.for_date
        );
        return Ok(());
    }
    let date = date.unwrap_or_default();
    let day = chrono::NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("--date must be YYYY-MM-DD, got {date:?}"))?;
    let actor = madoguchi::store::vaccinations::Actor {
        user_id: None,
        remote_addr: "cli",
    };
    match vrs::export_vrs(store, day, actor).await? {
        Some(b) => {
            write_out(out, b.content.as_bytes())?;
            eprintln!(
                "batch {}: {} doses of {day} exported (write it again with --batch {})",
                b.info.id, b.info.row_count, b.info.id
            );
        }
        None => {
            // The header alone, so a script that uploads the file finds an empty upload.
            write_out(out, vrs::vrs_csv(&[]).as_bytes())?;
            eprintln!("nothing new to export for {day}: no batch made");
        }
    }
    Ok(())
}
