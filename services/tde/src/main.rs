//! `tde`: the Territoires d'engagement platform in one binary.
//!
//! - `tde dev`: every service in one process, SQLite files, in-process bus, nothing to install;
//! - `tde serve <service>`: one service, PostgreSQL and NATS JetStream, as on Kubernetes;
//! - `tde migrate <service>`: applies pending migrations;
//! - `tde geography …`, `tde territory …`: operator commands against a running server;
//! - `tde config check`: whether a configuration file is accepted for a service.
//!
//! The benchmarks are a binary of their own, `tde-bench`, so that their harness never ships
//! here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tde::client::{self, AuditCommand, GeographyCommand, PersonalDataCommand, TerritoryCommand};
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
    /// Bearer token of the operator commands (`tde token` mints one for `tde dev`).
    #[arg(long, global = true, env = "TDE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA certificate (PEM) of a server with mutual TLS (use an https:// --server).
    #[arg(long, global = true, env = "TDE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, env = "TDE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[arg(long, global = true, env = "TDE_TLS_KEY")]
    tls_key: Option<PathBuf>,
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
        /// Imports the vintage in this directory (the package's raw JSON with --vintage, or
        /// a compact folder of `tde geography convert`); without it, the vintage shipped with
        /// tde is imported when no geography is loaded.
        #[arg(long)]
        geography: Option<PathBuf>,
        /// The vintage (a year) of raw files in --geography.
        #[arg(long, requires = "geography")]
        vintage: Option<String>,
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
    /// Accompaniment plans: charter, submissions.
    Plan {
        #[command(subcommand)]
        command: client::PlanCommand,
    },
    /// Trusted providers: registry, status, ratings.
    Provider {
        #[command(subcommand)]
        command: client::ProviderCommand,
    },
    /// Matching: needs, explained rankings, optimal assignment, proposals.
    Match {
        #[command(subcommand)]
        command: client::MatchCommand,
    },
    /// Subsidies: envelopes, decisions (four eyes), payments, the ledger, exports.
    Subsidy {
        #[command(subcommand)]
        command: client::SubsidyCommand,
    },
    /// Steering meetings (comités de pilotage).
    Meeting {
        #[command(subcommand)]
        command: client::MeetingCommand,
    },
    /// Notifications: what was sent, the delivery log, dead letters, preferences, feeds.
    Notification {
        #[command(subcommand)]
        command: client::NotificationCommand,
    },
    /// The audit trail of writes and personal-data reads.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Contacts' personal data: export and erasure (RGPD).
    PersonalData {
        #[command(subcommand)]
        command: PersonalDataCommand,
    },
    /// Mints an access token with the local key of `tde dev` (for local use only).
    Token {
        /// Folder of `tde dev` (its key is under keys/).
        #[arg(long, default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value_t = RoleArg::National)]
        role: RoleArg,
        /// Who the token is for (`sub`).
        #[arg(long, default_value = "dev-operator")]
        subject: String,
        /// The application acting (`client_id`); the rate limit counts by it.
        #[arg(long)]
        client_id: Option<String>,
        /// A scope, e.g. territories:read (repeatable); the role's scopes when none.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A territory id the caller may see (repeatable; project leads, members).
        #[arg(long = "territory")]
        territories: Vec<String>,
        /// A région code whose territories the caller may see (repeatable; project leads).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// The person's verified e-mail address (their own notification preferences…).
        #[arg(long)]
        email: Option<String>,
        /// The provider a provider's token speaks for (`tde_provider`: its own proposals).
        #[arg(long)]
        provider: Option<String>,
        /// Lifetime: 90s, 30m, 8h, 2d.
        #[arg(long, default_value = "8h", value_parser = parse_lifetime)]
        lifetime: std::time::Duration,
    },
    /// Events consumers could never process: listed, replayed.
    DeadLetter {
        #[command(subcommand)]
        command: client::DeadLetterCommand,
    },
    /// Events the bus refused (parked in the outbox): listed, published again.
    Outbox {
        #[command(subcommand)]
        command: client::OutboxCommand,
    },
    /// Configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Checks that a file (with the `TDE_` variables of this environment) is accepted by the
    /// service(s) named, as `tde serve` would load it; names the key otherwise.
    Check {
        /// The service(s) of the process, e.g. `notifications` (every one for `tde dev`).
        #[arg(value_enum, required = true)]
        services: Vec<Role>,
        /// The TOML file.
        #[arg(long)]
        file: PathBuf,
    },
}

/// A caller's role (`tde_role` claim).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    National,
    ProjectLead,
    TerritoryMember,
    Agency,
    Provider,
}

