//! Configuration: defaults, then an optional TOML file, then `TDE_` environment variables
//! (`__` separates nesting levels, e.g. `TDE_SERVER__LISTEN`). Later sources win. The result
//! is validated once at start-up; a bad value stops start-up with a message naming the key.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Environment variables with this prefix configure tde.
pub const ENV_PREFIX: &str = "TDE";

/// Environment variables under `TDE_` that are not configuration keys: test harness, file
/// path, and the credentials of the operator commands.
const NON_CONFIG_ENV: &[&str] = &["TDE_TEST_", "TDE_CONFIG", "TDE_TOKEN", "TDE_TLS_"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
    #[error(
        "configuration key `{key}` is unknown here: not a section of the runtime nor of a service this process runs (its sections: {known})"
    )]
    UnknownSection { key: String, known: String },
}

/// Every setting of a tde process: the runtime's own sections, and the sections of the
/// services this process runs (each service declares its own type, see `ServiceSettings`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `production` (the default) or `development` (`tde dev`): what development allows
    /// (authentication off, development secrets) production refuses at start-up.
    pub profile: Profile,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub telemetry: TelemetrySettings,
    pub outbox: OutboxSettings,
    pub cache: CacheSettings,
    pub auth: AuthSettings,
    /// The services' own sections, by name.
    pub services: ServiceSections,
}

/// The runtime's own top-level sections; any other top-level key must be the section of a
/// service this process runs.
const RUNTIME_SECTIONS: &[&str] = &[
    "profile",
    "server",
    "database",
    "bus",
    "telemetry",
    "outbox",
    "cache",
    "auth",
];

/// What a process is for: production refuses the shortcuts development takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Production,
    /// `tde dev`, or a developer's own process.
    Development,
}

/// The settings section of one service (`[notifications]`, `[subsidies]`…): its type, with
/// its defaults and its validation, lives next to the code that uses it.
pub trait ServiceSettings:
    Serialize + serde::de::DeserializeOwned + Default + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// The section's name: the top-level TOML table and the `TDE_<NAME>__` variables.
    const SECTION: &'static str;

    /// Checks the values for a process of `profile` (production refuses development
    /// shortcuts); an error names the key inside the section.
    fn validate(&self, _profile: Profile) -> Result<(), InvalidKey> {
        Ok(())
    }

    /// Adjusts the section for `tde dev` (files under the data dir, ports beside the gRPC
    /// one), unless the operator set them.
    fn for_dev(&mut self, _dev: &DevEnvironment) {}
}

/// Where `tde dev` keeps its files and listens.
#[derive(Debug, Clone)]
pub struct DevEnvironment {
    pub data_dir: std::path::PathBuf,
    pub listen: SocketAddr,
}

/// A bad value inside a service's section: the key (relative to the section) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidKey {
    pub key: &'static str,
    pub message: String,
}

impl InvalidKey {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

/// How the loader handles one service's section, without knowing its type.
#[derive(Clone, Copy)]
pub struct SectionSpec {
    pub name: &'static str,
    defaults: fn() -> Result<config::Value, config::ConfigError>,
    parse: fn(config::Value, Profile) -> Result<Arc<dyn SectionValue>, ConfigError>,
}

impl std::fmt::Debug for SectionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl SectionSpec {
    /// The section of the settings type `T`.
    pub fn of<T: ServiceSettings>() -> Self {
        Self {
            name: T::SECTION,
            defaults: || {
                let defaults = config::Config::try_from(&T::default())?;
                Ok(config::Value::new(
                    None,
                    config::ValueKind::Table(config::Source::collect(&defaults)?),
                ))
            },
            parse: |raw, profile| {
                let value: T = raw
                    .try_deserialize()
                    .map_err(|e| in_section(T::SECTION, e))?;
                check_section(&value, profile)?;
                Ok(Arc::new(value))
            },
        }
    }
}

fn check_section<T: ServiceSettings>(value: &T, profile: Profile) -> Result<(), ConfigError> {
    value.validate(profile).map_err(|e| ConfigError::Invalid {
        key: format!("{}.{}", T::SECTION, e.key),
        message: e.message,
    })
}

/// A parsed section, whatever its type.
pub trait SectionValue: std::any::Any + std::fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn std::any::Any;
    fn for_dev(&self, dev: &DevEnvironment) -> Result<Arc<dyn SectionValue>, ConfigError>;
}

