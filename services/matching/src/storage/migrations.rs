//! Migrations of the matching database: the shared outbox and inbox, the service's tables,
//! the shared audit trail, then the runtime's later shared tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tde_runtime::migration::{ident, index};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreateMatching),
            Box::new(tde_runtime::migration::CreateAuditTrail),
        ];
        migrations.extend(tde_runtime::migration::later_shared_tables());
        migrations.push(Box::new(AddPlanOpen));
        migrations.push(Box::new(AddProposalBatch));
        migrations.push(Box::new(CreateAssignmentPlans));
        migrations
    }
}

/// What a PlanAssignments call answered besides its proposals (totals, unserved needs), so
/// that its replay answers the same.
struct CreateAssignmentPlans;

impl MigrationName for CreateAssignmentPlans {
    fn name(&self) -> &str {
        "m20261204_000104_assignment_plans"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateAssignmentPlans {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("assignment_plans"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(double(ident("total_score")))
                .col(double(ident("greedy_total_score")))
                // JSON array of the unserved needs, in the reply's order.
                .col(text(ident("unserved")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .to_owned(),
        )
        .await
    }
}

/// Proposals sent by one PlanAssignments call, so that its replay answers with them.
struct AddProposalBatch;

impl MigrationName for AddProposalBatch {
    fn name(&self) -> &str {
        "m20261204_000103_proposals_batch"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddProposalBatch {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ident("proposals"))
                .add_column(string_null(ident("batch_id")))
                .to_owned(),
        )
        .await
    }
}

/// Needs of a completed or stopped plan close (its actions need nobody any more).
struct AddPlanOpen;

impl MigrationName for AddPlanOpen {
    fn name(&self) -> &str {
        "m20261204_000102_needs_plan_open"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddPlanOpen {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(ident("needs"))
                .add_column(boolean(ident("plan_open")).default(true))
                .to_owned(),
        )
        .await
    }
}

struct CreateMatching;

impl MigrationName for CreateMatching {
    fn name(&self) -> &str {
        "m20261204_000101_matching"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateMatching {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("providers"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("siret")).unique_key())
                .col(string(ident("name")))
                .col(string(ident("naf_code")))
                .col(date_null(ident("qualiopi_expiry")))
                // JSON arrays: read whole with the provider.
                .col(text(ident("skills")))
                .col(text(ident("areas")))
                .col(text(ident("conflict_territory_ids")))
                .col(integer(ident("capacity")))
                .col(big_integer(ident("day_rate_cents")))
                .col(string(ident("status")))
                .col(string(ident("status_reason")))
                // Personal data: the contact of proposals, and the fingerprint of its
                // address that export and erasure requests find it by.
                .col(string(ident("contact_name")))
                .col(string(ident("contact_email")))
                .col(string(ident("contact_email_sha256")))
                .col(big_integer(ident("version")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        index(m, "providers", "providers_status", &["status", "id"]).await?;
        index(
            m,
            "providers",
            "providers_contact",
            &["contact_email_sha256"],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ident("needs"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("plan_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("territory_name")))
                .col(string(ident("departement_code")))
                .col(string(ident("region_code")))
                .col(small_integer(ident("year")))
                .col(string(ident("kind")))
                .col(string(ident("title")))
                .col(text(ident("skills")))
                .col(date(ident("planned_start")))
                .col(date(ident("planned_end")))
                .col(big_integer(ident("budget_cents")))
                .col(string(ident("status")))
                .col(string_null(ident("provider_id")))
                .col(boolean(ident("open")))
                .col(big_integer(ident("version")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        index(m, "needs", "needs_open", &["open", "region_code", "id"]).await?;

        m.create_table(
            Table::create()
                .table(ident("assignments"))
                .if_not_exists()
                .col(string(ident("action_id")).primary_key())
                .col(string(ident("provider_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("region_code")))
                .col(date(ident("planned_start")))
                .col(date(ident("planned_end")))
                .col(boolean(ident("finished")))
                .col(timestamp_with_time_zone(ident("accepted_at")))
                .col(small_integer_null(ident("rating")))
                .col(text(ident("rating_comment")))
                // Who rated (token subject): personal data of the project lead.
                .col(string_null(ident("rated_by")))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "assignments",
            "assignments_provider",
            &["provider_id", "finished"],
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ident("proposals"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("need_id")))
                .col(string(ident("provider_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("region_code")))
                .col(string(ident("status")))
                .col(double(ident("score")))
                .col(integer(ident("rank")))
                .col(text(ident("override_justification")))
                .col(text(ident("decline_reason")))
                .col(timestamp_with_time_zone(ident("deadline")))
                .col(string(ident("created_by")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone_null(ident("answered_at")))
                .col(big_integer(ident("version")))
                .to_owned(),
        )
        .await?;
        index(m, "proposals", "proposals_need", &["need_id", "status"]).await?;
        index(m, "proposals", "proposals_provider", &["provider_id", "id"]).await?;
        index(m, "proposals", "proposals_due", &["status", "deadline"]).await?;
        Ok(())
    }
}
