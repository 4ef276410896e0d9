//! Migrations of the plans database: the shared outbox and inbox, the service's tables, then
//! the shared audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tde_runtime::migration::{ident, index};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        // The `request_id` columns of the first tables are no longer written: idempotency
        // keys live in the runtime's `idempotency_keys`, scoped per caller.
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreatePlans),
            Box::new(tde_runtime::migration::CreateAuditTrail),
        ];
        migrations.extend(tde_runtime::migration::later_shared_tables());
        migrations.push(Box::new(AddDepartementToTerritories));
        migrations
    }
}

/// The action events carry the territory's département for matching.
struct AddDepartementToTerritories;

impl MigrationName for AddDepartementToTerritories {
    fn name(&self) -> &str {
        "m20261204_000102_territories_departement"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddDepartementToTerritories {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ident("territories"))
                .add_column(string(ident("departement_code")).default(""))
                .to_owned(),
        )
        .await
    }
}

struct CreatePlans;

impl MigrationName for CreatePlans {
    fn name(&self) -> &str {
        "m20261129_000101_plans"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePlans {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("territories"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("kind")))
                .col(string(ident("stage")))
                .col(string(ident("time_zone")))
                .col(string(ident("region_code")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ident("plans"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                // One plan per territory.
                .col(string(ident("territory_id")).unique_key())
                .col(string(ident("territory_name")))
                .col(string(ident("region_code")))
                .col(string(ident("title")))
                .col(date(ident("start_date")))
                .col(string(ident("status")))
                .col(text(ident("status_reason")))
                .col(text(ident("charter")))
                .col(text(ident("submissions")))
                .col(text(ident("reviews")))
                .col(text(ident("celebrations")))
                .col(text(ident("people")))
                .col(big_integer(ident("version")))
                .col(string_null(ident("request_id")).unique_key())
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        index(m, "plans", "plans_status", &["status", "id"]).await?;
        index(m, "plans", "plans_region", &["region_code", "id"]).await?;

        m.create_table(
            Table::create()
                .table(ident("actions"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("plan_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("region_code")))
                .col(small_integer(ident("year")))
                .col(string(ident("kind")))
                .col(string(ident("title")))
                .col(text(ident("description")))
                .col(text(ident("audiences")))
                .col(text(ident("skills")))
                .col(date(ident("planned_start")))
                .col(date(ident("planned_end")))
                .col(big_integer(ident("budget_cents")))
                .col(string(ident("status")))
                .col(string_null(ident("provider_id")))
                .col(big_integer(ident("version")))
                .col(string_null(ident("request_id")).unique_key())
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        index(m, "actions", "actions_plan", &["plan_id", "year", "id"]).await?;
        m.create_table(
            Table::create()
                .table(ident("action_skills"))
                .if_not_exists()
                .col(string(ident("skill")))
                .col(string(ident("action_id")))
                .primary_key(Index::create().col(ident("skill")).col(ident("action_id")))
                .to_owned(),
        )
        .await?;
        index(m, "action_skills", "action_skills_action", &["action_id"]).await?;

        m.create_table(
            Table::create()
                .table(ident("steering_meetings"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("plan_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("region_code")))
                .col(small_integer(ident("year")))
                .col(integer(ident("sequence")))
                .col(string(ident("status")))
                .col(string(ident("time_zone")))
                .col(string(ident("start_local")))
                .col(string(ident("end_local")))
                .col(timestamp_with_time_zone(ident("start_utc")))
                .col(timestamp_with_time_zone(ident("end_utc")))
                .col(text(ident("place")))
                .col(text(ident("video_link")))
                .col(text(ident("agenda")))
                .col(text(ident("cancel_reason")))
                .col(text(ident("minutes")))
                .col(text(ident("decisions")))
                .col(big_integer(ident("version")))
                .col(string_null(ident("request_id")).unique_key())
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        // The time-window list across all territories walks this index in order.
        index(
            m,
            "steering_meetings",
            "steering_meetings_start",
            &["start_utc", "id"],
        )
        .await?;
        index(
            m,
            "steering_meetings",
            "steering_meetings_plan",
            &["plan_id", "start_utc"],
        )
        .await?;
        Ok(())
    }
}
