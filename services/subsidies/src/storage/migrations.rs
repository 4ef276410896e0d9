//! Migrations of the subsidies database: the shared outbox and inbox, the service's tables,
//! the shared audit trail, then the runtime's later tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tde_runtime::migration::{ident, index};

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreateSubsidies),
            Box::new(tde_runtime::migration::CreateAuditTrail),
        ];
        migrations.extend(tde_runtime::migration::later_shared_tables());
        migrations.push(Box::new(AddDashboardIndexes));
        migrations.push(Box::new(AddLedgerTotals));
        migrations
    }
}

struct CreateSubsidies;

impl MigrationName for CreateSubsidies {
    fn name(&self) -> &str {
        "m20261204_000101_subsidies"
    }
}

/// A named CHECK constraint: the database's backstop behind the rules the code applies.
fn check(name: &'static str, sql: &'static str) -> (Alias, SimpleExpr) {
    (ident(name), Expr::cust(sql))
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSubsidies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("territories"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("kind")))
                .col(string(ident("official_code")))
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
                .col(string(ident("territory_id")))
                .col(boolean(ident("stopped")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("plan_reviews"))
                .if_not_exists()
                .col(string(ident("plan_id")))
                .col(small_integer(ident("year")))
                .col(timestamp_with_time_zone(ident("recorded_at")))
                .primary_key(Index::create().col(ident("plan_id")).col(ident("year")))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ident("envelopes"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(integer(ident("budget_year")))
                .col(string(ident("region_code")))
                .col(string_null(ident("parent_id")))
                .col(big_integer(ident("amount_cents")))
                .col(big_integer(ident("committed_cents")))
                .col(big_integer(ident("paid_cents")))
                .col(small_integer(ident("advance_percent")))
                .col(text(ident("changes")))
                .col(big_integer(ident("version")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                // Never over budget, whatever the code does.
                .check(check(
                    "envelopes_within_amount",
                    "committed_cents >= 0 AND committed_cents <= amount_cents",
                ))
                .check(check(
                    "envelopes_paid_within_committed",
                    "paid_cents >= 0 AND paid_cents <= committed_cents",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("envelopes_year_region")
                .table(ident("envelopes"))
                .col(ident("budget_year"))
                .col(ident("region_code"))
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ident("subsidies"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("plan_id")))
                .col(small_integer(ident("plan_year")))
                .col(integer(ident("amendment_number")))
                .col(string(ident("territory_id")))
                .col(string(ident("territory_name")))
                .col(string(ident("region_code")))
                .col(date(ident("year_start")))
                .col(date(ident("year_end")))
                .col(integer(ident("submission_number")))
                .col(big_integer(ident("requested_cents")))
                .col(string(ident("status")))
                .col(text_null(ident("proposal")))
                .col(text_null(ident("decision")))
                .col(integer(ident("budget_year")))
                .col(string_null(ident("envelope_id")))
                .col(big_integer(ident("granted_cents")))
                .col(big_integer(ident("decommitted_cents")))
                .col(big_integer(ident("paid_cents")))
                .col(big_integer(ident("clawed_back_cents")))
                .col(small_integer(ident("advance_percent")))
                .col(boolean(ident("reviewed")))
                .col(boolean(ident("plan_stopped")))
                .col(big_integer(ident("version")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                // Never more paid than granted, never more clawed back than paid.
                .check(check(
                    "subsidies_decommitted_within_granted",
                    "decommitted_cents >= 0 AND decommitted_cents <= granted_cents",
                ))
                .check(check(
                    "subsidies_paid_within_committed",
                    "paid_cents >= 0 AND paid_cents <= granted_cents - decommitted_cents",
                ))
                .check(check(
                    "subsidies_clawback_within_paid",
                    "clawed_back_cents >= 0 AND clawed_back_cents <= paid_cents",
                ))
                .to_owned(),
        )
        .await?;
        // One request per plan year and amendment, whatever the redeliveries.
        m.create_index(
            Index::create()
                .name("subsidies_plan_year")
                .table(ident("subsidies"))
                .col(ident("plan_id"))
                .col(ident("plan_year"))
                .col(ident("amendment_number"))
                .unique()
                .to_owned(),
        )
        .await?;
        index(
            m,
            "subsidies",
            "subsidies_year_region",
            &["budget_year", "region_code", "id"],
        )
        .await?;
        index(
            m,
            "subsidies",
            "subsidies_territory",
            &["territory_id", "id"],
        )
        .await?;
        index(m, "subsidies", "subsidies_status", &["status", "id"]).await?;

        m.create_table(
            Table::create()
                .table(ident("payments"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("subsidy_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("region_code")))
                .col(string(ident("envelope_id")))
                .col(string(ident("kind")))
                .col(big_integer(ident("amount_cents")))
                .col(string(ident("status")))
                .col(string(ident("reference")))
                .col(text(ident("failure_reason")))
                .col(date_null(ident("paid_on")))
                .col(string(ident("authorised_by")))
                .col(big_integer(ident("version")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .check(check("payments_positive", "amount_cents > 0"))
                .to_owned(),
        )
        .await?;
        index(m, "payments", "payments_subsidy", &["subsidy_id", "id"]).await?;
        index(m, "payments", "payments_status", &["status", "id"]).await?;

        m.create_table(
            Table::create()
                .table(ident("ledger_entries"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("kind")))
                .col(big_integer(ident("amount_cents")))
                .col(string(ident("envelope_id")))
                .col(string(ident("subsidy_id")))
                .col(string_null(ident("payment_id")))
                .col(string(ident("territory_id")))
                .col(string(ident("region_code")))
                .col(integer(ident("budget_year")))
                .col(string(ident("reference")))
                .col(text(ident("reason")))
                .col(string(ident("actor")))
                .col(timestamp_with_time_zone(ident("recorded_at")))
                .check(check("ledger_entries_positive", "amount_cents > 0"))
                .check(check(
                    "ledger_entries_kind",
                    "kind IN ('commitment', 'decommitment', 'payment', 'clawback')",
                ))
                .to_owned(),
        )
        .await?;
        index(
            m,
            "ledger_entries",
            "ledger_entries_envelope",
            &["envelope_id", "kind"],
        )
        .await?;
        index(
            m,
            "ledger_entries",
            "ledger_entries_subsidy",
            &["subsidy_id", "kind"],
        )
        .await?;
        index(
            m,
            "ledger_entries",
            "ledger_entries_year",
            &["budget_year", "region_code", "id"],
        )
        .await?;

        // The ledger is append-only: not even a bug in tde can rewrite it.
        let statements: &[&str] = if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres
        {
            &[
                "CREATE OR REPLACE FUNCTION ledger_entries_append_only() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'ledger_entries is append-only'; END $$ LANGUAGE plpgsql",
                "CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries \
                 FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only()",
                // TRUNCATE skips row triggers: refuse it too.
                "CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries \
                 FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only()",
            ]
        } else {
            &[
                "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries \
                 BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END",
                "CREATE TRIGGER ledger_entries_no_delete BEFORE DELETE ON ledger_entries \
                 BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END",
            ]
        };
        let db = m.get_connection();
        for sql in statements {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

/// Covering indexes of the national dashboard's two aggregates: PostgreSQL sums them from
/// the indexes alone (index-only scans), without reading the rows. Over 35,000 territories ×
/// 3 years (≈ 400,000 ledger entries) the ledger's aggregate went from about 50 ms to 30 ms.
struct AddDashboardIndexes;

impl MigrationName for AddDashboardIndexes {
    fn name(&self) -> &str {
        "m20261204_000102_subsidies_dashboard_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddDashboardIndexes {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        index(
            m,
            "ledger_entries",
            "ledger_entries_dashboard",
            &["budget_year", "region_code", "kind", "amount_cents"],
        )
        .await?;
        index(
            m,
            "subsidies",
            "subsidies_dashboard",
            &[
                "budget_year",
                "region_code",
                "requested_cents",
                "granted_cents",
            ],
        )
        .await
    }
}

/// The ledger's running totals per budget year and région, kept in the transaction of each
/// entry (`storage::append`): the dashboard reads a few hundred rows instead of summing every
/// entry, and `Reconcile` checks them against the entries.
struct AddLedgerTotals;

impl MigrationName for AddLedgerTotals {
    fn name(&self) -> &str {
        "m20261204_000103_subsidies_ledger_totals"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddLedgerTotals {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("ledger_totals"))
                .if_not_exists()
                .col(integer(ident("budget_year")))
                .col(string(ident("region_code")))
                .col(big_integer(ident("committed_cents")))
                .col(big_integer(ident("decommitted_cents")))
                .col(big_integer(ident("paid_cents")))
                .col(big_integer(ident("clawed_back_cents")))
                .primary_key(
                    Index::create()
                        .col(ident("budget_year"))
                        .col(ident("region_code")),
                )
                .to_owned(),
        )
        .await?;
        // The entries written before this table existed.
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO ledger_totals (budget_year, region_code, committed_cents, decommitted_cents, paid_cents, clawed_back_cents) \
                 SELECT budget_year, region_code, \
                 SUM(CASE WHEN kind = 'commitment' THEN amount_cents ELSE 0 END), \
                 SUM(CASE WHEN kind = 'decommitment' THEN amount_cents ELSE 0 END), \
                 SUM(CASE WHEN kind = 'payment' THEN amount_cents ELSE 0 END), \
                 SUM(CASE WHEN kind = 'clawback' THEN amount_cents ELSE 0 END) \
                 FROM ledger_entries GROUP BY budget_year, region_code",
            )
            .await?;
        Ok(())
    }
}
