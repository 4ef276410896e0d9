//! What the notifications service consumes, through its inbox: the territory events (its
//! territories and their rosters: recipients) and the plans events (steering meetings).
//! Each event plans the notifications it calls for, in the same transaction as its inbox
//! record; the dispatcher sends them when due.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::DatabaseTransaction;

use crate::settings::NotificationSettings;
use tde_proto::plans::v1 as plans_pb;
use tde_proto::territories::v1::facts::{self, Roster, TerritoryEvent};
use tde_runtime::api::from_timestamp;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::personal_data::normalize_email;
use tde_runtime::read_model;

use crate::delivery::dispatcher::{Waker, reminder_time};
use crate::domain::Kind;
use crate::domain::recipient::{self as roster, Recipient, RosterEntry};
use crate::domain::schedule::{Meeting, plan, reminders};
use crate::storage::{self, Pending};

/// What planning needs: the settings, the Message-ID domain, and the dispatcher to wake.
#[derive(Clone)]
pub struct Planner {
    pub settings: Arc<NotificationSettings>,
    pub domain: String,
    pub waker: Waker,
}

fn decode<M: prost::Message + Default>(event: &Envelope) -> Result<M, HandlerError> {
    Ok(M::decode(event.payload.clone())?)
}

fn permanent(message: impl Into<String>) -> HandlerError {
    HandlerError::Permanent(anyhow::anyhow!(message.into()))
}

const LOCAL: &str = "%Y-%m-%dT%H:%M";

/// The domain's meeting from the facts an event carries.
pub fn meeting_from(f: &plans_pb::MeetingFacts) -> Result<Meeting, HandlerError> {
    let local = |raw: &str| {
        NaiveDateTime::parse_from_str(raw, LOCAL)
            .map_err(|e| permanent(format!("meeting {}: local time {raw:?}: {e}", f.meeting_id)))
    };
    let instant = |t: &Option<prost_types::Timestamp>| -> Result<DateTime<Utc>, HandlerError> {
        t.as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| permanent(format!("meeting {}: missing time", f.meeting_id)))
    };
    Ok(Meeting {
        id: f.meeting_id.clone(),
        sequence: u32::try_from(f.sequence).map_err(|_| permanent("negative sequence"))?,
        plan_id: f.plan_id.clone(),
        territory_id: f.territory_id.clone(),
        territory_name: f.territory_name.clone(),
        zone: f
            .time_zone
            .parse()
            .map_err(|_| permanent(format!("unknown time zone {:?}", f.time_zone)))?,
        start_local: local(&f.start_local)?,
        end_local: local(&f.end_local)?,
        start: instant(&f.start_time)?,
        end: instant(&f.end_time)?,
        place: f.place.clone(),
        video_link: f.video_link.clone(),
        agenda: f.agenda.clone(),
        cancelled: false,
        cancel_reason: String::new(),
    })
}

impl Planner {
    /// Plans `first` and the reminders of `meeting` for `recipients`.
    pub async fn plan_for(
        &self,
        txn: &DatabaseTransaction,
        meeting: &Meeting,
        first: Kind,
        recipients: &[Recipient],
    ) -> Result<u64, HandlerError> {
        let territory = storage::find_territory(txn, &meeting.territory_id).await?;
        let at = reminder_time(&self.settings, territory.and_then(|t| t.reminder_minutes));
        let planned = plan(
            meeting,
            first,
            recipients,
            &self.settings.reminder_days,
            at,
            Utc::now(),
        );
        Ok(storage::insert_planned(txn, meeting, &planned, recipients, &self.domain).await?)
    }

    /// Re-plans the reminders of a territory's coming meetings (its reminder time changed).
    pub async fn replan_reminders(
        &self,
        txn: &DatabaseTransaction,
        territory_id: &str,
    ) -> Result<(), HandlerError> {
        let recipients = storage::recipients_of(txn, territory_id).await?;
        let territory = storage::find_territory(txn, territory_id).await?;
        let at = reminder_time(&self.settings, territory.and_then(|t| t.reminder_minutes));
        for stored in storage::meetings_of_territory(txn, territory_id, Utc::now(), false).await? {
            let m = &stored.meeting;
            storage::forget_unsent_reminders(txn, &m.id, m.sequence).await?;
            let planned = reminders(m, &recipients, &self.settings.reminder_days, at, Utc::now());
            storage::insert_planned(txn, m, &planned, &recipients, &self.domain).await?;
        }
        Ok(())
    }
}

/// The consumer of the territory events.
pub struct TerritoryEvents(pub Planner);

/// The consumer of the plans events.
pub struct PlanEvents(pub Planner);

/// The read model the territory events keep (its positions in `read_model_positions`).
const TERRITORIES: &str = "territories";

