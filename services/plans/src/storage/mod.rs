//! Storage of the plans service: entities, migrations and queries, on PostgreSQL or SQLite
//! alike.

pub mod entities;
pub mod migrations;

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::domain::action::{Action, ActionKind, ActionStatus, Audience};
use crate::domain::calendar::{LocalTime, MeetingTime};
use crate::domain::meeting::{MeetingStatus, SteeringMeeting, Venue};
use crate::domain::plan::{Plan, PlanStatus};
use entities::{action, action_skill, meeting, plan, territory};

/// Local times as stored and as the API writes them.
pub const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M";

pub use tde_runtime::db::is_unique_violation;
use tde_runtime::db::{corrupt, for_update as lock, from_json, to_json as json};

// ---------------------------------------------------------------------------------------
// The read model of territories.

/// What this service knows of a territory (from the territory events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerritoryView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub stage: String,
    pub time_zone: String,
    pub region_code: String,
    /// What the action events carry for matching (proximity, areas of work).
    pub departement_code: String,
    pub updated_at: DateTime<Utc>,
}

impl TerritoryView {
    pub fn is_withdrawn(&self) -> bool {
        self.stage == "withdrawn"
    }
}

pub async fn find_territory(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<TerritoryView>, DbErr> {
    Ok(territory::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(|m| TerritoryView {
            id: m.id,
            name: m.name,
            kind: m.kind,
            stage: m.stage,
            time_zone: m.time_zone,
            region_code: m.region_code,
            departement_code: m.departement_code,
            updated_at: m.updated_at,
        }))
}

/// Inserts or replaces the view of a territory.
pub async fn save_territory(db: &impl ConnectionTrait, t: &TerritoryView) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    let row = territory::ActiveModel {
        id: Set(t.id.clone()),
        name: Set(t.name.clone()),
        kind: Set(t.kind.clone()),
        stage: Set(t.stage.clone()),
        time_zone: Set(t.time_zone.clone()),
        region_code: Set(t.region_code.clone()),
        departement_code: Set(t.departement_code.clone()),
        updated_at: Set(t.updated_at),
    };
    territory::Entity::insert(row)
        .on_conflict(
            OnConflict::column(territory::Column::Id)
                .update_columns([
                    territory::Column::Name,
                    territory::Column::Kind,
                    territory::Column::Stage,
                    territory::Column::TimeZone,
                    territory::Column::RegionCode,
                    territory::Column::DepartementCode,
                    territory::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Plans.

fn plan_to_domain(m: plan::Model) -> Result<Plan, DbErr> {
    Ok(Plan {
        status: PlanStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
        charter: from_json("charter", &m.charter)?,
        submissions: from_json("submissions", &m.submissions)?,
        reviews: from_json("reviews", &m.reviews)?,
        celebrations: from_json("celebrations", &m.celebrations)?,
        id: m.id,
        territory_id: m.territory_id,
        territory_name: m.territory_name,
        region_code: m.region_code,
        title: m.title,
        start_date: m.start_date,
        status_reason: m.status_reason,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn plan_to_active(p: &Plan) -> Result<plan::ActiveModel, DbErr> {
    Ok(plan::ActiveModel {
        id: Set(p.id.clone()),
        territory_id: Set(p.territory_id.clone()),
        territory_name: Set(p.territory_name.clone()),
        region_code: Set(p.region_code.clone()),
        title: Set(p.title.clone()),
        start_date: Set(p.start_date),
        status: Set(p.status.as_str().into()),
        status_reason: Set(p.status_reason.clone()),
        charter: Set(json(&p.charter)?),
        submissions: Set(json(&p.submissions)?),
        reviews: Set(json(&p.reviews)?),
        celebrations: Set(json(&p.celebrations)?),
        people: Set(p
            .charter
            .versions
            .iter()
            .flat_map(|v| v.signatories.iter())
            .filter_map(|s| s.email_fingerprint())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
            .join(" ")),
        version: Set(p.version),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    })
}

pub async fn find_plan(db: &impl ConnectionTrait, id: &str) -> Result<Option<Plan>, DbErr> {
    plan::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(plan_to_domain)
        .transpose()
}

/// Reads a plan and locks its row until the transaction ends (PostgreSQL): changes of one
/// plan, and of its actions and meetings, queue behind each other.
pub async fn find_plan_for_update(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<Plan>, DbErr> {
    lock(db, plan::Entity::find_by_id(id.to_string()))
        .one(db)
        .await?
        .map(plan_to_domain)
        .transpose()
}

pub async fn find_plan_of_territory(
    db: &impl ConnectionTrait,
    territory_id: &str,
    for_update: bool,
) -> Result<Option<Plan>, DbErr> {
    let query = plan::Entity::find().filter(plan::Column::TerritoryId.eq(territory_id));
    let query = if for_update { lock(db, query) } else { query };
    query.one(db).await?.map(plan_to_domain).transpose()
}

pub async fn insert_plan(db: &impl ConnectionTrait, p: &Plan) -> Result<(), DbErr> {
    plan::Entity::insert(plan_to_active(p)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Writes `p` if the stored version is still `expected_version`; false when it was not.
pub async fn update_plan(
    db: &impl ConnectionTrait,
    p: &Plan,
    expected_version: i64,
) -> Result<bool, DbErr> {
    let result = plan::Entity::update_many()
        .set(plan_to_active(p)?)
        .filter(plan::Column::Id.eq(p.id.clone()))
        .filter(plan::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub use tde_runtime::db::VisibleTo;
use tde_runtime::db::{sees_no_territory, visible};

#[derive(Debug, Clone, Default)]
pub struct PlanFilter {
    pub status: Option<PlanStatus>,
    pub region_code: Option<String>,
    pub territory_id: Option<String>,
    pub visible_to: VisibleTo,
}

/// A page of plans in id order (time-ordered UUIDv7: oldest first).
pub async fn list_plans(
    db: &impl ConnectionTrait,
    filter: &PlanFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Plan>, DbErr> {
    if sees_no_territory(&filter.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = plan::Entity::find();
    if let Some(c) = visible(
        plan::Column::TerritoryId,
        plan::Column::RegionCode,
        &filter.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(s) = filter.status {
        query = query.filter(plan::Column::Status.eq(s.as_str()));
    }
    if let Some(r) = &filter.region_code {
        query = query.filter(plan::Column::RegionCode.eq(r.clone()));
    }
    if let Some(t) = &filter.territory_id {
        query = query.filter(plan::Column::TerritoryId.eq(t.clone()));
    }
    if let Some(after) = after_id {
        query = query.filter(plan::Column::Id.gt(after));
    }
    query
        .order_by_asc(plan::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(plan_to_domain)
        .collect()
}

/// Plans naming the person of address SHA-256 `fingerprint` (lowercase hex), rows locked
/// until the transaction ends (PostgreSQL).
pub async fn plans_naming(
    db: &impl ConnectionTrait,
    fingerprint: &str,
) -> Result<Vec<Plan>, DbErr> {
    if !tde_runtime::personal_data::is_fingerprint(fingerprint) {
        return Ok(Vec::new());
    }
    lock(
        db,
        plan::Entity::find().filter(plan::Column::People.like(format!("%{fingerprint}%"))),
    )
    .all(db)
    .await?
    .into_iter()
    .map(plan_to_domain)
    .collect()
}

// ---------------------------------------------------------------------------------------
// Actions.

/// An action with what storage keeps around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionRecord {
    pub action: Action,
    pub plan_id: String,
    pub territory_id: String,
    pub region_code: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl ActionRecord {
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }
}

fn action_to_domain(m: action::Model) -> Result<ActionRecord, DbErr> {
    let audiences: Vec<String> = from_json("audiences", &m.audiences)?;
    let audiences = audiences
        .iter()
        .map(|a| Audience::parse(a).ok_or_else(|| corrupt("audience", a)))
        .collect::<Result<BTreeSet<_>, _>>()?;
    let skills: BTreeSet<String> = from_json("skills", &m.skills)?;
    Ok(ActionRecord {
        action: Action {
            year: u8::try_from(m.year).map_err(|e| corrupt("year", e))?,
            kind: ActionKind::parse(&m.kind).ok_or_else(|| corrupt("kind", &m.kind))?,
            status: ActionStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
            id: m.id,
            title: m.title,
            description: m.description,
            audiences,
            skills,
            planned_start: m.planned_start,
            planned_end: m.planned_end,
            budget_cents: m.budget_cents,
            provider_id: m.provider_id,
        },
        plan_id: m.plan_id,
        territory_id: m.territory_id,
        region_code: m.region_code,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn action_to_active(r: &ActionRecord) -> Result<action::ActiveModel, DbErr> {
    let a = &r.action;
    let audiences: Vec<&str> = a.audiences.iter().map(|x| x.as_str()).collect();
    Ok(action::ActiveModel {
        id: Set(a.id.clone()),
        plan_id: Set(r.plan_id.clone()),
        territory_id: Set(r.territory_id.clone()),
        region_code: Set(r.region_code.clone()),
        year: Set(i16::from(a.year)),
        kind: Set(a.kind.as_str().into()),
        title: Set(a.title.clone()),
        description: Set(a.description.clone()),
        audiences: Set(json(&audiences)?),
        skills: Set(json(&a.skills)?),
        planned_start: Set(a.planned_start),
        planned_end: Set(a.planned_end),
        budget_cents: Set(a.budget_cents),
        status: Set(a.status.as_str().into()),
        provider_id: Set(a.provider_id.clone()),
        version: Set(r.version),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    })
}

async fn write_skills(db: &impl ConnectionTrait, a: &Action) -> Result<(), DbErr> {
    action_skill::Entity::delete_many()
        .filter(action_skill::Column::ActionId.eq(a.id.clone()))
        .exec(db)
        .await?;
    if a.skills.is_empty() {
        return Ok(());
    }
    let rows = a.skills.iter().map(|s| action_skill::ActiveModel {
        skill: Set(s.clone()),
        action_id: Set(a.id.clone()),
    });
    action_skill::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find_action(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<ActionRecord>, DbErr> {
    action::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(action_to_domain)
        .transpose()
}

pub async fn insert_action(db: &impl ConnectionTrait, r: &ActionRecord) -> Result<(), DbErr> {
    action::Entity::insert(action_to_active(r)?)
        .exec_without_returning(db)
        .await?;
    write_skills(db, &r.action).await
}

/// Writes `r` if the stored version is still `expected_version`; false when it was not.
pub async fn update_action(
    db: &impl ConnectionTrait,
    r: &ActionRecord,
    expected_version: i64,
) -> Result<bool, DbErr> {
    let result = action::Entity::update_many()
        .set(action_to_active(r)?)
        .filter(action::Column::Id.eq(r.action.id.clone()))
        .filter(action::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    if result.rows_affected != 1 {
        return Ok(false);
    }
    write_skills(db, &r.action).await?;
    Ok(true)
}

/// The actions of a plan year (every status), in id order.
pub async fn actions_of_year(
    db: &impl ConnectionTrait,
    plan_id: &str,
    year: u8,
) -> Result<Vec<ActionRecord>, DbErr> {
    action::Entity::find()
        .filter(action::Column::PlanId.eq(plan_id))
        .filter(action::Column::Year.eq(i16::from(year)))
        .order_by_asc(action::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(action_to_domain)
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct ActionFilter {
    pub plan_id: Option<String>,
    pub year: Option<u8>,
    pub skill: Option<String>,
    /// Planned or in progress, without a provider.
    pub unassigned_only: bool,
    pub status: Option<ActionStatus>,
    pub visible_to: VisibleTo,
}

pub async fn list_actions(
    db: &impl ConnectionTrait,
    filter: &ActionFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<ActionRecord>, DbErr> {
    use sea_orm::sea_query::Query;
    if sees_no_territory(&filter.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = action::Entity::find();
    if let Some(c) = visible(
        action::Column::TerritoryId,
        action::Column::RegionCode,
        &filter.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(p) = &filter.plan_id {
        query = query.filter(action::Column::PlanId.eq(p.clone()));
    }
    if let Some(y) = filter.year {
        query = query.filter(action::Column::Year.eq(i16::from(y)));
    }
    if let Some(skill) = &filter.skill {
        query = query.filter(
            action::Column::Id.in_subquery(
                Query::select()
                    .column(action_skill::Column::ActionId)
                    .from(action_skill::Entity)
                    .and_where(action_skill::Column::Skill.eq(skill.clone()))
                    .to_owned(),
            ),
        );
    }
    if filter.unassigned_only {
        query = query.filter(action::Column::ProviderId.is_null()).filter(
            action::Column::Status.is_in([
                ActionStatus::Planned.as_str(),
                ActionStatus::InProgress.as_str(),
            ]),
        );
    }
    if let Some(s) = filter.status {
        query = query.filter(action::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = after_id {
        query = query.filter(action::Column::Id.gt(after));
    }
    query
        .order_by_asc(action::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(action_to_domain)
        .collect()
}

/// How many actions plan year `year` of `plan_id` holds, whatever their status.
pub async fn count_actions_of_year(
    db: &impl ConnectionTrait,
    plan_id: &str,
    year: u8,
) -> Result<u64, DbErr> {
    action::Entity::find()
        .filter(action::Column::PlanId.eq(plan_id))
        .filter(action::Column::Year.eq(i16::from(year)))
        .count(db)
        .await
}

pub async fn count_actions_of_plan(db: &impl ConnectionTrait, plan_id: &str) -> Result<u64, DbErr> {
    action::Entity::find()
        .filter(action::Column::PlanId.eq(plan_id))
        .count(db)
        .await
}

// ---------------------------------------------------------------------------------------
// Steering meetings.

/// A meeting with what storage keeps around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    pub meeting: SteeringMeeting,
    pub region_code: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl MeetingRecord {
    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }
}

fn local(what: &str, raw: &str) -> Result<NaiveDateTime, DbErr> {
    NaiveDateTime::parse_from_str(raw, LOCAL_FORMAT).map_err(|e| corrupt(what, e))
}

fn meeting_to_domain(m: meeting::Model) -> Result<MeetingRecord, DbErr> {
    let zone: chrono_tz::Tz = m
        .time_zone
        .parse()
        .map_err(|_| corrupt("time zone", &m.time_zone))?;
    // The stored instants are kept as they were computed when scheduled.
    let time = MeetingTime {
        start: LocalTime {
            local: local("start", &m.start_local)?,
            zone,
            utc: m.start_utc,
        },
        end: LocalTime {
            local: local("end", &m.end_local)?,
            zone,
            utc: m.end_utc,
        },
    };
    Ok(MeetingRecord {
        meeting: SteeringMeeting {
            year: u8::try_from(m.year).map_err(|e| corrupt("year", e))?,
            sequence: u32::try_from(m.sequence).map_err(|e| corrupt("sequence", e))?,
            status: MeetingStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
            decisions: from_json("decisions", &m.decisions)?,
            id: m.id,
            plan_id: m.plan_id,
            territory_id: m.territory_id,
            time,
            venue: Venue {
                place: m.place,
                video_link: m.video_link,
            },
            agenda: m.agenda,
            cancel_reason: m.cancel_reason,
            minutes: m.minutes,
        },
        region_code: m.region_code,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn meeting_to_active(r: &MeetingRecord) -> Result<meeting::ActiveModel, DbErr> {
    let m = &r.meeting;
    Ok(meeting::ActiveModel {
        id: Set(m.id.clone()),
        plan_id: Set(m.plan_id.clone()),
        territory_id: Set(m.territory_id.clone()),
        region_code: Set(r.region_code.clone()),
        year: Set(i16::from(m.year)),
        sequence: Set(i32::try_from(m.sequence).map_err(|e| corrupt("sequence", e))?),
        status: Set(m.status.as_str().into()),
        time_zone: Set(m.time.start.zone.name().to_string()),
        start_local: Set(m.time.start.local.format(LOCAL_FORMAT).to_string()),
        end_local: Set(m.time.end.local.format(LOCAL_FORMAT).to_string()),
        start_utc: Set(m.time.start.utc),
        end_utc: Set(m.time.end.utc),
        place: Set(m.venue.place.clone()),
        video_link: Set(m.venue.video_link.clone()),
        agenda: Set(m.agenda.clone()),
        cancel_reason: Set(m.cancel_reason.clone()),
        minutes: Set(m.minutes.clone()),
        decisions: Set(json(&m.decisions)?),
        version: Set(r.version),
        created_at: Set(r.created_at),
        updated_at: Set(r.updated_at),
    })
}

pub async fn find_meeting(
    db: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<MeetingRecord>, DbErr> {
    meeting::Entity::find_by_id(id.to_string())
        .one(db)
        .await?
        .map(meeting_to_domain)
        .transpose()
}

pub async fn insert_meeting(db: &impl ConnectionTrait, r: &MeetingRecord) -> Result<(), DbErr> {
    meeting::Entity::insert(meeting_to_active(r)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Writes `r` if the stored version is still `expected_version`; false when it was not.
pub async fn update_meeting(
    db: &impl ConnectionTrait,
    r: &MeetingRecord,
    expected_version: i64,
) -> Result<bool, DbErr> {
    let result = meeting::Entity::update_many()
        .set(meeting_to_active(r)?)
        .filter(meeting::Column::Id.eq(r.meeting.id.clone()))
        .filter(meeting::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Every meeting of a plan, in start order.
pub async fn meetings_of_plan(
    db: &impl ConnectionTrait,
    plan_id: &str,
) -> Result<Vec<MeetingRecord>, DbErr> {
    meeting::Entity::find()
        .filter(meeting::Column::PlanId.eq(plan_id))
        .order_by_asc(meeting::Column::StartUtc)
        .order_by_asc(meeting::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(meeting_to_domain)
        .collect()
}

#[derive(Debug, Clone)]
pub struct MeetingWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub plan_id: Option<String>,
    pub territory_id: Option<String>,
    pub status: Option<MeetingStatus>,
    pub visible_to: VisibleTo,
}

/// A page of the meetings starting in `[from, to)`, in (start, id) order after `after`: a
/// range scan of the `(start_utc, id)` index.
pub async fn list_meetings(
    db: &impl ConnectionTrait,
    window: &MeetingWindow,
    after: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<MeetingRecord>, DbErr> {
    if sees_no_territory(&window.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = meeting::Entity::find()
        .filter(meeting::Column::StartUtc.gte(window.from))
        .filter(meeting::Column::StartUtc.lt(window.to));
    if let Some((start, id)) = after {
        // A row comparison: the index seeks straight to the cursor instead of filtering
        // every earlier meeting of the window.
        use sea_orm::sea_query::{Expr, ExprTrait as _};
        query = query.filter(
            Expr::tuple([
                Expr::col(meeting::Column::StartUtc),
                Expr::col(meeting::Column::Id),
            ])
            .gt(Expr::tuple([Expr::val(start), Expr::val(id)])),
        );
    }
    if let Some(c) = visible(
        meeting::Column::TerritoryId,
        meeting::Column::RegionCode,
        &window.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(p) = &window.plan_id {
        query = query.filter(meeting::Column::PlanId.eq(p.clone()));
    }
    if let Some(t) = &window.territory_id {
        query = query.filter(meeting::Column::TerritoryId.eq(t.clone()));
    }
    if let Some(s) = window.status {
        query = query.filter(meeting::Column::Status.eq(s.as_str()));
    }
    query
        .order_by_asc(meeting::Column::StartUtc)
        .order_by_asc(meeting::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(meeting_to_domain)
        .collect()
}

/// The actions of these plans, in id order.
pub async fn actions_of_plans(
    db: &impl ConnectionTrait,
    plan_ids: Vec<String>,
) -> Result<Vec<ActionRecord>, DbErr> {
    action::Entity::find()
        .filter(action::Column::PlanId.is_in(plan_ids))
        .order_by_asc(action::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(action_to_domain)
        .collect()
}

/// The meetings of these plans, in start order.
pub async fn meetings_of_plans(
    db: &impl ConnectionTrait,
    plan_ids: Vec<String>,
) -> Result<Vec<MeetingRecord>, DbErr> {
    meeting::Entity::find()
        .filter(meeting::Column::PlanId.is_in(plan_ids))
        .order_by_asc(meeting::Column::StartUtc)
        .order_by_asc(meeting::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(meeting_to_domain)
        .collect()
}

/// Whether anything is dated by the plan's start date (actions, meetings).
pub async fn plan_has_dated_items(db: &impl ConnectionTrait, plan_id: &str) -> Result<bool, DbErr> {
    if count_actions_of_plan(db, plan_id).await? > 0 {
        return Ok(true);
    }
    Ok(meeting::Entity::find()
        .filter(meeting::Column::PlanId.eq(plan_id))
        .count(db)
        .await?
        > 0)
}
