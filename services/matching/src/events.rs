//! What the matching service publishes (through its outbox) on `tde.matching.<aggregate>.<event>`,
//! and what it consumes: the action events of the plans service, which keep its read model of
//! needs and the providers' loads.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use prost::Message as _;
use sea_orm::DatabaseTransaction;

use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::subjects;
use tde_proto::plans::v1 as plans_pb;
use tde_runtime::api::timestamp;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::outbox::NewEvent;
use tde_runtime::read_model;

use crate::SERVICE;
use crate::domain::need::{Need, NeedKind};
use crate::domain::proposal::Proposal;
use crate::storage::{self, AssignmentRecord};

fn proposal_event(
    p: &Proposal,
    suffix: &str,
    event_type: &'static str,
    m: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(SERVICE, "proposal", p.id.clone(), suffix, event_type, m)
}

/// `contact_email`: the provider's contact, where notifications sends the proposal.
pub fn proposal_sent(
    p: &Proposal,
    need: &Need,
    provider_name: &str,
    contact_email: &str,
) -> NewEvent {
    proposal_event(
        p,
        subjects::PROPOSAL_SENT,
        "tde.matching.v1.ProposalSent",
        &pb::ProposalSent {
            proposal_id: p.id.clone(),
            need_id: need.id.clone(),
            provider_id: p.provider_id.clone(),
            provider_name: provider_name.to_string(),
            territory_id: need.territory_id.clone(),
            territory_name: need.territory_name.clone(),
            action_title: need.title.clone(),
            planned_start: need.planned_start.to_string(),
            planned_end: need.planned_end.to_string(),
            deadline: Some(timestamp(p.deadline)),
            contact_email: contact_email.to_string(),
            budget_cents: need.budget_cents,
        },
    )
}

pub fn proposal_declined(p: &Proposal) -> NewEvent {
    proposal_event(
        p,
        subjects::PROPOSAL_DECLINED,
        "tde.matching.v1.ProposalDeclined",
        &pb::ProposalDeclined {
            proposal_id: p.id.clone(),
            need_id: p.need_id.clone(),
            provider_id: p.provider_id.clone(),
            reason: p.decline_reason.clone(),
            decline_time: p.answered_at.map(timestamp),
        },
    )
}

pub fn proposal_expired(p: &Proposal) -> NewEvent {
    proposal_event(
        p,
        subjects::PROPOSAL_EXPIRED,
        "tde.matching.v1.ProposalExpired",
        &pb::ProposalExpired {
            proposal_id: p.id.clone(),
            need_id: p.need_id.clone(),
            provider_id: p.provider_id.clone(),
            deadline: Some(timestamp(p.deadline)),
        },
    )
}

pub fn proposal_superseded(
    p: &Proposal,
    action_provider_id: Option<&str>,
    at: DateTime<Utc>,
) -> NewEvent {
    proposal_event(
        p,
        subjects::PROPOSAL_SUPERSEDED,
        "tde.matching.v1.ProposalSuperseded",
        &pb::ProposalSuperseded {
            proposal_id: p.id.clone(),
            need_id: p.need_id.clone(),
            provider_id: p.provider_id.clone(),
            action_provider_id: action_provider_id.unwrap_or_default().to_string(),
            supersede_time: Some(timestamp(at)),
        },
    )
}

pub fn assignment_accepted(p: &Proposal) -> NewEvent {
    // Keyed by the action: the plans service applies acceptances of one action in order.
    NewEvent::new(
        SERVICE,
        "assignment",
        p.need_id.clone(),
        subjects::ASSIGNMENT_ACCEPTED,
        "tde.matching.v1.AssignmentAccepted",
        &pb::AssignmentAccepted {
            proposal_id: p.id.clone(),
            need_id: p.need_id.clone(),
            provider_id: p.provider_id.clone(),
            territory_id: p.territory_id.clone(),
            accept_time: p.answered_at.map(timestamp),
        },
    )
}

/// The consumer of the plans events (stream `TDE_PLANS`): the action events feed the needs.
pub struct PlansEvents;

