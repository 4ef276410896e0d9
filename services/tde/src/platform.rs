//! The roles of the single binary, and the one start-up path behind `tde dev`,
//! `tde serve <service>` and the end-to-end tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use clap::ValueEnum;
use std::collections::HashMap;
use tde_runtime::auth::LocalIssuer;

use tde_runtime::config::{BusKind, ConfigError, DevEnvironment, SectionSpec, Settings};
use tde_runtime::server::{self, RunningPlatform, ServiceModule};

/// A service the binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    Territories,
    Plans,
    Notifications,
    Subsidies,
    Matching,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Territories,
        Role::Plans,
        Role::Notifications,
        Role::Subsidies,
        Role::Matching,
    ];

    pub fn module(self) -> Arc<dyn ServiceModule> {
        match self {
            Role::Territories => Arc::new(tde_territories::TerritoriesModule::default()),
            Role::Plans => Arc::new(tde_plans::PlansModule),
            Role::Notifications => Arc::new(tde_notifications::NotificationsModule::default()),
            Role::Subsidies => Arc::new(tde_subsidies::SubsidiesModule),
            Role::Matching => Arc::new(tde_matching::MatchingModule),
        }
    }
}

pub fn modules(roles: &[Role]) -> Vec<Arc<dyn ServiceModule>> {
    roles.iter().map(|r| r.module()).collect()
}

/// The settings sections of the services `roles` run: what a process of them accepts.
pub fn sections(roles: &[Role]) -> Vec<SectionSpec> {
    modules(roles)
        .iter()
        .filter_map(|m| m.settings_section())
        .collect()
}

/// Loads the settings of a process running `roles`: defaults, then `file`, then the `TDE_`
/// variables of `env`; another service's section is refused, naming it.
pub fn load_settings(
    file: Option<&Path>,
    env: &HashMap<String, String>,
    roles: &[Role],
) -> Result<Settings, ConfigError> {
    Settings::load(file, env, &sections(roles))
}

/// The settings of `tde dev` before `dev_settings`: loaded as a development process (its
/// shortcuts allowed), with every service's section.
pub fn load_dev_settings(file: Option<&Path>) -> Result<Settings, ConfigError> {
    let mut env: HashMap<String, String> = std::env::vars().collect();
    env.insert("TDE_PROFILE".into(), "development".into());
    let from_env = env.get("TDE_CONFIG").map(std::path::PathBuf::from);
    Settings::load(file.or(from_env.as_deref()), &env, &sections(Role::ALL))
}

/// `load_settings` from the process environment (`TDE_CONFIG` when `file` is none).
pub fn load_process_settings(file: Option<&Path>, roles: &[Role]) -> Result<Settings, ConfigError> {
    Settings::load_from_process(file, &sections(roles))
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
    settings.profile = tde_runtime::config::Profile::Development;
    // Each service puts its files under the data dir and its other ports beside this one.
    settings.for_dev(&DevEnvironment {
        data_dir: dir.clone(),
        listen,
    })?;
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

/// The reference geography of `tde dev`: the vintage in `dir` when given (raw files of
/// `vintage`, or a compact folder naming its own; nothing happens when it is loaded already,
/// and an older one than the loaded one is refused), else the vintage shipped with tde when
/// none is loaded.
pub async fn load_geography(
    platform: &RunningPlatform,
    dir: Option<&Path>,
    vintage: Option<&str>,
) -> anyhow::Result<()> {
    let ctx = platform
        .service(tde_territories::SERVICE)
        .context("the territories service is not running")?;
    let loaded = tde_territories::storage::geography::current_vintage(&ctx.db).await?;
    let shipped = tde_territories::reference::SHIPPED_VINTAGE;
    let (g, origin) = match (dir, &loaded) {
        (Some(dir), _) => (
            tde_territories::reference::read_dir(dir, vintage)?,
            dir.display().to_string(),
        ),
        (None, Some(current)) => {
            let year = tde_territories::domain::geography::stored_year(&current.vintage);
            if year.is_some_and(|y| y < shipped) {
                println!(
                    "geography {} loaded; tde ships {shipped}: `tde geography import` loads it",
                    current.vintage
                );
            }
            tracing::info!(vintage = %current.vintage, "reference geography already loaded");
            return Ok(());
        }
        (None, None) => (
            tde_territories::reference::shipped()?,
            "the vintage shipped with tde".to_string(),
        ),
    };
    let bar = indicatif::ProgressBar::new_spinner().with_message(format!(
        "importing the {} geography from {origin}",
        g.vintage
    ));
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let outcome = tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let message = if outcome.changed {
        format!(
            "geography {}: {} communes, {} EPCI, {} départements, {} régions; territories: {} recoded, {} updated, {} to resolve",
            g.vintage,
            g.communes.len(),
            g.epcis.len(),
            g.departements.len(),
            g.regions.len(),
            outcome.territories_recoded,
            outcome.territories_updated,
            outcome.territories_flagged,
        )
    } else {
        format!("geography {} already loaded", g.vintage)
    };
    bar.finish_with_message(message);
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
