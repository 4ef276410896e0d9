//! The notifications service's own settings: the `[notifications]` section, accepted only by
//! a process that runs this service.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tde_runtime::config::{DevEnvironment, InvalidKey, Profile, Secret, ServiceSettings};

/// The shared webhook key of `tde dev`: public, hence refused anywhere else.
pub const DEV_WEBHOOK_SECRET: &str = "tde-dev-webhook-secret";

/// How and when notifications are sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationSettings {
    /// The SMTP relay; without one (`tde dev`), e-mails are written as .eml files to
    /// `mail_dir`.
    pub smtp: Option<SmtpSettings>,
    /// Where e-mails go without SMTP.
    pub mail_dir: PathBuf,
    /// Sender of the e-mails, and organizer of the meetings in calendars.
    pub from: String,
    pub from_name: String,
    /// Reminders: days before the meeting, each at `reminder_hour`:`reminder_minute` in the
    /// territory's time zone (a territory may have its own time, see the API).
    pub reminder_days: Vec<u32>,
    pub reminder_hour: u32,
    pub reminder_minute: u32,
    /// How long a notification failing transiently (relay unreachable, timeouts, 4xx) is
    /// retried after it was due, before it is dead-lettered (milliseconds). Permanent
    /// refusals (SMTP 5xx, webhook 4xx but 408 and 429) are dead-lettered at once.
    pub retry_for_ms: u64,
    /// A cap on attempts besides `retry_for_ms`; 0 (the default): no cap, `retry_for_ms`
    /// alone decides.
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
    /// The shared HMAC key of webhooks set before receivers had their own secret (each
    /// receiver now gets its own when its URL is set); empty: none. The public development
    /// value is refused outside `tde dev` (`TDE_NOTIFICATIONS__WEBHOOK_SECRET`).
    pub webhook_secret: Secret,
    /// How long a rotated webhook secret keeps signing beside the new one (milliseconds).
    pub webhook_secret_overlap_ms: u64,
    /// http:// webhooks and receivers on loopback or private addresses: `tde dev` only.
    pub allow_insecure_webhooks: bool,
    /// Set by `for_dev` only (never read from a file): this process is `tde dev`.
    #[serde(skip)]
    pub dev: bool,
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
            retry_for_ms: 86_400_000,
            max_attempts: 0,
            retry_backoff_ms: 2_000,
            max_backoff_ms: 600_000,
            lease_ms: 60_000,
            batch_size: 64,
            concurrency: 16,
            poll_interval_ms: 1_000,
            webhook_secret: Secret(String::new()),
            webhook_secret_overlap_ms: 48 * 3_600_000,
            allow_insecure_webhooks: false,
            dev: false,
            webhook_timeout_ms: 10_000,
            feed_listen: None,
            feed_base_url: String::new(),
        }
    }
}

impl ServiceSettings for NotificationSettings {
    const SECTION: &'static str = crate::SERVICE;

    fn validate(&self, profile: Profile) -> Result<(), InvalidKey> {
        let dev = self.dev || profile == Profile::Development;
        if self.reminder_hour > 23 || self.reminder_minute > 59 {
            return Err(InvalidKey::new(
                "reminder_hour",
                "must be a time of day (hour 0-23, minute 0-59)",
            ));
        }
        if self.reminder_days.iter().any(|d| *d == 0 || *d > 60) {
            return Err(InvalidKey::new(
                "reminder_days",
                "days before the meeting, between 1 and 60",
            ));
        }
        if self.retry_for_ms == 0 {
            return Err(InvalidKey::new("retry_for_ms", "must be positive"));
        }
        if self.retry_backoff_ms == 0 || self.max_backoff_ms < self.retry_backoff_ms {
            return Err(InvalidKey::new(
                "max_backoff_ms",
                "must be at least retry_backoff_ms, itself positive",
            ));
        }
        if self.batch_size == 0 {
            return Err(InvalidKey::new("batch_size", "must be positive"));
        }
        if self.concurrency == 0 {
            return Err(InvalidKey::new("concurrency", "must be positive"));
        }
        if self.lease_ms < 1_000 {
            return Err(InvalidKey::new("lease_ms", "must be at least 1 s"));
        }
        if self.poll_interval_ms == 0 {
            return Err(InvalidKey::new("poll_interval_ms", "must be positive"));
        }
        if !self.from.contains('@') || self.from.chars().any(char::is_control) {
            return Err(InvalidKey::new("from", "must be an e-mail address"));
        }
        if self.from_name.chars().any(char::is_control) {
            return Err(InvalidKey::new(
                "from_name",
                "must not hold control characters",
            ));
        }
        if self.webhook_secret.0 == DEV_WEBHOOK_SECRET && !dev {
            return Err(InvalidKey::new(
                "webhook_secret",
                "is the public development value: set a secret of your own (TDE_NOTIFICATIONS__WEBHOOK_SECRET), or none",
            ));
        }
        if self.allow_insecure_webhooks && !dev {
            return Err(InvalidKey::new(
                "allow_insecure_webhooks",
                "is for `tde dev` only: webhooks are https to public addresses elsewhere",
            ));
        }
        Ok(())
    }

    /// E-mails as .eml files in the data dir when no relay is configured, and the calendar
    /// feeds beside the gRPC port (any free port when that one is).
    fn for_dev(&mut self, dev: &DevEnvironment) {
        self.dev = true;
        // Local receivers (http://localhost…) and the shared development key.
        self.allow_insecure_webhooks = true;
        if self.webhook_secret.0.is_empty() {
            self.webhook_secret = Secret(DEV_WEBHOOK_SECRET.into());
        }
        if self.smtp.is_none() {
            self.mail_dir = dev.data_dir.join("mail");
        }
        if self.feed_listen.is_none() {
            let mut feeds = dev.listen;
            feeds.set_port(if dev.listen.port() == 0 {
                0
            } else {
                dev.listen.port().saturating_add(1)
            });
            self.feed_listen = Some(feeds);
            self.feed_base_url = format!("http://{feeds}");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_dev_secret_and_insecure_webhooks_only_in_tde_dev() {
        let mut s = NotificationSettings::default();
        let production = Profile::Production;
        assert!(
            s.validate(production).is_ok(),
            "no shared secret by default"
        );
        s.webhook_secret = Secret(DEV_WEBHOOK_SECRET.into());
        assert_eq!(s.validate(production).unwrap_err().key, "webhook_secret");
        // A process declared as development (profile = "development") may use it.
        assert!(s.validate(Profile::Development).is_ok());
        let mut s = NotificationSettings {
            allow_insecure_webhooks: true,
            ..NotificationSettings::default()
        };
        assert_eq!(
            s.validate(production).unwrap_err().key,
            "allow_insecure_webhooks"
        );
        s.for_dev(&DevEnvironment {
            data_dir: "/tmp/tde".into(),
            listen: "127.0.0.1:50051".parse().unwrap(),
        });
        assert!(s.validate(production).is_ok());
        assert!(s.allow_insecure_webhooks);
        assert_eq!(s.webhook_secret.0, DEV_WEBHOOK_SECRET);
        // Never from a file: `dev` is not a key.
        let from_file: Result<NotificationSettings, _> = serde_json::from_str(r#"{"dev": true}"#);
        assert!(from_file.is_err());
    }
}