impl From<RoleArg> for tde_runtime::auth::Role {
    fn from(r: RoleArg) -> Self {
        use tde_runtime::auth::Role;
        match r {
            RoleArg::National => Role::National,
            RoleArg::ProjectLead => Role::ProjectLead,
            RoleArg::TerritoryMember => Role::TerritoryMember,
            RoleArg::Agency => Role::Agency,
            RoleArg::Provider => Role::Provider,
        }
    }
}

fn parse_lifetime(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 30m"))?;
    let seconds = match unit {
        "s" | "" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: the unit is one of s, m, h, d")),
    };
    if seconds == 0 || seconds > 30 * 86_400 {
        return Err("a lifetime is between 1 s and 30 days".into());
    }
    Ok(std::time::Duration::from_secs(seconds))
}

fn load_settings(path: Option<&std::path::Path>, roles: &[Role]) -> anyhow::Result<Settings> {
    Ok(platform::load_process_settings(path, roles)?)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let target = client::Target {
        server: cli.server.clone(),
        token: cli.token.clone(),
        tls: (cli.tls_ca.is_some() || cli.tls_cert.is_some()).then(|| {
            tde_runtime::auth::client::ClientTls {
                ca_file: cli.tls_ca.clone(),
                cert_file: cli.tls_cert.clone(),
                key_file: cli.tls_key.clone(),
                domain: None,
            }
        }),
    };
    match cli.command {
        Command::Dev {
            data_dir,
            listen,
            geography,
            vintage,
        } => {
            let settings = platform::dev_settings(
                platform::load_dev_settings(cli.config.as_deref())?,
                &data_dir,
                listen,
            )?;
            let running = platform::start(settings, Role::ALL).await?;
            // Signals are heard from now on: a stop during the geography import is graceful.
            let stop = running.shutdown_token();
            tokio::spawn({
                let stop = stop.clone();
                async move {
                    tde_runtime::server::shutdown_signal().await;
                    stop.cancel();
                }
            });
            tokio::select! {
                loaded = platform::load_geography(&running, geography.as_deref(), vintage.as_deref()) => loaded?,
                _ = stop.cancelled() => {}
            }
            println!(
                "tde dev listening on {} (data in {})",
                running.local_addr,
                data_dir.display()
            );
            running.wait().await?;
        }
        Command::Serve { service } => {
            let settings = load_settings(cli.config.as_deref(), &[service])?;
            let running = platform::start(settings, &[service]).await?;
            let token = running.shutdown_token();
            tokio::spawn(async move {
                tde_runtime::server::shutdown_signal().await;
                token.cancel();
            });
            running.wait().await?;
        }
        Command::Migrate { service } => {
            let settings = load_settings(cli.config.as_deref(), &[service])?;
            tde_runtime::telemetry::init(&settings.telemetry);
            platform::migrate(&settings, service).await?;
            println!("{service:?}: migrations applied");
        }
        Command::Geography { command } => client::geography(&target, cli.output, command).await?,
        Command::Territory { command } => client::territory(&target, cli.output, command).await?,
        Command::Plan { command } => client::plan(&target, cli.output, command).await?,
        Command::Provider { command } => client::provider(&target, cli.output, command).await?,
        Command::Match { command } => client::matching(&target, cli.output, command).await?,
        Command::Subsidy { command } => client::subsidy(&target, cli.output, command).await?,
        Command::Meeting { command } => client::meeting(&target, cli.output, command).await?,
        Command::Notification { command } => {
            client::notification(&target, cli.output, command).await?
        }
        Command::Audit { command } => client::audit(&target, cli.output, command).await?,
        Command::DeadLetter { command } => {
            client::dead_letter(&target, cli.output, command).await?
        }
        Command::Outbox { command } => client::outbox(&target, cli.output, command).await?,
        Command::PersonalData { command } => {
            client::personal_data(&target, cli.output, command).await?
        }
        Command::Token {
            data_dir,
            role,
            subject,
            client_id,
            scopes,
            territories,
            regions,
            email,
            provider,
            lifetime,
        } => {
            let settings = load_settings(cli.config.as_deref(), Role::ALL)?;
            let issuer = platform::dev_issuer(&settings, &data_dir)?;
            let role = tde_runtime::auth::Role::from(role);
            let mut spec = tde_runtime::auth::TokenSpec::new(role, subject);
            if !scopes.is_empty() {
                spec = spec.scopes(&scopes);
            }
            spec.client_id = client_id;
            spec.territories = territories;
            spec.regions = regions;
            spec.email = email;
            spec.provider = provider;
            spec.lifetime = lifetime;
            println!("{}", issuer.mint(&spec)?);
        }
        Command::Config {
            command: ConfigCommand::Check { services, file },
        } => {
            load_settings(Some(&file), &services)?;
            let names: Vec<String> = services
                .iter()
                .map(|s| format!("{s:?}").to_lowercase())
                .collect();
            println!("{}: accepted for {}", file.display(), names.join(", "));
        }
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