/// The read model the action events keep (positions in `read_model_positions`).
const NEEDS: &str = "needs";

fn status_name(raw: i32) -> Option<&'static str> {
    match plans_pb::ActionStatus::try_from(raw).ok()? {
        plans_pb::ActionStatus::Planned => Some("planned"),
        plans_pb::ActionStatus::InProgress => Some("in_progress"),
        plans_pb::ActionStatus::Done => Some("done"),
        plans_pb::ActionStatus::Cancelled => Some("cancelled"),
        plans_pb::ActionStatus::Unspecified => None,
    }
}

fn kind_of(raw: i32) -> Option<NeedKind> {
    match plans_pb::ActionKind::try_from(raw).ok()? {
        plans_pb::ActionKind::Training => Some(NeedKind::Training),
        plans_pb::ActionKind::ChangeManagement => Some(NeedKind::ChangeManagement),
        plans_pb::ActionKind::EngagementProject => Some(NeedKind::EngagementProject),
        plans_pb::ActionKind::FieldSupport => Some(NeedKind::FieldSupport),
        plans_pb::ActionKind::Unspecified => None,
    }
}

/// The need an action's facts describe; `None` when they are unreadable.
pub fn need_of(f: &plans_pb::ActionFacts) -> Result<Need, String> {
    let date = |field: &str, s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("{field} {s:?}: {e}"))
    };
    Ok(Need {
        id: f.action_id.clone(),
        plan_id: f.plan_id.clone(),
        territory_id: f.territory_id.clone(),
        territory_name: f.territory_name.clone(),
        departement_code: f.departement_code.clone(),
        region_code: f.region_code.clone(),
        year: u8::try_from(f.year).map_err(|e| format!("year: {e}"))?,
        kind: kind_of(f.kind).ok_or_else(|| format!("unknown kind {}", f.kind))?,
        title: f.title.clone(),
        skills: f
            .skills
            .iter()
            .filter_map(|s| crate::api::convert::skill_name(*s))
            .collect(),
        planned_start: date("planned_start", &f.planned_start)?,
        planned_end: date("planned_end", &f.planned_end)?,
        budget_cents: f.budget_cents,
        status: status_name(f.status)
            .ok_or_else(|| format!("unknown status {}", f.status))?
            .to_string(),
        provider_id: (!f.provider_id.is_empty()).then(|| f.provider_id.clone()),
        version: f.version,
        plan_open: true,
    })
}

fn facts_of(event: &Envelope) -> Result<Option<plans_pb::ActionFacts>, HandlerError> {
    let facts = match event.event_type.as_str() {
        "tde.plans.v1.ActionCreated" => {
            plans_pb::ActionCreated::decode(event.payload.clone())?.action
        }
        "tde.plans.v1.ActionUpdated" => {
            plans_pb::ActionUpdated::decode(event.payload.clone())?.action
        }
        "tde.plans.v1.ActionStatusChanged" => {
            plans_pb::ActionStatusChanged::decode(event.payload.clone())?.action
        }
        "tde.plans.v1.ProviderAssigned" => {
            plans_pb::ProviderAssigned::decode(event.payload.clone())?.action
        }
        _ => return Ok(None),
    };
    facts.map(Some).ok_or_else(|| {
        HandlerError::Permanent(anyhow::anyhow!("{} without its action", event.event_type))
    })
}

#[async_trait]
impl EventHandler for PlansEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if event.event_type == "tde.plans.v1.PlanStatusChanged" {
            return plan_status_changed(txn, event).await;
        }
        let Some(facts) = facts_of(event)? else {
            return Ok(());
        };
        let mut need = need_of(&facts).map_err(|e| HandlerError::Permanent(anyhow::anyhow!(e)))?;
        // An older event never overwrites what a newer one set: by event time (the read
        // model's positions), and by the action's own version.
        let newer = read_model::newer_parts(txn, NEEDS, &need.id, &["action"], event).await?;
        if newer.is_empty() {
            return Ok(());
        }
        if let Some(stored) = storage::find_need(txn, &need.id).await? {
            if stored.version >= need.version {
                return Ok(());
            }
            // Action events do not carry the plan's status: a closed plan stays closed.
            need.plan_open = stored.plan_open;
        }
        let provider_event = event.event_type == "tde.plans.v1.ProviderAssigned";
        apply_need(txn, &need, event.time, provider_event).await
    }
}

