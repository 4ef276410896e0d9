//! Storage of what follows a geography vintage: the columns of geography issues and merged
//! territories (and their migration), and the queries of the import and of
//! ResolveGeographyConflict.

use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use super::entities::territory::{Column, Entity};
use super::to_domain;
use crate::domain::recoding::IssueKind;
use crate::domain::territory::{AuthorityKind, Territory};
use tde_runtime::migration::ident;

/// ListTerritories' filter on geography issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueFilter {
    Any,
    Kind(IssueKind),
}

impl IssueFilter {
    pub fn condition(self) -> Condition {
        match self {
            Self::Any => Condition::all().add(Column::GeographyIssueKind.is_not_null()),
            Self::Kind(k) => Condition::all().add(Column::GeographyIssueKind.eq(k.as_str())),
        }
    }
}

/// Every territory, in id order, rows locked until the transaction ends (PostgreSQL): what
/// a vintage does to one depends on the others. Id order is the order every writer of
/// several territories locks them in.
pub async fn all_for_update(db: &impl ConnectionTrait) -> Result<Vec<Territory>, DbErr> {
    tde_runtime::db::for_update(db, Entity::find().order_by_asc(Column::Id))
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// The territories of one conflict, in id order and locked: `id`, the territories flagged
/// with the successor `code`, and the territory of `kind` holding `code`.
pub async fn conflict_for_update(
    db: &impl ConnectionTrait,
    id: &str,
    kind: AuthorityKind,
    code: &str,
) -> Result<Vec<Territory>, DbErr> {
    let query = Entity::find()
        .filter(
            Condition::any()
                .add(Column::Id.eq(id))
                .add(Column::GeographySuccessor.eq(code))
                .add(
                    Condition::all()
                        .add(Column::Kind.eq(kind.as_str()))
                        .add(Column::OfficialCode.eq(code)),
                ),
        )
        .order_by_asc(Column::Id);
    tde_runtime::db::for_update(db, query)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

/// Ids of the territories of `kind` flagged as merging into the authority `code`: while they
/// wait for a decision, nobody else may register it.
pub async fn merging_into(
    db: &impl ConnectionTrait,
    kind: AuthorityKind,
    code: &str,
) -> Result<Vec<String>, DbErr> {
    Ok(Entity::find()
        .filter(Column::Kind.eq(kind.as_str()))
        .filter(Column::GeographySuccessor.eq(code))
        .order_by_asc(Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.id)
        .collect())
}

/// Adds the columns of this module to `territories`, and the EPCI of the communes already
/// registered.
pub struct AddGeographyFollowUp;

impl MigrationName for AddGeographyFollowUp {
    fn name(&self) -> &str {
        "m20261201_000001_geography_follow_up"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddGeographyFollowUp {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for column in [
            string_null(ident("epci_siren")),
            text_null(ident("geography_issue")),
            string_null(ident("geography_issue_kind")),
            string_null(ident("geography_successor")),
            text(ident("merged_territories")).default("[]").to_owned(),
        ] {
            let mut column = column;
            m.alter_table(
                Table::alter()
                    .table(ident("territories"))
                    .add_column(&mut column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("territories_geography_issue")
                .table(ident("territories"))
                .col(ident("geography_issue_kind"))
                .col(ident("id"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("territories_geography_successor")
                .table(ident("territories"))
                .col(ident("geography_successor"))
                .to_owned(),
        )
        .await?;
        // Registration copies the EPCI from now on; the communes registered before take it
        // from the geography loaded.
        let backfill = Query::update()
            .table(ident("territories"))
            .value(
                ident("epci_siren"),
                Expr::cust(
                    "(SELECT g.epci_siren FROM geo_communes g \
                     WHERE g.code = territories.official_code)",
                ),
            )
            .and_where(Expr::col(ident("kind")).eq("commune"))
            .to_owned();
        m.exec_stmt(backfill).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for index in [
            "territories_geography_issue",
            "territories_geography_successor",
        ] {
            m.drop_index(
                Index::drop()
                    .name(index)
                    .table(ident("territories"))
                    .to_owned(),
            )
            .await?;
        }
        for column in [
            "epci_siren",
            "geography_issue",
            "geography_issue_kind",
            "geography_successor",
            "merged_territories",
        ] {
            m.alter_table(
                Table::alter()
                    .table(ident("territories"))
                    .drop_column(Alias::new(column))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
