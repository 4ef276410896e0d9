//! gRPC handlers of the notifications service.

pub mod personal_data;
pub mod policy;

use sea_orm::TransactionTrait as _;
use tonic::{Request, Response, Status as GrpcStatus};

use tde_proto::notifications::v1 as pb;
use tde_proto::notifications::v1::notification_service_server::NotificationService;
use tde_runtime::api::{Caller, PageRequest, from_timestamp, parse_id, timestamp};
use tde_runtime::auth::scope::CONTACTS_READ;
use tde_runtime::{ApiError, ServiceContext, Violations};

use crate::delivery::webhook::WebhookClient;
use crate::domain::{Channel, Kind, Status};
use crate::events::Planner;
use crate::storage::{self, DeliveryFilter, NotificationFilter};

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;

pub struct NotificationsApi {
    ctx: ServiceContext,
    planner: Planner,
}

fn kind_to_pb(kind: &str) -> i32 {
    (match Kind::parse(kind) {
        Some(Kind::Invitation) => pb::NotificationKind::Invitation,
        Some(Kind::Update) => pb::NotificationKind::Update,
        Some(Kind::Cancellation) => pb::NotificationKind::Cancellation,
        Some(Kind::Reminder(7)) => pb::NotificationKind::Reminder7Days,
        Some(Kind::Reminder(1)) => pb::NotificationKind::Reminder1Day,
        _ => pb::NotificationKind::Unspecified,
    }) as i32
}

fn kind_from_pb(raw: i32) -> Result<Option<Kind>, ApiError> {
    match pb::NotificationKind::try_from(raw) {
        Ok(pb::NotificationKind::Unspecified) => Ok(None),
        Ok(pb::NotificationKind::Invitation) => Ok(Some(Kind::Invitation)),
        Ok(pb::NotificationKind::Update) => Ok(Some(Kind::Update)),
        Ok(pb::NotificationKind::Cancellation) => Ok(Some(Kind::Cancellation)),
        Ok(pb::NotificationKind::Reminder7Days) => Ok(Some(Kind::Reminder(7))),
        Ok(pb::NotificationKind::Reminder1Day) => Ok(Some(Kind::Reminder(1))),
        Err(_) => Err(ApiError::invalid("kind", "is not a notification kind")),
    }
}

fn status_to_pb(s: &str) -> i32 {
    (match Status::parse(s) {
        Some(Status::Pending) => pb::NotificationStatus::Pending,
        Some(Status::Sent) => pb::NotificationStatus::Sent,
        Some(Status::Dead) => pb::NotificationStatus::Dead,
        Some(Status::Dropped) => pb::NotificationStatus::Dropped,
        None => pb::NotificationStatus::Unspecified,
    }) as i32
}

fn status_from_pb(raw: i32) -> Result<Option<Status>, ApiError> {
    match pb::NotificationStatus::try_from(raw) {
        Ok(pb::NotificationStatus::Unspecified) => Ok(None),
        Ok(pb::NotificationStatus::Pending) => Ok(Some(Status::Pending)),
        Ok(pb::NotificationStatus::Sent) => Ok(Some(Status::Sent)),
        Ok(pb::NotificationStatus::Dead) => Ok(Some(Status::Dead)),
        Ok(pb::NotificationStatus::Dropped) => Ok(Some(Status::Dropped)),
        Err(_) => Err(ApiError::invalid("status", "is not a notification status")),
    }
}

fn channel_to_pb(c: &str) -> i32 {
    (match Channel::parse(c) {
        Some(Channel::Email) => pb::Channel::Email,
        Some(Channel::Webhook) => pb::Channel::Webhook,
        None => pb::Channel::Unspecified,
    }) as i32
}

fn channel_from_pb(field: &str, raw: i32) -> Result<Option<Channel>, ApiError> {
    match pb::Channel::try_from(raw) {
        Ok(pb::Channel::Unspecified) => Ok(None),
        Ok(pb::Channel::Email) => Ok(Some(Channel::Email)),
        Ok(pb::Channel::Webhook) => Ok(Some(Channel::Webhook)),
        Err(_) => Err(ApiError::invalid(field, "is not a channel")),
    }
}

fn territory_not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        resource_type: "territory",
        name: id.to_string(),
        field: Some("territory_id"),
    }
}

