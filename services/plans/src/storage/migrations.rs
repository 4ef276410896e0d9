//! Migrations of the plans database: the shared outbox and inbox, the service's tables, then
//! the shared audit trail.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreatePlans),
            Box::new(tde_runtime::migration::CreateAuditTrail),
        ]
    }
}

struct CreatePlans;

impl MigrationName for CreatePlans {
    fn name(&self) -> &str {
        "m20261129_000101_plans"
    }
}

fn a(name: &'static str) -> Alias {
    Alias::new(name)
}

async fn index(
    m: &SchemaManager<'_>,
    table: &'static str,
    name: &str,
    cols: &[&'static str],
) -> Result<(), DbErr> {
    let mut index = Index::create();
    index.name(name).table(a(table));
    for c in cols {
        index.col(a(c));
    }
    m.create_index(index.to_owned()).await
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePlans {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(a("territories"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("name")))
                .col(string(a("kind")))
                .col(string(a("stage")))
                .col(string(a("time_zone")))
                .col(string(a("region_code")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(a("plans"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                // One plan per territory.
                .col(string(a("territory_id")).unique_key())
                .col(string(a("territory_name")))
                .col(string(a("region_code")))
                .col(string(a("title")))
                .col(date(a("start_date")))
                .col(string(a("status")))
                .col(text(a("status_reason")))
                .col(text(a("charter")))
                .col(text(a("submissions")))
                .col(text(a("reviews")))
                .col(text(a("celebrations")))
                .col(text(a("people")))
                .col(big_integer(a("version")))
                .col(string_null(a("request_id")).unique_key())
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;
        index(m, "plans", "plans_status", &["status", "id"]).await?;
        index(m, "plans", "plans_region", &["region_code", "id"]).await?;

        m.create_table(
            Table::create()
                .table(a("actions"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("plan_id")))
                .col(string(a("territory_id")))
                .col(string(a("region_code")))
                .col(small_integer(a("year")))
                .col(string(a("kind")))
                .col(string(a("title")))
                .col(text(a("description")))
                .col(text(a("audiences")))
                .col(text(a("skills")))
                .col(date(a("planned_start")))
                .col(date(a("planned_end")))
                .col(big_integer(a("budget_cents")))
                .col(string(a("status")))
                .col(string_null(a("provider_id")))
                .col(big_integer(a("version")))
                .col(string_null(a("request_id")).unique_key())
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;
        index(m, "actions", "actions_plan", &["plan_id", "year", "id"]).await?;
        m.create_table(
            Table::create()
                .table(a("action_skills"))
                .if_not_exists()
                .col(string(a("skill")))
                .col(string(a("action_id")))
                .primary_key(Index::create().col(a("skill")).col(a("action_id")))
                .to_owned(),
        )
        .await?;
        index(m, "action_skills", "action_skills_action", &["action_id"]).await?;

        m.create_table(
            Table::create()
                .table(a("steering_meetings"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("plan_id")))
                .col(string(a("territory_id")))
                .col(string(a("region_code")))
                .col(small_integer(a("year")))
                .col(integer(a("sequence")))
                .col(string(a("status")))
                .col(string(a("time_zone")))
                .col(string(a("start_local")))
                .col(string(a("end_local")))
                .col(timestamp_with_time_zone(a("start_utc")))
                .col(timestamp_with_time_zone(a("end_utc")))
                .col(text(a("place")))
                .col(text(a("video_link")))
                .col(text(a("agenda")))
                .col(text(a("cancel_reason")))
                .col(text(a("minutes")))
                .col(text(a("decisions")))
                .col(big_integer(a("version")))
                .col(string_null(a("request_id")).unique_key())
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
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
