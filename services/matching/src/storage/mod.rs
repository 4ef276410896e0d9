//! Storage of the matching service: entities, migrations, and the queries the handlers and
//! consumers use. Conversions between rows and domain types live here.

pub mod entities;
pub mod migrations;

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{
    ColumnTrait as _, Condition, ConnectionTrait, DbErr, EntityTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Set,
};

use crate::domain::need::{Need, NeedKind};
use crate::domain::proposal::{Proposal, ProposalStatus};
use crate::domain::provider::{Area, Contact, Provider, ProviderStatus};
use crate::domain::ranking::ProviderStats;
use crate::domain::siret::Siret;
use entities::{assignment, assignment_plan, need, proposal, provider};

use tde_runtime::db::{corrupt, from_json, to_json};

pub use tde_runtime::db::VisibleTo;
use tde_runtime::db::{sees_no_territory, visible};

// ---------------------------------------------------------------------------------------
// Providers.

/// A provider as stored: the domain value and its bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRecord {
    pub provider: Provider,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ProviderRecord {
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }
}

fn provider_to_domain(m: provider::Model) -> Result<ProviderRecord, DbErr> {
    Ok(ProviderRecord {
        provider: Provider {
            siret: Siret::parse(&m.siret).map_err(|e| corrupt("siret", e))?,
            name: m.name,
            naf_code: m.naf_code,
            qualiopi_expiry: m.qualiopi_expiry,
            skills: from_json("skills", &m.skills)?,
            areas: from_json("areas", &m.areas)?,
            capacity: u32::try_from(m.capacity).map_err(|e| corrupt("capacity", e))?,
            day_rate_cents: m.day_rate_cents,
            status: ProviderStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
            status_reason: m.status_reason,
            conflict_territory_ids: from_json("conflict_territory_ids", &m.conflict_territory_ids)?,
            contact: Contact {
                name: m.contact_name,
                email: m.contact_email,
            },
            id: m.id,
        },
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn provider_to_active(r: &ProviderRecord) -> Result<provider::ActiveModel, DbErr> {
    let p = &r.provider;
    Ok(provider::ActiveModel {
        id: Set(p.id.clone()),
        siret: Set(p.siret.as_str().to_string()),
        name: Set(p.name.clone()),
        naf_code: Set(p.naf_code.clone()),
        qualiopi_expiry: Set(p.qualiopi_expiry),
        skills: Set(to_json(&p.skills)?),
        areas: Set(to_json(&p.areas)?),
        conflict_territory_ids: Set(to_json(&p.conflict_territory_ids)?),
        capacity: Set(i32::try_from(p.capacity).map_err(|e| DbErr::Custom(e.to_string()))?),
        day_rate_cents: Set(p.day_rate_cents),
        status: Set(p.status.as_str().to_string()),
        status_reason: Set(p.status_reason.clone()),
        contact_name: Set(p.contact.name.clone()),
        contact_email: Set(p.contact.email.clone()),
        contact_email_sha256: Set(if p.contact.email.is_empty() {
            String::new()
        } else {
            tde_runtime::personal_data::fingerprint(&p.contact.email)
        }),
        version: Set(r.version),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    })
}

/// Inserts a provider; `Ok(false)` when its SIRET is already registered.
pub async fn insert_provider(db: &impl ConnectionTrait, r: &ProviderRecord) -> Result<bool, DbErr> {
    let done = provider::Entity::insert(provider_to_active(r)?)
        .on_conflict(
            OnConflict::column(provider::Column::Siret)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(done == 1)
}

/// Writes `r` if the stored version is still `expected`; false when it was not.
pub async fn update_provider(
    db: &impl ConnectionTrait,
    r: &ProviderRecord,
    expected: i64,
) -> Result<bool, DbErr> {
    let result = provider::Entity::update_many()
        .set(provider_to_active(r)?)
        .filter(provider::Column::Id.eq(r.provider.id.clone()))
        .filter(provider::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn find_provider(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<ProviderRecord>, DbErr> {
    provider::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(provider_to_domain)
        .transpose()
}

#[derive(Debug, Clone, Default)]
pub struct ProviderFilter {
    pub status: Option<ProviderStatus>,
    pub skill: Option<String>,
    pub departement_code: Option<String>,
}

/// A page of providers in id order.
pub async fn list_providers(
    db: &impl ConnectionTrait,
    filter: &ProviderFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<ProviderRecord>, DbErr> {
    let mut query = provider::Entity::find();
    if let Some(s) = filter.status {
        query = query.filter(provider::Column::Status.eq(s.as_str()));
    }
    // The JSON arrays hold names from closed lists, written by this service: a match of the
    // quoted element is exact.
    if let Some(skill) = &filter.skill {
        query = query.filter(provider::Column::Skills.contains(format!("\"{skill}\"")));
    }
    if let Some(d) = &filter.departement_code {
        let area = to_json(&Area::Departement(d.clone()))?;
        query = query.filter(
            Condition::any()
                .add(provider::Column::Areas.contains(area))
                .add(provider::Column::Areas.contains("\"national\"")),
        );
    }
    if let Some(after) = after_id {
        query = query.filter(provider::Column::Id.gt(after));
    }
    query
        .order_by_asc(provider::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(provider_to_domain)
        .collect()
}

/// Every provider that is not deactivated, in id order: what a ranking judges (deactivated
/// ones are named once as a count, not one by one).
pub async fn rankable_providers(db: &impl ConnectionTrait) -> Result<Vec<Provider>, DbErr> {
    provider::Entity::find()
        .filter(provider::Column::Status.ne(ProviderStatus::Deactivated.as_str()))
        .order_by_asc(provider::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| provider_to_domain(m).map(|r| r.provider))
        .collect()
}

/// The providers that are not deactivated and work in département `departement_code`, in
/// région `region_code` or nationally, in id order; and, when `count_others`, how many others
/// are not deactivated (0 otherwise). The JSON arrays of areas are written by this service: a
/// match of the serialised area is exact.
pub async fn rankable_providers_in(
    db: &impl ConnectionTrait,
    departement_code: &str,
    region_code: &str,
    count_others: bool,
) -> Result<(Vec<Provider>, u64), DbErr> {
    use sea_orm::PaginatorTrait as _;
    let area = area_condition(departement_code, region_code)?;
    let active = provider::Column::Status.ne(ProviderStatus::Deactivated.as_str());
    let inside: Vec<Provider> = provider::Entity::find()
        .filter(active.clone())
        .filter(area.clone())
        .order_by_asc(provider::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|m| provider_to_domain(m).map(|r| r.provider))
        .collect::<Result<_, _>>()?;
    if !count_others {
        return Ok((inside, 0));
    }
    let outside = provider::Entity::find()
        .filter(active)
        .filter(area.not())
        .count(db)
        .await?;
    Ok((inside, outside))
}

/// Works in département `departement_code`, in région `region_code` or nationally.
fn area_condition(departement_code: &str, region_code: &str) -> Result<Condition, DbErr> {
    let mut area =
        Condition::any().add(provider::Column::Areas.contains(to_json(&Area::National)?));
    if !departement_code.is_empty() {
        area = area.add(
            provider::Column::Areas
                .contains(to_json(&Area::Departement(departement_code.to_string()))?),
        );
    }
    if !region_code.is_empty() {
        area = area.add(
            provider::Column::Areas.contains(to_json(&Area::Region(region_code.to_string()))?),
        );
    }
    Ok(area)
}

/// What a ranking shows of a provider outside the need's area, and what names its
/// exclusion (`ranking::rule_outside_area`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderOutline {
    pub id: String,
    pub name: String,
    pub status: ProviderStatus,
    pub skills: BTreeSet<String>,
    pub conflict_territory_ids: BTreeSet<String>,
}

/// The providers `rankable_providers_in` leaves out, in id order: the columns their
/// exclusion reads only, rather than whole rows with every JSON column decoded (loading
/// 3,000 whole providers was most of a ranking listing every exclusion).
pub async fn rankable_providers_outside(
    db: &impl ConnectionTrait,
    departement_code: &str,
    region_code: &str,
) -> Result<Vec<ProviderOutline>, DbErr> {
    let rows: Vec<(String, String, String, String, String)> = provider::Entity::find()
        .select_only()
        .columns([
            provider::Column::Id,
            provider::Column::Name,
            provider::Column::Status,
            provider::Column::Skills,
            provider::Column::ConflictTerritoryIds,
        ])
        .filter(provider::Column::Status.ne(ProviderStatus::Deactivated.as_str()))
        .filter(area_condition(departement_code, region_code)?.not())
        .order_by_asc(provider::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    rows.into_iter()
        .map(|(id, name, status, skills, conflicts)| {
            Ok(ProviderOutline {
                status: ProviderStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
                skills: from_json("skills", &skills)?,
                conflict_territory_ids: from_json("conflict_territory_ids", &conflicts)?,
                id,
                name,
            })
        })
        .collect()
}

/// Providers whose contact has this address fingerprint (personal-data requests).
pub async fn providers_with_contact(
    db: &impl ConnectionTrait,
    email_sha256: &str,
) -> Result<Vec<ProviderRecord>, DbErr> {
    provider::Entity::find()
        .filter(provider::Column::ContactEmailSha256.eq(email_sha256))
        .order_by_asc(provider::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(provider_to_domain)
        .collect()
}

async fn count_by_provider(
    db: &impl ConnectionTrait,
    condition: Condition,
) -> Result<HashMap<String, u32>, DbErr> {
    let rows: Vec<(String, i64)> = assignment::Entity::find()
        .select_only()
        .column(assignment::Column::ProviderId)
        .column_as(
            Expr::from(Func::count(Expr::col(assignment::Column::ActionId))),
            "n",
        )
        .filter(condition)
        .group_by(assignment::Column::ProviderId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(p, n)| (p, u32::try_from(n).unwrap_or(u32::MAX)))
        .collect())
}

/// What rankings need of every provider's history, for a need over `period` (inclusive),
/// as of `now`.
pub async fn provider_stats(
    db: &impl ConnectionTrait,
    period: Option<(NaiveDate, NaiveDate)>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, ProviderStats>, DbErr> {
    stats_where(db, Condition::all(), period, now).await
}

/// The figures of the providers `ids` only (a page of them): the queries filter by
/// provider rather than grouping the whole history.
pub async fn provider_stats_among(
    db: &impl ConnectionTrait,
    ids: &[String],
    period: Option<(NaiveDate, NaiveDate)>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, ProviderStats>, DbErr> {
    let mut stats = HashMap::new();
    // Bounded IN lists: PostgreSQL and SQLite both cap bind parameters.
    for chunk in ids.chunks(500) {
        let only = Condition::all().add(assignment::Column::ProviderId.is_in(chunk.to_vec()));
        stats.extend(stats_where(db, only, period, now).await?);
    }
    Ok(stats)
}

/// The figures of one provider (an acceptance's capacity check, GetProvider).
pub async fn provider_stats_of(
    db: &impl ConnectionTrait,
    id: &str,
    period: Option<(NaiveDate, NaiveDate)>,
    now: DateTime<Utc>,
) -> Result<ProviderStats, DbErr> {
    let only = Condition::all().add(assignment::Column::ProviderId.eq(id));
    Ok(stats_where(db, only, period, now)
        .await?
        .remove(id)
        .unwrap_or_default())
}

/// Provider figures over the assignments `scope` selects.
async fn stats_where(
    db: &impl ConnectionTrait,
    scope: Condition,
    period: Option<(NaiveDate, NaiveDate)>,
    now: DateTime<Utc>,
) -> Result<HashMap<String, ProviderStats>, DbErr> {
    let unfinished = assignment::Column::Finished.eq(false);
    let current = count_by_provider(db, scope.clone().add(unfinished.clone())).await?;
    let over_period = match period {
        Some((start, end)) => {
            count_by_provider(
                db,
                scope
                    .clone()
                    .add(unfinished)
                    .add(assignment::Column::PlannedStart.lte(end))
                    .add(assignment::Column::PlannedEnd.gte(start)),
            )
            .await?
        }
        None => current.clone(),
    };
    let last_year = count_by_provider(
        db,
        scope
            .clone()
            .add(assignment::Column::AcceptedAt.gt(now - chrono::Duration::days(365))),
    )
    .await?;
    // SUM and COUNT rather than AVG: both backends return integers for them.
    let ratings: Vec<(String, Option<i64>, i64)> = assignment::Entity::find()
        .select_only()
        .column(assignment::Column::ProviderId)
        .column_as(Expr::cust("CAST(SUM(rating) AS BIGINT)"), "total")
        .column_as(
            Expr::from(Func::count(Expr::col(assignment::Column::Rating))),
            "n",
        )
        .filter(scope.add(assignment::Column::Rating.is_not_null()))
        .group_by(assignment::Column::ProviderId)
        .into_tuple()
        .all(db)
        .await?;
    let mut stats: HashMap<String, ProviderStats> = HashMap::new();
    for (p, n) in current {
        stats.entry(p).or_default().current_load = n;
    }
    for (p, n) in over_period {
        stats.entry(p).or_default().load_over_period = n;
    }
    for (p, n) in last_year {
        stats.entry(p).or_default().assignments_last_year = n;
    }
    for (p, total, n) in ratings {
        if n > 0 {
            let s = stats.entry(p).or_default();
            s.mean_rating = Some(total.unwrap_or(0) as f64 / n as f64);
            s.rating_count = u32::try_from(n).unwrap_or(u32::MAX);
        }
    }
    Ok(stats)
}

// ---------------------------------------------------------------------------------------
// Needs.

fn need_to_domain(m: need::Model) -> Result<Need, DbErr> {
    Ok(Need {
        skills: from_json("skills", &m.skills)?,
        kind: NeedKind::parse(&m.kind).ok_or_else(|| corrupt("kind", &m.kind))?,
        year: u8::try_from(m.year).map_err(|e| corrupt("year", e))?,
        id: m.id,
        plan_id: m.plan_id,
        territory_id: m.territory_id,
        territory_name: m.territory_name,
        departement_code: m.departement_code,
        region_code: m.region_code,
        title: m.title,
        planned_start: m.planned_start,
        planned_end: m.planned_end,
        budget_cents: m.budget_cents,
        status: m.status,
        provider_id: m.provider_id,
        version: m.version,
        plan_open: m.plan_open,
    })
}

/// Inserts or replaces the need.
pub async fn save_need(
    db: &impl ConnectionTrait,
    n: &Need,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let row = need::ActiveModel {
        id: Set(n.id.clone()),
        plan_id: Set(n.plan_id.clone()),
        territory_id: Set(n.territory_id.clone()),
        territory_name: Set(n.territory_name.clone()),
        departement_code: Set(n.departement_code.clone()),
        region_code: Set(n.region_code.clone()),
        year: Set(i16::from(n.year)),
        kind: Set(n.kind.as_str().to_string()),
        title: Set(n.title.clone()),
        skills: Set(to_json(&n.skills)?),
        planned_start: Set(n.planned_start),
        planned_end: Set(n.planned_end),
        budget_cents: Set(n.budget_cents),
        status: Set(n.status.clone()),
        provider_id: Set(n.provider_id.clone()),
        open: Set(n.is_open()),
        plan_open: Set(n.plan_open),
        version: Set(n.version),
        updated_at: Set(now),
    };
    need::Entity::insert(row)
        .on_conflict(
            OnConflict::column(need::Column::Id)
                .update_columns([
                    need::Column::PlanId,
                    need::Column::TerritoryId,
                    need::Column::TerritoryName,
                    need::Column::DepartementCode,
                    need::Column::RegionCode,
                    need::Column::Year,
                    need::Column::Kind,
                    need::Column::Title,
                    need::Column::Skills,
                    need::Column::PlannedStart,
                    need::Column::PlannedEnd,
                    need::Column::BudgetCents,
                    need::Column::Status,
                    need::Column::ProviderId,
                    need::Column::Open,
                    need::Column::PlanOpen,
                    need::Column::Version,
                    need::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The needs of a plan.
pub async fn needs_of_plan(db: &impl ConnectionTrait, plan_id: &str) -> Result<Vec<Need>, DbErr> {
    need::Entity::find()
        .filter(need::Column::PlanId.eq(plan_id))
        .order_by_asc(need::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(need_to_domain)
        .collect()
}

pub async fn find_need(db: &impl ConnectionTrait, id: &str) -> Result<Option<Need>, DbErr> {
    need::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(need_to_domain)
        .transpose()
}

#[derive(Debug, Clone, Default)]
pub struct NeedFilter {
    pub region_code: Option<String>,
    pub year: Option<u8>,
    pub visible_to: VisibleTo,
}

/// Open needs in id order, a page (`limit`) or all (`None`).
pub async fn open_needs(
    db: &impl ConnectionTrait,
    filter: &NeedFilter,
    after_id: Option<&str>,
    limit: Option<u64>,
) -> Result<Vec<Need>, DbErr> {
    if sees_no_territory(&filter.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = need::Entity::find().filter(need::Column::Open.eq(true));
    if let Some(c) = visible(
        need::Column::TerritoryId,
        need::Column::RegionCode,
        &filter.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(r) = &filter.region_code {
        query = query.filter(need::Column::RegionCode.eq(r.clone()));
    }
    if let Some(y) = filter.year {
        query = query.filter(need::Column::Year.eq(i16::from(y)));
    }
    if let Some(after) = after_id {
        query = query.filter(need::Column::Id.gt(after));
    }
    let mut query = query.order_by_asc(need::Column::Id);
    if let Some(l) = limit {
        query = query.limit(l);
    }
    query
        .all(db)
        .await?
        .into_iter()
        .map(need_to_domain)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Assignments.

#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentRecord {
    pub action_id: String,
    pub provider_id: String,
    pub territory_id: String,
    pub region_code: String,
    pub planned_start: NaiveDate,
    pub planned_end: NaiveDate,
    pub finished: bool,
    pub accepted_at: DateTime<Utc>,
    pub rating: Option<u8>,
    pub rating_comment: String,
    pub rated_by: Option<String>,
}

impl AssignmentRecord {
    /// `need` given to `provider_id` at `at`, not yet rated: by an acceptance, or by hand in
    /// the plan.
    pub fn new(need: &Need, provider_id: &str, at: DateTime<Utc>) -> Self {
        Self {
            action_id: need.id.clone(),
            provider_id: provider_id.to_string(),
            territory_id: need.territory_id.clone(),
            region_code: need.region_code.clone(),
            planned_start: need.planned_start,
            planned_end: need.planned_end,
            finished: need.is_finished(),
            accepted_at: at,
            rating: None,
            rating_comment: String::new(),
            rated_by: None,
        }
    }
}

fn assignment_to_domain(m: assignment::Model) -> AssignmentRecord {
    AssignmentRecord {
        action_id: m.action_id,
        provider_id: m.provider_id,
        territory_id: m.territory_id,
        region_code: m.region_code,
        planned_start: m.planned_start,
        planned_end: m.planned_end,
        finished: m.finished,
        accepted_at: m.accepted_at,
        rating: m.rating.and_then(|r| u8::try_from(r).ok()),
        rating_comment: m.rating_comment,
        rated_by: m.rated_by,
    }
}

pub async fn find_assignment(
    db: &impl ConnectionTrait,
    action_id: &str,
) -> Result<Option<AssignmentRecord>, DbErr> {
    Ok(assignment::Entity::find_by_id(action_id.to_string())
        .one(db)
        .await?
        .map(assignment_to_domain))
}

/// Inserts or replaces the assignment of an action (one provider per action).
pub async fn save_assignment(db: &impl ConnectionTrait, a: &AssignmentRecord) -> Result<(), DbErr> {
    let row = assignment::ActiveModel {
        action_id: Set(a.action_id.clone()),
        provider_id: Set(a.provider_id.clone()),
        territory_id: Set(a.territory_id.clone()),
        region_code: Set(a.region_code.clone()),
        planned_start: Set(a.planned_start),
        planned_end: Set(a.planned_end),
        finished: Set(a.finished),
        accepted_at: Set(a.accepted_at),
        rating: Set(a.rating.map(i16::from)),
        rating_comment: Set(a.rating_comment.clone()),
        rated_by: Set(a.rated_by.clone()),
    };
    assignment::Entity::insert(row)
        .on_conflict(
            OnConflict::column(assignment::Column::ActionId)
                .update_columns([
                    assignment::Column::ProviderId,
                    assignment::Column::TerritoryId,
                    assignment::Column::RegionCode,
                    assignment::Column::PlannedStart,
                    assignment::Column::PlannedEnd,
                    assignment::Column::Finished,
                    assignment::Column::AcceptedAt,
                    assignment::Column::Rating,
                    assignment::Column::RatingComment,
                    assignment::Column::RatedBy,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A page of assignments in action order: of one provider, within the territories a caller
/// sees.
pub async fn list_assignments(
    db: &impl ConnectionTrait,
    provider_id: Option<&str>,
    visible_to: &VisibleTo,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<AssignmentRecord>, DbErr> {
    if sees_no_territory(visible_to) {
        return Ok(Vec::new());
    }
    let mut query = assignment::Entity::find();
    if let Some(c) = visible(
        assignment::Column::TerritoryId,
        assignment::Column::RegionCode,
        visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(p) = provider_id {
        query = query.filter(assignment::Column::ProviderId.eq(p));
    }
    if let Some(after) = after_id {
        query = query.filter(assignment::Column::ActionId.gt(after));
    }
    Ok(query
        .order_by_asc(assignment::Column::ActionId)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(assignment_to_domain)
        .collect())
}

pub async fn delete_assignment(db: &impl ConnectionTrait, action_id: &str) -> Result<(), DbErr> {
    assignment::Entity::delete_by_id(action_id.to_string())
        .exec(db)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Proposals.

fn proposal_to_domain(m: proposal::Model) -> Result<Proposal, DbErr> {
    Ok(Proposal {
        status: ProposalStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
        rank: u32::try_from(m.rank).map_err(|e| corrupt("rank", e))?,
        id: m.id,
        need_id: m.need_id,
        provider_id: m.provider_id,
        territory_id: m.territory_id,
        region_code: m.region_code,
        score: m.score,
        override_justification: m.override_justification,
        decline_reason: m.decline_reason,
        deadline: m.deadline,
        created_by: m.created_by,
        created_at: m.created_at,
        answered_at: m.answered_at,
        version: m.version,
        batch_id: m.batch_id,
    })
}

fn proposal_to_active(p: &Proposal) -> proposal::ActiveModel {
    proposal::ActiveModel {
        id: Set(p.id.clone()),
        need_id: Set(p.need_id.clone()),
        provider_id: Set(p.provider_id.clone()),
        territory_id: Set(p.territory_id.clone()),
        region_code: Set(p.region_code.clone()),
        status: Set(p.status.as_str().to_string()),
        score: Set(p.score),
        rank: Set(i32::try_from(p.rank).unwrap_or(i32::MAX)),
        override_justification: Set(p.override_justification.clone()),
        decline_reason: Set(p.decline_reason.clone()),
        deadline: Set(p.deadline),
        created_by: Set(p.created_by.clone()),
        created_at: Set(p.created_at),
        answered_at: Set(p.answered_at),
        version: Set(p.version),
        batch_id: Set(p.batch_id.clone()),
    }
}

pub async fn insert_proposal(db: &impl ConnectionTrait, p: &Proposal) -> Result<(), DbErr> {
    proposal::Entity::insert(proposal_to_active(p))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Writes `p` if the stored version is still `expected`; false when it was not.
pub async fn update_proposal(
    db: &impl ConnectionTrait,
    p: &Proposal,
    expected: i64,
) -> Result<bool, DbErr> {
    let result = proposal::Entity::update_many()
        .set(proposal_to_active(p))
        .filter(proposal::Column::Id.eq(p.id.clone()))
        .filter(proposal::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn find_proposal(db: &impl ConnectionTrait, id: &str) -> Result<Option<Proposal>, DbErr> {
    proposal::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(proposal_to_domain)
        .transpose()
}

#[derive(Debug, Clone, Default)]
pub struct ProposalFilter {
    pub need_id: Option<String>,
    pub status: Option<ProposalStatus>,
    /// A provider's token: only its own.
    pub provider_id: Option<String>,
    pub visible_to: VisibleTo,
}

pub async fn list_proposals(
    db: &impl ConnectionTrait,
    filter: &ProposalFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Proposal>, DbErr> {
    let mut query = proposal::Entity::find();
    match &filter.provider_id {
        Some(p) => query = query.filter(proposal::Column::ProviderId.eq(p.clone())),
        None => {
            if sees_no_territory(&filter.visible_to) {
                return Ok(Vec::new());
            }
            if let Some(c) = visible(
                proposal::Column::TerritoryId,
                proposal::Column::RegionCode,
                &filter.visible_to,
            ) {
                query = query.filter(c);
            }
        }
    }
    if let Some(n) = &filter.need_id {
        query = query.filter(proposal::Column::NeedId.eq(n.clone()));
    }
    if let Some(s) = filter.status {
        query = query.filter(proposal::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = after_id {
        query = query.filter(proposal::Column::Id.gt(after));
    }
    query
        .order_by_asc(proposal::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(proposal_to_domain)
        .collect()
}

/// A need a PlanAssignments call could not serve, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UnservedNeed {
    pub need_id: String,
    pub reason: String,
    pub detail: String,
}

/// What a PlanAssignments call answered besides its proposals.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentPlan {
    pub id: String,
    pub total_score: f64,
    pub greedy_total_score: f64,
    pub unserved: Vec<UnservedNeed>,
    pub created_at: DateTime<Utc>,
}

pub async fn insert_assignment_plan(
    db: &impl ConnectionTrait,
    p: &AssignmentPlan,
) -> Result<(), DbErr> {
    assignment_plan::Entity::insert(assignment_plan::ActiveModel {
        id: Set(p.id.clone()),
        total_score: Set(p.total_score),
        greedy_total_score: Set(p.greedy_total_score),
        unserved: Set(to_json(&p.unserved)?),
        created_at: Set(p.created_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_assignment_plan(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<AssignmentPlan>, DbErr> {
    assignment_plan::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(|m| {
            Ok(AssignmentPlan {
                unserved: from_json("unserved", &m.unserved)?,
                id: m.id,
                total_score: m.total_score,
                greedy_total_score: m.greedy_total_score,
                created_at: m.created_at,
            })
        })
        .transpose()
}

/// The proposals a PlanAssignments call sent, in need order.
pub async fn proposals_of_batch(
    db: &impl ConnectionTrait,
    batch_id: &str,
) -> Result<Vec<Proposal>, DbErr> {
    proposal::Entity::find()
        .filter(proposal::Column::BatchId.eq(batch_id))
        .order_by_asc(proposal::Column::NeedId)
        .all(db)
        .await?
        .into_iter()
        .map(proposal_to_domain)
        .collect()
}

/// The pending proposals of a need.
pub async fn pending_of_need(
    db: &impl ConnectionTrait,
    need_id: &str,
) -> Result<Vec<Proposal>, DbErr> {
    proposal::Entity::find()
        .filter(proposal::Column::NeedId.eq(need_id))
        .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
        .order_by_asc(proposal::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(proposal_to_domain)
        .collect()
}

/// The accepted proposals of a need made to `provider_id` (one, unless history is odd).
pub async fn accepted_of_need(
    db: &impl ConnectionTrait,
    need_id: &str,
    provider_id: &str,
) -> Result<Vec<Proposal>, DbErr> {
    proposal::Entity::find()
        .filter(proposal::Column::NeedId.eq(need_id))
        .filter(proposal::Column::ProviderId.eq(provider_id))
        .filter(proposal::Column::Status.eq(ProposalStatus::Accepted.as_str()))
        .order_by_asc(proposal::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(proposal_to_domain)
        .collect()
}

/// Every provider ever asked for the need, whatever the answer: however many proposals it
/// had, each provider once.
pub async fn providers_asked(
    db: &impl ConnectionTrait,
    need_id: &str,
) -> Result<BTreeSet<String>, DbErr> {
    let rows: Vec<String> = proposal::Entity::find()
        .select_only()
        .column(proposal::Column::ProviderId)
        .distinct()
        .filter(proposal::Column::NeedId.eq(need_id))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Needs with a pending proposal, among `ids`.
pub async fn needs_with_pending(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<BTreeSet<String>, DbErr> {
    let mut found = BTreeSet::new();
    // Bounded IN lists: PostgreSQL and SQLite both cap bind parameters.
    for chunk in ids.chunks(500) {
        let rows: Vec<String> = proposal::Entity::find()
            .select_only()
            .column(proposal::Column::NeedId)
            .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
            .filter(proposal::Column::NeedId.is_in(chunk.to_vec()))
            .into_tuple()
            .all(db)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// Pending proposals past their deadline, oldest first.
pub async fn due_proposals(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Proposal>, DbErr> {
    proposal::Entity::find()
        .filter(proposal::Column::Status.eq(ProposalStatus::Pending.as_str()))
        .filter(proposal::Column::Deadline.lt(now))
        .order_by_asc(proposal::Column::Deadline)
        .order_by_asc(proposal::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(proposal_to_domain)
        .collect()
}
