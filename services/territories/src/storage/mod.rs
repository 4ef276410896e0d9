//! Storage of the territories service: entities, migrations and queries, on PostgreSQL or
//! SQLite alike.

pub mod entities;
pub mod geography;
pub mod migrations;
pub mod recoding;

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::domain::names;
use crate::domain::territory::{AuthorityKind, Stage, Territory, Zone};
use entities::territory::{self, Column, Entity};

/// Filters of ListTerritories.
#[derive(Debug, Clone, Default)]
pub struct TerritoryFilter {
    pub stage: Option<Stage>,
    pub kind: Option<AuthorityKind>,
    pub region_code: Option<String>,
    pub departement_code: Option<String>,
    /// Normalised (see `domain::names`).
    pub name_query: Option<String>,
    /// Only these territory ids and the territories of these régions (the caller's).
    pub visible_to: Option<(Vec<String>, Vec<String>)>,
    /// Only the territories with a geography issue (of one kind).
    pub geography_issue: Option<recoding::IssueFilter>,
}

use tde_runtime::db::{corrupt, from_json, to_json as json};

fn from_json_opt<T: serde::de::DeserializeOwned>(
    what: &str,
    raw: &Option<String>,
) -> Result<Option<T>, DbErr> {
    raw.as_deref().map(|r| from_json(what, r)).transpose()
}

