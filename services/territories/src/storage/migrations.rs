//! Migrations of the territories database (sea-orm-migration): the shared outbox and inbox,
//! then the service's own tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        // The `request_id` column of `territories` is no longer written: idempotency keys
        // live in the runtime's `idempotency_keys`, scoped per caller.
        let mut migrations: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(CreateTerritoriesAndGeography),
            Box::new(tde_runtime::migration::CreateAuditTrail),
            Box::new(super::recoding::AddGeographyFollowUp),
        ];
        migrations.extend(tde_runtime::migration::later_shared_tables());
        migrations
    }
}

struct CreateTerritoriesAndGeography;

impl MigrationName for CreateTerritoriesAndGeography {
    fn name(&self) -> &str {
        "m20261129_000001_territories_and_geography"
    }
}

fn a(name: &'static str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for CreateTerritoriesAndGeography {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(a("territories"))
                .if_not_exists()
                .col(string(a("id")).primary_key())
                .col(string(a("kind")))
                .col(string(a("official_code")))
                .col(string(a("name")))
                .col(string(a("name_search")))
                .col(big_integer(a("population")))
                .col(string(a("departement_code")))
                .col(string(a("region_code")))
                .col(string(a("zone")))
                .col(string(a("time_zone")))
                .col(string(a("stage")))
                .col(text(a("stage_history")))
                .col(text_null(a("diagnostic")))
                .col(text_null(a("privileged_contact")))
                .col(text(a("operational_team")))
                .col(text_null(a("steering_body")))
                .col(text(a("code_history")))
                .col(big_integer(a("version")))
                .col(string_null(a("request_id")).unique_key())
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .to_owned(),
        )
        .await?;
        // One territory per authority.
        m.create_index(
            Index::create()
                .name("territories_authority")
                .table(a("territories"))
                .col(a("kind"))
                .col(a("official_code"))
                .unique()
                .to_owned(),
        )
        .await?;
        for col in ["stage", "region_code", "departement_code"] {
            m.create_index(
                Index::create()
                    .name(format!("territories_{col}"))
                    .table(a("territories"))
                    .col(Alias::new(col))
                    .col(a("id"))
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(a("geo_vintages"))
                .if_not_exists()
                .col(string(a("vintage")).primary_key())
                .col(string(a("content_hash")))
                .col(integer(a("communes")))
                .col(integer(a("epcis")))
                .col(timestamp_with_time_zone(a("imported_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("geo_regions"))
                .if_not_exists()
                .col(string(a("code")).primary_key())
                .col(string(a("name")))
                .col(string(a("zone")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("geo_departements"))
                .if_not_exists()
                .col(string(a("code")).primary_key())
                .col(string(a("name")))
                .col(string(a("region_code")))
                .col(string(a("zone")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("geo_communes"))
                .if_not_exists()
                .col(string(a("code")).primary_key())
                .col(string(a("name")))
                .col(string(a("name_search")))
                .col(string(a("departement_code")))
                .col(string(a("region_code")))
                .col(string(a("zone")))
                .col(big_integer(a("population")))
                .col(string(a("siren")))
                .col(string_null(a("epci_siren")))
                .col(text(a("postal_codes")))
                .col(text(a("former_codes")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("geo_communes_departement")
                .table(a("geo_communes"))
                .col(a("departement_code"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("geo_communes_epci")
                .table(a("geo_communes"))
                .col(a("epci_siren"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("geo_epcis"))
                .if_not_exists()
                .col(string(a("siren")).primary_key())
                .col(string(a("name")))
                .col(string(a("kind")))
                .col(big_integer(a("population")))
                .col(string(a("departement_code")))
                .col(string(a("region_code")))
                .col(string(a("zone")))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "geo_epcis",
            "geo_communes",
            "geo_departements",
            "geo_regions",
            "geo_vintages",
            "territories",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
