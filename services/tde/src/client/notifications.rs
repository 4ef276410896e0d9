//! `tde notification …`: what was sent, the delivery log, dead letters, recipients'
//! preferences, calendar feeds.

use clap::{Subcommand, ValueEnum};
use tde_proto::notifications::v1 as pb;
use tde_proto::notifications::v1::notification_service_client::NotificationServiceClient;

use super::{Target, status};
use crate::output::{Format, table, to_json};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    Pending,
    Sent,
    Dead,
    Dropped,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelArg {
    Email,
    Webhook,
}

#[derive(Debug, Subcommand)]
pub enum NotificationCommand {
    /// Notifications of a meeting or a territory.
    List {
        #[arg(long, default_value = "")]
        meeting: String,
        #[arg(long, default_value = "")]
        territory: String,
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// The delivery log, newest first.
    Deliveries {
        #[arg(long, default_value = "")]
        notification: String,
        #[arg(long, default_value = "")]
        territory: String,
        /// sent, failed, dead or dropped.
        #[arg(long, default_value = "")]
        outcome: String,
        #[arg(long, default_value_t = 100)]
        limit: i32,
    },
    /// Sends a dead letter again.
    Retry { id: String },
    /// A territory's recipients and their preferences.
    Recipients {
        #[arg(long)]
        territory: String,
    },
    /// Changes a recipient's preferences.
    Preferences {
        #[arg(long)]
        territory: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_enum)]
        channel: Option<ChannelArg>,
        #[arg(long, default_value = "")]
        webhook_url: String,
        #[arg(long)]
        reminders: Option<bool>,
        /// A new webhook signing secret (the previous one stays valid for a while).
        #[arg(long)]
        rotate_webhook_secret: bool,
    },
    /// Sends again every dead letter of a territory, a meeting or a due-time range.
    RetryDead {
        #[arg(long, default_value = "")]
        territory: String,
        #[arg(long, default_value = "")]
        meeting: String,
        /// Due from (RFC 3339, e.g. 2027-03-01T00:00:00Z).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Due before (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// The secret link of a territory's calendar feed.
    Feed {
        #[arg(long)]
        territory: String,
    },
    /// The local time of a territory's reminders ("" for the deployment's).
    ReminderTime {
        #[arg(long)]
        territory: String,
        #[arg(long, default_value = "")]
        at: String,
    },
}

fn name(raw: &str, prefix: &str) -> String {
    raw.trim_start_matches(prefix).to_lowercase()
}

fn time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(tde_runtime::api::from_timestamp)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn print_notifications(items: &[pb::Notification], format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        for n in items {
            println!("{}", to_json(n, "tde.notifications.v1.Notification")?);
        }
        return Ok(());
    }
    println!(
        "{}",
        table(
            &[
                "id",
                "meeting",
                "seq",
                "recipient",
                "kind",
                "status",
                "due (UTC)",
                "attempts",
                "error"
            ],
            items
                .iter()
                .map(|n| {
                    vec![
                        n.id.clone(),
                        n.meeting_id.clone(),
                        n.sequence.to_string(),
                        n.recipient.clone(),
                        pb::NotificationKind::try_from(n.kind)
                            .map(|k| name(k.as_str_name(), "NOTIFICATION_KIND_"))
                            .unwrap_or_default(),
                        pb::NotificationStatus::try_from(n.status)
                            .map(|s| name(s.as_str_name(), "NOTIFICATION_STATUS_"))
                            .unwrap_or_default(),
                        time(&n.due_time),
                        n.attempts.to_string(),
                        n.last_error.clone(),
                    ]
                })
                .collect(),
        )
    );
    Ok(())
}

