//! Migrations of the notifications database: the shared outbox and inbox, the service's
//! tables, then the shared audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tde_runtime::migration::ident;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreateNotifications),
            Box::new(tde_runtime::migration::CreateAuditTrail),
            Box::new(AddWebhookSecrets),
            Box::new(AddRetryFrom),
            Box::new(crate::funding::CREATE_TABLE),
        ];
        migrations.extend(tde_runtime::migration::later_shared_tables());
        migrations.push(Box::new(crate::proposals::CREATE_TABLE));
        migrations
    }
}

struct CreateNotifications;

impl MigrationName for CreateNotifications {
    fn name(&self) -> &str {
        "m20261129_000201_notifications"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotifications {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("territories"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("time_zone")))
                .col(string(ident("region_code")))
                .col(integer_null(ident("reminder_minutes")))
                .col(string_null(ident("feed_secret")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("recipients"))
                .if_not_exists()
                .col(string(ident("territory_id")))
                .col(string(ident("email")))
                .col(string(ident("email_sha256")))
                .col(string(ident("name")))
                .col(string(ident("role")))
                .col(string(ident("language")))
                .col(string(ident("channel")))
                .col(string_null(ident("webhook_url")))
                .col(boolean(ident("reminders")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .primary_key(
                    Index::create()
                        .col(ident("territory_id"))
                        .col(ident("email")),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("recipients_sha256")
                .table(ident("recipients"))
                .col(ident("email_sha256"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("meetings"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("territory_id")))
                .col(integer(ident("sequence")))
                .col(string(ident("status")))
                .col(timestamp_with_time_zone(ident("start_utc")))
                .col(text(ident("facts")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("meetings_territory")
                .table(ident("meetings"))
                .col(ident("territory_id"))
                .col(ident("start_utc"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("notifications"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("meeting_id")))
                .col(integer(ident("sequence")))
                .col(string(ident("territory_id")))
                .col(string(ident("recipient")))
                .col(string(ident("recipient_sha256")))
                .col(string(ident("kind")))
                .col(string(ident("channel")))
                .col(string(ident("status")))
                .col(timestamp_with_time_zone(ident("due_at")))
                .col(timestamp_with_time_zone(ident("next_attempt_at")))
                .col(integer(ident("attempts")))
                .col(string_null(ident("lease_owner")))
                .col(timestamp_with_time_zone_null(ident("lease_until")))
                .col(string_null(ident("lease_token")))
                .col(timestamp_with_time_zone_null(ident("sent_at")))
                .col(text_null(ident("last_error")))
                .col(string(ident("message_id")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .to_owned(),
        )
        .await?;
        // Each (meeting, sequence, recipient, kind) once: a redelivered event adds nothing.
        m.create_index(
            Index::create()
                .name("notifications_once")
                .table(ident("notifications"))
                .col(ident("meeting_id"))
                .col(ident("sequence"))
                .col(ident("recipient"))
                .col(ident("kind"))
                .unique()
                .to_owned(),
        )
        .await?;
        // The dispatcher's scan of due work.
        m.create_index(
            Index::create()
                .name("notifications_due")
                .table(ident("notifications"))
                .col(ident("status"))
                .col(ident("next_attempt_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("deliveries"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("notification_id")))
                .col(string(ident("territory_id")))
                .col(timestamp_with_time_zone(ident("attempted_at")))
                .col(string(ident("channel")))
                .col(string(ident("recipient")))
                .col(string(ident("recipient_sha256")))
                .col(string(ident("outcome")))
                .col(text_null(ident("error")))
                .col(integer(ident("attempt")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("deliveries_notification")
                .table(ident("deliveries"))
                .col(ident("notification_id"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}

/// Each webhook receiver's own signing secret, and the previous one during a rotation.
struct AddWebhookSecrets;

impl MigrationName for AddWebhookSecrets {
    fn name(&self) -> &str {
        "m20261201_000202_webhook_secrets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddWebhookSecrets {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for column in [
            string_null(ident("webhook_secret")),
            string_null(ident("webhook_previous_secret")),
            timestamp_with_time_zone_null(ident("webhook_previous_until")),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table(ident("recipients"))
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            "webhook_secret",
            "webhook_previous_secret",
            "webhook_previous_until",
        ] {
            m.alter_table(
                Table::alter()
                    .table(ident("recipients"))
                    .drop_column(ident(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

/// Where the retry window of a dead letter put back by hand starts.
struct AddRetryFrom;

impl MigrationName for AddRetryFrom {
    fn name(&self) -> &str {
        "m20261201_000203_retry_from"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddRetryFrom {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ident("notifications"))
                .add_column(timestamp_with_time_zone_null(ident("retry_from")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ident("notifications"))
                .drop_column(ident("retry_from"))
                .to_owned(),
        )
        .await
    }
}
