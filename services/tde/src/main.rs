//! `tde`: the Territoires d'engagement platform in one binary.
//!
//! - `tde dev`: every service in one process, SQLite files, in-process bus, nothing to install;
//! - `tde serve <service>`: one service, PostgreSQL and NATS JetStream, as on Kubernetes;
//! - `tde migrate <service>`: applies pending migrations;
//! - `tde geography …`, `tde territory …`: operator commands against a running server;
//! - `tde bench …`: the benchmarks documented in the README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tde::bench::BenchCommand;
use tde::client::{self, GeographyCommand, TerritoryCommand};
use tde::output::Format;
use tde::platform::{self, Role};
use tde_runtime::config::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "tde",
    version,
    about = "Territoires d'engagement: the ANCT programme platform"
)]
struct Cli {
    /// Configuration file (TOML); `TDE_CONFIG` when unset. `TDE_` variables override it.
    #[arg(long, global = true, env = "TDE_CONFIG")]
    config: Option<PathBuf>,
    /// Server of the operator commands.
    #[arg(long, global = true, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Output of the operator commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// Who is acting, recorded in histories (until tokens carry it).
    #[arg(long, global = true, default_value = "operator")]
    actor: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every service in one process on SQLite files and an in-process bus.
    Dev {
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:50051")]
        listen: SocketAddr,
        /// Imports the reference geography from this directory when none is loaded.
        #[arg(long)]
        geography: Option<PathBuf>,
        #[arg(long, default_value = "2026")]
        vintage: String,
    },
    /// Runs one service with the configured PostgreSQL and NATS.
    Serve {
        #[arg(value_enum)]
        service: Role,
    },
    /// Applies the pending migrations of one service's database.
    Migrate {
        #[arg(value_enum)]
        service: Role,
    },
    /// The reference geography.
    Geography {
        #[command(subcommand)]
        command: GeographyCommand,
    },
    /// Accompanied territories.
    Territory {
        #[command(subcommand)]
        command: TerritoryCommand,
    },
    /// Benchmarks (see the README).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

fn load_settings(path: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    Ok(Settings::load_from_process(path)?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev {
            data_dir,
            listen,
            geography,
            vintage,
        } => {
            let settings =
                platform::dev_settings(load_settings(cli.config.as_deref())?, &data_dir, listen)?;
            let running = platform::start(settings, Role::ALL).await?;
            if let Some(dir) = geography {
                platform::import_geography_if_empty(&running, &dir, &vintage).await?;
            }
            println!(
                "tde dev listening on {} (data in {})",
                running.local_addr,
                data_dir.display()
            );
            tde_runtime::server::shutdown_signal().await;
            running.shutdown().await?;
        }
        Command::Serve { service } => {
            let settings = load_settings(cli.config.as_deref())?;
            let running = platform::start(settings, &[service]).await?;
            let token = running.shutdown_token();
            tokio::spawn(async move {
                tde_runtime::server::shutdown_signal().await;
                token.cancel();
            });
            running.wait().await?;
        }
        Command::Migrate { service } => {
            let settings = load_settings(cli.config.as_deref())?;
            tde_runtime::telemetry::init(&settings.telemetry);
            platform::migrate(&settings, service).await?;
            println!("{service:?}: migrations applied");
        }
        Command::Geography { command } => {
            client::geography(&cli.server, cli.output, command).await?
        }
        Command::Territory { command } => {
            client::territory(&cli.server, &cli.actor, cli.output, command).await?
        }
        Command::Bench { command } => tde::bench::run(command).await?,
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    // `tde territory list | head`: end quietly when the reader goes away, as Unix tools do.
    // SAFETY: restoring the default disposition of SIGPIPE before any other thread writes.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