impl TerritoryEvents {
    /// The territory's people changed: who left gets nothing more, who stays keeps their
    /// preferences, who joined is invited to what comes.
    async fn roster_changed(
        &self,
        txn: &DatabaseTransaction,
        territory_id: &str,
        roster: &Roster,
    ) -> Result<(), HandlerError> {
        let mut entries = Vec::new();
        if let Some(p) = &roster.privileged_contact {
            entries.push(RosterEntry {
                name: &p.name,
                email: &p.email,
                role: "privileged_contact",
            });
        }
        for p in &roster.operational_team {
            entries.push(RosterEntry {
                name: &p.name,
                email: &p.email,
                role: "operational_team",
            });
        }
        if let Some(body) = &roster.steering_body {
            for p in &body.members {
                entries.push(RosterEntry {
                    name: &p.name,
                    email: &p.email,
                    role: "steering_body",
                });
            }
        }
        let wanted = roster::roster(entries);
        let current = storage::recipients_of(txn, territory_id).await?;
        for r in &current {
            if !wanted.iter().any(|w| normalize_email(w.email) == r.email) {
                storage::drop_pending(txn, Pending::Recipient(territory_id, &r.email)).await?;
                storage::delete_recipient(txn, territory_id, &r.email).await?;
            }
        }
        let mut joined = Vec::new();
        for w in &wanted {
            let fresh = Recipient::new(territory_id, w);
            match current.iter().find(|r| r.email == fresh.email) {
                Some(existing) => {
                    if existing.name != fresh.name || existing.role != fresh.role {
                        let mut updated = existing.clone();
                        updated.name = fresh.name.clone();
                        updated.role = fresh.role.clone();
                        storage::update_recipient(txn, &updated).await?;
                    }
                }
                None => {
                    storage::insert_recipient(txn, &fresh).await?;
                    joined.push(fresh);
                }
            }
        }
        if !joined.is_empty() {
            for stored in
                storage::meetings_of_territory(txn, territory_id, Utc::now(), false).await?
            {
                let first = if stored.meeting.sequence == 0 {
                    Kind::Invitation
                } else {
                    Kind::Update
                };
                self.0
                    .plan_for(txn, &stored.meeting, first, &joined)
                    .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventHandler for TerritoryEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let read = facts::read(&event.event_type, &event.payload);
        let mut facts = match read.map_err(|e| HandlerError::Permanent(e.into()))? {
            TerritoryEvent::Facts(facts) => facts,
            TerritoryEvent::PersonalDataErased { email_sha256 } => {
                if !tde_runtime::personal_data::is_fingerprint(&email_sha256) {
                    return Err(permanent("erasure event without a valid fingerprint"));
                }
                storage::erase_person(txn, &email_sha256, None).await?;
                return Ok(());
            }
            TerritoryEvent::Other => return Ok(()),
        };
        // An older event never overwrites what a newer one set: a redelivered roster does
        // not bring back who left.
        let newer =
            read_model::newer_parts(txn, TERRITORIES, &facts.territory_id, &facts.parts(), event)
                .await?;
        facts.keep_only(&newer);
        if facts.name.is_some() || facts.time_zone.is_some() || facts.location.is_some() {
            storage::update_territory(
                txn,
                &facts.territory_id,
                facts.name.as_deref(),
                facts.time_zone.as_deref(),
                facts.location.as_ref().map(|l| l.region_code.as_str()),
            )
            .await?;
        }
        if let Some(roster) = &facts.roster {
            self.roster_changed(txn, &facts.territory_id, roster)
                .await?;
        }
        Ok(())
    }

    async fn committed(&self, _event: &Envelope) {
        self.0.waker.wake();
    }
}

#[async_trait]
impl EventHandler for PlanEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let (facts, first, status, reason) = match event.event_type.as_str() {
            "tde.plans.v1.SteeringMeetingScheduled" => {
                let e: plans_pb::SteeringMeetingScheduled = decode(event)?;
                (e.meeting, Kind::Invitation, "scheduled", String::new())
            }
            "tde.plans.v1.SteeringMeetingRescheduled" => {
                let e: plans_pb::SteeringMeetingRescheduled = decode(event)?;
                (e.meeting, Kind::Update, "scheduled", String::new())
            }
            "tde.plans.v1.SteeringMeetingCancelled" => {
                let e: plans_pb::SteeringMeetingCancelled = decode(event)?;
                (e.meeting, Kind::Cancellation, "cancelled", e.reason)
            }
            "tde.plans.v1.SteeringMeetingHeld" => {
                let e: plans_pb::SteeringMeetingHeld = decode(event)?;
                let facts = e.meeting.ok_or_else(|| permanent("held without meeting"))?;
                storage::drop_pending(txn, Pending::Reminders(&facts.meeting_id)).await?;
                if let Some(stored) =
                    storage::find_meeting_for_update(txn, &facts.meeting_id).await?
                {
                    storage::save_meeting(txn, &stored.meeting, "held").await?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        let facts = facts.ok_or_else(|| permanent("meeting event without meeting"))?;
        let mut meeting = meeting_from(&facts)?;
        meeting.cancelled = status == "cancelled";
        meeting.cancel_reason = reason;
        if let Some(stored) = storage::find_meeting_for_update(txn, &meeting.id).await?
            && (stored.meeting.sequence > meeting.sequence
                || (stored.meeting.sequence == meeting.sequence && stored.status != "scheduled"))
        {
            // A later version is known already: this one is stale.
            return Ok(());
        }
        storage::save_territory_if_new(
            txn,
            &meeting.territory_id,
            &meeting.territory_name,
            meeting.zone.name(),
        )
        .await?;
        storage::save_meeting(txn, &meeting, status).await?;
        // What was planned for earlier versions is replaced.
        if first == Kind::Cancellation {
            storage::drop_pending(txn, Pending::Meeting(&meeting.id)).await?;
        } else {
            storage::drop_pending(txn, Pending::BeforeSequence(&meeting.id, meeting.sequence))
                .await?;
        }
        let recipients = storage::recipients_of(txn, &meeting.territory_id).await?;
        self.0.plan_for(txn, &meeting, first, &recipients).await?;
        Ok(())
    }

    async fn committed(&self, _event: &Envelope) {
        self.0.waker.wake();
    }
}
