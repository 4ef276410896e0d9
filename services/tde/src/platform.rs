//! The roles of the single binary, and the one start-up path behind `tde dev`,
//! `tde serve <service>` and the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use tde_runtime::auth::LocalIssuer;
use tde_runtime::config::{BusKind, Settings};
use tde_runtime::server::{self, RunningPlatform, ServiceModule};

/// A service the binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Territories,
    Plans,
    Notifications,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Territories, Role::Plans, Role::Notifications];

    pub fn module(self) -> Arc<dyn ServiceModule> {
        match self {
            Role::Territories => Arc::new(tde_territories::TerritoriesModule::default()),
            Role::Plans => Arc::new(tde_plans::PlansModule),
            Role::Notifications => Arc::new(tde_notifications::NotificationsModule::default()),
        }
    }
}

pub fn modules(roles: &[Role]) -> Vec<Arc<dyn ServiceModule>> {
    roles.iter().map(|r| r.module()).collect()
}

/// The settings of `tde dev`: the configured ones, with SQLite files under `data_dir`, the
/// in-process bus, reflection on, and `listen`.
pub fn dev_settings(
    mut settings: Settings,
    data_dir: &Path,
    listen: SocketAddr,
) -> anyhow::Result<Settings> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let dir = data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    settings.database.url = format!("sqlite://{}/{{service}}.db?mode=rwc", dir.display());
    settings.bus.kind = BusKind::Memory;
    settings.server.listen = listen;
    settings.server.reflection = true;
    // Without an SMTP relay, e-mails are written as .eml files in the data dir.
    if settings.notifications.smtp.is_none() {
        settings.notifications.mail_dir = dir.join("mail");
    }
    if settings.notifications.feed_listen.is_none() {
        // Beside the gRPC port (any free port when that one is).
        let mut feeds = listen;
        feeds.set_port(if listen.port() == 0 {
            0
        } else {
            listen.port().saturating_add(1)
        });
        settings.notifications.feed_listen = Some(feeds);
        settings.notifications.feed_base_url = format!("http://{feeds}");
    }
    // Tokens minted by `tde token` with the local key, created on first start.
    let issuer = dev_issuer(&settings, &dir)?;
    settings.auth.jwks_file = Some(LocalIssuer::key_set_path(&keys_dir(&dir)));
    tracing::debug!(kid = issuer.kid(), "local signing key ready");
    settings.validate()?;
    Ok(settings)
}

fn keys_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("keys")
}

/// The local token issuer of `tde dev` in `data_dir` (created on first use), minting for the
/// configured issuer and audience.
pub fn dev_issuer(settings: &Settings, data_dir: &Path) -> anyhow::Result<LocalIssuer> {
    let dir = keys_dir(data_dir);
    LocalIssuer::ensure_in(&dir, &settings.auth.issuer, &settings.auth.audience)
        .with_context(|| format!("the local signing key in {}", dir.display()))
}

/// Starts `roles` with `settings`.
pub async fn start(settings: Settings, roles: &[Role]) -> anyhow::Result<RunningPlatform> {
    tde_runtime::telemetry::init(&settings.telemetry);
    Ok(server::start(settings, modules(roles), None, None).await?)
}

/// `tde dev --geography DIR`: imports the reference geography when none is loaded yet.
pub async fn import_geography_if_empty(
    platform: &RunningPlatform,
    dir: &Path,
    vintage: &str,
) -> anyhow::Result<()> {
    let ctx = platform
        .service(tde_territories::SERVICE)
        .context("the territories service is not running")?;
    if tde_territories::storage::geography::current_vintage(&ctx.db)
        .await?
        .is_some()
    {
        tracing::info!("reference geography already loaded");
        return Ok(());
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
        "importing the {vintage} geography from {}",
        dir.display()
    ));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let g = tde_territories::api::geography::read_dir(vintage, dir)?;
    tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    bar.finish_with_message(format!(
        "geography {vintage}: {} communes, {} EPCI, {} départements, {} régions",
        g.communes.len(),
        g.epcis.len(),
        g.departements.len(),
        g.regions.len()
    ));
    Ok(())
}

/// `tde migrate <service>`: applies pending migrations and exits.
pub async fn migrate(settings: &Settings, role: Role) -> anyhow::Result<()> {
    let module = role.module();
    let mut settings = settings.clone();
    settings.database.run_migrations = true;
    let db = server::open_database(&settings, module.as_ref()).await?;
    db.close().await?;
    Ok(())
}

pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
