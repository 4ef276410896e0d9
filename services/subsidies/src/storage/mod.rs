//! Storage of the subsidies service: entities, migrations and queries, on PostgreSQL or
//! SQLite alike. Balances move only here, in the caller's transaction, always with the
//! ledger entry that justifies them.

pub mod entities;
pub mod migrations;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

use crate::domain::envelope::Envelope;
use crate::domain::payment::{Payment, PaymentKind, PaymentStatus};
use crate::domain::subsidy::{Subsidy, SubsidyStatus};
use entities::{envelope, ledger_entry, payment, plan, plan_review, subsidy, territory};

pub use tde_runtime::db::is_unique_violation;
use tde_runtime::db::{corrupt, for_update as lock, from_json, to_json as json};

/// `?` placeholders as the backend writes them ($1, $2… on PostgreSQL).
fn sql(db: &impl ConnectionTrait, text: &str) -> String {
    if db.get_database_backend() != sea_orm::DbBackend::Postgres {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut n = 0;
    for c in text.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn statement(
    db: &impl ConnectionTrait,
    text: &str,
    values: impl IntoIterator<Item = sea_orm::Value>,
) -> Statement {
    Statement::from_sql_and_values(db.get_database_backend(), sql(db, text), values)
}

// ---------------------------------------------------------------------------------------
// Read models: territories and plans.

/// What this service knows of a territory (from the territory events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerritoryView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub official_code: String,
    pub region_code: String,
    pub updated_at: DateTime<Utc>,
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
            official_code: m.official_code,
            region_code: m.region_code,
            updated_at: m.updated_at,
        }))
}

