//! Migrations of the notifications database: the shared outbox and inbox, the service's
//! tables, then the shared audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreateNotifications),
            Box::new(tde_runtime::migration::CreateAuditTrail),
        ]
    }
}

struct CreateNotifications;

impl MigrationName for CreateNotifications {
    fn name(&self) -> &str {
        "m20261129_000201_notifications"
    }
}

fn a(name: &'static str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotifications {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(a("territories"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("name")))
                .col(string(a("time_zone")))
                .col(string(a("region_code")))
                .col(integer_null(a("reminder_minutes")))
                .col(string_null(a("feed_secret")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("recipients"))
                .if_not_exists()
                .col(string(a("territory_id")))
                .col(string(a("email")))
                .col(string(a("email_sha256")))
                .col(string(a("name")))
                .col(string(a("role")))
                .col(string(a("language")))
                .col(string(a("channel")))
                .col(string_null(a("webhook_url")))
                .col(boolean(a("reminders")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .primary_key(Index::create().col(a("territory_id")).col(a("email")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("recipients_sha256")
                .table(a("recipients"))
                .col(a("email_sha256"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("meetings"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("territory_id")))
                .col(integer(a("sequence")))
                .col(string(a("status")))
                .col(timestamp_with_time_zone(a("start_utc")))
                .col(text(a("facts")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("meetings_territory")
                .table(a("meetings"))
                .col(a("territory_id"))
                .col(a("start_utc"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("notifications"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("meeting_id")))
                .col(integer(a("sequence")))
                .col(string(a("territory_id")))
                .col(string(a("recipient")))
                .col(string(a("recipient_sha256")))
                .col(string(a("kind")))
                .col(string(a("channel")))
                .col(string(a("status")))
                .col(timestamp_with_time_zone(a("due_at")))
                .col(timestamp_with_time_zone(a("next_attempt_at")))
                .col(integer(a("attempts")))
                .col(string_null(a("lease_owner")))
                .col(timestamp_with_time_zone_null(a("lease_until")))
                .col(string_null(a("lease_token")))
                .col(timestamp_with_time_zone_null(a("sent_at")))
                .col(text_null(a("last_error")))
                .col(string(a("message_id")))
                .col(timestamp_with_time_zone(a("created_at")))
                .to_owned(),
        )
        .await?;
        // Each (meeting, sequence, recipient, kind) once: a redelivered event adds nothing.
        m.create_index(
            Index::create()
                .name("notifications_once")
                .table(a("notifications"))
                .col(a("meeting_id"))
                .col(a("sequence"))
                .col(a("recipient"))
                .col(a("kind"))
                .unique()
                .to_owned(),
        )
        .await?;
        // The dispatcher's scan of due work.
        m.create_index(
            Index::create()
                .name("notifications_due")
                .table(a("notifications"))
                .col(a("status"))
                .col(a("next_attempt_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("deliveries"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("notification_id")))
                .col(string(a("territory_id")))
                .col(timestamp_with_time_zone(a("attempted_at")))
                .col(string(a("channel")))
                .col(string(a("recipient")))
                .col(string(a("recipient_sha256")))
                .col(string(a("outcome")))
                .col(text_null(a("error")))
                .col(integer(a("attempt")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("deliveries_notification")
                .table(a("deliveries"))
                .col(a("notification_id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