impl<T: ServiceSettings> SectionValue for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn for_dev(&self, dev: &DevEnvironment) -> Result<Arc<dyn SectionValue>, ConfigError> {
        let mut value = self.clone();
        ServiceSettings::for_dev(&mut value, dev);
        check_section(&value, Profile::Development)?;
        Ok(Arc::new(value))
    }
}

/// The sections of the services of a process.
#[derive(Debug, Clone, Default)]
pub struct ServiceSections(BTreeMap<&'static str, Arc<dyn SectionValue>>);

impl ServiceSections {
    /// The section `T`, or its defaults when it was not loaded (a test building settings by
    /// hand).
    pub fn get<T: ServiceSettings>(&self) -> T {
        self.0
            .get(T::SECTION)
            .and_then(|v| v.as_any().downcast_ref::<T>())
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces the section `T` (tests, `tde dev`); the value is validated as development's.
    pub fn set<T: ServiceSettings>(&mut self, value: T) -> Result<(), ConfigError> {
        check_section(&value, Profile::Development)?;
        self.0.insert(T::SECTION, Arc::new(value));
        Ok(())
    }

    /// Changes the section `T` in place (tests), keeping what was loaded.
    pub fn update<T: ServiceSettings>(&mut self, change: impl FnOnce(&mut T)) {
        let mut value = self.get::<T>();
        change(&mut value);
        self.0.insert(T::SECTION, Arc::new(value));
    }

    /// Adds the section of `spec` with its defaults adjusted for `dev`, unless it is there.
    pub fn insert_default_for_dev(
        &mut self,
        spec: &SectionSpec,
        dev: &DevEnvironment,
    ) -> Result<(), ConfigError> {
        if !self.0.contains_key(spec.name) {
            let value = (spec.parse)((spec.defaults)()?, Profile::Development)?;
            self.0.insert(spec.name, value.for_dev(dev)?);
        }
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }
}

/// A secret setting (a password, a signing key): printed as `***`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Authentication of callers: OAuth2 / OIDC access tokens (JWT) verified locally against a key
/// set, as French state APIs do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Off only for measurements: every call then acts with every right. Never in production.
    pub enabled: bool,
    /// Expected `iss` of tokens.
    pub issuer: String,
    /// Expected `aud` of tokens.
    pub audience: String,
    /// The key set (JWKS) as a file (the default: the local key set of `tde dev`).
    pub jwks_file: Option<std::path::PathBuf>,
    /// The key set (JWKS) of the identity provider, at an https URL (http only on the
    /// loopback interface); when set, `jwks_file` is not used.
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf` (seconds).
    pub leeway_s: u64,
    /// Shortest time between two fetches of the key set when a token names an unknown key
    /// (milliseconds): unknown `kid`s cannot make tde hammer the identity provider.
    pub jwks_refresh_min_interval_ms: u64,
    /// Verified tokens remembered, so that a token reused until it expires is checked once.
    pub token_cache_entries: usize,
    /// Calls per second allowed to one client (the token's client_id, else its subject).
    pub rate_limit_per_second: u32,
    /// Calls one client may make at once above that rate.
    pub rate_limit_burst: u32,
}

impl Default for AuthSettings {
    /// The local key set that `tde dev` creates; production configures its identity provider.
    fn default() -> Self {
        Self {
            enabled: true,
            issuer: crate::auth::DEV_ISSUER.into(),
            audience: crate::auth::DEV_AUDIENCE.into(),
            jwks_file: Some("./data/keys/jwks.json".into()),
            jwks_url: None,
            leeway_s: 30,
            jwks_refresh_min_interval_ms: 10_000,
            token_cache_entries: 10_000,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
        }
    }
}

/// Mutual TLS of the gRPC listener (rustls).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain of the server.
    pub cert_file: std::path::PathBuf,
    /// PEM private key of the server.
    pub key_file: std::path::PathBuf,
    /// PEM certificates of the CAs whose client certificates are accepted; every client must
    /// present one.
    pub client_ca_file: std::path::PathBuf,
}

/// Read caches of hot resources (see `tde_runtime::cache`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Off: every read goes to the database.
    pub enabled: bool,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Server-side cap on a call's deadline, in milliseconds.
    pub max_deadline_ms: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Whether gRPC reflection is served.
    pub reflection: bool,
    /// How long health reports NOT_SERVING before the listener stops, so that load balancers
    /// stop routing first (milliseconds).
    pub shutdown_drain_ms: u64,
    /// How long in-flight calls may take to finish during shutdown (milliseconds).
    pub shutdown_grace_ms: u64,
    /// Mutual TLS on the listener; plaintext when unset.
    pub tls: Option<TlsSettings>,
    /// Plaintext listener serving only health, for Kubernetes probes; required with `tls`.
    pub health_listen: Option<SocketAddr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            max_message_bytes: 4 * 1024 * 1024,
            max_deadline_ms: 30_000,
            max_concurrent_streams: 256,
            reflection: false,
            shutdown_drain_ms: 0,
            shutdown_grace_ms: 10_000,
            tls: None,
            health_listen: None,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://…`; `{service}` is replaced by the service name, so that
    /// each service gets its own database.
    pub url: String,
    /// Run pending migrations at start-up.
    pub run_migrations: bool,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/{service}.db?mode=rwc".into(),
            run_migrations: true,
            max_connections: 16,
            connect_timeout_ms: 5_000,
        }
    }
}

