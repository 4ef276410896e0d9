//! The tables every service has: the outbox of events to publish and the inbox of events
//! already processed. Each service lists this migration first in its own migrator.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// A table, column or index name, for the services' migrations.
pub fn ident(name: &'static str) -> Alias {
    Alias::new(name)
}

/// Creates the index `name` on `cols` of `table`.
pub async fn index(
    m: &SchemaManager<'_>,
    table: &'static str,
    name: &str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(ident(table));
    for c in cols {
        index.col(ident(c));
    }
    m.create_index(index.to_owned()).await
}

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

/// The audit trail (see `tde_runtime::audit`), append-only: triggers refuse any UPDATE or
/// DELETE, so that not even a bug in tde can rewrite it.
pub struct CreateAuditTrail;

impl MigrationName for CreateAuditTrail {
    fn name(&self) -> &str {
        "m20261129_100000_audit_trail"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAuditTrail {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new("audit_events");
        manager
            .create_table(
                Table::create()
                    .table(table.clone())
                    .if_not_exists()
                    // Time-ordered (UUID v7): the primary key is also the listing order.
                    .col(string(Alias::new("id")).primary_key())
                    .col(timestamp_with_time_zone(Alias::new("at")))
                    .col(string(Alias::new("service")))
                    .col(string(Alias::new("method")))
                    .col(string(Alias::new("resource")))
                    .col(string(Alias::new("subject")))
                    .col(string(Alias::new("client_id")))
                    .col(string(Alias::new("role")))
                    .col(string(Alias::new("request_id")))
                    .col(string(Alias::new("outcome")))
                    .col(string(Alias::new("kind")))
                    .to_owned(),
            )
            .await?;
        for column in ["subject", "resource"] {
            manager
                .create_index(
                    Index::create()
                        .name(format!("audit_events_{column}"))
                        .table(table.clone())
                        .col(Alias::new(column))
                        .col(Alias::new("id"))
                        .to_owned(),
                )
                .await?;
        }
        let db = manager.get_connection();
        let statements: &[&str] = if manager.get_database_backend()
            == sea_orm::DatabaseBackend::Postgres
        {
            &[
                "CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events \
                 FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()",
            ]
        } else {
            &[
                "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
                "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
            ]
        };
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("audit_events")).to_owned())
            .await
    }
}

/// The keys of idempotent creates (see `tde_runtime::idempotency`), scoped per caller.
pub struct CreateIdempotencyKeys;

impl MigrationName for CreateIdempotencyKeys {
    fn name(&self) -> &str {
        "m20261201_000000_idempotency_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateIdempotencyKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("idempotency_keys"))
                    .if_not_exists()
                    .col(string(Alias::new("caller")))
                    .col(string(Alias::new("resource_type")))
                    .col(string(Alias::new("request_id")))
                    .col(string(Alias::new("request_digest")))
                    .col(string(Alias::new("resource_id")))
                    .col(timestamp_with_time_zone(Alias::new("created_at")))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("caller"))
                            .col(Alias::new("resource_type"))
                            .col(Alias::new("request_id")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("idempotency_keys"))
                    .to_owned(),
            )
            .await
    }
}

/// The positions of read models (see `tde_runtime::read_model`): the newest event applied to
/// each part of each copy of another service's data.
pub struct CreateReadModelPositions;

impl MigrationName for CreateReadModelPositions {
    fn name(&self) -> &str {
        "m20261201_000100_read_model_positions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReadModelPositions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("read_model_positions"))
                    .if_not_exists()
                    .col(string(Alias::new("model")))
                    .col(string(Alias::new("key")))
                    .col(big_integer(Alias::new("event_micros")))
                    .col(string(Alias::new("event_id")))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("model"))
                            .col(Alias::new("key")),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Alias::new("read_model_positions"))
                    .to_owned(),
            )
            .await
    }
}

/// Events a consumer could never process (see `tde_runtime::dead_letter`): kept whole, with
/// the error, until an operator replays them.
pub struct CreateDeadLetters;

impl MigrationName for CreateDeadLetters {
    fn name(&self) -> &str {
        "m20261201_000200_dead_letters"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeadLetters {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let table = Alias::new("dead_letters");
        manager
            .create_table(
                Table::create()
                    .table(table.clone())
                    .if_not_exists()
                    .col(string(Alias::new("id")).primary_key())
                    .col(string(Alias::new("consumer")))
                    .col(string(Alias::new("event_id")))
                    .col(string(Alias::new("subject")))
                    .col(string(Alias::new("event_type")))
                    .col(string(Alias::new("source")))
                    .col(timestamp_with_time_zone(Alias::new("event_time")))
                    .col(string(Alias::new("aggregate_id")))
                    .col(binary(Alias::new("payload")))
                    .col(string_null(Alias::new("traceparent")))
                    .col(text(Alias::new("error")))
                    .col(big_integer(Alias::new("deliveries")))
                    .col(timestamp_with_time_zone(Alias::new("parked_at")))
                    .col(timestamp_with_time_zone_null(Alias::new("replayed_at")))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("dead_letters_once")
                    .table(table)
                    .col(Alias::new("consumer"))
                    .col(Alias::new("event_id"))
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("dead_letters")).to_owned())
            .await
    }
}

/// Outbox events the bus refused for good (too large…): parked, with the reason, so that the
/// relay goes on with other aggregates while the same aggregate's later events wait.
pub struct AddOutboxParking;

impl MigrationName for AddOutboxParking {
    fn name(&self) -> &str {
        "m20261201_000300_outbox_parking"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddOutboxParking {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [
            timestamp_with_time_zone_null(Alias::new("parked_at")),
            text_null(Alias::new("park_reason")),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("outbox_events"))
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in ["parked_at", "park_reason"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("outbox_events"))
                        .drop_column(Alias::new(column))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// The runtime's tables added after a service's first release, in the order they came:
/// each service's migrator lists these after its own (a new service lists
/// `CreateOutboxAndInbox`, `CreateAuditTrail` and these).
pub fn later_shared_tables() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateIdempotencyKeys),
        Box::new(CreateReadModelPositions),
        Box::new(CreateDeadLetters),
        Box::new(AddOutboxParking),
    ]
}
