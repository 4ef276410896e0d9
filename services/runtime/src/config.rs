//! Configuration: defaults, then an optional TOML file, then `TDE_` environment variables
//! (`__` separates nesting levels, e.g. `TDE_SERVER__LISTEN`). Later sources win. The result
//! is validated once at start-up; a bad value stops start-up with a message naming the key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
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
    Invalid { key: &'static str, message: String },
}

/// Every setting of a tde process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub bus: BusSettings,
    pub telemetry: TelemetrySettings,
    pub outbox: OutboxSettings,
    pub cache: CacheSettings,
    pub auth: AuthSettings,
    pub notifications: NotificationSettings,
}

/// The notifications service: how and when it sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationSettings {
    /// The SMTP relay; without one (`tde dev`), e-mails are written as .eml files to
    /// `mail_dir`.
    pub smtp: Option<SmtpSettings>,
    /// Where e-mails go without SMTP; `{data}` is `tde dev`'s data dir.
    pub mail_dir: std::path::PathBuf,
    /// Sender of the e-mails, and organizer of the meetings in calendars.
    pub from: String,
    pub from_name: String,
    /// Reminders: days before the meeting, each at `reminder_hour`:`reminder_minute` in the
    /// territory's time zone (a territory may have its own time, see the API).
    pub reminder_days: Vec<u32>,
    pub reminder_hour: u32,
    pub reminder_minute: u32,
    /// Attempts of one notification before it is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay, doubling at each attempt (milliseconds).
    pub retry_backoff_ms: u64,
    /// Longest retry delay (milliseconds).
    pub max_backoff_ms: u64,
    /// How long a replica owns the notifications it claimed (milliseconds): another replica
    /// takes over those of a replica that died after this.
    pub lease_ms: u64,
    /// Notifications claimed at once, and sent concurrently.
    pub batch_size: u64,
    pub concurrency: usize,
    /// Poll of due notifications when nothing woke the dispatcher (milliseconds).
    pub poll_interval_ms: u64,
    /// Secret signing webhook bodies (HMAC-SHA256); set it in production
    /// (`TDE_NOTIFICATIONS__WEBHOOK_SECRET`).
    pub webhook_secret: Secret,
    /// Timeout of one webhook POST (milliseconds).
    pub webhook_timeout_ms: u64,
    /// HTTP address of the calendar feeds; none: no feed server.
    pub feed_listen: Option<SocketAddr>,
    /// Public base URL of the feeds, e.g. https://agenda.tde.anct.gouv.fr.
    pub feed_base_url: String,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            smtp: None,
            mail_dir: "./data/mail".into(),
            from: "ne-pas-repondre@tde.anct.gouv.fr".into(),
            from_name: "Territoires d'engagement (ANCT)".into(),
            reminder_days: vec![7, 1],
            reminder_hour: 9,
            reminder_minute: 0,
            max_attempts: 6,
            retry_backoff_ms: 2_000,
            max_backoff_ms: 600_000,
            lease_ms: 60_000,
            batch_size: 64,
            concurrency: 16,
            poll_interval_ms: 1_000,
            webhook_secret: Secret("tde-dev-webhook-secret".into()),
            webhook_timeout_ms: 10_000,
            feed_listen: None,
            feed_base_url: String::new(),
        }
    }
}

/// A secret setting: printed as `***`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How the SMTP relay is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// No encryption (a relay on the same host or network).
    Plain,
    /// STARTTLS on the submission port.
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    /// From the environment: `TDE_NOTIFICATIONS__SMTP__PASSWORD`.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connections kept open to the relay.
    #[serde(default = "default_smtp_pool")]
    pub pool_size: u32,
    #[serde(default = "default_smtp_timeout")]
    pub timeout_ms: u64,
}

fn default_smtp_pool() -> u32 {
    8
}

fn default_smtp_timeout() -> u64 {
    10_000
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

impl Settings {
    /// Loads defaults, then `file` if given, then the `TDE_` variables of `env`.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let defaults = config::Config::try_from(&Settings::default())?;
        let mut builder = config::Config::builder().add_source(defaults);
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
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Loads from the process environment; the file is `path`, or `TDE_CONFIG` when unset.
    pub fn load_from_process(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let from_env = env.get("TDE_CONFIG").map(std::path::PathBuf::from);
        Self::load(path.or(from_env.as_deref()), &env)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
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
        let n = &self.notifications;
        if n.reminder_hour > 23 || n.reminder_minute > 59 {
            return invalid(
                "notifications.reminder_hour",
                "must be a time of day (hour 0-23, minute 0-59)",
            );
        }
        if n.reminder_days.iter().any(|d| *d == 0 || *d > 60) {
            return invalid(
                "notifications.reminder_days",
                "days before the meeting, between 1 and 60",
            );
        }
        if n.max_attempts == 0 || n.batch_size == 0 || n.concurrency == 0 || n.lease_ms < 1_000 {
            return invalid(
                "notifications.max_attempts",
                "attempts, batch size and concurrency must be positive, the lease at least 1 s",
            );
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
        let s = Settings::load(None, &HashMap::new()).unwrap();
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
        let s =
            Settings::load(Some(&path), &env(&[("TDE_SERVER__LISTEN", "127.0.0.1:2")])).unwrap();
        assert_eq!(s.server.max_deadline_ms, 1234);
        assert_eq!(s.server.listen.port(), 2);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = Settings::load(None, &env(&[("TDE_SERVER__MAX_DEADLINE_MS", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.max_deadline_ms"), "{err}");
        let err = Settings::load(None, &env(&[("TDE_DATABASE__URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("database.url"), "{err}");
        let err = Settings::load(None, &env(&[("TDE_SERVER__LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
        let err = Settings::load(None, &env(&[("TDE_SERVER__BOGUS", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
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

    /// Every example configuration shipped in deploy/ loads and validates.
    #[test]
    fn example_config_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Settings::load(Some(&path), &HashMap::new())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                count += 1;
            }
        }
        assert!(count >= 2, "expected example files in {}", dir.display());
    }
}