impl DatabaseSettings {
    /// The URL of one service's database.
    pub fn url_for(&self, service: &str) -> String {
        self.url.replace("{service}", service)
    }
}

/// The URL may hold a password: never print it.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("run_migrations", &self.run_migrations)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// Replaces the password of `scheme://user:password@host` with `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusKind {
    /// NATS JetStream (production).
    Nats,
    /// The in-process bus of `tde dev`.
    Memory,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    pub kind: BusKind,
    pub nats_url: String,
    /// Prefix of every subject and stream name; empty in production, unique per test.
    pub namespace: String,
    /// How many times a consumer receives an event before giving up on it.
    pub max_deliver: i64,
    /// How long a delivered, unacknowledged event waits before redelivery (milliseconds).
    pub ack_wait_ms: u64,
    /// First redelivery delay after a failure; doubles up to `ack_wait_ms` (milliseconds).
    pub retry_backoff_ms: u64,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self {
            kind: BusKind::Memory,
            nats_url: "nats://127.0.0.1:4222".into(),
            namespace: String::new(),
            max_deliver: 10,
            ack_wait_ms: 30_000,
            retry_backoff_ms: 500,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Compact,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub log_format: LogFormat,
    /// Default filter; `RUST_LOG` overrides it.
    pub log_level: String,
    /// Address of the Prometheus `/metrics` endpoint; none when unset.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Compact,
            log_level: "info".into(),
            metrics_listen: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxSettings {
    /// How often the relay looks for unpublished events when nothing woke it (milliseconds).
    pub poll_interval_ms: u64,
    pub batch_size: u64,
    /// Longest wait for the bus to acknowledge a batch (milliseconds).
    pub publish_timeout_ms: u64,
    /// Longest back-off between attempts while the bus is down (milliseconds).
    pub max_backoff_ms: u64,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            poll_interval_ms: 500,
            batch_size: 256,
            publish_timeout_ms: 5_000,
            max_backoff_ms: 5_000,
        }
    }
}