pub fn to_domain(m: territory::Model) -> Result<Territory, DbErr> {
    Ok(Territory {
        kind: AuthorityKind::parse(&m.kind).ok_or_else(|| corrupt("kind", &m.kind))?,
        stage: Stage::parse(&m.stage).ok_or_else(|| corrupt("stage", &m.stage))?,
        zone: Zone::parse(&m.zone).ok_or_else(|| corrupt("zone", &m.zone))?,
        stage_history: from_json("stage history", &m.stage_history)?,
        diagnostic: from_json_opt("diagnostic", &m.diagnostic)?,
        privileged_contact: from_json_opt("privileged contact", &m.privileged_contact)?,
        operational_team: from_json("operational team", &m.operational_team)?,
        steering_body: from_json_opt("steering body", &m.steering_body)?,
        code_history: from_json("code history", &m.code_history)?,
        geography_issue: from_json_opt("geography issue", &m.geography_issue)?,
        merged_territories: from_json("merged territories", &m.merged_territories)?,
        epci_siren: m.epci_siren,
        id: m.id,
        official_code: m.official_code,
        name: m.name,
        population: m.population,
        departement_code: m.departement_code,
        region_code: m.region_code,
        time_zone: m.time_zone,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn to_active(t: &Territory) -> Result<territory::ActiveModel, DbErr> {
    Ok(territory::ActiveModel {
        id: Set(t.id.clone()),
        kind: Set(t.kind.as_str().into()),
        official_code: Set(t.official_code.clone()),
        name: Set(t.name.clone()),
        name_search: Set(names::normalize(&t.name)),
        population: Set(t.population),
        departement_code: Set(t.departement_code.clone()),
        region_code: Set(t.region_code.clone()),
        zone: Set(t.zone.as_str().into()),
        time_zone: Set(t.time_zone.clone()),
        stage: Set(t.stage.as_str().into()),
        stage_history: Set(json(&t.stage_history)?),
        diagnostic: Set(t.diagnostic.as_ref().map(json).transpose()?),
        privileged_contact: Set(t.privileged_contact.as_ref().map(json).transpose()?),
        operational_team: Set(json(&t.operational_team)?),
        steering_body: Set(t.steering_body.as_ref().map(json).transpose()?),
        code_history: Set(json(&t.code_history)?),
        epci_siren: Set(t.epci_siren.clone()),
        geography_issue: Set(t.geography_issue.as_ref().map(json).transpose()?),
        geography_issue_kind: Set(t.geography_issue.as_ref().map(|i| i.kind.as_str().into())),
        geography_successor: Set(t
            .geography_issue
            .as_ref()
            .and_then(|i| i.successor_code.clone())),
        merged_territories: Set(json(&t.merged_territories)?),
        version: Set(t.version),
        created_at: Set(t.created_at),
        updated_at: Set(t.updated_at),
    })
}

pub async fn find(db: &impl ConnectionTrait, id: &str) -> Result<Option<Territory>, DbErr> {
    Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Reads a territory and locks its row until the transaction ends (PostgreSQL), so that
/// concurrent changes of one territory queue instead of failing.
pub async fn find_for_update(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<Territory>, DbErr> {
    tde_runtime::db::for_update(db, Entity::find_by_id(id.to_string()))
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Territories whose contacts may mention `email` (lowercase): a coarse match on the stored
/// documents, which the caller refines on the domain objects. Rows are locked until the
/// transaction ends (PostgreSQL) when `lock`.
pub async fn find_mentioning(
    db: &impl ConnectionTrait,
    email: &str,
    lock: bool,
) -> Result<Vec<Territory>, DbErr> {
    let pattern = format!("%{email}%");
    let mut query = Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(Column::PrivilegedContact.like(pattern.clone()))
                .add(Column::OperationalTeam.like(pattern.clone()))
                .add(Column::SteeringBody.like(pattern)),
        )
        .order_by_asc(Column::Id);
    if lock {
        query = tde_runtime::db::for_update(db, query);
    }
    query.all(db).await?.into_iter().map(to_domain).collect()
}

pub async fn find_by_code(
    db: &impl ConnectionTrait,
    kind: AuthorityKind,
    code: &str,
) -> Result<Option<Territory>, DbErr> {
    Entity::find()
        .filter(Column::Kind.eq(kind.as_str()))
        .filter(Column::OfficialCode.eq(code))
        .one(db)
        .await?
        .map(to_domain)
        .transpose()
}

/// Territories of `kind` holding one of `codes`, rows locked until the transaction ends
/// (PostgreSQL).
pub async fn find_by_codes(
    db: &impl ConnectionTrait,
    kind: AuthorityKind,
    codes: Vec<String>,
) -> Result<Vec<Territory>, DbErr> {
    let query = Entity::find()
        .filter(Column::Kind.eq(kind.as_str()))
        .filter(Column::OfficialCode.is_in(codes));
    tde_runtime::db::for_update(db, query)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

pub async fn insert(db: &impl ConnectionTrait, t: &Territory) -> Result<(), DbErr> {
    Entity::insert(to_active(t)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The channel on which every write of a territory is announced to the read caches of all
/// replicas (see `tde_runtime::cache`).
pub const CACHE_CHANNEL: &str = "tde_territories";

/// Writes `t` if the stored version is still `expected_version`; false when it was not.
/// Every replica's cache forgets the territory when the transaction commits.
pub async fn update(
    db: &impl ConnectionTrait,
    t: &Territory,
    expected_version: i64,
) -> Result<bool, DbErr> {
    let row = to_active(t)?;
    let result = Entity::update_many()
        .set(row)
        .filter(Column::Id.eq(t.id.clone()))
        .filter(Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok(false);
    }
    tde_runtime::cache::notify(db, CACHE_CHANNEL, &t.id).await?;
    Ok(true)
}

/// A page of territories in id order (ids are time-ordered UUIDv7: oldest first).
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &TerritoryFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Territory>, DbErr> {
    let mut query = Entity::find();
    if let Some((ids, regions)) = &filter.visible_to {
        if ids.is_empty() && regions.is_empty() {
            return Ok(Vec::new());
        }
        query = query.filter(
            sea_orm::Condition::any()
                .add(Column::Id.is_in(ids.clone()))
                .add(Column::RegionCode.is_in(regions.clone())),
        );
    }
    if let Some(s) = filter.stage {
        query = query.filter(Column::Stage.eq(s.as_str()));
    }
    if let Some(k) = filter.kind {
        query = query.filter(Column::Kind.eq(k.as_str()));
    }
    if let Some(r) = &filter.region_code {
        query = query.filter(Column::RegionCode.eq(r.clone()));
    }
    if let Some(d) = &filter.departement_code {
        query = query.filter(Column::DepartementCode.eq(d.clone()));
    }
    if let Some(issue) = &filter.geography_issue {
        query = query.filter(issue.condition());
    }
    if let Some(q) = &filter.name_query {
        // Normalised text holds only letters, digits and spaces: no LIKE wildcard to escape.
        query = query.filter(Column::NameSearch.like(format!("%{q}%")));
    }
    if let Some(after) = after_id {
        query = query.filter(Column::Id.gt(after));
    }
    query
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(to_domain)
        .collect()
}

pub use tde_runtime::db::is_unique_violation;
