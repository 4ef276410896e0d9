//! The dispatcher of one replica: claims due notifications with a lease, sends them
//! concurrently, and records each attempt under its lease token. Several replicas share the
//! work through the database; a replica that dies leaves its claims to the others when its
//! lease expires.
//!
//! Sending is at least once and, short of a crash in the instant between the relay's
//! acceptance and the record, exactly once; a resend after such a crash carries the same
//! Message-ID (and calendar UID and SEQUENCE), which mail and calendar clients recognise.

use std::sync::Arc;
use std::time::Duration;

use crate::settings::NotificationSettings;
use chrono::{NaiveTime, Utc};
use futures::{FutureExt as _, StreamExt as _};
use sea_orm::DatabaseConnection;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::SendError;
use super::email::{Mailer, build};
use super::webhook::WebhookClient;
use crate::domain::message::{Organizer, email as render_email, webhook_body};
use crate::domain::{Channel, Kind};
use crate::storage::{self, Notification, Outcome};

/// Metric names of the dispatcher.
pub mod metric {
    pub const SENT: &str = "tde_notifications_sent_total";
    pub const FAILED: &str = "tde_notifications_failed_total";
    pub const DEAD: &str = "tde_notifications_dead_lettered_total";
    pub const LATENESS: &str = "tde_notifications_lateness_seconds";
}

/// Wakes the dispatcher when new notifications are due now.
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Dispatcher {
    pub db: DatabaseConnection,
    pub settings: NotificationSettings,
    pub mailer: Mailer,
    pub webhooks: WebhookClient,
    pub organizer: Organizer,
    /// Domain of Message-IDs and calendar UIDs.
    pub domain: String,
    /// This replica, as leases name it.
    pub owner: String,
    pub waker: Waker,
}

