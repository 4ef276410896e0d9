//! Migrations of the territories database (sea-orm-migration): the shared outbox and inbox,
//! then the service's own tables.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use tde_runtime::migration::ident;

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

#[async_trait::async_trait]
impl MigrationTrait for CreateTerritoriesAndGeography {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ident("territories"))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("kind")))
                .col(string(ident("official_code")))
                .col(string(ident("name")))
                .col(string(ident("name_search")))
                .col(big_integer(ident("population")))
                .col(string(ident("departement_code")))
                .col(string(ident("region_code")))
                .col(string(ident("zone")))
                .col(string(ident("time_zone")))
                .col(string(ident("stage")))
                .col(text(ident("stage_history")))
                .col(text_null(ident("diagnostic")))
                .col(text_null(ident("privileged_contact")))
                .col(text(ident("operational_team")))
                .col(text_null(ident("steering_body")))
                .col(text(ident("code_history")))
                .col(big_integer(ident("version")))
                .col(string_null(ident("request_id")).unique_key())
                .col(timestamp_with_time_zone(ident("created_at")))
                .col(timestamp_with_time_zone(ident("updated_at")))
                .to_owned(),
        )
        .await?;
        // One territory per authority.
        m.create_index(
            Index::create()
                .name("territories_authority")
                .table(ident("territories"))
                .col(ident("kind"))
                .col(ident("official_code"))
                .unique()
                .to_owned(),
        )
        .await?;
        for col in ["stage", "region_code", "departement_code"] {
            m.create_index(
                Index::create()
                    .name(format!("territories_{col}"))
                    .table(ident("territories"))
                    .col(Alias::new(col))
                    .col(ident("id"))
                    .to_owned(),
            )
            .await?;
        }

        m.create_table(
            Table::create()
                .table(ident("geo_vintages"))
                .if_not_exists()
                .col(string(ident("vintage")).primary_key())
                .col(string(ident("content_hash")))
                .col(integer(ident("communes")))
                .col(integer(ident("epcis")))
                .col(timestamp_with_time_zone(ident("imported_at")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("geo_regions"))
                .if_not_exists()
                .col(string(ident("code")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("zone")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("geo_departements"))
                .if_not_exists()
                .col(string(ident("code")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("region_code")))
                .col(string(ident("zone")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("geo_communes"))
                .if_not_exists()
                .col(string(ident("code")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("name_search")))
                .col(string(ident("departement_code")))
                .col(string(ident("region_code")))
                .col(string(ident("zone")))
                .col(big_integer(ident("population")))
                .col(string(ident("siren")))
                .col(string_null(ident("epci_siren")))
                .col(text(ident("postal_codes")))
                .col(text(ident("former_codes")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("geo_communes_departement")
                .table(ident("geo_communes"))
                .col(ident("departement_code"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("geo_communes_epci")
                .table(ident("geo_communes"))
                .col(ident("epci_siren"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ident("geo_epcis"))
                .if_not_exists()
                .col(string(ident("siren")).primary_key())
                .col(string(ident("name")))
                .col(string(ident("kind")))
                .col(big_integer(ident("population")))
                .col(string(ident("departement_code")))
                .col(string(ident("region_code")))
                .col(string(ident("zone")))
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
