//! Storage of the notifications service: entities, migrations and queries, on PostgreSQL or
//! SQLite alike. Due notifications are claimed with a lease (`claim`): `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, so that replicas take different rows; a conditional update on
//! SQLite (one process). Every later write of a claimed row names its lease token (fencing):
//! a replica whose lease expired cannot overwrite what another did since.

pub mod entities;
pub mod migrations;

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, Statement,
};
use serde::{Deserialize, Serialize};

use crate::domain::recipient::Recipient;
use crate::domain::schedule::{Meeting, Planned};
use crate::domain::{Channel, Kind, Status, fingerprint};
use entities::{delivery, meeting, notification, recipient, territory};

use tde_runtime::db::corrupt;

// ---------------------------------------------------------------------------------------
// Territories.

pub async fn find_territory(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<territory::Model>, DbErr> {
    territory::Entity::find_by_id(id.to_string()).one(db).await
}

/// Records a territory's name and zone (keeping its own settings).
pub async fn save_territory(
    db: &impl ConnectionTrait,
    id: &str,
    name: &str,
    time_zone: &str,
) -> Result<(), DbErr> {
    let row = territory::ActiveModel {
        id: Set(id.to_string()),
        name: Set(name.to_string()),
        time_zone: Set(time_zone.to_string()),
        region_code: Set(String::new()),
        reminder_minutes: Set(None),
        feed_secret: Set(None),
        updated_at: Set(Utc::now()),
    };
    territory::Entity::insert(row)
        .on_conflict(
            OnConflict::column(territory::Column::Id)
                .update_columns([
                    territory::Column::Name,
                    territory::Column::TimeZone,
                    territory::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Applies what a territory event says of a territory's name, zone and région; what it does
/// not say, and the service's own settings of the territory, stay.
pub async fn update_territory(
    db: &impl ConnectionTrait,
    id: &str,
    name: Option<&str>,
    time_zone: Option<&str>,
    region: Option<&str>,
) -> Result<(), DbErr> {
    let known = find_territory(db, id).await?;
    let (old_name, old_zone, old_region) = known
        .map(|t| (t.name, t.time_zone, t.region_code))
        .unwrap_or_default();
    save_territory(
        db,
        id,
        name.unwrap_or(&old_name),
        time_zone.unwrap_or(&old_zone),
    )
    .await?;
    set_region(db, id, region.unwrap_or(&old_region)).await
}

/// The région of a territory (from its registration).
pub async fn set_region(db: &impl ConnectionTrait, id: &str, region: &str) -> Result<(), DbErr> {
    territory::Entity::update_many()
        .col_expr(territory::Column::RegionCode, Expr::value(region))
        .filter(territory::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// The territories of these régions.
pub async fn territories_of_regions(
    db: &impl ConnectionTrait,
    regions: Vec<String>,
) -> Result<Vec<String>, DbErr> {
    Ok(territory::Entity::find()
        .filter(territory::Column::RegionCode.is_in(regions))
        .all(db)
        .await?
        .into_iter()
        .map(|t| t.id)
        .collect())
}

/// Follows a recipient's channel in what is still to send.
pub async fn set_pending_channel(
    db: &impl ConnectionTrait,
    territory_id: &str,
    email: &str,
    channel: Channel,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(notification::Column::Channel, Expr::value(channel.as_str()))
        .filter(notification::Column::TerritoryId.eq(territory_id))
        .filter(notification::Column::Recipient.eq(email))
        .filter(notification::Column::Status.eq(Status::Pending.as_str()))
        .exec(db)
        .await?;
    Ok(())
}

/// Drops a recipient's pending reminders (they opted out).
pub async fn drop_reminders_of(
    db: &impl ConnectionTrait,
    territory_id: &str,
    email: &str,
) -> Result<(), DbErr> {
    notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Dropped.as_str()),
        )
        .filter(notification::Column::TerritoryId.eq(territory_id))
        .filter(notification::Column::Recipient.eq(email))
        .filter(notification::Column::Status.eq(Status::Pending.as_str()))
        .filter(notification::Column::Kind.like("reminder_%"))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn set_reminder_minutes(
    db: &impl ConnectionTrait,
    id: &str,
    minutes: Option<i32>,
) -> Result<bool, DbErr> {
    let r = territory::Entity::update_many()
        .col_expr(territory::Column::ReminderMinutes, Expr::value(minutes))
        .filter(territory::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// The secret of a territory's feed, created on first use.
pub async fn feed_secret(db: &impl ConnectionTrait, id: &str) -> Result<Option<String>, DbErr> {
    let Some(t) = find_territory(db, id).await? else {
        return Ok(None);
    };
    if let Some(secret) = t.feed_secret {
        return Ok(Some(secret));
    }
    let secret = random_secret();
    territory::Entity::update_many()
        .col_expr(territory::Column::FeedSecret, Expr::value(secret.clone()))
        .filter(territory::Column::Id.eq(id))
        .filter(territory::Column::FeedSecret.is_null())
        .exec(db)
        .await?;
    // A concurrent request may have set another one first: the stored one wins.
    Ok(find_territory(db, id).await?.and_then(|t| t.feed_secret))
}

fn random_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------
// Recipients.

fn recipient_from(m: recipient::Model) -> Result<Recipient, DbErr> {
    Ok(Recipient {
        channel: Channel::parse(&m.channel).ok_or_else(|| corrupt("channel", &m.channel))?,
        territory_id: m.territory_id,
        email: m.email,
        name: m.name,
        role: m.role,
        language: m.language,
        webhook_url: m.webhook_url,
        reminders: m.reminders,
    })
}

fn recipient_row(r: &Recipient) -> recipient::ActiveModel {
    recipient::ActiveModel {
        territory_id: Set(r.territory_id.clone()),
        email: Set(r.email.clone()),
        email_sha256: Set(fingerprint(&r.email)),
        name: Set(r.name.clone()),
        role: Set(r.role.clone()),
        language: Set(r.language.clone()),
        channel: Set(r.channel.as_str().into()),
        webhook_url: Set(r.webhook_url.clone()),
        reminders: Set(r.reminders),
        updated_at: Set(Utc::now()),
        // The webhook secrets are written by `set_webhook_secret` alone.
        ..Default::default()
    }
}

/// The keys signing a receiver's webhooks: its own, and the previous one while a rotation
/// overlaps.
#[derive(Clone)]
pub struct WebhookSecrets {
    pub current: String,
    pub previous: Option<(String, DateTime<Utc>)>,
}

pub async fn webhook_secrets(
    db: &impl ConnectionTrait,
    territory_id: &str,
    email: &str,
) -> Result<Option<WebhookSecrets>, DbErr> {
    let row = recipient::Entity::find_by_id((territory_id.to_string(), email.to_string()))
        .one(db)
        .await?;
    Ok(row.and_then(|r| {
        let previous = r.webhook_previous_secret.zip(r.webhook_previous_until);
        r.webhook_secret
            .map(|current| WebhookSecrets { current, previous })
    }))
}

/// Gives a receiver a new secret; the current one, if any, keeps signing until
/// `previous_until` (None: dropped at once, the URL changed).
pub async fn set_webhook_secret(
    db: &impl ConnectionTrait,
    territory_id: &str,
    email: &str,
    secret: &str,
    previous_until: Option<DateTime<Utc>>,
) -> Result<(), DbErr> {
    let current = webhook_secrets(db, territory_id, email).await?;
    let (previous, until) = match (current, previous_until) {
        (Some(c), Some(until)) => (Some(c.current), Some(until)),
        _ => (None, None),
    };
    recipient::Entity::update_many()
        .col_expr(
            recipient::Column::WebhookSecret,
            Expr::value(Some(secret.to_string())),
        )
        .col_expr(
            recipient::Column::WebhookPreviousSecret,
            Expr::value(previous),
        )
        .col_expr(recipient::Column::WebhookPreviousUntil, Expr::value(until))
        .filter(recipient::Column::TerritoryId.eq(territory_id))
        .filter(recipient::Column::Email.eq(email))
        .exec(db)
        .await?;
    Ok(())
}

/// A new webhook secret: 32 random bytes, base64url.
pub fn new_webhook_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Sends again the dead letters matching the filters, among `territory_ids` (None: all);
/// returns how many.
pub async fn retry_dead(
    db: &impl ConnectionTrait,
    territory_ids: Option<Vec<String>>,
    meeting_id: Option<String>,
    due_from: Option<DateTime<Utc>>,
    due_to: Option<DateTime<Utc>>,
) -> Result<u64, DbErr> {
    let mut query = notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Pending.as_str()),
        )
        .col_expr(notification::Column::Attempts, Expr::value(0))
        .col_expr(notification::Column::NextAttemptAt, Expr::value(Utc::now()))
        .col_expr(
            notification::Column::RetryFrom,
            Expr::value(Some(Utc::now())),
        )
        .filter(notification::Column::Status.eq(Status::Dead.as_str()));
    if let Some(ids) = territory_ids {
        query = query.filter(notification::Column::TerritoryId.is_in(ids));
    }
    if let Some(m) = meeting_id {
        query = query.filter(notification::Column::MeetingId.eq(m));
    }
    if let Some(from) = due_from {
        query = query.filter(notification::Column::DueAt.gte(from));
    }
    if let Some(to) = due_to {
        query = query.filter(notification::Column::DueAt.lt(to));
    }
    Ok(query.exec(db).await?.rows_affected)
}

pub async fn recipients_of(
    db: &impl ConnectionTrait,
    territory_id: &str,
) -> Result<Vec<Recipient>, DbErr> {
    recipient::Entity::find()
        .filter(recipient::Column::TerritoryId.eq(territory_id))
        .order_by_asc(recipient::Column::Email)
        .all(db)
        .await?
        .into_iter()
        .map(recipient_from)
        .collect()
}

pub async fn find_recipient(
    db: &impl ConnectionTrait,
    territory_id: &str,
    email: &str,
) -> Result<Option<Recipient>, DbErr> {
    recipient::Entity::find_by_id((territory_id.to_string(), email.to_string()))
        .one(db)
        .await?
        .map(recipient_from)
        .transpose()
}

pub async fn insert_recipient(db: &impl ConnectionTrait, r: &Recipient) -> Result<(), DbErr> {
    recipient::Entity::insert(recipient_row(r))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Updates name and role from the roster, or preferences from the API.
pub async fn update_recipient(db: &impl ConnectionTrait, r: &Recipient) -> Result<(), DbErr> {
    recipient::Entity::update_many()
        .set(recipient_row(r))
        .filter(recipient::Column::TerritoryId.eq(r.territory_id.clone()))
        .filter(recipient::Column::Email.eq(r.email.clone()))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn delete_recipient(
    db: &impl ConnectionTrait,
    territory_id: &str,
    email: &str,
) -> Result<(), DbErr> {
    recipient::Entity::delete_many()
        .filter(recipient::Column::TerritoryId.eq(territory_id))
        .filter(recipient::Column::Email.eq(email))
        .exec(db)
        .await?;
    Ok(())
}

/// Every recipient row of the person of address SHA-256 `sha256`.
pub async fn recipients_by_fingerprint(
    db: &impl ConnectionTrait,
    sha256: &str,
) -> Result<Vec<Recipient>, DbErr> {
    recipient::Entity::find()
        .filter(recipient::Column::EmailSha256.eq(sha256))
        .all(db)
        .await?
        .into_iter()
        .map(recipient_from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Meetings.

/// A meeting as stored (the domain's `Meeting` with its zone by name).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MeetingDoc {
    plan_id: String,
    territory_name: String,
    time_zone: String,
    start_local: NaiveDateTime,
    end_local: NaiveDateTime,
    end: DateTime<Utc>,
    place: String,
    video_link: String,
    agenda: String,
    cancel_reason: String,
}

/// A stored meeting: the domain's view and its status.
#[derive(Debug, Clone)]
pub struct StoredMeeting {
    pub meeting: Meeting,
    /// scheduled, cancelled or held.
    pub status: String,
}

fn meeting_from(m: meeting::Model) -> Result<StoredMeeting, DbErr> {
    let doc: MeetingDoc = serde_json::from_str(&m.facts).map_err(|e| corrupt("meeting", e))?;
    Ok(StoredMeeting {
        meeting: Meeting {
            zone: doc
                .time_zone
                .parse()
                .map_err(|_| corrupt("time zone", &doc.time_zone))?,
            sequence: u32::try_from(m.sequence).map_err(|e| corrupt("sequence", e))?,
            cancelled: m.status == "cancelled",
            id: m.id,
            plan_id: doc.plan_id,
            territory_id: m.territory_id,
            territory_name: doc.territory_name,
            start_local: doc.start_local,
            end_local: doc.end_local,
            start: m.start_utc,
            end: doc.end,
            place: doc.place,
            video_link: doc.video_link,
            agenda: doc.agenda,
            cancel_reason: doc.cancel_reason,
        },
        status: m.status,
    })
}

pub async fn find_meeting(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<StoredMeeting>, DbErr> {
    meeting::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(meeting_from)
        .transpose()
}

/// Reads a meeting and locks its row until the transaction ends (PostgreSQL): the events of
/// one meeting apply one after the other.
pub async fn find_meeting_for_update(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<StoredMeeting>, DbErr> {
    tde_runtime::db::for_update(db, meeting::Entity::find_by_id(id.to_string()))
        .one(db)
        .await?
        .map(meeting_from)
        .transpose()
}

pub async fn save_meeting(
    db: &impl ConnectionTrait,
    m: &Meeting,
    status: &str,
) -> Result<(), DbErr> {
    let doc = MeetingDoc {
        plan_id: m.plan_id.clone(),
        territory_name: m.territory_name.clone(),
        time_zone: m.zone.name().to_string(),
        start_local: m.start_local,
        end_local: m.end_local,
        end: m.end,
        place: m.place.clone(),
        video_link: m.video_link.clone(),
        agenda: m.agenda.clone(),
        cancel_reason: m.cancel_reason.clone(),
    };
    let row = meeting::ActiveModel {
        id: Set(m.id.clone()),
        territory_id: Set(m.territory_id.clone()),
        sequence: Set(m.sequence as i32),
        status: Set(status.to_string()),
        start_utc: Set(m.start),
        facts: Set(serde_json::to_string(&doc).map_err(|e| DbErr::Custom(e.to_string()))?),
        updated_at: Set(Utc::now()),
    };
    meeting::Entity::insert(row)
        .on_conflict(
            OnConflict::column(meeting::Column::Id)
                .update_columns([
                    meeting::Column::Sequence,
                    meeting::Column::Status,
                    meeting::Column::StartUtc,
                    meeting::Column::Facts,
                    meeting::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A territory's meetings starting after `from`, in start order; scheduled only unless
/// `all`.
pub async fn meetings_of_territory(
    db: &impl ConnectionTrait,
    territory_id: &str,
    from: DateTime<Utc>,
    all: bool,
) -> Result<Vec<StoredMeeting>, DbErr> {
    let mut query = meeting::Entity::find()
        .filter(meeting::Column::TerritoryId.eq(territory_id))
        .filter(meeting::Column::StartUtc.gte(from));
    if !all {
        query = query.filter(meeting::Column::Status.eq("scheduled"));
    }
    query
        .order_by_asc(meeting::Column::StartUtc)
        .all(db)
        .await?
        .into_iter()
        .map(meeting_from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Notifications.

/// A notification as stored.
pub type Notification = notification::Model;

/// Creates the planned notifications of `meeting` for `recipients` (each once: existing
/// ones are kept); returns how many were new.
pub async fn insert_planned(
    db: &impl ConnectionTrait,
    m: &Meeting,
    planned: &[Planned],
    recipients: &[Recipient],
    domain: &str,
) -> Result<u64, DbErr> {
    if planned.is_empty() {
        return Ok(0);
    }
    let now = Utc::now();
    let rows: Vec<notification::ActiveModel> = planned
        .iter()
        .filter_map(|p| {
            let r = recipients.iter().find(|r| r.email == p.recipient)?;
            Some(notification::ActiveModel {
                id: Set(uuid::Uuid::now_v7().to_string()),
                meeting_id: Set(m.id.clone()),
                sequence: Set(m.sequence as i32),
                territory_id: Set(m.territory_id.clone()),
                recipient: Set(p.recipient.clone()),
                recipient_sha256: Set(fingerprint(&p.recipient)),
                kind: Set(p.kind.as_str()),
                channel: Set(r.channel.as_str().into()),
                status: Set(Status::Pending.as_str().into()),
                due_at: Set(p.due),
                next_attempt_at: Set(p.due),
                attempts: Set(0),
                lease_owner: Set(None),
                lease_until: Set(None),
                lease_token: Set(None),
                sent_at: Set(None),
                last_error: Set(None),
                message_id: Set(crate::domain::message::message_id(
                    &m.id,
                    m.sequence,
                    &p.recipient,
                    p.kind,
                    domain,
                )),
                created_at: Set(now),
                retry_from: Set(None),
            })
        })
        .collect();
    let count = rows.len() as u64;
    if count == 0 {
        return Ok(0);
    }
    let result = notification::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([
                notification::Column::MeetingId,
                notification::Column::Sequence,
                notification::Column::Recipient,
                notification::Column::Kind,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await;
    match result {
        Ok(n) => Ok(n),
        Err(DbErr::RecordNotInserted) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Which pending notifications to drop.
#[derive(Debug, Clone, Copy)]
pub enum Pending<'a> {
    /// Every pending one of the meeting.
    Meeting(&'a str),
    /// Those of earlier sequences (the meeting moved).
    BeforeSequence(&'a str, u32),
    /// Its reminders.
    Reminders(&'a str),
    /// A recipient's, in a territory.
    Recipient(&'a str, &'a str),
}

/// Drops pending notifications (not those being sent right now by a replica whose lease
/// is valid: they finish, as sending cannot be taken back).
pub async fn drop_pending(db: &impl ConnectionTrait, which: Pending<'_>) -> Result<u64, DbErr> {
    let mut query = notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Dropped.as_str()),
        )
        .filter(notification::Column::Status.eq(Status::Pending.as_str()))
        .filter(lease_free(db.get_database_backend()));
    query = match which {
        Pending::Meeting(id) => query.filter(notification::Column::MeetingId.eq(id)),
        Pending::BeforeSequence(id, seq) => query
            .filter(notification::Column::MeetingId.eq(id))
            .filter(notification::Column::Sequence.lt(seq as i32)),
        Pending::Reminders(id) => query
            .filter(notification::Column::MeetingId.eq(id))
            .filter(notification::Column::Kind.like("reminder_%")),
        Pending::Recipient(territory, email) => query
            .filter(notification::Column::TerritoryId.eq(territory))
            .filter(notification::Column::Recipient.eq(email)),
    };
    Ok(query.exec(db).await?.rows_affected)
}

/// Rows whose lease has expired (or that have none), by the database's clock on PostgreSQL:
/// replicas' clocks drift, the database's is one. SQLite serves one process.
fn lease_free(backend: DbBackend) -> sea_orm::Condition {
    let expired = match backend {
        DbBackend::Postgres => {
            sea_orm::Condition::all().add(Expr::cust("notifications.lease_until < now()"))
        }
        _ => sea_orm::Condition::all().add(notification::Column::LeaseUntil.lt(Utc::now())),
    };
    sea_orm::Condition::any()
        .add(notification::Column::LeaseUntil.is_null())
        .add(expired)
}

/// Claims up to `limit` due notifications for `owner` for `lease_ms`, under `token`. On
/// PostgreSQL the lease's expiry and what is due are computed with the database's clock
/// (`now()`), so that two replicas whose clocks differ agree on when a lease ends.
pub async fn claim(
    db: &impl ConnectionTrait,
    owner: &str,
    token: &str,
    lease_ms: u64,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    let backend = db.get_database_backend();
    let lease_ms = i64::try_from(lease_ms).unwrap_or(i64::MAX);
    let statement = match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "UPDATE notifications SET lease_owner = $1, lease_token = $2,
                    lease_until = now() + $3 * interval '1 millisecond',
                    attempts = attempts + 1
             WHERE id IN (
                 SELECT id FROM notifications
                 WHERE status = 'pending' AND next_attempt_at <= now()
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY next_attempt_at
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             RETURNING *",
            [
                owner.into(),
                token.into(),
                lease_ms.into(),
                (limit as i64).into(),
            ],
        ),
        _ => {
            let now = Utc::now();
            let until = now + chrono::Duration::milliseconds(lease_ms);
            Statement::from_sql_and_values(
                backend,
                "UPDATE notifications SET lease_owner = $1, lease_token = $2, lease_until = $3,
                        attempts = attempts + 1
                 WHERE id IN (
                     SELECT id FROM notifications
                     WHERE status = 'pending' AND next_attempt_at <= $4
                       AND (lease_until IS NULL OR lease_until < $4)
                     ORDER BY next_attempt_at
                     LIMIT $5)
                 RETURNING *",
                [
                    owner.into(),
                    token.into(),
                    until.into(),
                    now.into(),
                    (limit as i64).into(),
                ],
            )
        }
    };
    let rows = db.query_all_raw(statement).await?;
    rows.iter()
        .map(|r| notification::Model::from_query_result(r, ""))
        .collect()
}

/// Extends, to `lease_ms` from now, the leases still held under `token` (rows still pending
/// and not yet recorded): the heartbeat of a batch whose sending outlasts a lease. A row
/// another replica claimed carries its token, and is left alone. Returns how many.
pub async fn renew_leases(
    db: &impl ConnectionTrait,
    token: &str,
    lease_ms: u64,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let lease_ms = i64::try_from(lease_ms).unwrap_or(i64::MAX);
    let statement = match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "UPDATE notifications SET lease_until = now() + $2 * interval '1 millisecond'
             WHERE lease_token = $1 AND status = 'pending' AND lease_until IS NOT NULL",
            [token.into(), lease_ms.into()],
        ),
        _ => Statement::from_sql_and_values(
            backend,
            "UPDATE notifications SET lease_until = $2
             WHERE lease_token = $1 AND status = 'pending' AND lease_until IS NOT NULL",
            [
                token.into(),
                (Utc::now() + chrono::Duration::milliseconds(lease_ms)).into(),
            ],
        ),
    };
    Ok(db.execute_raw(statement).await?.rows_affected())
}

/// Whether `token` still holds the lease of notification `id`, unexpired by the database's
/// clock, and the notification is still to send: checked right before each send.
pub async fn holds_lease(db: &impl ConnectionTrait, id: &str, token: &str) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let statement = match backend {
        DbBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "SELECT id FROM notifications
             WHERE id = $1 AND lease_token = $2 AND status = 'pending' AND lease_until > now()",
            [id.into(), token.into()],
        ),
        _ => Statement::from_sql_and_values(
            backend,
            "SELECT id FROM notifications
             WHERE id = $1 AND lease_token = $2 AND status = 'pending' AND lease_until > $3",
            [id.into(), token.into(), Utc::now().into()],
        ),
    };
    Ok(db.query_one_raw(statement).await?.is_some())
}

/// What came of an attempt.
#[derive(Debug, Clone)]
pub enum Outcome {
    Sent,
    /// No longer to be sent (superseded, or its recipient left the roster).
    Dropped {
        why: String,
    },
    /// To be retried at `retry_at`.
    Failed {
        error: String,
        retry_at: DateTime<Utc>,
    },
    /// Given up: dead-lettered.
    Dead {
        error: String,
    },
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Dropped { .. } => "dropped",
            Outcome::Failed { .. } => "failed",
            Outcome::Dead { .. } => "dead",
        }
    }
}

/// Records an attempt of a claimed notification, in one transaction: its new state if the
/// lease `token` still holds it (false otherwise), and the delivery log entry in any case.
pub async fn record_attempt(
    db: &sea_orm::DatabaseConnection,
    n: &Notification,
    token: &str,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use sea_orm::TransactionTrait as _;
    let txn = db.begin().await?;
    let held = record_attempt_in(&txn, n, token, outcome, now).await?;
    txn.commit().await?;
    Ok(held)
}

async fn record_attempt_in(
    db: &impl ConnectionTrait,
    n: &Notification,
    token: &str,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let mut update = notification::Entity::update_many()
        .col_expr(
            notification::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            notification::Column::LeaseUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(notification::Column::Id.eq(n.id.clone()))
        .filter(notification::Column::Status.eq(Status::Pending.as_str()));
    // A message that went out is recorded as sent even if this lease was lost meanwhile (the
    // database was unreachable longer than the lease): another replica then finds it sent
    // at its own check before sending, instead of sending it again. Other outcomes are
    // fenced by the token: they must not overwrite what another replica did since.
    if !matches!(outcome, Outcome::Sent) {
        update = update.filter(notification::Column::LeaseToken.eq(token));
    }
    let error = match outcome {
        Outcome::Sent => {
            update = update
                .col_expr(
                    notification::Column::Status,
                    Expr::value(Status::Sent.as_str()),
                )
                .col_expr(notification::Column::SentAt, Expr::value(Some(now)))
                .col_expr(
                    notification::Column::LastError,
                    Expr::value(Option::<String>::None),
                );
            None
        }
        Outcome::Dropped { why } => {
            update = update
                .col_expr(
                    notification::Column::Status,
                    Expr::value(Status::Dropped.as_str()),
                )
                .col_expr(
                    notification::Column::LastError,
                    Expr::value(Some(why.clone())),
                );
            Some(why.clone())
        }
        Outcome::Failed { error, retry_at } => {
            update = update
                .col_expr(notification::Column::NextAttemptAt, Expr::value(*retry_at))
                .col_expr(
                    notification::Column::LastError,
                    Expr::value(Some(error.clone())),
                );
            Some(error.clone())
        }
        Outcome::Dead { error } => {
            update = update
                .col_expr(
                    notification::Column::Status,
                    Expr::value(Status::Dead.as_str()),
                )
                .col_expr(
                    notification::Column::LastError,
                    Expr::value(Some(error.clone())),
                );
            Some(error.clone())
        }
    };
    let held = update.exec(db).await?.rows_affected == 1;
    // The row's address as it is now: an erasure since the claim has replaced it.
    let (recipient, recipient_sha256) = notification::Entity::find_by_id(n.id.clone())
        .one(db)
        .await?
        .map_or_else(
            || (n.recipient.clone(), n.recipient_sha256.clone()),
            |row| (row.recipient, row.recipient_sha256),
        );
    delivery::Entity::insert(delivery::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        notification_id: Set(n.id.clone()),
        territory_id: Set(n.territory_id.clone()),
        attempted_at: Set(now),
        channel: Set(n.channel.clone()),
        recipient: Set(recipient),
        recipient_sha256: Set(recipient_sha256),
        outcome: Set(outcome.name().into()),
        error: Set(error),
        attempt: Set(n.attempts),
    })
    .exec_without_returning(db)
    .await?;
    Ok(held)
}

pub async fn find_notification(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<Notification>, DbErr> {
    notification::Entity::find_by_id(id.to_string())
        .one(db)
        .await
}

/// Sends a dead notification again: pending, due now, attempts reset.
pub async fn retry(db: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let r = notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Pending.as_str()),
        )
        .col_expr(notification::Column::Attempts, Expr::value(0))
        .col_expr(notification::Column::NextAttemptAt, Expr::value(Utc::now()))
        .col_expr(
            notification::Column::RetryFrom,
            Expr::value(Some(Utc::now())),
        )
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::Status.eq(Status::Dead.as_str()))
        .exec(db)
        .await?;
    Ok(r.rows_affected == 1)
}

/// Filters of ListNotifications.
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub meeting_id: Option<String>,
    pub territory_ids: Option<Vec<String>>,
    pub status: Option<Status>,
    pub kind: Option<Kind>,
}

pub async fn list_notifications(
    db: &impl ConnectionTrait,
    f: &NotificationFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    let mut query = notification::Entity::find();
    if let Some(m) = &f.meeting_id {
        query = query.filter(notification::Column::MeetingId.eq(m.clone()));
    }
    if let Some(ids) = &f.territory_ids {
        query = query.filter(notification::Column::TerritoryId.is_in(ids.clone()));
    }
    if let Some(s) = f.status {
        query = query.filter(notification::Column::Status.eq(s.as_str()));
    }
    if let Some(k) = f.kind {
        query = query.filter(notification::Column::Kind.eq(k.as_str()));
    }
    if let Some(after) = after_id {
        query = query.filter(notification::Column::Id.gt(after));
    }
    query
        .order_by_asc(notification::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Filters of ListDeliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub notification_id: Option<String>,
    pub territory_ids: Option<Vec<String>>,
    pub outcome: Option<String>,
    pub channel: Option<Channel>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Newest first.
pub async fn list_deliveries(
    db: &impl ConnectionTrait,
    f: &DeliveryFilter,
    before_id: Option<&str>,
    limit: u64,
) -> Result<Vec<delivery::Model>, DbErr> {
    let mut query = delivery::Entity::find();
    if let Some(n) = &f.notification_id {
        query = query.filter(delivery::Column::NotificationId.eq(n.clone()));
    }
    if let Some(ids) = &f.territory_ids {
        query = query.filter(delivery::Column::TerritoryId.is_in(ids.clone()));
    }
    if let Some(o) = &f.outcome {
        query = query.filter(delivery::Column::Outcome.eq(o.clone()));
    }
    if let Some(c) = f.channel {
        query = query.filter(delivery::Column::Channel.eq(c.as_str()));
    }
    if let Some(from) = f.from {
        query = query.filter(delivery::Column::AttemptedAt.gte(from));
    }
    if let Some(to) = f.to {
        query = query.filter(delivery::Column::AttemptedAt.lt(to));
    }
    if let Some(before) = before_id {
        query = query.filter(delivery::Column::Id.lt(before));
    }
    query
        .order_by_desc(delivery::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// What erasing a person did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    /// Recipient rows (with their preferences and webhook secrets) deleted.
    pub recipients: u64,
    /// Messages not sent yet, no longer to be sent.
    pub dropped: u64,
    /// Notifications and delivery log entries whose address was replaced.
    pub notifications: u64,
    pub deliveries: u64,
}

/// The territories where the person with `sha256` appears: as a recipient, in a notification
/// or in the delivery log.
pub async fn territories_knowing(
    db: &impl ConnectionTrait,
    sha256: &str,
) -> Result<Vec<String>, DbErr> {
    let mut ids: Vec<String> = recipient::Entity::find()
        .filter(recipient::Column::EmailSha256.eq(sha256))
        .all(db)
        .await?
        .into_iter()
        .map(|r| r.territory_id)
        .collect();
    for column in [
        notification::Entity::find()
            .select_only()
            .column(notification::Column::TerritoryId)
            .filter(notification::Column::RecipientSha256.eq(sha256))
            .distinct()
            .into_tuple::<String>()
            .all(db)
            .await?,
        delivery::Entity::find()
            .select_only()
            .column(delivery::Column::TerritoryId)
            .filter(delivery::Column::RecipientSha256.eq(sha256))
            .distinct()
            .into_tuple::<String>()
            .all(db)
            .await?,
    ] {
        ids.extend(column);
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Erases the person with `sha256` from `territories` (every territory when `None`): their
/// recipient rows go, messages not sent yet are dropped — those leased for sending too: the
/// dispatcher checks that a row is still pending right before sending it — and the
/// notifications and delivery log keep their facts with the address replaced. The
/// notifications are changed first: a dispatcher recording a send waits on their row locks,
/// so that its delivery entry is written before the log is redacted, or after with the
/// address already replaced.
pub async fn erase_person(
    db: &impl ConnectionTrait,
    sha256: &str,
    territories: Option<&[String]>,
) -> Result<Erased, DbErr> {
    let erased_address = format!(
        "(adresse effacée {})",
        tde_runtime::personal_data::short(sha256)
    );
    fn in_territories<C: ColumnTrait>(column: C, ids: Option<&[String]>) -> sea_orm::Condition {
        match ids {
            Some(ids) => sea_orm::Condition::all().add(column.is_in(ids.iter().cloned())),
            None => sea_orm::Condition::all(),
        }
    }
    let dropped = notification::Entity::update_many()
        .col_expr(
            notification::Column::Status,
            Expr::value(Status::Dropped.as_str()),
        )
        .col_expr(
            notification::Column::LastError,
            Expr::value(Some("the recipient's personal data was erased".to_string())),
        )
        .filter(notification::Column::RecipientSha256.eq(sha256))
        .filter(notification::Column::Status.eq(Status::Pending.as_str()))
        .filter(in_territories(
            notification::Column::TerritoryId,
            territories,
        ))
        .exec(db)
        .await?
        .rows_affected;
    // The fingerprint goes too: it still singles the person out.
    let notifications = notification::Entity::update_many()
        .col_expr(
            notification::Column::Recipient,
            Expr::value(erased_address.clone()),
        )
        .col_expr(notification::Column::RecipientSha256, Expr::value(""))
        .filter(notification::Column::RecipientSha256.eq(sha256))
        .filter(in_territories(
            notification::Column::TerritoryId,
            territories,
        ))
        .exec(db)
        .await?
        .rows_affected;
    let recipients = recipient::Entity::delete_many()
        .filter(recipient::Column::EmailSha256.eq(sha256))
        .filter(in_territories(recipient::Column::TerritoryId, territories))
        .exec(db)
        .await?
        .rows_affected;
    let deliveries = delivery::Entity::update_many()
        .col_expr(delivery::Column::Recipient, Expr::value(erased_address))
        .col_expr(delivery::Column::RecipientSha256, Expr::value(""))
        .filter(delivery::Column::RecipientSha256.eq(sha256))
        .filter(in_territories(delivery::Column::TerritoryId, territories))
        .exec(db)
        .await?
        .rows_affected;
    Ok(Erased {
        recipients,
        dropped,
        notifications,
        deliveries,
    })
}

/// The notifications and delivery log entries naming the person with `sha256`.
pub async fn notifications_naming(
    db: &impl ConnectionTrait,
    sha256: &str,
) -> Result<(Vec<notification::Model>, Vec<delivery::Model>), DbErr> {
    let notifications = notification::Entity::find()
        .filter(notification::Column::RecipientSha256.eq(sha256))
        .order_by_asc(notification::Column::Id)
        .all(db)
        .await?;
    let deliveries = delivery::Entity::find()
        .filter(delivery::Column::RecipientSha256.eq(sha256))
        .order_by_asc(delivery::Column::Id)
        .all(db)
        .await?;
    Ok((notifications, deliveries))
}

/// Records a territory first known from a meeting (its roster may come later).
pub async fn save_territory_if_new(
    db: &impl ConnectionTrait,
    id: &str,
    name: &str,
    time_zone: &str,
) -> Result<(), DbErr> {
    if find_territory(db, id).await?.is_none() {
        save_territory(db, id, name, time_zone).await?;
    }
    Ok(())
}

/// Deletes the reminders of a meeting's sequence that were not sent (pending and not being
/// sent, or dropped), so that they can be planned again (the territory's reminder time
/// changed).
pub async fn forget_unsent_reminders(
    db: &impl ConnectionTrait,
    meeting_id: &str,
    sequence: u32,
) -> Result<(), DbErr> {
    let unsent = sea_orm::Condition::any()
        .add(notification::Column::Status.eq(Status::Dropped.as_str()))
        .add(
            sea_orm::Condition::all()
                .add(notification::Column::Status.eq(Status::Pending.as_str()))
                .add(lease_free(db.get_database_backend())),
        );
    notification::Entity::delete_many()
        .filter(notification::Column::MeetingId.eq(meeting_id))
        .filter(notification::Column::Sequence.eq(sequence as i32))
        .filter(notification::Column::Kind.like("reminder_%"))
        .filter(unsent)
        .exec(db)
        .await?;
    Ok(())
}