impl NotificationsApi {
    pub fn new(ctx: ServiceContext, planner: Planner) -> Self {
        Self { ctx, planner }
    }

    /// The territories the caller sees (None: all).
    async fn visible_territories(&self, caller: &Caller) -> Result<Option<Vec<String>>, ApiError> {
        let Some((mut ids, regions)) = caller.principal.visibility().filter() else {
            return Ok(None);
        };
        if !regions.is_empty() {
            ids.extend(storage::territories_of_regions(&self.ctx.db, regions).await?);
        }
        Ok(Some(ids))
    }

    /// A territory the caller may see, or NOT_FOUND.
    async fn territory(&self, caller: &Caller, raw: &str) -> Result<String, ApiError> {
        let id = parse_id("territory_id", raw)?.to_string();
        caller.concerns(format!("territories/{id}"));
        let known = storage::find_territory(&self.ctx.db, &id).await?;
        let Some(t) = known.filter(|t| caller.may_see(&t.id, &t.region_code)) else {
            return Err(territory_not_found(&id));
        };
        Ok(t.id)
    }

    fn notification_to_pb(n: &storage::Notification, with_contacts: bool) -> pb::Notification {
        pb::Notification {
            id: n.id.clone(),
            meeting_id: n.meeting_id.clone(),
            sequence: n.sequence,
            territory_id: n.territory_id.clone(),
            recipient: if with_contacts {
                n.recipient.clone()
            } else {
                String::new()
            },
            kind: kind_to_pb(&n.kind),
            channel: channel_to_pb(&n.channel),
            status: status_to_pb(&n.status),
            due_time: Some(timestamp(n.due_at)),
            attempts: n.attempts,
            next_attempt_time: Some(timestamp(n.next_attempt_at)),
            sent_time: n.sent_at.map(timestamp),
            last_error: n.last_error.clone().unwrap_or_default(),
            message_id: n.message_id.clone(),
        }
    }

    fn recipient_to_pb(
        r: &crate::domain::recipient::Recipient,
        with_contacts: bool,
    ) -> pb::Recipient {
        pb::Recipient {
            territory_id: r.territory_id.clone(),
            email: if with_contacts {
                r.email.clone()
            } else {
                String::new()
            },
            name: if with_contacts {
                r.name.clone()
            } else {
                String::new()
            },
            role: r.role.clone(),
            language: r.language.clone(),
            channel: channel_to_pb(r.channel.as_str()),
            webhook_url: if with_contacts {
                r.webhook_url.clone().unwrap_or_default()
            } else {
                String::new()
            },
            reminders: r.reminders,
        }
    }
}