pub async fn save_territory(db: &impl ConnectionTrait, t: &TerritoryView) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    let row = territory::ActiveModel {
        id: Set(t.id.clone()),
        name: Set(t.name.clone()),
        kind: Set(t.kind.clone()),
        official_code: Set(t.official_code.clone()),
        region_code: Set(t.region_code.clone()),
        updated_at: Set(t.updated_at),
    };
    territory::Entity::insert(row)
        .on_conflict(
            OnConflict::column(territory::Column::Id)
                .update_columns([
                    territory::Column::Name,
                    territory::Column::Kind,
                    territory::Column::OfficialCode,
                    territory::Column::RegionCode,
                    territory::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Whether the plan is known to be stopped.
pub async fn plan_stopped(db: &impl ConnectionTrait, plan_id: &str) -> Result<bool, DbErr> {
    Ok(plan::Entity::find_by_id(plan_id.to_string())
        .one(db)
        .await?
        .is_some_and(|p| p.stopped))
}

pub async fn save_plan(
    db: &impl ConnectionTrait,
    plan_id: &str,
    territory_id: &str,
    stopped: bool,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    use sea_orm::sea_query::OnConflict;
    plan::Entity::insert(plan::ActiveModel {
        id: Set(plan_id.to_string()),
        territory_id: Set(territory_id.to_string()),
        stopped: Set(stopped),
        updated_at: Set(at),
    })
    .on_conflict(
        OnConflict::column(plan::Column::Id)
            .update_columns([plan::Column::Stopped, plan::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Records that a plan year's review is recorded; false when it already was.
pub async fn record_review(
    db: &impl ConnectionTrait,
    plan_id: &str,
    year: i16,
    at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = db
        .execute_raw(statement(
            db,
            "INSERT INTO plan_reviews (plan_id, year, recorded_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [plan_id.into(), year.into(), at.into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn is_reviewed(
    db: &impl ConnectionTrait,
    plan_id: &str,
    year: i16,
) -> Result<bool, DbErr> {
    Ok(plan_review::Entity::find_by_id((plan_id.to_string(), year))
        .one(db)
        .await?
        .is_some())
}

// ---------------------------------------------------------------------------------------
// Envelopes.

fn envelope_to_domain(m: envelope::Model) -> Result<Envelope, DbErr> {
    Ok(Envelope {
        changes: from_json("changes", &m.changes)?,
        advance_percent: u8::try_from(m.advance_percent)
            .map_err(|e| corrupt("advance_percent", e))?,
        id: m.id,
        budget_year: m.budget_year,
        region_code: m.region_code,
        parent_id: m.parent_id,
        amount_cents: m.amount_cents,
        committed_cents: m.committed_cents,
        paid_cents: m.paid_cents,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub async fn insert_envelope(db: &impl ConnectionTrait, e: &Envelope) -> Result<(), DbErr> {
    envelope::Entity::insert(envelope::ActiveModel {
        id: Set(e.id.clone()),
        budget_year: Set(e.budget_year),
        region_code: Set(e.region_code.clone()),
        parent_id: Set(e.parent_id.clone()),
        amount_cents: Set(e.amount_cents),
        committed_cents: Set(e.committed_cents),
        paid_cents: Set(e.paid_cents),
        advance_percent: Set(i16::from(e.advance_percent)),
        changes: Set(json(&e.changes)?),
        version: Set(e.version),
        created_at: Set(e.created_at),
        updated_at: Set(e.updated_at),
    })
    .exec_without_returning(db)
    .await?;
    Ok(())
}

pub async fn find_envelope(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<Envelope>, DbErr> {
    let query = envelope::Entity::find_by_id(id.to_string());
    let query = if for_update { lock(db, query) } else { query };
    query.one(db).await?.map(envelope_to_domain).transpose()
}

pub async fn find_envelope_of(
    db: &impl ConnectionTrait,
    budget_year: i32,
    region_code: &str,
    for_update: bool,
) -> Result<Option<Envelope>, DbErr> {
    let query = envelope::Entity::find()
        .filter(envelope::Column::BudgetYear.eq(budget_year))
        .filter(envelope::Column::RegionCode.eq(region_code));
    let query = if for_update { lock(db, query) } else { query };
    query.one(db).await?.map(envelope_to_domain).transpose()
}

/// The sum of the amounts of the sub-envelopes of `parent_id`, but `except`.
pub async fn sub_envelopes_total(
    db: &impl ConnectionTrait,
    parent_id: &str,
    except: Option<&str>,
) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) AS total FROM envelopes WHERE parent_id = ? AND id <> ?",
            [parent_id.into(), except.unwrap_or("").into()],
        ))
        .await?;
    row.map_or(Ok(0), |r| r.try_get("", "total"))
}

/// Writes a changed amount (and its history) if the version is still `expected`.
pub async fn update_envelope_amount(
    db: &impl ConnectionTrait,
    e: &Envelope,
    expected: i64,
) -> Result<bool, DbErr> {
    let result = db
        .execute_raw(statement(
            db,
            "UPDATE envelopes SET amount_cents = ?, changes = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?",
            [
                e.amount_cents.into(),
                json(&e.changes)?.into(),
                e.version.into(),
                e.updated_at.into(),
                e.id.clone().into(),
                expected.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// The envelopes a commitment against `e` moves: its national envelope first (the same lock
/// order everywhere, so that concurrent changes never deadlock), then `e`.
fn chain(e: &Envelope) -> Vec<String> {
    let mut ids = Vec::with_capacity(2);
    if let Some(parent) = &e.parent_id {
        ids.push(parent.clone());
    }
    ids.push(e.id.clone());
    ids
}

/// Commits `amount` against `e` (and its national envelope) **atomically**: each row is
/// updated only if it still has `amount` available, in one conditional UPDATE that takes the
/// row's lock; concurrent approvals queue on the row and re-check the condition once the one
/// before them committed. Returns the envelope (of the chain) that did not have enough, if
/// any; the caller then rolls back its whole transaction.
pub async fn commit_against(
    db: &impl ConnectionTrait,
    e: &Envelope,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<Option<String>, DbErr> {
    for id in chain(e) {
        let result = db
            .execute_raw(statement(
                db,
                "UPDATE envelopes SET committed_cents = committed_cents + ?, version = version + 1, updated_at = ? \
                 WHERE id = ? AND committed_cents + ? <= amount_cents",
                [amount.into(), now.into(), id.clone().into(), amount.into()],
            ))
            .await?;
        if result.rows_affected() != 1 {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Gives `amount` back to `e` and its national envelope (a decommitment).
pub async fn release(
    db: &impl ConnectionTrait,
    e: &Envelope,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for id in chain(e) {
        db.execute_raw(statement(
            db,
            "UPDATE envelopes SET committed_cents = committed_cents - ?, version = version + 1, updated_at = ? WHERE id = ?",
            [amount.into(), now.into(), id.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Adds a payment to what `e` and its national envelope paid.
pub async fn add_paid(
    db: &impl ConnectionTrait,
    e: &Envelope,
    amount: i64,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for id in chain(e) {
        db.execute_raw(statement(
            db,
            "UPDATE envelopes SET paid_cents = paid_cents + ?, version = version + 1, updated_at = ? WHERE id = ?",
            [amount.into(), now.into(), id.into()],
        ))
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct EnvelopeFilter {
    pub budget_year: Option<i32>,
    pub region_code: Option<String>,
}

pub async fn list_envelopes(
    db: &impl ConnectionTrait,
    filter: &EnvelopeFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Envelope>, DbErr> {
    let mut query = envelope::Entity::find();
    if let Some(y) = filter.budget_year {
        query = query.filter(envelope::Column::BudgetYear.eq(y));
    }
    if let Some(r) = &filter.region_code {
        query = query.filter(envelope::Column::RegionCode.eq(r.clone()));
    }
    if let Some(after) = after_id {
        query = query.filter(envelope::Column::Id.gt(after));
    }
    query
        .order_by_asc(envelope::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(envelope_to_domain)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Subsidies.

fn subsidy_to_domain(m: subsidy::Model) -> Result<Subsidy, DbErr> {
    Ok(Subsidy {
        status: SubsidyStatus::parse(&m.status).ok_or_else(|| corrupt("status", &m.status))?,
        proposal: m
            .proposal
            .as_deref()
            .map(|p| from_json("proposal", p))
            .transpose()?,
        decision: m
            .decision
            .as_deref()
            .map(|d| from_json("decision", d))
            .transpose()?,
        plan_year: u8::try_from(m.plan_year).map_err(|e| corrupt("plan_year", e))?,
        advance_percent: u8::try_from(m.advance_percent)
            .map_err(|e| corrupt("advance_percent", e))?,
        id: m.id,
        plan_id: m.plan_id,
        amendment_number: m.amendment_number,
        territory_id: m.territory_id,
        territory_name: m.territory_name,
        region_code: m.region_code,
        year_start: m.year_start,
        year_end: m.year_end,
        submission_number: m.submission_number,
        requested_cents: m.requested_cents,
        budget_year: m.budget_year,
        envelope_id: m.envelope_id,
        granted_cents: m.granted_cents,
        decommitted_cents: m.decommitted_cents,
        paid_cents: m.paid_cents,
        clawed_back_cents: m.clawed_back_cents,
        reviewed: m.reviewed,
        plan_stopped: m.plan_stopped,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn subsidy_to_active(s: &Subsidy) -> Result<subsidy::ActiveModel, DbErr> {
    Ok(subsidy::ActiveModel {
        id: Set(s.id.clone()),
        plan_id: Set(s.plan_id.clone()),
        plan_year: Set(i16::from(s.plan_year)),
        amendment_number: Set(s.amendment_number),
        territory_id: Set(s.territory_id.clone()),
        territory_name: Set(s.territory_name.clone()),
        region_code: Set(s.region_code.clone()),
        year_start: Set(s.year_start),
        year_end: Set(s.year_end),
        submission_number: Set(s.submission_number),
        requested_cents: Set(s.requested_cents),
        status: Set(s.status.as_str().to_string()),
        proposal: Set(s.proposal.as_ref().map(json).transpose()?),
        decision: Set(s.decision.as_ref().map(json).transpose()?),
        budget_year: Set(s.budget_year),
        envelope_id: Set(s.envelope_id.clone()),
        granted_cents: Set(s.granted_cents),
        decommitted_cents: Set(s.decommitted_cents),
        paid_cents: Set(s.paid_cents),
        clawed_back_cents: Set(s.clawed_back_cents),
        advance_percent: Set(i16::from(s.advance_percent)),
        reviewed: Set(s.reviewed),
        plan_stopped: Set(s.plan_stopped),
        version: Set(s.version),
        created_at: Set(s.created_at),
        updated_at: Set(s.updated_at),
    })
}

pub async fn insert_subsidy(db: &impl ConnectionTrait, s: &Subsidy) -> Result<(), DbErr> {
    subsidy::Entity::insert(subsidy_to_active(s)?)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find_subsidy(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<Subsidy>, DbErr> {
    let query = subsidy::Entity::find_by_id(id.to_string());
    let query = if for_update { lock(db, query) } else { query };
    query.one(db).await?.map(subsidy_to_domain).transpose()
}

/// Writes `s` if the stored version is still `expected`; false when it was not.
pub async fn update_subsidy(
    db: &impl ConnectionTrait,
    s: &Subsidy,
    expected: i64,
) -> Result<bool, DbErr> {
    let result = subsidy::Entity::update_many()
        .set(subsidy_to_active(s)?)
        .filter(subsidy::Column::Id.eq(s.id.clone()))
        .filter(subsidy::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The subsidies of a plan (of one year, if given), in order, locked for change.
pub async fn subsidies_of_plan(
    db: &impl ConnectionTrait,
    plan_id: &str,
    year: Option<i16>,
) -> Result<Vec<Subsidy>, DbErr> {
    let mut query = subsidy::Entity::find().filter(subsidy::Column::PlanId.eq(plan_id));
    if let Some(y) = year {
        query = query.filter(subsidy::Column::PlanYear.eq(y));
    }
    lock(
        db,
        query
            .order_by_asc(subsidy::Column::PlanYear)
            .order_by_asc(subsidy::Column::AmendmentNumber),
    )
    .all(db)
    .await?
    .into_iter()
    .map(subsidy_to_domain)
    .collect()
}

pub use tde_runtime::db::VisibleTo;
use tde_runtime::db::{sees_no_territory, visible};

#[derive(Debug, Clone, Default)]
pub struct SubsidyFilter {
    pub budget_year: Option<i32>,
    pub region_code: Option<String>,
    pub territory_id: Option<String>,
    pub plan_id: Option<String>,
    pub status: Option<SubsidyStatus>,
    pub visible_to: VisibleTo,
}

pub async fn list_subsidies(
    db: &impl ConnectionTrait,
    filter: &SubsidyFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Subsidy>, DbErr> {
    if sees_no_territory(&filter.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = subsidy::Entity::find();
    if let Some(c) = visible(
        subsidy::Column::TerritoryId,
        subsidy::Column::RegionCode,
        &filter.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(y) = filter.budget_year {
        query = query.filter(subsidy::Column::BudgetYear.eq(y));
    }
    if let Some(r) = &filter.region_code {
        query = query.filter(subsidy::Column::RegionCode.eq(r.clone()));
    }
    if let Some(t) = &filter.territory_id {
        query = query.filter(subsidy::Column::TerritoryId.eq(t.clone()));
    }
    if let Some(p) = &filter.plan_id {
        query = query.filter(subsidy::Column::PlanId.eq(p.clone()));
    }
    if let Some(s) = filter.status {
        query = query.filter(subsidy::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = after_id {
        query = query.filter(subsidy::Column::Id.gt(after));
    }
    query
        .order_by_asc(subsidy::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(subsidy_to_domain)
        .collect()
}

/// Granted subsidies of plans still running whose year ended before `ended_before` and whose
/// review is not recorded: their review is overdue.
pub async fn overdue_reviews(
    db: &impl ConnectionTrait,
    ended_before: chrono::NaiveDate,
    visible_to: &VisibleTo,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Subsidy>, DbErr> {
    if sees_no_territory(visible_to) {
        return Ok(Vec::new());
    }
    let mut query = subsidy::Entity::find()
        .filter(subsidy::Column::Status.is_in([
            SubsidyStatus::Granted.as_str(),
            SubsidyStatus::PartiallyGranted.as_str(),
        ]))
        .filter(subsidy::Column::Reviewed.eq(false))
        .filter(subsidy::Column::PlanStopped.eq(false))
        .filter(subsidy::Column::YearEnd.lt(ended_before));
    if let Some(c) = visible(
        subsidy::Column::TerritoryId,
        subsidy::Column::RegionCode,
        visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(after) = after_id {
        query = query.filter(subsidy::Column::Id.gt(after));
    }
    query
        .order_by_asc(subsidy::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(subsidy_to_domain)
        .collect()
}

// ---------------------------------------------------------------------------------------
// Payments.

fn payment_to_domain(m: payment::Model) -> Result<Payment, DbErr> {
    Ok(Payment {
        kind: PaymentKind::parse(&m.kind).ok_or_else(|| corrupt("payment kind", &m.kind))?,
        status: PaymentStatus::parse(&m.status)
            .ok_or_else(|| corrupt("payment status", &m.status))?,
        id: m.id,
        subsidy_id: m.subsidy_id,
        territory_id: m.territory_id,
        region_code: m.region_code,
        envelope_id: m.envelope_id,
        amount_cents: m.amount_cents,
        reference: m.reference,
        failure_reason: m.failure_reason,
        paid_on: m.paid_on,
        authorised_by: m.authorised_by,
        version: m.version,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

fn payment_to_active(p: &Payment) -> payment::ActiveModel {
    payment::ActiveModel {
        id: Set(p.id.clone()),
        subsidy_id: Set(p.subsidy_id.clone()),
        territory_id: Set(p.territory_id.clone()),
        region_code: Set(p.region_code.clone()),
        envelope_id: Set(p.envelope_id.clone()),
        kind: Set(p.kind.as_str().to_string()),
        amount_cents: Set(p.amount_cents),
        status: Set(p.status.as_str().to_string()),
        reference: Set(p.reference.clone()),
        failure_reason: Set(p.failure_reason.clone()),
        paid_on: Set(p.paid_on),
        authorised_by: Set(p.authorised_by.clone()),
        version: Set(p.version),
        created_at: Set(p.created_at),
        updated_at: Set(p.updated_at),
    }
}

pub async fn insert_payment(db: &impl ConnectionTrait, p: &Payment) -> Result<(), DbErr> {
    payment::Entity::insert(payment_to_active(p))
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub async fn find_payment(
    db: &impl ConnectionTrait,
    id: &str,
    for_update: bool,
) -> Result<Option<Payment>, DbErr> {
    let query = payment::Entity::find_by_id(id.to_string());
    let query = if for_update { lock(db, query) } else { query };
    query.one(db).await?.map(payment_to_domain).transpose()
}

pub async fn update_payment(
    db: &impl ConnectionTrait,
    p: &Payment,
    expected: i64,
) -> Result<bool, DbErr> {
    let result = payment::Entity::update_many()
        .set(payment_to_active(p))
        .filter(payment::Column::Id.eq(p.id.clone()))
        .filter(payment::Column::Version.eq(expected))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn payments_of_subsidy(
    db: &impl ConnectionTrait,
    subsidy_id: &str,
) -> Result<Vec<Payment>, DbErr> {
    payment::Entity::find()
        .filter(payment::Column::SubsidyId.eq(subsidy_id))
        .order_by_asc(payment::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(payment_to_domain)
        .collect()
}

#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub subsidy_id: Option<String>,
    pub territory_id: Option<String>,
    pub status: Option<PaymentStatus>,
    pub visible_to: VisibleTo,
}

pub async fn list_payments(
    db: &impl ConnectionTrait,
    filter: &PaymentFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Payment>, DbErr> {
    if sees_no_territory(&filter.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = payment::Entity::find();
    if let Some(c) = visible(
        payment::Column::TerritoryId,
        payment::Column::RegionCode,
        &filter.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(s) = &filter.subsidy_id {
        query = query.filter(payment::Column::SubsidyId.eq(s.clone()));
    }
    if let Some(t) = &filter.territory_id {
        query = query.filter(payment::Column::TerritoryId.eq(t.clone()));
    }
    if let Some(s) = filter.status {
        query = query.filter(payment::Column::Status.eq(s.as_str()));
    }
    if let Some(after) = after_id {
        query = query.filter(payment::Column::Id.gt(after));
    }
    query
        .order_by_asc(payment::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(payment_to_domain)
        .collect()
}

// ---------------------------------------------------------------------------------------
// The ledger.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Commitment,
    Decommitment,
    Payment,
    Clawback,
}

impl EntryKind {
    pub const ALL: [Self; 4] = [
        Self::Commitment,
        Self::Decommitment,
        Self::Payment,
        Self::Clawback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commitment => "commitment",
            Self::Decommitment => "decommitment",
            Self::Payment => "payment",
            Self::Clawback => "clawback",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One entry of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub kind: EntryKind,
    pub amount_cents: i64,
    pub envelope_id: String,
    pub subsidy_id: String,
    pub payment_id: Option<String>,
    pub territory_id: String,
    pub region_code: String,
    pub budget_year: i32,
    pub reference: String,
    pub reason: String,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
}

impl Entry {
    /// An entry about `s` (charged to its envelope and budget year).
    pub fn about(
        s: &Subsidy,
        kind: EntryKind,
        amount_cents: i64,
        reference: &str,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            kind,
            amount_cents,
            envelope_id: s.envelope_id.clone().unwrap_or_default(),
            subsidy_id: s.id.clone(),
            payment_id: None,
            territory_id: s.territory_id.clone(),
            region_code: s.region_code.clone(),
            budget_year: s.budget_year,
            reference: reference.to_string(),
            reason: reason.to_string(),
            actor: actor.to_string(),
            recorded_at: now,
        }
    }
}

fn entry_to_domain(m: ledger_entry::Model) -> Result<Entry, DbErr> {
    Ok(Entry {
        kind: EntryKind::parse(&m.kind).ok_or_else(|| corrupt("ledger entry kind", &m.kind))?,
        id: m.id,
        amount_cents: m.amount_cents,
        envelope_id: m.envelope_id,
        subsidy_id: m.subsidy_id,
        payment_id: m.payment_id,
        territory_id: m.territory_id,
        region_code: m.region_code,
        budget_year: m.budget_year,
        reference: m.reference,
        reason: m.reason,
        actor: m.actor,
        recorded_at: m.recorded_at,
    })
}

pub async fn append(db: &impl ConnectionTrait, e: &Entry) -> Result<(), DbErr> {
    ledger_entry::Entity::insert(ledger_entry::ActiveModel {
        id: Set(e.id.clone()),
        kind: Set(e.kind.as_str().to_string()),
        amount_cents: Set(e.amount_cents),
        envelope_id: Set(e.envelope_id.clone()),
        subsidy_id: Set(e.subsidy_id.clone()),
        payment_id: Set(e.payment_id.clone()),
        territory_id: Set(e.territory_id.clone()),
        region_code: Set(e.region_code.clone()),
        budget_year: Set(e.budget_year),
        reference: Set(e.reference.clone()),
        reason: Set(e.reason.clone()),
        actor: Set(e.actor.clone()),
        recorded_at: Set(e.recorded_at),
    })
    .exec_without_returning(db)
    .await?;
    // The running totals of its budget year and région, in the same transaction. Callers
    // move the envelopes first: every change of money locks the subsidy, then the
    // envelopes, then this row, in that order, so that concurrent changes never deadlock.
    let column = match e.kind {
        EntryKind::Commitment => "committed_cents",
        EntryKind::Decommitment => "decommitted_cents",
        EntryKind::Payment => "paid_cents",
        EntryKind::Clawback => "clawed_back_cents",
    };
    let (committed, decommitted, paid, clawed_back) = match e.kind {
        EntryKind::Commitment => (e.amount_cents, 0, 0, 0),
        EntryKind::Decommitment => (0, e.amount_cents, 0, 0),
        EntryKind::Payment => (0, 0, e.amount_cents, 0),
        EntryKind::Clawback => (0, 0, 0, e.amount_cents),
    };
    db.execute_raw(statement(
        db,
        &format!(
            "INSERT INTO ledger_totals (budget_year, region_code, committed_cents, decommitted_cents, paid_cents, clawed_back_cents) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (budget_year, region_code) \
             DO UPDATE SET {column} = ledger_totals.{column} + excluded.{column}"
        ),
        [
            e.budget_year.into(),
            e.region_code.clone().into(),
            committed.into(),
            decommitted.into(),
            paid.into(),
            clawed_back.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The running totals per (budget year, région), and what the entries sum to, for
/// reconciliation: ((year, région), stored, from the entries).
pub async fn ledger_totals_check(
    db: &impl ConnectionTrait,
) -> Result<Vec<((i32, String), LedgerSums, LedgerSums)>, DbErr> {
    let read = |sql: &str| {
        db.query_all_raw(Statement::from_string(
            db.get_database_backend(),
            sql.to_string(),
        ))
    };
    let stored = read(
        "SELECT budget_year, region_code, committed_cents AS c, decommitted_cents AS d, \
         paid_cents AS p, clawed_back_cents AS b FROM ledger_totals",
    )
    .await?;
    let summed = read(
        "SELECT budget_year, region_code, \
         CAST(SUM(CASE WHEN kind = 'commitment' THEN amount_cents ELSE 0 END) AS BIGINT) AS c, \
         CAST(SUM(CASE WHEN kind = 'decommitment' THEN amount_cents ELSE 0 END) AS BIGINT) AS d, \
         CAST(SUM(CASE WHEN kind = 'payment' THEN amount_cents ELSE 0 END) AS BIGINT) AS p, \
         CAST(SUM(CASE WHEN kind = 'clawback' THEN amount_cents ELSE 0 END) AS BIGINT) AS b \
         FROM ledger_entries GROUP BY budget_year, region_code",
    )
    .await?;
    let mut out: std::collections::BTreeMap<(i32, String), (LedgerSums, LedgerSums)> =
        Default::default();
    for (rows, stored_side) in [(stored, true), (summed, false)] {
        for r in rows {
            let key = (r.try_get("", "budget_year")?, r.try_get("", "region_code")?);
            let sums = LedgerSums {
                committed: r.try_get("", "c")?,
                decommitted: r.try_get("", "d")?,
                paid: r.try_get("", "p")?,
                clawed_back: r.try_get("", "b")?,
            };
            let entry = out.entry(key).or_default();
            if stored_side {
                entry.0 = sums;
            } else {
                entry.1 = sums;
            }
        }
    }
    Ok(out.into_iter().map(|(k, (a, b))| (k, a, b)).collect())
}

#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    pub envelope_id: Option<String>,
    pub subsidy_id: Option<String>,
    pub territory_id: Option<String>,
    pub budget_year: Option<i32>,
    pub region_code: Option<String>,
    pub visible_to: VisibleTo,
}

pub async fn list_entries(
    db: &impl ConnectionTrait,
    filter: &EntryFilter,
    after_id: Option<&str>,
    limit: u64,
) -> Result<Vec<Entry>, DbErr> {
    if sees_no_territory(&filter.visible_to) {
        return Ok(Vec::new());
    }
    let mut query = ledger_entry::Entity::find();
    if let Some(c) = visible(
        ledger_entry::Column::TerritoryId,
        ledger_entry::Column::RegionCode,
        &filter.visible_to,
    ) {
        query = query.filter(c);
    }
    if let Some(e) = &filter.envelope_id {
        query = query.filter(ledger_entry::Column::EnvelopeId.eq(e.clone()));
    }
    if let Some(s) = &filter.subsidy_id {
        query = query.filter(ledger_entry::Column::SubsidyId.eq(s.clone()));
    }
    if let Some(t) = &filter.territory_id {
        query = query.filter(ledger_entry::Column::TerritoryId.eq(t.clone()));
    }
    if let Some(y) = filter.budget_year {
        query = query.filter(ledger_entry::Column::BudgetYear.eq(y));
    }
    if let Some(r) = &filter.region_code {
        query = query.filter(ledger_entry::Column::RegionCode.eq(r.clone()));
    }
    if let Some(after) = after_id {
        query = query.filter(ledger_entry::Column::Id.gt(after));
    }
    query
        .order_by_asc(ledger_entry::Column::Id)
        .limit(limit)
        .all(db)
        .await?
        .into_iter()
        .map(entry_to_domain)
        .collect()
}

/// Sums of the ledger per key (an envelope or a subsidy) and kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerSums {
    pub committed: i64,
    pub decommitted: i64,
    pub paid: i64,
    pub clawed_back: i64,
}

impl LedgerSums {
    fn add(&mut self, kind: EntryKind, amount: i64) {
        match kind {
            EntryKind::Commitment => self.committed += amount,
            EntryKind::Decommitment => self.decommitted += amount,
            EntryKind::Payment => self.paid += amount,
            EntryKind::Clawback => self.clawed_back += amount,
        }
    }
}

/// The ledger summed by `column` (`envelope_id` or `subsidy_id`) and kind, by the database.
pub async fn ledger_sums(
    db: &impl ConnectionTrait,
    column: &'static str,
) -> Result<(std::collections::HashMap<String, LedgerSums>, i64), DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT {column} AS k, kind, CAST(SUM(amount_cents) AS BIGINT) AS total, COUNT(*) AS n \
                 FROM ledger_entries GROUP BY {column}, kind"
            ),
        ))
        .await?;
    let mut sums: std::collections::HashMap<String, LedgerSums> = Default::default();
    let mut entries = 0;
    for row in rows {
        let key: String = row.try_get("", "k")?;
        let kind: String = row.try_get("", "kind")?;
        let total: i64 = row.try_get("", "total")?;
        let n: i64 = row.try_get("", "n")?;
        let kind = EntryKind::parse(&kind).ok_or_else(|| corrupt("ledger entry kind", &kind))?;
        sums.entry(key).or_default().add(kind, total);
        entries += n;
    }
    Ok((sums, entries))
}

/// Every envelope and every subsidy's stored balances, for reconciliation.
pub async fn all_envelopes(db: &impl ConnectionTrait) -> Result<Vec<Envelope>, DbErr> {
    envelope::Entity::find()
        .order_by_asc(envelope::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(envelope_to_domain)
        .collect()
}

/// (id, granted, decommitted, paid, clawed back) of every subsidy.
pub async fn subsidy_balances(
    db: &impl ConnectionTrait,
) -> Result<Vec<(String, i64, i64, i64, i64)>, DbErr> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id, granted_cents, decommitted_cents, paid_cents, clawed_back_cents FROM subsidies ORDER BY id",
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                r.try_get("", "id")?,
                r.try_get("", "granted_cents")?,
                r.try_get("", "decommitted_cents")?,
                r.try_get("", "paid_cents")?,
                r.try_get("", "clawed_back_cents")?,
            ))
        })
        .collect()
}

/// What each envelope has left, by budget year and région (empty: the national envelope),
/// summed by the database whatever the number of envelopes.
pub async fn available_by_envelope(
    db: &impl ConnectionTrait,
    budget_year: Option<i32>,
) -> Result<std::collections::HashMap<(i32, String), i64>, DbErr> {
    let year_filter = if budget_year.is_some() {
        "WHERE budget_year = ?"
    } else {
        ""
    };
    let rows = db
        .query_all_raw(statement(
            db,
            &format!(
                "SELECT budget_year, region_code, \
                 CAST(SUM(amount_cents - committed_cents) AS BIGINT) AS available \
                 FROM envelopes {year_filter} GROUP BY budget_year, region_code"
            ),
            budget_year.map(Into::into),
        ))
        .await?;
    rows.into_iter()
        .map(|r| {
            Ok((
                (r.try_get("", "budget_year")?, r.try_get("", "region_code")?),
                r.try_get("", "available")?,
            ))
        })
        .collect()
}

/// One line of the national dashboard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DashboardRow {
    pub budget_year: i32,
    pub region_code: String,
    pub requested: i64,
    pub granted: i64,
    pub committed: i64,
    pub paid: i64,
}

/// Per budget year and région: requested and granted from the subsidies, committed and paid
/// from the ledger, computed by the database (two GROUP BY queries on indexed columns).
pub async fn dashboard(
    db: &impl ConnectionTrait,
    budget_year: Option<i32>,
) -> Result<Vec<DashboardRow>, DbErr> {
    let year_filter = if budget_year.is_some() {
        "WHERE budget_year = ?"
    } else {
        ""
    };
    let values: Vec<sea_orm::Value> = budget_year.map(Into::into).into_iter().collect();
    let requests = db.query_all_raw(statement(
        db,
        &format!(
            "SELECT budget_year, region_code, CAST(SUM(requested_cents) AS BIGINT) AS requested, \
             CAST(SUM(granted_cents) AS BIGINT) AS granted \
             FROM subsidies {year_filter} GROUP BY budget_year, region_code"
        ),
        values.clone(),
    ));
    // The ledger's side from its running totals (a row per year and région), which
    // `Reconcile` checks against the entries.
    let ledger = db.query_all_raw(statement(
        db,
        &format!(
            "SELECT budget_year, region_code, \
             committed_cents - decommitted_cents AS committed, paid_cents AS paid \
             FROM ledger_totals {year_filter}"
        ),
        values,
    ));
    // Both at once: on PostgreSQL they run on two connections of the pool.
    let (requests, ledger) = futures::try_join!(requests, ledger)?;
    let mut rows: std::collections::BTreeMap<(i32, String), DashboardRow> = Default::default();
    for r in requests {
        let key: (i32, String) = (r.try_get("", "budget_year")?, r.try_get("", "region_code")?);
        let row = rows.entry(key.clone()).or_insert_with(|| DashboardRow {
            budget_year: key.0,
            region_code: key.1,
            ..Default::default()
        });
        row.requested = r.try_get("", "requested")?;
        row.granted = r.try_get("", "granted")?;
    }
    for r in ledger {
        let key: (i32, String) = (r.try_get("", "budget_year")?, r.try_get("", "region_code")?);
        let row = rows.entry(key.clone()).or_insert_with(|| DashboardRow {
            budget_year: key.0,
            region_code: key.1,
            ..Default::default()
        });
        row.committed = r.try_get("", "committed")?;
        row.paid = r.try_get("", "paid")?;
    }
    Ok(rows.into_values().collect())
}
