//! What the plans service publishes (through its outbox) on `tde.plans.<aggregate>.<event>`,
//! and what it consumes: the territory events, which feed its read model of territories,
//! stop the plan of a withdrawn territory and erase personal data on request.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseTransaction;

use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::subjects;
use tde_proto::territories::v1::facts::{self, TerritoryEvent};
use tde_runtime::api::timestamp;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::read_model;

use crate::SERVICE;
use crate::api::convert::{action_status_to_pb, kind_to_pb, plan_status_to_pb, skill_to_pb};
use crate::domain::action::Submission;
use crate::domain::action::{Action, ActionStatus};
use crate::domain::meeting::{MeetingStatus, SteeringMeeting};
use crate::domain::plan::{Plan, PlanStatus};
use crate::domain::review::ReviewScope;
use crate::storage::{self, ActionRecord, LOCAL_FORMAT, TerritoryView};

fn plan_event(
    plan: &Plan,
    suffix: &str,
    event_type: &'static str,
    message: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        "plan",
        plan.id.clone(),
        suffix,
        event_type,
        message,
    )
}

pub fn charter_signed(plan: &Plan, actor: &str, at: DateTime<Utc>) -> NewEvent {
    let current = plan.charter.current();
    plan_event(
        plan,
        subjects::CHARTER_SIGNED,
        "tde.plans.v1.CharterSigned",
        &pb::CharterSigned {
            plan_id: plan.id.clone(),
            territory_id: plan.territory_id.clone(),
            charter_version: current.map_or(0, |v| v.number as i32),
            content_sha256: current
                .map(|v| v.content_sha256.clone())
                .unwrap_or_default(),
            signed_on: current
                .and_then(|v| v.signatories.iter().filter_map(|s| s.signed_on).max())
                .map(|d| d.to_string())
                .unwrap_or_default(),
            plan_start_date: plan.start_date.to_string(),
            sign_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn status_changed(plan: &Plan, from: PlanStatus, actor: &str, at: DateTime<Utc>) -> NewEvent {
    plan_event(
        plan,
        subjects::PLAN_STATUS_CHANGED,
        "tde.plans.v1.PlanStatusChanged",
        &pb::PlanStatusChanged {
            plan_id: plan.id.clone(),
            territory_id: plan.territory_id.clone(),
            from_status: plan_status_to_pb(from) as i32,
            to_status: plan_status_to_pb(plan.status) as i32,
            reason: plan.status_reason.clone(),
            change_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn year_submitted<'a>(
    plan: &Plan,
    year: u8,
    submission: &Submission,
    actions: impl IntoIterator<Item = &'a Action>,
    actor: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    let (start, end) = plan
        .year(year)
        .map(|(s, e)| (s.to_string(), e.to_string()))
        .unwrap_or_default();
    plan_event(
        plan,
        subjects::PLAN_YEAR_SUBMITTED,
        "tde.plans.v1.PlanYearSubmitted",
        &pb::PlanYearSubmitted {
            plan_id: plan.id.clone(),
            territory_id: plan.territory_id.clone(),
            year: i32::from(year),
            year_start_date: start,
            year_end_date: end,
            submission_number: submission.number as i32,
            amendment: submission.number > 1,
            budget_cents: submission.budget_cents,
            actions: actions
                .into_iter()
                .filter(|a| a.counts())
                .map(|a| pb::SubmittedAction {
                    action_id: a.id.clone(),
                    kind: kind_to_pb(a.kind) as i32,
                    title: a.title.clone(),
                    planned_start: a.planned_start.to_string(),
                    planned_end: a.planned_end.to_string(),
                    budget_cents: a.budget_cents,
                })
                .collect(),
            fingerprint: submission.fingerprint.clone(),
            submit_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn review_recorded(plan: &Plan, scope: ReviewScope, at: DateTime<Utc>) -> NewEvent {
    let indicators = plan
        .review(scope)
        .map_or(0, |r| r.review.indicators.len() as i32);
    plan_event(
        plan,
        subjects::REVIEW_RECORDED,
        "tde.plans.v1.ReviewRecorded",
        &pb::ReviewRecorded {
            plan_id: plan.id.clone(),
            territory_id: plan.territory_id.clone(),
            year: match scope {
                ReviewScope::Year(y) => i32::from(y),
                ReviewScope::Final => 0,
            },
            r#final: scope == ReviewScope::Final,
            indicators,
            record_time: Some(timestamp(at)),
        },
    )
}

/// What matching needs of an action (its read model of needs): the territory's département
/// comes from this service's copy of the territories.
pub async fn action_facts(
    txn: &DatabaseTransaction,
    plan: &Plan,
    r: &ActionRecord,
) -> Result<pb::ActionFacts, sea_orm::DbErr> {
    let departement_code = storage::find_territory(txn, &plan.territory_id)
        .await?
        .map(|t| t.departement_code)
        .unwrap_or_default();
    let a = &r.action;
    Ok(pb::ActionFacts {
        action_id: a.id.clone(),
        plan_id: r.plan_id.clone(),
        territory_id: r.territory_id.clone(),
        territory_name: plan.territory_name.clone(),
        departement_code,
        region_code: r.region_code.clone(),
        year: i32::from(a.year),
        kind: kind_to_pb(a.kind) as i32,
        title: a.title.clone(),
        // The numbers of plans' Skill are those of tde.common.v1.Skill.
        skills: a.skills.iter().map(|s| skill_to_pb(s)).collect(),
        planned_start: a.planned_start.to_string(),
        planned_end: a.planned_end.to_string(),
        budget_cents: a.budget_cents,
        status: action_status_to_pb(a.status) as i32,
        provider_id: a.provider_id.clone().unwrap_or_default(),
        version: r.version,
    })
}

fn action_event(
    facts: &pb::ActionFacts,
    suffix: &str,
    event_type: &'static str,
    message: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        "action",
        facts.action_id.clone(),
        suffix,
        event_type,
        message,
    )
}

pub fn action_created(action: pb::ActionFacts, actor: &str, at: DateTime<Utc>) -> NewEvent {
    let facts = action.clone();
    action_event(
        &facts,
        subjects::ACTION_CREATED,
        "tde.plans.v1.ActionCreated",
        &pb::ActionCreated {
            action: Some(action),
            create_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn action_updated(action: pb::ActionFacts, actor: &str, at: DateTime<Utc>) -> NewEvent {
    let facts = action.clone();
    action_event(
        &facts,
        subjects::ACTION_UPDATED,
        "tde.plans.v1.ActionUpdated",
        &pb::ActionUpdated {
            action: Some(action),
            update_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn action_status_changed(
    action: pb::ActionFacts,
    from: ActionStatus,
    actor: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    let facts = action.clone();
    action_event(
        &facts,
        subjects::ACTION_STATUS_CHANGED,
        "tde.plans.v1.ActionStatusChanged",
        &pb::ActionStatusChanged {
            action: Some(action),
            from_status: action_status_to_pb(from) as i32,
            change_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn provider_assigned(
    action: pb::ActionFacts,
    previous: Option<&str>,
    actor: &str,
    at: DateTime<Utc>,
) -> NewEvent {
    let facts = action.clone();
    action_event(
        &facts,
        subjects::ACTION_PROVIDER_ASSIGNED,
        "tde.plans.v1.ProviderAssigned",
        &pb::ProviderAssigned {
            action: Some(action),
            previous_provider_id: previous.unwrap_or_default().to_string(),
            assign_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

fn facts(m: &SteeringMeeting, territory_name: &str) -> pb::MeetingFacts {
    pb::MeetingFacts {
        meeting_id: m.id.clone(),
        sequence: m.sequence as i32,
        plan_id: m.plan_id.clone(),
        territory_id: m.territory_id.clone(),
        territory_name: territory_name.to_string(),
        time_zone: m.time.start.zone.name().to_string(),
        start_local: m.time.start.local.format(LOCAL_FORMAT).to_string(),
        end_local: m.time.end.local.format(LOCAL_FORMAT).to_string(),
        start_time: Some(timestamp(m.time.start.utc)),
        end_time: Some(timestamp(m.time.end.utc)),
        place: m.venue.place.clone(),
        video_link: m.venue.video_link.clone(),
        agenda: m.agenda.clone(),
    }
}

fn meeting_event(
    m: &SteeringMeeting,
    suffix: &str,
    event_type: &'static str,
    message: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        "meeting",
        m.id.clone(),
        suffix,
        event_type,
        message,
    )
}

pub fn meeting_scheduled(m: &SteeringMeeting, territory_name: &str) -> NewEvent {
    meeting_event(
        m,
        subjects::MEETING_SCHEDULED,
        "tde.plans.v1.SteeringMeetingScheduled",
        &pb::SteeringMeetingScheduled {
            meeting: Some(facts(m, territory_name)),
        },
    )
}

pub fn meeting_rescheduled(
    m: &SteeringMeeting,
    territory_name: &str,
    previous_start: DateTime<Utc>,
) -> NewEvent {
    meeting_event(
        m,
        subjects::MEETING_RESCHEDULED,
        "tde.plans.v1.SteeringMeetingRescheduled",
        &pb::SteeringMeetingRescheduled {
            meeting: Some(facts(m, territory_name)),
            previous_start_time: Some(timestamp(previous_start)),
        },
    )
}

pub fn meeting_cancelled(m: &SteeringMeeting, territory_name: &str) -> NewEvent {
    meeting_event(
        m,
        subjects::MEETING_CANCELLED,
        "tde.plans.v1.SteeringMeetingCancelled",
        &pb::SteeringMeetingCancelled {
            meeting: Some(facts(m, territory_name)),
            reason: m.cancel_reason.clone(),
        },
    )
}

pub fn meeting_held(m: &SteeringMeeting, territory_name: &str) -> NewEvent {
    meeting_event(
        m,
        subjects::MEETING_HELD,
        "tde.plans.v1.SteeringMeetingHeld",
        &pb::SteeringMeetingHeld {
            meeting: Some(facts(m, territory_name)),
            decisions: m.decisions.clone(),
        },
    )
}

/// Stops `plan` (locked by the caller's transaction) and cancels its coming meetings, with
/// their events; used by StopPlan and when the territory is withdrawn.
pub async fn stop_plan(
    txn: &DatabaseTransaction,
    plan: &mut Plan,
    reason: &str,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Vec<NewEvent>, StopError> {
    let from = plan.stop(reason, now)?;
    let mut events = vec![status_changed(plan, from, actor, now)];
    for mut record in storage::meetings_of_plan(txn, &plan.id).await? {
        if record.meeting.status != MeetingStatus::Scheduled || record.meeting.time.start.utc < now
        {
            continue;
        }
        let expected = record.version;
        record
            .meeting
            .cancel(&format!("Plan arrêté : {}", plan.status_reason))?;
        record.touch(now);
        if !storage::update_meeting(txn, &record, expected).await? {
            return Err(StopError::Db(sea_orm::DbErr::Custom(format!(
                "steering meeting {} changed during the stop",
                record.meeting.id
            ))));
        }
        events.push(meeting_cancelled(&record.meeting, &plan.territory_name));
    }
    Ok(events)
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error(transparent)]
    Domain(#[from] crate::domain::DomainError),
    #[error(transparent)]
    Db(#[from] sea_orm::DbErr),
}

impl From<StopError> for tde_runtime::ApiError {
    fn from(e: StopError) -> Self {
        match e {
            StopError::Domain(d) => d.into(),
            StopError::Db(d) => d.into(),
        }
    }
}

/// The consumer of the territory events (stream `TDE_TERRITORIES`), through the inbox.
pub struct TerritoryEvents;

const STOPPED_BY: &str = "tde-plans";

/// Keeps the plan's copy of the territory's name.
async fn rename_plan(
    txn: &DatabaseTransaction,
    view: &TerritoryView,
    now: DateTime<Utc>,
) -> Result<(), HandlerError> {
    if let Some(mut plan) = storage::find_plan_of_territory(txn, &view.id, true).await?
        && plan.territory_name != view.name
    {
        let expected = plan.version;
        plan.territory_name = view.name.clone();
        plan.version += 1;
        plan.updated_at = now;
        storage::update_plan(txn, &plan, expected).await?;
    }
    Ok(())
}

/// The read model these events keep (its positions in `read_model_positions`).
const TERRITORIES: &str = "territories";

#[async_trait]
impl EventHandler for TerritoryEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let now = tde_runtime::api::now();
        let read = facts::read(&event.event_type, &event.payload);
        let mut facts = match read.map_err(|e| HandlerError::Permanent(e.into()))? {
            TerritoryEvent::Facts(facts) => facts,
            TerritoryEvent::PersonalDataErased { email_sha256 } => {
                // Signatories need not be contacts of the territories named: every plan
                // naming the person is looked up.
                crate::api::personal_data::erase_signatories(txn, &email_sha256, now, |_| true)
                    .await?;
                return Ok(());
            }
            TerritoryEvent::Other => return Ok(()),
        };
        // An older event never overwrites what a newer one set.
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
                stage: String::new(),
                time_zone: String::new(),
                region_code: String::new(),
                departement_code: String::new(),
                updated_at: event.time,
            },
            None => {
                // Its registration has not been processed yet: try again later.
                return Err(HandlerError::Transient(anyhow::anyhow!(
                    "territory {} is not known yet",
                    facts.territory_id
                )));
            }
        };
        let renamed = facts.name.as_ref().is_some_and(|n| *n != view.name);
        if let Some(name) = facts.name {
            view.name = name;
        }
        if let Some(zone) = facts.time_zone {
            view.time_zone = zone;
        }
        if let Some(location) = facts.location {
            view.kind = location.kind;
            view.region_code = location.region_code;
            view.departement_code = location.departement_code;
        }
        let withdrawn = (facts.stage.as_deref() == Some("withdrawn")).then(|| {
            let reason = facts.stage_reason.trim();
            if reason.is_empty() {
                "territoire retiré du programme".to_string()
            } else {
                format!("territoire retiré du programme : {reason}")
            }
        });
        if let Some(stage) = facts.stage {
            view.stage = stage;
        }
        view.updated_at = view.updated_at.max(event.time);
        storage::save_territory(txn, &view).await?;
        if renamed {
            rename_plan(txn, &view, now).await?;
        }
        if let Some(reason) = withdrawn {
            self.stop_plan_of_withdrawn(txn, &view.id, &reason, now)
                .await?;
        }
        Ok(())
    }
}

impl TerritoryEvents {
    /// A withdrawn territory stops its plan (and the plan's coming meetings).
    async fn stop_plan_of_withdrawn(
        &self,
        txn: &DatabaseTransaction,
        territory_id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), HandlerError> {
        if let Some(mut plan) = storage::find_plan_of_territory(txn, territory_id, true).await?
            && !plan.status.is_final()
        {
            let expected = plan.version;
            let events = stop_plan(txn, &mut plan, reason, STOPPED_BY, now)
                .await
                .map_err(|e| HandlerError::Transient(e.into()))?;
            storage::update_plan(txn, &plan, expected).await?;
            outbox::enqueue(txn, events).await?;
            tracing::info!(plan_id = %plan.id, territory_id = %plan.territory_id, "plan stopped: its territory was withdrawn");
        }
        Ok(())
    }
}

#[cfg(test)]
mod payload_bounds {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::action::{ActionKind, ActionStatus, MAX_ACTIONS_PER_YEAR, submit};

    #[test]
    fn the_largest_year_programme_fits_in_one_event() {
        let now = Utc::now();
        let day = |m, d| NaiveDate::from_ymd_opt(2027, m, d).expect("a date");
        let plan = Plan::new(
            uuid::Uuid::now_v7().to_string(),
            uuid::Uuid::now_v7().to_string(),
            "𝔐".repeat(200),
            "84".into(),
            &"𝔐".repeat(200),
            day(1, 1),
            now,
        )
        .expect("a plan");
        // Every action at the longest title the API takes, in four-byte characters.
        let actions: Vec<Action> = (0..MAX_ACTIONS_PER_YEAR)
            .map(|_| Action {
                id: uuid::Uuid::now_v7().to_string(),
                year: 1,
                kind: ActionKind::Training,
                title: "𝔐".repeat(200),
                description: String::new(),
                audiences: Default::default(),
                skills: Default::default(),
                planned_start: day(1, 10),
                planned_end: day(2, 10),
                budget_cents: crate::domain::action::MAX_ACTION_BUDGET_CENTS,
                status: ActionStatus::Planned,
                provider_id: None,
            })
            .collect();
        let submission = submit(None, &actions).expect("submitted");
        let event = year_submitted(&plan, 1, &submission, &actions, &"𝔐".repeat(200), now);
        assert!(
            event.payload.len() <= tde_runtime::bus::MAX_EVENT_PAYLOAD,
            "{} bytes",
            event.payload.len()
        );
    }
}