/// The runtime's sections as they are read (the services' sections are read by their own
/// types).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RuntimeSections {
    profile: Profile,
    server: ServerSettings,
    database: DatabaseSettings,
    bus: BusSettings,
    telemetry: TelemetrySettings,
    outbox: OutboxSettings,
    cache: CacheSettings,
    auth: AuthSettings,
}

/// Puts the section name in front of the key a deserialisation error names.
fn in_section(section: &str, error: config::ConfigError) -> config::ConfigError {
    let prefixed = |key: Option<String>| {
        Some(match key {
            Some(k) if !k.is_empty() => format!("{section}.{k}"),
            _ => section.to_string(),
        })
    };
    match error {
        config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => config::ConfigError::Type {
            origin,
            unexpected,
            expected,
            key: prefixed(key),
        },
        config::ConfigError::At { error, origin, key } => config::ConfigError::At {
            error,
            origin,
            key: prefixed(key),
        },
        config::ConfigError::Message(message) => {
            config::ConfigError::Message(format!("in section [{section}]: {message}"))
        }
        other => other,
    }
}

impl Settings {
    /// Loads defaults, then `file` if given, then the `TDE_` variables of `env`, for a process
    /// running the services whose sections are `sections`. A top-level key that is neither
    /// the runtime's nor one of these sections is refused, naming it.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        sections: &[SectionSpec],
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::Config::try_from(&RuntimeSections::default())?);
        for section in sections {
            builder = builder.set_default(section.name, (section.defaults)()?)?;
        }
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let env: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| {
                k.starts_with("TDE_") && !NON_CONFIG_ENV.iter().any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        let merged = builder.build()?;
        let mut root = config::Source::collect(&merged)?;
        // Sections are checked for the process's profile: read it first.
        let profile: Profile = match root.get("profile") {
            Some(value) => value.clone().try_deserialize()?,
            None => Profile::default(),
        };
        let mut services = ServiceSections::default();
        for section in sections {
            let value = root
                .remove(section.name)
                .unwrap_or_else(|| config::Value::new(None, config::ValueKind::Nil));
            services
                .0
                .insert(section.name, (section.parse)(value, profile)?);
        }
        if let Some(unknown) = root
            .keys()
            .find(|k| !RUNTIME_SECTIONS.contains(&k.as_str()))
        {
            return Err(ConfigError::UnknownSection {
                key: unknown.clone(),
                known: RUNTIME_SECTIONS
                    .iter()
                    .copied()
                    .chain(sections.iter().map(|s| s.name))
                    .map(|s| format!("[{s}]"))
                    .collect::<Vec<_>>()
                    .join(" "),
            });
        }
        let runtime: RuntimeSections =
            config::Value::new(None, config::ValueKind::Table(root)).try_deserialize()?;
        let settings = Settings {
            profile: runtime.profile,
            server: runtime.server,
            database: runtime.database,
            bus: runtime.bus,
            telemetry: runtime.telemetry,
            outbox: runtime.outbox,
            cache: runtime.cache,
            auth: runtime.auth,
            services,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment; the file is `path`, or `TDE_CONFIG` when unset.
    pub fn load_from_process(
        path: Option<&Path>,
        sections: &[SectionSpec],
    ) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let from_env = env.get("TDE_CONFIG").map(std::path::PathBuf::from);
        Self::load(path.or(from_env.as_deref()), &env, sections)
    }

    /// The section of the service settings type `T` (its defaults when not loaded).
    pub fn section<T: ServiceSettings>(&self) -> T {
        self.services.get::<T>()
    }

    /// The settings of `tde dev`: each service's section adjusted to `dev`.
    pub fn for_dev(&mut self, dev: &DevEnvironment) -> Result<(), ConfigError> {
        for value in self.services.0.values_mut() {
            *value = value.for_dev(dev)?;
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                message: message.to_string(),
            })
        };
        if !(1024..=256 * 1024 * 1024).contains(&self.server.max_message_bytes) {
            return invalid(
                "server.max_message_bytes",
                "must be between 1 KiB and 256 MiB",
            );
        }
        if self.server.max_deadline_ms == 0 {
            return invalid("server.max_deadline_ms", "must be positive");
        }
        if self.server.max_concurrent_streams == 0 {
            return invalid("server.max_concurrent_streams", "must be positive");
        }
        let url = &self.database.url;
        if !(url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            return invalid(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite:",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections", "must be positive");
        }
        if self.bus.kind == BusKind::Nats && !self.bus.nats_url.starts_with("nats://") {
            return invalid("bus.nats_url", "must start with nats://");
        }
        if !self
            .bus
            .namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return invalid("bus.namespace", "may hold only letters, digits and _");
        }
        if self.bus.max_deliver < 1 {
            return invalid("bus.max_deliver", "must be at least 1");
        }
        if self.outbox.batch_size == 0 || self.outbox.batch_size > 10_000 {
            return invalid("outbox.batch_size", "must be between 1 and 10000");
        }
        if self.outbox.poll_interval_ms == 0 {
            return invalid("outbox.poll_interval_ms", "must be positive");
        }
        if self.outbox.publish_timeout_ms == 0 {
            return invalid("outbox.publish_timeout_ms", "must be positive");
        }
        if !(10..=600_000).contains(&self.outbox.max_backoff_ms) {
            return invalid(
                "outbox.max_backoff_ms",
                "must be between 10 ms and 10 minutes",
            );
        }
        if !(1..=60_000).contains(&self.bus.retry_backoff_ms) {
            return invalid("bus.retry_backoff_ms", "must be between 1 ms and 1 minute");
        }
        if self.bus.ack_wait_ms < 100 {
            return invalid("bus.ack_wait_ms", "must be at least 100 ms");
        }
        if self.server.tls.is_some() && self.server.health_listen.is_none() {
            return invalid(
                "server.health_listen",
                "is required with server.tls: probes need a plaintext health port",
            );
        }
        let auth = &self.auth;
        if !auth.enabled && self.profile != Profile::Development {
            return invalid(
                "auth.enabled",
                "may be false only with profile = \"development\": every call would act with every right",
            );
        }
        if auth.enabled {
            if auth.issuer.trim().is_empty() {
                return invalid("auth.issuer", "is required");
            }
            if auth.audience.trim().is_empty() {
                return invalid("auth.audience", "is required");
            }
            match (&auth.jwks_file, &auth.jwks_url) {
                (None, None) => {
                    return invalid("auth.jwks_url", "set jwks_url (or jwks_file)");
                }
                (_, Some(url)) if !crate::auth::keys::acceptable_url(url) => {
                    return invalid(
                        "auth.jwks_url",
                        "must be an https URL (http only for localhost)",
                    );
                }
                _ => {}
            }
            if auth.leeway_s > 300 {
                return invalid("auth.leeway_s", "must be at most 300 seconds");
            }
        }
        if auth.rate_limit_per_second == 0 {
            return invalid("auth.rate_limit_per_second", "must be positive");
        }
        if auth.rate_limit_burst == 0 {
            return invalid("auth.rate_limit_burst", "must be positive");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_level).is_err() {
            return invalid("telemetry.log_level", "is not a valid log filter");
        }
        Ok(())
    }

    pub fn max_deadline(&self) -> Duration {
        Duration::from_millis(self.server.max_deadline_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        let s = Settings::load(None, &HashMap::new(), &[]).unwrap();
        assert_eq!(s.server.listen.port(), 50051);
        assert_eq!(s.bus.kind, BusKind::Memory);
    }

    #[test]
    fn environment_overrides_with_nesting() {
        let s = Settings::load(
            None,
            &env(&[
                ("TDE_SERVER__LISTEN", "0.0.0.0:6000"),
                ("TDE_BUS__KIND", "nats"),
                ("TDE_DATABASE__RUN_MIGRATIONS", "false"),
                ("TDE_TEST_POSTGRES_URL", "ignored"),
                ("TDE_TOKEN", "ignored: the operator commands' token"),
                ("TDE_TLS_CA", "ignored"),
                ("OTHER", "ignored"),
            ]),
            &[],
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 6000);
        assert_eq!(s.bus.kind, BusKind::Nats);
        assert!(!s.database.run_migrations);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[server]\nmax_deadline_ms = 1234\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[("TDE_SERVER__LISTEN", "127.0.0.1:2")]),
            &[],
        )
        .unwrap();
        assert_eq!(s.server.max_deadline_ms, 1234);
        assert_eq!(s.server.listen.port(), 2);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::load(None, &env(&[("TDE_SERVER__MAX_DEADLINE_MS", "soon")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.max_deadline_ms"), "{err}");
        let err = Settings::load(None, &env(&[("TDE_DATABASE__URL", "mysql://x")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");
        let err = Settings::load(None, &env(&[("TDE_SERVER__LISTEN", "nowhere")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = Settings::load(None, &env(&[("TDE_SERVER__BOGUS", "1")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn production_refuses_authentication_off() {
        let off = [("TDE_AUTH__ENABLED", "false")];
        let err = Settings::load(None, &env(&off), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("auth.enabled"), "{err}");
        let dev = [
            ("TDE_AUTH__ENABLED", "false"),
            ("TDE_PROFILE", "development"),
        ];
        assert!(Settings::load(None, &env(&dev), &[]).is_ok());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://tde:s3cret@db:5432/tde"),
            "postgres://tde:***@db:5432/tde"
        );
        let s = DatabaseSettings {
            url: "postgres://u:pw@h/d".into(),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("pw@"));
    }

    /// A service's own section: its defaults, its values from file and environment with the
    /// key named on error, and refused in a process that does not run that service.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Example {
        hour: u32,
        names: Vec<String>,
        secret: Secret,
    }

    impl Default for Example {
        fn default() -> Self {
            Self {
                hour: 9,
                names: vec!["a".into()],
                secret: Secret("dev".into()),
            }
        }
    }

    impl ServiceSettings for Example {
        const SECTION: &'static str = "example";

        fn validate(&self, _profile: Profile) -> Result<(), InvalidKey> {
            if self.hour > 23 {
                return Err(InvalidKey::new("hour", "must be an hour of the day"));
            }
            Ok(())
        }
    }

    #[test]
    fn service_sections_are_owned_by_their_services() {
        let sections = [SectionSpec::of::<Example>()];
        let s = Settings::load(None, &HashMap::new(), &sections).unwrap();
        assert_eq!(s.section::<Example>(), Example::default());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[example]\nhour = 7\nnames = [\"x\", \"y\"]\n").unwrap();
        let s = Settings::load(
            Some(&path),
            &env(&[("TDE_EXAMPLE__SECRET", "from-env")]),
            &sections,
        )
        .unwrap();
        let e = s.section::<Example>();
        assert_eq!((e.hour, e.names.len()), (7, 2));
        assert_eq!(e.secret.0, "from-env");
        assert!(!format!("{e:?}").contains("from-env"));

        for (var, value, named) in [
            ("TDE_EXAMPLE__HOUR", "30", "example.hour"),
            ("TDE_EXAMPLE__HOUR", "soon", "example.hour"),
            ("TDE_EXAMPLE__BOGUS", "1", "bogus"),
        ] {
            let err = Settings::load(None, &env(&[(var, value)]), &sections)
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{var}={value}: {err}");
        }

        // The same section in a process that does not run the service.
        let err = Settings::load(Some(&path), &HashMap::new(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`example`") && err.contains("unknown"),
            "{err}"
        );
        let err = Settings::load(None, &env(&[("TDE_EXAMPLE__HOUR", "7")]), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`example`"), "{err}");
    }
}