pub async fn notification(
    target: &Target,
    format: Format,
    command: NotificationCommand,
) -> anyhow::Result<()> {
    let mut client = NotificationServiceClient::new(target.channel().await?);
    match command {
        NotificationCommand::List {
            meeting,
            territory,
            status: s,
            limit,
        } => {
            let r = client
                .list_notifications(pb::ListNotificationsRequest {
                    meeting_id: meeting,
                    territory_id: territory,
                    status: s.map_or(0, |s| match s {
                        StatusArg::Pending => pb::NotificationStatus::Pending as i32,
                        StatusArg::Sent => pb::NotificationStatus::Sent as i32,
                        StatusArg::Dead => pb::NotificationStatus::Dead as i32,
                        StatusArg::Dropped => pb::NotificationStatus::Dropped as i32,
                    }),
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            print_notifications(&r.notifications, format)
        }
        NotificationCommand::Deliveries {
            notification,
            territory,
            outcome,
            limit,
        } => {
            let r = client
                .list_deliveries(pb::ListDeliveriesRequest {
                    notification_id: notification,
                    territory_id: territory,
                    outcome,
                    page_size: limit,
                    ..Default::default()
                })
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                for d in &r.deliveries {
                    println!("{}", to_json(d, "tde.notifications.v1.Delivery")?);
                }
                return Ok(());
            }
            println!(
                "{}",
                table(
                    &[
                        "when (UTC)",
                        "notification",
                        "channel",
                        "recipient",
                        "attempt",
                        "outcome",
                        "error"
                    ],
                    r.deliveries
                        .iter()
                        .map(|d| {
                            vec![
                                time(&d.attempt_time),
                                d.notification_id.clone(),
                                pb::Channel::try_from(d.channel)
                                    .map(|c| name(c.as_str_name(), "CHANNEL_"))
                                    .unwrap_or_default(),
                                d.recipient.clone(),
                                d.attempt.to_string(),
                                d.outcome.clone(),
                                d.error.clone(),
                            ]
                        })
                        .collect(),
                )
            );
            Ok(())
        }
        NotificationCommand::Retry { id } => {
            let r = client
                .retry_notification(pb::RetryNotificationRequest { id })
                .await
                .map_err(status)?
                .into_inner();
            print_notifications(r.notification.as_slice(), format)
        }
        NotificationCommand::Recipients { territory } => {
            let r = client
                .list_recipients(pb::ListRecipientsRequest {
                    territory_id: territory,
                })
                .await
                .map_err(status)?
                .into_inner();
            if format == Format::Json {
                for x in &r.recipients {
                    println!("{}", to_json(x, "tde.notifications.v1.Recipient")?);
                }
                return Ok(());
            }
            println!(
                "{}",
                table(
                    &["e-mail", "name", "role", "channel", "reminders", "language"],
                    r.recipients
                        .iter()
                        .map(|x| {
                            vec![
                                x.email.clone(),
                                x.name.clone(),
                                x.role.clone(),
                                pb::Channel::try_from(x.channel)
                                    .map(|c| name(c.as_str_name(), "CHANNEL_"))
                                    .unwrap_or_default(),
                                x.reminders.to_string(),
                                x.language.clone(),
                            ]
                        })
                        .collect(),
                )
            );
            Ok(())
        }
        NotificationCommand::Preferences {
            territory,
            email,
            channel,
            webhook_url,
            reminders,
            rotate_webhook_secret,
        } => {
            let r = client
                .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
                    territory_id: territory,
                    email,
                    channel: channel.map_or(0, |c| match c {
                        ChannelArg::Email => pb::Channel::Email as i32,
                        ChannelArg::Webhook => pb::Channel::Webhook as i32,
                    }),
                    webhook_url,
                    language: String::new(),
                    reminders,
                    rotate_webhook_secret,
                })
                .await
                .map_err(status)?
                .into_inner();
            if let Some(x) = &r.recipient {
                println!("{}", to_json(x, "tde.notifications.v1.Recipient")?);
            }
            if !r.webhook_secret.is_empty() {
                // Shown once: the service keeps no way to show it again.
                eprintln!("secret de signature du webhook (affiché une seule fois) :");
                println!("{}", r.webhook_secret);
                let until = time(&r.previous_webhook_secret_valid_until);
                if !until.is_empty() {
                    eprintln!("l'ancien secret reste valide jusqu'au {until} (UTC)");
                }
            }
            Ok(())
        }
        NotificationCommand::RetryDead {
            territory,
            meeting,
            from,
            to,
        } => {
            let r = client
                .retry_dead_notifications(pb::RetryDeadNotificationsRequest {
                    territory_id: territory,
                    meeting_id: meeting,
                    due_time_from: from.map(tde_runtime::api::timestamp),
                    due_time_to: to.map(tde_runtime::api::timestamp),
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{} notification(s) remise(s) en envoi", r.retried);
            Ok(())
        }
        NotificationCommand::Feed { territory } => {
            let r = client
                .get_calendar_feed(pb::GetCalendarFeedRequest {
                    territory_id: territory,
                })
                .await
                .map_err(status)?
                .into_inner();
            println!("{}", if r.url.is_empty() { r.path } else { r.url });
            Ok(())
        }
        NotificationCommand::ReminderTime { territory, at } => {
            let r = client
                .set_reminder_time(pb::SetReminderTimeRequest {
                    territory_id: territory,
                    local_time: at,
                })
                .await
                .map_err(status)?
                .into_inner();
            println!(
                "reminders of {} at {} (local time)",
                r.territory_id, r.local_time
            );
            Ok(())
        }
    }
}