/// A completed or stopped plan closes its needs, and withdraws their pending proposals.
async fn plan_status_changed(
    txn: &DatabaseTransaction,
    event: &Envelope,
) -> Result<(), HandlerError> {
    let e = plans_pb::PlanStatusChanged::decode(event.payload.clone())?;
    let closed = [
        plans_pb::PlanStatus::Completed as i32,
        plans_pb::PlanStatus::Stopped as i32,
    ];
    if !closed.contains(&e.to_status) {
        return Ok(());
    }
    for mut need in storage::needs_of_plan(txn, &e.plan_id).await? {
        if need.plan_open {
            need.plan_open = false;
            apply_need(txn, &need, event.time, false).await?;
        }
    }
    Ok(())
}

/// The plan's provider of `need` is no longer `replaced`, whose acceptance made it: the
/// project lead set another one (or none) by hand, and the plan keeps the lead's choice
/// (plans never lets an acceptance overwrite it). The acceptance is marked superseded, with
/// its event, rather than left looking in force.
async fn supersede_acceptance(
    txn: &DatabaseTransaction,
    need: &Need,
    replaced: &str,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    let mut events = Vec::new();
    for mut p in storage::accepted_of_need(txn, &need.id, replaced).await? {
        let expected = p.version;
        if p.supersede() && storage::update_proposal(txn, &p, expected).await? {
            tracing::warn!(
                proposal_id = %p.id,
                need_id = %need.id,
                accepted_provider_id = %p.provider_id,
                action_provider_id = need.provider_id.as_deref().unwrap_or(""),
                "accepted proposal superseded by a provider set by hand in the plan"
            );
            events.push(proposal_superseded(&p, need.provider_id.as_deref(), now));
        }
    }
    tde_runtime::outbox::enqueue(txn, events).await?;
    Ok(())
}

/// Stores the need and keeps the provider's assignment in step with it. Only a change of the
/// action's provider (`provider_event`) removes an assignment: other action events carry the
/// plan's provider as it was, and may be published before plans applies an acceptance that
/// matching already recorded.
pub async fn apply_need(
    txn: &DatabaseTransaction,
    need: &Need,
    at: DateTime<Utc>,
    provider_event: bool,
) -> Result<(), HandlerError> {
    let now = tde_runtime::api::now();
    storage::save_need(txn, need, now).await?;
    let existing = storage::find_assignment(txn, &need.id).await?;
    match (&need.provider_id, existing) {
        (Some(provider), Some(mut a)) => {
            // The same provider (our own acceptance coming back), or another one set by hand.
            if a.provider_id != *provider {
                supersede_acceptance(txn, need, &a.provider_id, now).await?;
                a.provider_id = provider.clone();
                a.accepted_at = at;
                a.rating = None;
                a.rating_comment = String::new();
                a.rated_by = None;
            }
            a.planned_start = need.planned_start;
            a.planned_end = need.planned_end;
            a.finished = need.is_finished();
            storage::save_assignment(txn, &a).await?;
        }
        (Some(provider), None) => {
            // Assigned by hand (AssignProvider): it counts in the provider's load too.
            storage::save_assignment(txn, &AssignmentRecord::new(need, provider, at)).await?;
        }
        (None, Some(a)) if provider_event && !a.finished => {
            // The provider was removed from the action: its capacity is free again.
            supersede_acceptance(txn, need, &a.provider_id, now).await?;
            storage::delete_assignment(txn, &need.id).await?;
        }
        (None, _) => {}
    }
    // A need that found its provider or closed no longer waits for answers.
    if !need.is_open() {
        for mut p in storage::pending_of_need(txn, &need.id).await? {
            let expected = p.version;
            if p.withdraw(now) {
                storage::update_proposal(txn, &p, expected).await?;
            }
        }
    }
    Ok(())
}