impl Dispatcher {
    /// Runs until `shutdown`; a batch in flight finishes first.
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        loop {
            let claimed = match self.dispatch_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "notification dispatch failed; retrying");
                    0
                }
            };
            if shutdown.is_cancelled() {
                break;
            }
            if claimed as u64 >= self.settings.batch_size {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Claims one batch of due notifications and sends it; returns how many were claimed.
    /// While the batch is in flight, a heartbeat renews the leases of its rows not yet
    /// recorded, so that a slow relay cannot let another replica claim (and send) them too.
    pub async fn dispatch_once(&self) -> Result<usize, sea_orm::DbErr> {
        let token = uuid::Uuid::now_v7().to_string();
        let claimed = storage::claim(
            &self.db,
            &self.owner,
            &token,
            self.settings.lease_ms,
            self.settings.batch_size,
        )
        .await?;
        let count = claimed.len();
        if count == 0 {
            return Ok(0);
        }
        let batch =
            futures::stream::iter(claimed).for_each_concurrent(self.settings.concurrency, |n| {
                let token = token.clone();
                async move { self.deliver(n, &token).await }
            });
        tokio::select! {
            _ = batch => {}
            _ = self.heartbeat(&token) => {}
        }
        Ok(count)
    }

    /// Renews the batch's leases a few times per lease, until dropped with its batch. A
    /// failed renewal is retried at the next beat; the check before each send keeps a row
    /// whose lease ran out from being sent.
    async fn heartbeat(&self, token: &str) {
        let beat = Duration::from_millis((self.settings.lease_ms / 4).max(100));
        loop {
            tokio::time::sleep(beat).await;
            if let Err(e) = storage::renew_leases(&self.db, token, self.settings.lease_ms).await {
                tracing::warn!(error = %e, "cannot renew the leases of the batch in flight");
            }
        }
    }

    fn backoff(&self, attempts: i32) -> chrono::Duration {
        let exp = attempts.clamp(1, 20) as u32 - 1;
        let ms = self
            .settings
            .retry_backoff_ms
            .saturating_mul(1u64 << exp.min(30))
            .min(self.settings.max_backoff_ms);
        chrono::Duration::milliseconds(ms as i64)
    }

    /// Whether a transient failure is the last one: the notification has been failing for
    /// longer than `retry_for_ms` after it was due, or after a person put it back
    /// (RetryNotification…), or, when set, `max_attempts` are spent.
    fn gives_up(&self, n: &Notification, now: chrono::DateTime<Utc>) -> bool {
        let from = n.retry_from.map_or(n.due_at, |r| r.max(n.due_at));
        let age = now - from.min(now);
        let retry_for = chrono::Duration::milliseconds(
            i64::try_from(self.settings.retry_for_ms).unwrap_or(i64::MAX),
        );
        age >= retry_for
            || (self.settings.max_attempts > 0
                && n.attempts >= i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX))
    }

    async fn deliver(&self, n: Notification, token: &str) {
        // A panic while preparing or sending one message is that message's failure: the
        // batch and the dispatcher go on.
        let attempt = std::panic::AssertUnwindSafe(self.attempt(&n, token)).catch_unwind();
        let result = attempt
            .await
            .unwrap_or_else(|_| {
                Err(SendError::permanent(
                    "erreur interne en préparant le message",
                ))
            })
            // Relays quote the address in their refusals: the log and the API show the
            // notification's id instead (addresses are personal data).
            .map_err(|mut e| {
                e.message = e.message.replace(&n.recipient, "<destinataire>");
                e
            });
        let now = Utc::now();
        let channel = n.channel.clone();
        let outcome = match result {
            Ok(Attempted::LeaseLost) => {
                tracing::info!(notification_id = %n.id, "lease lost before sending: left to its new owner");
                return;
            }
            Ok(Attempted::Sent) => {
                let lateness = (now - n.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!(metric::LATENESS).record(lateness);
                metrics::counter!(metric::SENT, "channel" => channel.clone(), "kind" => n.kind.clone())
                    .increment(1);
                Outcome::Sent
            }
            Ok(Attempted::NoLongerDue(why)) => Outcome::Dropped { why },
            Err(e) if e.permanent || self.gives_up(&n, now) => {
                metrics::counter!(metric::DEAD, "channel" => channel.clone()).increment(1);
                tracing::warn!(notification_id = %n.id, attempts = n.attempts, permanent = e.permanent, error = %e.message, "notification dead-lettered");
                Outcome::Dead { error: e.message }
            }
            Err(e) => {
                metrics::counter!(metric::FAILED, "channel" => channel.clone()).increment(1);
                tracing::info!(notification_id = %n.id, attempts = n.attempts, error = %e.message, "notification failed; will retry");
                Outcome::Failed {
                    error: e.message,
                    retry_at: now + self.backoff(n.attempts),
                }
            }
        };
        // The record is kept until it is written: a message that went out must not go out
        // again because the database was briefly unreachable. The batch (and its lease
        // heartbeat) waits for it; a shutdown in the meantime loses it, and the message is
        // then sent again after the lease, with the same Message-ID.
        let mut wait = Duration::from_millis(100);
        loop {
            match storage::record_attempt(&self.db, &n, token, &outcome, now).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(notification_id = %n.id, "lease lost before the attempt was recorded");
                    return;
                }
                Err(e) => {
                    tracing::warn!(notification_id = %n.id, error = %e, "cannot record the attempt; keeping it until the database answers");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The e-mail of one notification. Rendering and building are pure, but lean on
    /// libraries that have panicked on unexpected input: a panic here is this message's
    /// permanent failure, never the dispatcher's end.
    fn message(
        &self,
        meeting: &crate::domain::schedule::Meeting,
        kind: Kind,
        to: &crate::domain::recipient::Recipient,
    ) -> Result<lettre::Message, SendError> {
        let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let email = render_email(meeting, kind, to, &self.organizer, &self.domain);
            build(&email, &to.name, &to.email, &self.organizer)
        }));
        built.unwrap_or_else(|_| {
            Err(SendError::permanent(
                "le message ne peut pas être construit (données invalides)",
            ))
        })
    }

    /// Sends one notification, unless it is no longer to be sent or its lease was lost.
    async fn attempt(&self, n: &Notification, token: &str) -> Result<Attempted, SendError> {
        let notice = if n.kind == crate::funding::KIND {
            Some(crate::funding::attempt(self, n, token).await?)
        } else if n.kind == crate::proposals::KIND {
            Some(crate::proposals::attempt(self, n, token).await?)
        } else {
            None
        };
        if let Some(attempted) = notice {
            return Ok(match attempted {
                crate::notices::Attempt::Sent => Attempted::Sent,
                crate::notices::Attempt::NoLongerDue(why) => Attempted::NoLongerDue(why),
                crate::notices::Attempt::LeaseLost => Attempted::LeaseLost,
            });
        }
        let kind = Kind::parse(&n.kind).ok_or_else(|| SendError::permanent("unknown kind"))?;
        let transient = |e: sea_orm::DbErr| SendError::transient(format!("storage: {e}"));
        let Some(stored) = storage::find_meeting(&self.db, &n.meeting_id)
            .await
            .map_err(transient)?
        else {
            return Ok(Attempted::NoLongerDue("meeting unknown".into()));
        };
        let meeting = stored.meeting;
        if (n.sequence as u32) < meeting.sequence {
            return Ok(Attempted::NoLongerDue(format!(
                "superseded by sequence {}",
                meeting.sequence
            )));
        }
        if kind.is_reminder() && stored.status != "scheduled" {
            return Ok(Attempted::NoLongerDue(format!("meeting {}", stored.status)));
        }
        // A reminder that could not go out before the meeting began is no longer one.
        if kind.is_reminder() && Utc::now() >= meeting.start {
            return Ok(Attempted::NoLongerDue("the meeting has begun".into()));
        }
        let Some(to) = storage::find_recipient(&self.db, &n.territory_id, &n.recipient)
            .await
            .map_err(transient)?
        else {
            return Ok(Attempted::NoLongerDue("no longer a recipient".into()));
        };
        let to = &to;
        // Right before sending: still ours, unexpired by the database's clock, still
        // pending. A row whose lease ran out (its heartbeat failed) may be another replica's
        // now: it is skipped, never sent twice. Unable to check, nothing is sent.
        let ours = || async {
            storage::holds_lease(&self.db, &n.id, token)
                .await
                .map_err(transient)
        };
        match Channel::parse(&n.channel) {
            Some(Channel::Email) => {
                let message = self.message(&meeting, kind, to)?;
                if !ours().await? {
                    return Ok(Attempted::LeaseLost);
                }
                self.mailer.send(message).await?;
            }
            Some(Channel::Webhook) => {
                let Some(url) = to.webhook_url.as_deref() else {
                    return Err(SendError::permanent("webhook channel without URL"));
                };
                let body = webhook_body(&meeting, kind, to, &n.id);
                let secrets = storage::webhook_secrets(&self.db, &n.territory_id, &n.recipient)
                    .await
                    .map_err(transient)?;
                if !ours().await? {
                    return Ok(Attempted::LeaseLost);
                }
                self.webhooks
                    .post(url, &body, &n.id, secrets.as_ref())
                    .await?;
            }
            None => return Err(SendError::permanent("unknown channel")),
        }
        Ok(Attempted::Sent)
    }
}

/// What came of one attempt short of a failure.
enum Attempted {
    Sent,
    /// Superseded, cancelled, or its recipient left: dropped with this reason.
    NoLongerDue(String),
    /// The lease ran out before the send: the row is left to whoever holds it now.
    LeaseLost,
}

/// The local time of reminders: the territory's own, else the deployment's.
pub fn reminder_time(settings: &NotificationSettings, territory_minutes: Option<i32>) -> NaiveTime {
    let minutes = territory_minutes
        .and_then(|m| u32::try_from(m).ok())
        .unwrap_or(settings.reminder_hour * 60 + settings.reminder_minute);
    NaiveTime::from_hms_opt(minutes / 60 % 24, minutes % 60, 0).unwrap_or(NaiveTime::MIN)
}