/// Whether `principal`, who may see the recipient's territory, may change the preferences
/// of the recipient at `address` (normalised).
fn may_change_preferences(principal: &tde_runtime::auth::Principal, address: &str) -> bool {
    use tde_runtime::auth::Role;
    match principal.role {
        Role::National | Role::ProjectLead => true,
        Role::TerritoryMember | Role::Agency | Role::Provider => principal
            .email
            .as_deref()
            .is_some_and(|own| tde_runtime::personal_data::normalize_email(own) == address),
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationsApi {
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let mut v = Violations::default();
        let meeting_id = (!r.meeting_id.is_empty())
            .then(|| parse_id("meeting_id", &r.meeting_id).map(|u| u.to_string()))
            .transpose();
        let meeting_id = match meeting_id {
            Ok(m) => m,
            Err(_) => {
                v.add("meeting_id", "is not a valid id");
                None
            }
        };
        v.into_result().map_err(ApiError::from)?;
        let status = status_from_pb(r.status)?;
        let kind = kind_from_pb(r.kind)?;
        let mut territory_ids = self.visible_territories(&caller).await?;
        if !r.territory_id.is_empty() {
            let id = self.territory(&caller, &r.territory_id).await?;
            territory_ids = Some(vec![id]);
        }
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        caller.concerns("notifications");
        let filter = NotificationFilter {
            meeting_id,
            territory_ids,
            status,
            kind,
        };
        let rows =
            storage::list_notifications(&self.ctx.db, &filter, request.after(), request.fetch())
                .await
                .map_err(ApiError::from)?;
        let (page, next_page_token) = request.page(rows, |n| n.id.clone());
        let with_contacts = caller.has_scope(CONTACTS_READ);
        if with_contacts && !page.is_empty() {
            caller.reads_personal_data();
        }
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: page
                .iter()
                .map(|n| Self::notification_to_pb(n, with_contacts))
                .collect(),
            next_page_token,
            personal_data_withheld: !with_contacts,
        }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let notification_id = if r.notification_id.is_empty() {
            None
        } else {
            Some(parse_id("notification_id", &r.notification_id)?.to_string())
        };
        if !r.outcome.is_empty()
            && !matches!(r.outcome.as_str(), "sent" | "failed" | "dead" | "dropped")
        {
            return Err(ApiError::invalid("outcome", "sent, failed, dead or dropped").into());
        }
        let channel = channel_from_pb("channel", r.channel)?;
        let mut territory_ids = self.visible_territories(&caller).await?;
        if !r.territory_id.is_empty() {
            territory_ids = Some(vec![self.territory(&caller, &r.territory_id).await?]);
        }
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        caller.concerns("deliveries");
        let filter = DeliveryFilter {
            notification_id,
            territory_ids,
            outcome: (!r.outcome.is_empty()).then_some(r.outcome),
            channel,
            from: r.attempt_time_from.as_ref().and_then(from_timestamp),
            to: r.attempt_time_to.as_ref().and_then(from_timestamp),
        };
        let rows =
            storage::list_deliveries(&self.ctx.db, &filter, request.after(), request.fetch())
                .await
                .map_err(ApiError::from)?;
        let (page, next_page_token) = request.page(rows, |d| d.id.clone());
        let with_contacts = caller.has_scope(CONTACTS_READ);
        if with_contacts && !page.is_empty() {
            caller.reads_personal_data();
        }
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page
                .iter()
                .map(|d| pb::Delivery {
                    id: d.id.clone(),
                    notification_id: d.notification_id.clone(),
                    attempt_time: Some(timestamp(d.attempted_at)),
                    channel: channel_to_pb(&d.channel),
                    recipient: if with_contacts {
                        d.recipient.clone()
                    } else {
                        String::new()
                    },
                    outcome: d.outcome.clone(),
                    error: d.error.clone().unwrap_or_default(),
                    attempt: d.attempt,
                })
                .collect(),
            next_page_token,
            personal_data_withheld: !with_contacts,
        }))
    }

    async fn retry_notification(
        &self,
        request: Request<pb::RetryNotificationRequest>,
    ) -> Result<Response<pb::RetryNotificationResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(format!("notifications/{id}"));
        let visible = self.visible_territories(&caller).await?;
        let not_found = || ApiError::NotFound {
            resource_type: "notification",
            name: id.clone(),
            field: None,
        };
        let n = storage::find_notification(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .filter(|n| visible.as_ref().is_none_or(|v| v.contains(&n.territory_id)))
            .ok_or_else(not_found)?;
        let txn = self.ctx.db.begin().await.map_err(ApiError::from)?;
        if !storage::retry(&txn, &n.id).await.map_err(ApiError::from)? {
            return Err(ApiError::FailedPrecondition {
                kind: "STATE",
                subject: n.status.clone(),
                description: format!(
                    "the notification is {}: only dead ones are retried",
                    n.status
                ),
            }
            .into());
        }
        tde_runtime::audit::record_in(&txn)
            .await
            .map_err(ApiError::from)?;
        txn.commit().await.map_err(ApiError::from)?;
        self.planner.waker.wake();
        let n = storage::find_notification(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::RetryNotificationResponse {
            notification: Some(Self::notification_to_pb(
                &n,
                caller.has_scope(CONTACTS_READ),
            )),
        }))
    }

    async fn list_recipients(
        &self,
        request: Request<pb::ListRecipientsRequest>,
    ) -> Result<Response<pb::ListRecipientsResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let territory = self
            .territory(&caller, &request.get_ref().territory_id)
            .await?;
        let recipients = storage::recipients_of(&self.ctx.db, &territory)
            .await
            .map_err(ApiError::from)?;
        let with_contacts = caller.has_scope(CONTACTS_READ);
        if with_contacts && !recipients.is_empty() {
            caller.reads_personal_data();
        }
        Ok(Response::new(pb::ListRecipientsResponse {
            recipients: recipients
                .iter()
                .map(|r| Self::recipient_to_pb(r, with_contacts))
                .collect(),
        }))
    }

    async fn update_recipient_preferences(
        &self,
        request: Request<pb::UpdateRecipientPreferencesRequest>,
    ) -> Result<Response<pb::UpdateRecipientPreferencesResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let channel = channel_from_pb("channel", r.channel)?;
        let mut v = Violations::default();
        // Bounded and free of control characters before anything else reads them.
        for (field, value, max) in [
            ("email", &r.email, 320),
            ("webhook_url", &r.webhook_url, 2_000),
            ("language", &r.language, 35),
        ] {
            if let Some(why) = tde_runtime::input::problem(value, max, false) {
                v.add(field, why);
            }
        }
        let insecure = self.planner.settings.allow_insecure_webhooks;
        if !r.webhook_url.is_empty()
            && tde_runtime::input::problem(&r.webhook_url, 2_000, false).is_none()
            && let Err(why) = WebhookClient::check_url(&r.webhook_url, insecure)
        {
            v.add("webhook_url", why);
        }
        if !r.language.is_empty()
            && (r.language.len() > 35
                || !r
                    .language
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            v.add("language", "is not a language tag, e.g. fr");
        }
        v.into_result().map_err(ApiError::from)?;
        let territory = self.territory(&caller, &r.territory_id).await?;
        let email = tde_runtime::personal_data::normalize_email(&r.email);
        let txn = self.ctx.db.begin().await.map_err(ApiError::from)?;
        let current = storage::recipients_of(&txn, &territory)
            .await
            .map_err(ApiError::from)?;
        // Only the person (their token's verified address) or the programme (the national
        // team, a project lead who sees the territory) changes a person's preferences; any
        // other caller learns nothing, not even that the recipient exists.
        let Some(mut recipient) = current
            .into_iter()
            .find(|x| x.email == email)
            .filter(|x| may_change_preferences(&caller.principal, &x.email))
        else {
            return Err(ApiError::NotFound {
                resource_type: "recipient",
                name: "(address withheld)".into(),
                field: Some("email"),
            }
            .into());
        };
        if let Some(c) = channel {
            recipient.channel = c;
        }
        if !r.webhook_url.is_empty() {
            recipient.webhook_url = Some(r.webhook_url.clone());
        }
        if recipient.channel == Channel::Webhook && recipient.webhook_url.is_none() {
            return Err(
                ApiError::invalid("webhook_url", "is required with the webhook channel").into(),
            );
        }
        if r.rotate_webhook_secret && recipient.webhook_url.is_none() {
            return Err(ApiError::invalid(
                "rotate_webhook_secret",
                "the recipient has no webhook to sign for",
            )
            .into());
        }
        if !r.language.is_empty() {
            recipient.language = r.language.clone();
        }
        let reminders_before = recipient.reminders;
        if let Some(on) = r.reminders {
            recipient.reminders = on;
        }
        storage::update_recipient(&txn, &recipient)
            .await
            .map_err(ApiError::from)?;
        // A new URL gets a new secret (the old receiver's is dropped at once); a rotation
        // keeps the previous one signing for the overlap window. Shown in this response only.
        let mut webhook_secret = String::new();
        let mut previous_until = None;
        if !r.webhook_url.is_empty() || r.rotate_webhook_secret {
            webhook_secret = storage::new_webhook_secret();
            if r.webhook_url.is_empty() {
                let overlap = i64::try_from(self.planner.settings.webhook_secret_overlap_ms)
                    .unwrap_or(i64::MAX);
                previous_until = Some(chrono::Utc::now() + chrono::Duration::milliseconds(overlap));
            }
            storage::set_webhook_secret(&txn, &territory, &email, &webhook_secret, previous_until)
                .await
                .map_err(ApiError::from)?;
        }
        storage::set_pending_channel(&txn, &territory, &email, recipient.channel)
            .await
            .map_err(ApiError::from)?;
        if reminders_before && !recipient.reminders {
            storage::drop_reminders_of(&txn, &territory, &email)
                .await
                .map_err(ApiError::from)?;
        }
        if !reminders_before && recipient.reminders {
            // Back on: the coming meetings' reminders still ahead are planned again.
            self.planner
                .replan_reminders(&txn, &territory)
                .await
                .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
        }
        tde_runtime::audit::record_in(&txn)
            .await
            .map_err(ApiError::from)?;
        txn.commit().await.map_err(ApiError::from)?;
        caller.reads_personal_data();
        Ok(Response::new(pb::UpdateRecipientPreferencesResponse {
            recipient: Some(Self::recipient_to_pb(
                &recipient,
                caller.has_scope(CONTACTS_READ),
            )),
            webhook_secret,
            previous_webhook_secret_valid_until: previous_until.map(timestamp),
        }))
    }

    async fn get_calendar_feed(
        &self,
        request: Request<pb::GetCalendarFeedRequest>,
    ) -> Result<Response<pb::GetCalendarFeedResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let territory = self
            .territory(&caller, &request.get_ref().territory_id)
            .await?;
        let secret = storage::feed_secret(&self.ctx.db, &territory)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| territory_not_found(&territory))?;
        let path = crate::feed::path(&territory, &secret);
        let settings = crate::settings_of(&self.ctx);
        let base = settings.feed_base_url.trim_end_matches('/');
        Ok(Response::new(pb::GetCalendarFeedResponse {
            url: if base.is_empty() {
                String::new()
            } else {
                format!("{base}{path}")
            },
            path,
        }))
    }

    async fn set_reminder_time(
        &self,
        request: Request<pb::SetReminderTimeRequest>,
    ) -> Result<Response<pb::SetReminderTimeResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        tde_runtime::input::text("local_time", &r.local_time, 16)?;
        let minutes = if r.local_time.trim().is_empty() {
            None
        } else {
            let t = chrono::NaiveTime::parse_from_str(r.local_time.trim(), "%H:%M")
                .map_err(|_| ApiError::invalid("local_time", "is not a time of day (HH:MM)"))?;
            use chrono::Timelike as _;
            Some((t.hour() * 60 + t.minute()) as i32)
        };
        let territory = self.territory(&caller, &r.territory_id).await?;
        let txn = self.ctx.db.begin().await.map_err(ApiError::from)?;
        storage::set_reminder_minutes(&txn, &territory, minutes)
            .await
            .map_err(ApiError::from)?;
        self.planner
            .replan_reminders(&txn, &territory)
            .await
            .map_err(|e| ApiError::internal(anyhow::anyhow!("{e}")))?;
        tde_runtime::audit::record_in(&txn)
            .await
            .map_err(ApiError::from)?;
        txn.commit().await.map_err(ApiError::from)?;
        self.planner.waker.wake();
        let at = crate::delivery::dispatcher::reminder_time(&self.planner.settings, minutes);
        Ok(Response::new(pb::SetReminderTimeResponse {
            territory_id: territory,
            local_time: at.format("%H:%M").to_string(),
        }))
    }

    async fn retry_dead_notifications(
        &self,
        request: Request<pb::RetryDeadNotificationsRequest>,
    ) -> Result<Response<pb::RetryDeadNotificationsResponse>, GrpcStatus> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let meeting_id = if r.meeting_id.is_empty() {
            None
        } else {
            Some(parse_id("meeting_id", &r.meeting_id)?.to_string())
        };
        let from = r.due_time_from.as_ref().and_then(from_timestamp);
        let to = r.due_time_to.as_ref().and_then(from_timestamp);
        if r.territory_id.is_empty() && meeting_id.is_none() && from.is_none() && to.is_none() {
            return Err(ApiError::invalid(
                "territory_id",
                "name a territory, a meeting or a due-time range: every dead letter at once is not retried by mistake",
            )
            .into());
        }
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(ApiError::invalid("due_time_to", "must be after due_time_from").into());
        }
        let mut territory_ids = self.visible_territories(&caller).await?;
        if !r.territory_id.is_empty() {
            territory_ids = Some(vec![self.territory(&caller, &r.territory_id).await?]);
        } else {
            caller.concerns("notifications");
        }
        let txn = self.ctx.db.begin().await.map_err(ApiError::from)?;
        let retried = storage::retry_dead(&txn, territory_ids, meeting_id, from, to)
            .await
            .map_err(ApiError::from)?;
        tde_runtime::audit::record_in(&txn)
            .await
            .map_err(ApiError::from)?;
        txn.commit().await.map_err(ApiError::from)?;
        if retried > 0 {
            self.planner.waker.wake();
        }
        Ok(Response::new(pb::RetryDeadNotificationsResponse {
            retried: i64::try_from(retried).unwrap_or(i64::MAX),
        }))
    }
}
