//! What the subsidies service publishes (through its outbox) on
//! `tde.subsidies.<aggregate>.<event>`, and what it consumes: the plans events (a submitted
//! plan year opens or amends a request, a review lets the balance be paid, a stopped plan
//! decommits what will not be paid) and the territory events (its copy of the territories).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message as _;
use sea_orm::DatabaseTransaction;

use tde_proto::plans::v1 as plans_pb;
use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::subjects;
use tde_proto::territories::v1::facts::{self, TerritoryEvent};
use tde_runtime::api::timestamp;
use tde_runtime::bus::Envelope as BusEnvelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::read_model;

use crate::SERVICE;
use crate::api::convert::{payment_kind_to_pb, payment_status_to_pb, subsidy_status_to_pb};
use crate::domain::payment::{Payment, PaymentStatus};
use crate::domain::subsidy::Subsidy;
use crate::storage::{self, Entry, EntryKind, TerritoryView};

// ---------------------------------------------------------------------------------------
// Published.

pub fn subsidy_facts(s: &Subsidy) -> pb::SubsidyFacts {
    pb::SubsidyFacts {
        subsidy_id: s.id.clone(),
        plan_id: s.plan_id.clone(),
        territory_id: s.territory_id.clone(),
        territory_name: s.territory_name.clone(),
        region_code: s.region_code.clone(),
        plan_year: i32::from(s.plan_year),
        amendment_number: s.amendment_number,
        requested_cents: s.requested_cents,
        status: subsidy_status_to_pb(s.status) as i32,
        budget_year: s.budget_year,
        granted_cents: s.granted_cents,
        paid_cents: s.paid_cents,
        version: s.version,
    }
}

fn subsidy_event(
    s: &Subsidy,
    suffix: &str,
    event_type: &'static str,
    message: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        "subsidy",
        s.id.clone(),
        suffix,
        event_type,
        message,
    )
}

pub fn requested(s: &Subsidy, at: DateTime<Utc>) -> NewEvent {
    subsidy_event(
        s,
        subjects::SUBSIDY_REQUESTED,
        "tde.subsidies.v1.SubsidyRequested",
        &pb::SubsidyRequested {
            subsidy: Some(subsidy_facts(s)),
            submission_number: s.submission_number,
            request_time: Some(timestamp(at)),
        },
    )
}

pub fn decided(s: &Subsidy, advance_cents: i64) -> NewEvent {
    let decision = s.decision.as_ref();
    subsidy_event(
        s,
        subjects::SUBSIDY_DECIDED,
        "tde.subsidies.v1.SubsidyDecided",
        &pb::SubsidyDecided {
            subsidy: Some(subsidy_facts(s)),
            advance_cents,
            legal_act_reference: decision
                .and_then(|d| d.legal_act.as_ref())
                .map(|a| a.reference.clone())
                .unwrap_or_default(),
            refusal_reason: decision
                .map(|d| d.refusal_reason.clone())
                .unwrap_or_default(),
            decide_time: decision.map(|d| timestamp(d.decided_at)),
            actor: decision.map(|d| d.decided_by.clone()).unwrap_or_default(),
        },
    )
}

pub fn committed(s: &Subsidy, envelope_id: &str, amount: i64, at: DateTime<Utc>) -> NewEvent {
    subsidy_event(
        s,
        subjects::SUBSIDY_COMMITTED,
        "tde.subsidies.v1.SubsidyCommitted",
        &pb::SubsidyCommitted {
            subsidy: Some(subsidy_facts(s)),
            envelope_id: envelope_id.to_string(),
            amount_cents: amount,
            commitment_number: s
                .decision
                .as_ref()
                .map(|d| d.commitment_number.clone())
                .unwrap_or_default(),
            commit_time: Some(timestamp(at)),
        },
    )
}

