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
    /// Write files for VRS and the city's health-management system.
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
}

/// Writes an export to `out`, or to standard output.
fn write_out(out: Option<&std::path::Path>, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match out {
        Some(path) => std::fs::write(path, content)
            .with_context(|| format!("{}: cannot write the file", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(content.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
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
        Command::Export {
            command: ExportCommand::Vrs { date, batch, out },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let result = export_vrs(&store, date, batch, out.as_deref()).await;
            store.close().await;
            result
        }
        Command::Export {
            command: ExportCommand::Ledger { out },
        } => {
            let store = Store::open(&settings.database_url).await?;
            let result = madoguchi::export::vrs::export_ledger(&store).await;
            store.close().await;
            write_out(out.as_deref(), &result?)
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
        write_out(out, &found.content)?;
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
            write_out(out, &b.content)?;
            eprintln!(
                "batch {}: {} doses of {day} exported (write it again with --batch {})",
                b.info.id, b.info.row_count, b.info.id
            );
        }
        None => {
            // The header alone, so a script that uploads the file finds an empty upload.
            write_out(out, &vrs::vrs_csv(&[]))?;
            eprintln!("nothing new to export for {day}: no batch made");
        }
    }
    Ok(())
}
