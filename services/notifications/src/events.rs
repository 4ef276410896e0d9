//! What the notifications service consumes, through its inbox: the territory events (its
//! territories and their rosters: recipients) and the plans events (steering meetings).
//! Each event plans the notifications it calls for, in the same transaction as its inbox
//! record; the dispatcher sends them when due.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sea_orm::DatabaseTransaction;

use tde_proto::plans::v1 as plans_pb;
use tde_proto::territories::v1 as territories_pb;
use tde_runtime::api::from_timestamp;
use tde_runtime::bus::Envelope;
use tde_runtime::config::NotificationSettings;
use tde_runtime::inbox::{EventHandler, HandlerError};

use crate::delivery::dispatcher::{Waker, reminder_time};
use crate::domain::Kind;
use crate::domain::recipient::{Recipient, RosterEntry, roster};
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

impl TerritoryEvents {
    async fn roster_changed(
        &self,
        txn: &DatabaseTransaction,
        e: territories_pb::SteeringBodyChanged,
    ) -> Result<(), HandlerError> {
        storage::save_territory(txn, &e.territory_id, &e.territory_name, &e.time_zone).await?;
        let mut entries = Vec::new();
        if let Some(p) = &e.privileged_contact {
            entries.push(RosterEntry {
                name: &p.name,
                email: &p.email,
                role: "privileged_contact",
            });
        }
        for p in &e.operational_team {
            entries.push(RosterEntry {
                name: &p.name,
                email: &p.email,
                role: "operational_team",
            });
        }
        if let Some(body) = &e.steering_body {
            for p in &body.members {
                entries.push(RosterEntry {
                    name: &p.name,
                    email: &p.email,
                    role: "steering_body",
                });
            }
        }
        let wanted = roster(entries);
        let current = storage::recipients_of(txn, &e.territory_id).await?;
        // Those who left: nothing more is sent to them.
        for r in &current {
            if !wanted
                .iter()
                .any(|w| w.email.trim().eq_ignore_ascii_case(&r.email))
            {
                storage::drop_pending(txn, Pending::Recipient(&e.territory_id, &r.email)).await?;
                storage::delete_recipient(txn, &e.territory_id, &r.email).await?;
            }
        }
        // Those who stay keep their preferences; those who join are invited to what comes.
        let mut joined = Vec::new();
        for w in &wanted {
            let fresh = Recipient::new(&e.territory_id, w);
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
                storage::meetings_of_territory(txn, &e.territory_id, Utc::now(), false).await?
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
        match event.event_type.as_str() {
            "tde.territories.v1.TerritoryRegistered" => {
                let e: territories_pb::TerritoryRegistered = decode(event)?;
                if let Some(t) = e.territory {
                    storage::save_territory(txn, &t.id, &t.name, &t.time_zone).await?;
                    storage::set_region(txn, &t.id, &t.region_code).await?;
                }
            }
            "tde.territories.v1.SteeringBodyChanged" => {
                self.roster_changed(txn, decode(event)?).await?;
            }
            "tde.territories.v1.PersonalDataErased" => {
                let e: territories_pb::PersonalDataErased = decode(event)?;
                for r in storage::recipients_by_fingerprint(txn, &e.email_sha256).await? {
                    storage::drop_pending(txn, Pending::Recipient(&r.territory_id, &r.email))
                        .await?;
                    storage::delete_recipient(txn, &r.territory_id, &r.email).await?;
                }
                storage::redact(txn, &e.email_sha256).await?;
            }
            _ => {}
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