pub fn clawback_ordered(
    s: &Subsidy,
    amount: i64,
    reason: &str,
    reference: &str,
    actor: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    subsidy_event(
        s,
        subjects::CLAWBACK_ORDERED,
        "tde.subsidies.v1.ClawbackOrdered",
        &pb::ClawbackOrdered {
            subsidy: Some(subsidy_facts(s)),
            amount_cents: amount,
            reason: reason.to_string(),
            reference: reference.to_string(),
            order_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

fn payment_facts(p: &Payment, s: &Subsidy) -> pb::PaymentFacts {
    pb::PaymentFacts {
        payment_id: p.id.clone(),
        subsidy_id: p.subsidy_id.clone(),
        plan_id: s.plan_id.clone(),
        territory_id: p.territory_id.clone(),
        plan_year: i32::from(s.plan_year),
        kind: payment_kind_to_pb(p.kind) as i32,
        amount_cents: p.amount_cents,
        status: payment_status_to_pb(p.status) as i32,
        reference: p.reference.clone(),
        version: p.version,
    }
}

fn payment_event(
    p: &Payment,
    suffix: &str,
    event_type: &'static str,
    message: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        "payment",
        p.id.clone(),
        suffix,
        event_type,
        message,
    )
}

pub fn payment_scheduled(p: &Payment, s: &Subsidy, at: DateTime<Utc>) -> NewEvent {
    payment_event(
        p,
        subjects::PAYMENT_SCHEDULED,
        "tde.subsidies.v1.PaymentScheduled",
        &pb::PaymentScheduled {
            payment: Some(payment_facts(p, s)),
            schedule_time: Some(timestamp(at)),
        },
    )
}

pub fn payment_paid(p: &Payment, s: &Subsidy, at: DateTime<Utc>) -> NewEvent {
    payment_event(
        p,
        subjects::PAYMENT_PAID,
        "tde.subsidies.v1.PaymentPaid",
        &pb::PaymentPaid {
            payment: Some(payment_facts(p, s)),
            paid_on: p.paid_on.map(|d| d.to_string()).unwrap_or_default(),
            remaining_cents: s.remaining_cents(),
            record_time: Some(timestamp(at)),
        },
    )
}

pub fn payment_failed(p: &Payment, s: &Subsidy, at: DateTime<Utc>) -> NewEvent {
    payment_event(
        p,
        subjects::PAYMENT_FAILED,
        "tde.subsidies.v1.PaymentFailed",
        &pb::PaymentFailed {
            payment: Some(payment_facts(p, s)),
            failure_reason: p.failure_reason.clone(),
            record_time: Some(timestamp(at)),
        },
    )
}

// ---------------------------------------------------------------------------------------
// Money moves shared by the API and the consumers.

/// Decommits `amount` of `s` (already checked and applied to `s` by the domain): the ledger
/// entry, and the envelope (and its national one) gets it back.
pub async fn record_decommitment(
    txn: &DatabaseTransaction,
    s: &Subsidy,
    amount: i64,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), sea_orm::DbErr> {
    let Some(envelope_id) = &s.envelope_id else {
        return Err(sea_orm::DbErr::Custom(format!(
            "granted subsidy {} has no envelope",
            s.id
        )));
    };
    let envelope = storage::find_envelope(txn, envelope_id, false)
        .await?
        .ok_or_else(|| sea_orm::DbErr::Custom(format!("envelope {envelope_id} is gone")))?;
    // The envelopes first, then the ledger (and its totals): the lock order of every change.
    storage::release(txn, &envelope, amount, now).await?;
    storage::append(
        txn,
        &Entry::about(s, EntryKind::Decommitment, amount, "", reason, actor, now),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Consumed: plans.

/// Who the consumers' changes are made by, in histories and the ledger.
const CONSUMER_ACTOR: &str = "tde-subsidies";

/// The consumer of the plans events (stream `TDE_PLANS`), through the inbox.
pub struct PlanEvents;

fn date(field: &str, raw: &str) -> Result<NaiveDate, HandlerError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|e| HandlerError::Permanent(anyhow::anyhow!("{field} {raw:?} is not a date: {e}")))
}

fn plan_year(raw: i32) -> Option<u8> {
    u8::try_from(raw).ok().filter(|y| (1..=3).contains(y))
}

#[async_trait]
impl EventHandler for PlanEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &BusEnvelope,
    ) -> Result<(), HandlerError> {
        let now = tde_runtime::api::now();
        match event.event_type.as_str() {
            "tde.plans.v1.PlanYearSubmitted" => {
                let e = plans_pb::PlanYearSubmitted::decode(event.payload.clone())?;
                year_submitted(txn, &e, now).await
            }
            "tde.plans.v1.ReviewRecorded" => {
                let e = plans_pb::ReviewRecorded::decode(event.payload.clone())?;
                let Some(year) = plan_year(e.year).filter(|_| !e.r#final) else {
                    return Ok(());
                };
                review_recorded(txn, &e.plan_id, year, now).await
            }
            "tde.plans.v1.PlanStatusChanged" => {
                let e = plans_pb::PlanStatusChanged::decode(event.payload.clone())?;
                // An older status event never overrides a newer one.
                if !read_model::advance(txn, "plans", &format!("{}/status", e.plan_id), event)
                    .await?
                {
                    return Ok(());
                }
                let stopped = e.to_status == plans_pb::PlanStatus::Stopped as i32;
                storage::save_plan(txn, &e.plan_id, &e.territory_id, stopped, event.time).await?;
                if stopped {
                    plan_stopped(txn, &e.plan_id, &e.reason, now).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Writes a subsidy a consumer changed, if it is still at version `expected`. Its row was read
/// locked in this transaction, so another version means a writer that did not take the lock:
/// the event fails, to be retried on the new version, rather than its change being lost.
async fn save_subsidy(
    txn: &DatabaseTransaction,
    s: &Subsidy,
    expected: i64,
) -> Result<(), HandlerError> {
    if storage::update_subsidy(txn, s, expected).await? {
        Ok(())
    } else {
        Err(changed_meanwhile("subsidy", &s.id, expected))
    }
}

fn changed_meanwhile(what: &str, id: &str, expected: i64) -> HandlerError {
    HandlerError::Transient(anyhow::anyhow!(
        "{what} {id} is no longer at version {expected}: changed while the event was applied"
    ))
}

/// A plan year's programme was submitted (or amended): opens its request, updates the request
/// not yet decided, or opens an amendment request (avenant) for what a decided year now
/// asks more.
async fn year_submitted(
    txn: &DatabaseTransaction,
    e: &plans_pb::PlanYearSubmitted,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let Some(year) = plan_year(e.year) else {
        return Err(HandlerError::Permanent(anyhow::anyhow!(
            "plan year {} is not 1 to 3",
            e.year
        )));
    };
    if e.budget_cents < 0 {
        return Err(HandlerError::Permanent(anyhow::anyhow!(
            "negative budget {}",
            e.budget_cents
        )));
    }
    let Some(territory) = storage::find_territory(txn, &e.territory_id).await? else {
        // Its registration has not reached this service yet: try again later.
        return Err(HandlerError::Transient(anyhow::anyhow!(
            "territory {} is not known yet",
            e.territory_id
        )));
    };
    let span = (
        date("year_start_date", &e.year_start_date)?,
        date("year_end_date", &e.year_end_date)?,
    );
    let stopped = storage::plan_stopped(txn, &e.plan_id).await?;
    if !stopped {
        storage::save_plan(txn, &e.plan_id, &e.territory_id, false, now).await?;
    }
    let mut existing = storage::subsidies_of_plan(txn, &e.plan_id, Some(i16::from(year))).await?;
    // An older (or the same) submission never overrides what a newer one set.
    if existing
        .iter()
        .any(|s| s.submission_number >= e.submission_number)
    {
        return Ok(());
    }
    let mut events = Vec::new();
    // What decided requests asked and were answered for: a new submission asks the rest.
    let decided: i64 = existing
        .iter()
        .filter(|s| s.status.is_granted())
        .map(|s| s.requested_cents)
        .sum();
    let asked = e.budget_cents - decided;
    if let Some(open) = existing.iter_mut().find(|s| s.status.is_open()) {
        let expected = open.version;
        // Newer than every submission (checked above), so it changes the request.
        let changed = if asked > 0 {
            open.update_request(asked, e.submission_number, now)
        } else {
            // Nothing more is asked beyond what was decided.
            open.close_request(e.submission_number, now)
        };
        if changed {
            save_subsidy(txn, open, expected).await?;
            events.push(requested(open, now));
        }
    } else {
        if let Some(last) = existing.last_mut() {
            // Remember the submission, so that its redelivery changes nothing.
            let expected = last.version;
            if last.note_submission(e.submission_number, now) {
                save_subsidy(txn, last, expected).await?;
            }
        }
        if asked > 0 && !stopped {
            let amendment_number = existing
                .iter()
                .map(|s| s.amendment_number + 1)
                .max()
                .unwrap_or(0);
            let mut s = Subsidy::request(
                uuid::Uuid::now_v7().to_string(),
                e.plan_id.clone(),
                year,
                amendment_number,
                (&territory.id, &territory.name, &territory.region_code),
                span,
                e.submission_number,
                asked,
                now,
            );
            s.reviewed = storage::is_reviewed(txn, &e.plan_id, i16::from(year)).await?;
            storage::insert_subsidy(txn, &s).await?;
            tracing::info!(subsidy_id = %s.id, plan_id = %s.plan_id, year, amendment_number, "subsidy requested");
            events.push(requested(&s, now));
        }
    }
    if !stopped {
        decommit_beyond_budget(txn, &mut existing, e, now).await?;
    }
    outbox::enqueue(txn, events).await?;
    Ok(())
}

/// A programme amended below what was granted for its year: the State funds a year's
/// programme at 100%, not more, so what is committed beyond the new budget and not yet paid
/// (nor on its way) is decommitted, the latest decision first. What was already paid beyond
/// it stays, for a clawback the programme team may order.
async fn decommit_beyond_budget(
    txn: &DatabaseTransaction,
    subsidies: &mut [Subsidy],
    e: &plans_pb::PlanYearSubmitted,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let committed: i64 = subsidies
        .iter()
        .filter(|s| s.status.is_granted())
        .map(|s| s.committed_cents())
        .sum();
    let mut excess = committed - e.budget_cents;
    if excess <= 0 {
        return Ok(());
    }
    let reason = format!(
        "programme réduit à {} (soumission {})",
        tde_runtime::format::euros(e.budget_cents),
        e.submission_number
    );
    for s in subsidies.iter_mut().rev().filter(|s| s.status.is_granted()) {
        if excess <= 0 {
            break;
        }
        let payments = storage::payments_of_subsidy(txn, &s.id).await?;
        let in_flight = crate::domain::payment::Tranches::of(&payments).in_flight;
        let amount = excess.min(s.remaining_cents() - in_flight);
        if amount <= 0 {
            continue;
        }
        let expected = s.version;
        s.decommit(amount, in_flight, now)
            .map_err(|err| HandlerError::Permanent(err.into()))?;
        record_decommitment(txn, s, amount, &reason, CONSUMER_ACTOR, now).await?;
        save_subsidy(txn, s, expected).await?;
        tracing::info!(subsidy_id = %s.id, amount, "programme reduced: excess decommitted");
        excess -= amount;
    }
    if excess > 0 {
        tracing::warn!(
            plan_id = %e.plan_id,
            year = e.year,
            excess,
            "programme reduced below what was paid: a clawback may be ordered"
        );
    }
    Ok(())
}

/// The year's review is recorded: its balance may be paid.
async fn review_recorded(
    txn: &DatabaseTransaction,
    plan_id: &str,
    year: u8,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if !storage::record_review(txn, plan_id, i16::from(year), now).await? {
        return Ok(());
    }
    for mut s in storage::subsidies_of_plan(txn, plan_id, Some(i16::from(year))).await? {
        let expected = s.version;
        if s.mark_reviewed(now) {
            save_subsidy(txn, &s, expected).await?;
        }
    }
    Ok(())
}

/// The plan stopped: undecided requests close, payments not yet sent are cancelled, and what
/// will not be paid is decommitted (it returns to the envelope). What was paid stays; a
/// clawback can be ordered for it.
pub async fn plan_stopped(
    txn: &DatabaseTransaction,
    plan_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let reason = if reason.trim().is_empty() {
        "plan arrêté".to_string()
    } else {
        format!("plan arrêté : {}", reason.trim())
    };
    for mut s in storage::subsidies_of_plan(txn, plan_id, None).await? {
        let expected = s.version;
        if !s.stop(now) {
            continue;
        }
        if s.status.is_granted() {
            let mut in_flight = 0;
            for mut p in storage::payments_of_subsidy(txn, &s.id).await? {
                let before = p.version;
                if p.cancel(now) {
                    if !storage::update_payment(txn, &p, before).await? {
                        return Err(changed_meanwhile("payment", &p.id, before));
                    }
                } else if p.status == PaymentStatus::Sent {
                    // Already with the paying system: it may still be paid.
                    in_flight += p.amount_cents;
                }
            }
            let unpaid = s
                .decommit_unpaid(in_flight, now)
                .map_err(|err| HandlerError::Permanent(err.into()))?;
            if unpaid > 0 {
                record_decommitment(txn, &s, unpaid, &reason, CONSUMER_ACTOR, now).await?;
                tracing::info!(subsidy_id = %s.id, unpaid, "plan stopped: unpaid remainder decommitted");
            }
        }
        save_subsidy(txn, &s, expected).await?;
    }
    // The stop's audit-free effects commit with the inbox record; nothing to publish: the
    // plans service already told everyone the plan stopped.
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Consumed: territories.

/// The consumer of the territory events (stream `TDE_TERRITORIES`), through the inbox: the
/// copy of what subsidies needs of each territory.
pub struct TerritoryEvents;

/// The read model these events keep (its positions in `read_model_positions`).
const TERRITORIES: &str = "territories";

#[async_trait]
impl EventHandler for TerritoryEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &BusEnvelope,
    ) -> Result<(), HandlerError> {
        let read = facts::read(&event.event_type, &event.payload);
        let mut facts = match read.map_err(|e| HandlerError::Permanent(e.into()))? {
            TerritoryEvent::Facts(facts) => facts,
            // No person's data is kept here: nothing to erase.
            TerritoryEvent::PersonalDataErased { .. } | TerritoryEvent::Other => return Ok(()),
        };
        // Only the parts this copy keeps.
        facts.time_zone = None;
        facts.stage = None;
        facts.roster = None;
        let newer =
            read_model::newer_parts(txn, TERRITORIES, &facts.territory_id, &facts.parts(), event)
                .await?;
        facts.keep_only(&newer);
        if facts.is_empty() {
            return Ok(());
        }
        let mut view = match storage::find_territory(txn, &facts.territory_id).await? {
            Some(view) => view,
            None if facts.location.is_some() => TerritoryView {
                id: facts.territory_id.clone(),
                name: String::new(),
                kind: String::new(),
                official_code: String::new(),
                region_code: String::new(),
                updated_at: event.time,
            },
            None => {
                return Err(HandlerError::Transient(anyhow::anyhow!(
                    "territory {} is not known yet",
                    facts.territory_id
                )));
            }
        };
        if let Some(name) = facts.name {
            view.name = name;
        }
        if let Some(location) = facts.location {
            view.kind = location.kind;
            view.official_code = location.official_code;
            view.region_code = location.region_code;
        }
        view.updated_at = view.updated_at.max(event.time);
        storage::save_territory(txn, &view).await?;
        Ok(())
    }
}
