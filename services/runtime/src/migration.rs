//! The tables every service has: the outbox of events to publish and the inbox of events
//! already processed. Each service lists this migration first in its own migrator.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct CreateOutboxAndInbox;

impl MigrationName for CreateOutboxAndInbox {
    fn name(&self) -> &str {
        "m20261129_000000_outbox_and_inbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutboxAndInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("outbox_events"))
                    .if_not_exists()
                    .col(
                        big_integer(Alias::new("seq"))
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(string(Alias::new("event_id")).unique_key())
                    .col(string(Alias::new("aggregate_type")))
                    .col(string(Alias::new("aggregate_id")))
                    .col(string(Alias::new("subject")))
                    .col(string(Alias::new("event_type")))
                    .col(binary(Alias::new("payload")))
                    .col(string_null(Alias::new("traceparent")))
                    .col(timestamp_with_time_zone(Alias::new("created_at")))
                    .col(timestamp_with_time_zone_null(Alias::new("published_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("outbox_events_unpublished")
                    .table(Alias::new("outbox_events"))
                    .col(Alias::new("published_at"))
                    .col(Alias::new("seq"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("inbox_events"))
                    .if_not_exists()
                    .col(string(Alias::new("consumer")))
                    .col(string(Alias::new("event_id")))
                    .col(timestamp_with_time_zone(Alias::new("processed_at")))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("consumer"))
                            .col(Alias::new("event_id")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("inbox_events")).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Alias::new("outbox_events")).to_owned())
            .await
    }
}
