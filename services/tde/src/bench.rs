//! Benchmarks (documented in the README); each prints its figure beside a reference measured
//! in the same run.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {}
}
