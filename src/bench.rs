//! `madoguchi bench …` (being wired).
use crate::settings::Settings;
use clap::Subcommand;
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    Pop,
}
pub async fn run(_command: BenchCommand, _settings: Settings) -> anyhow::Result<()> {
    anyhow::bail!("not wired yet")
}
