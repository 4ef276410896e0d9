//! The events the territories service publishes (through its outbox) on
//! `tde.territories.territory.<event>`, and its consumer of the plans events: a signed
//! charter moves the territory to charter_signed.

use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::subjects;
use tde_runtime::api::timestamp;
use tde_runtime::outbox::NewEvent;

use crate::SERVICE;
use crate::api::convert::{
    diagnostic_to_pb, issue_to_pb, kind_to_pb, person_to_pb, resolution_to_pb, stage_to_pb,
    steering_body_to_pb, territory_to_pb, zone_to_pb,
};
use crate::domain::recoding::Resolution;
use crate::domain::territory::{Stage, Territory};

const AGGREGATE: &str = "territory";

fn event(
    t: &Territory,
    suffix: &str,
    event_type: &'static str,
    message: &impl prost::Message,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        AGGREGATE,
        t.id.clone(),
        suffix,
        event_type,
        message,
    )
}

pub fn registered(t: &Territory) -> NewEvent {
    event(
        t,
        subjects::TERRITORY_REGISTERED,
        "tde.territories.v1.TerritoryRegistered",
        &pb::TerritoryRegistered {
            territory: Some(territory_to_pb(t)),
        },
    )
}

/// After `move_to`: the last history entry is the change.
pub fn stage_changed(t: &Territory, from: Stage) -> NewEvent {
    let change = t.stage_history.last();
    event(
        t,
        subjects::TERRITORY_STAGE_CHANGED,
        "tde.territories.v1.TerritoryStageChanged",
        &pb::TerritoryStageChanged {
            territory_id: t.id.clone(),
            territory_name: t.name.clone(),
            kind: kind_to_pb(t.kind) as i32,
            time_zone: t.time_zone.clone(),
            from_stage: stage_to_pb(from) as i32,
            to_stage: stage_to_pb(t.stage) as i32,
            change_time: change.map(|c| timestamp(c.at)),
            actor: change.map(|c| c.actor.clone()).unwrap_or_default(),
        },
    )
}

pub fn withdrawn(t: &Territory, from: Stage) -> NewEvent {
    let change = t.stage_history.last();
    event(
        t,
        subjects::TERRITORY_WITHDRAWN,
        "tde.territories.v1.TerritoryWithdrawn",
        &pb::TerritoryWithdrawn {
            territory_id: t.id.clone(),
            from_stage: stage_to_pb(from) as i32,
            reason: change.map(|c| c.reason.clone()).unwrap_or_default(),
            change_time: change.map(|c| timestamp(c.at)),
            actor: change.map(|c| c.actor.clone()).unwrap_or_default(),
        },
    )
}

/// After `recode`: the last code change, and the facts of the new authority.
pub fn code_changed(t: &Territory) -> NewEvent {
    let change = t.code_history.last();
    event(
        t,
        subjects::TERRITORY_CODE_CHANGED,
        "tde.territories.v1.TerritoryCodeChanged",
        &pb::TerritoryCodeChanged {
            territory_id: t.id.clone(),
            kind: kind_to_pb(t.kind) as i32,
            old_code: change.map(|c| c.old_code.clone()).unwrap_or_default(),
            new_code: t.official_code.clone(),
            vintage: change.map(|c| c.vintage.clone()).unwrap_or_default(),
            territory_name: t.name.clone(),
            old_name: change.map(|c| c.old_name.clone()).unwrap_or_default(),
            population: t.population,
            departement_code: t.departement_code.clone(),
            region_code: t.region_code.clone(),
            zone: zone_to_pb(t.zone) as i32,
            time_zone: t.time_zone.clone(),
            epci_siren: t.epci_siren.clone().unwrap_or_default(),
        },
    )
}

/// After `refresh`: what a new vintage says of the territory's authority, same code.
pub fn geography_updated(t: &Territory, old_name: &str, vintage: &str) -> NewEvent {
    event(
        t,
        subjects::TERRITORY_GEOGRAPHY_UPDATED,
        "tde.territories.v1.TerritoryGeographyUpdated",
        &pb::TerritoryGeographyUpdated {
            territory_id: t.id.clone(),
            kind: kind_to_pb(t.kind) as i32,
            official_code: t.official_code.clone(),
            vintage: vintage.to_string(),
            territory_name: t.name.clone(),
            old_name: old_name.to_string(),
            population: t.population,
            departement_code: t.departement_code.clone(),
            region_code: t.region_code.clone(),
            zone: zone_to_pb(t.zone) as i32,
            time_zone: t.time_zone.clone(),
            epci_siren: t.epci_siren.clone().unwrap_or_default(),
        },
    )
}

/// After `raise`: the territory's geography issue.
pub fn merge_conflict(t: &Territory) -> NewEvent {
    event(
        t,
        subjects::TERRITORY_MERGE_CONFLICT,
        "tde.territories.v1.TerritoryMergeConflict",
        &pb::TerritoryMergeConflict {
            territory_id: t.id.clone(),
            territory_name: t.name.clone(),
            kind: kind_to_pb(t.kind) as i32,
            official_code: t.official_code.clone(),
            issue: t.geography_issue.as_ref().map(issue_to_pb),
        },
    )
}

/// The issue of `t` is settled: by `resolution` of the programme team, or (None) by a vintage
/// after which it no longer holds.
pub fn merge_conflict_resolved(
    t: &Territory,
    resolution: Option<Resolution>,
    survivor_id: &str,
    reason: &str,
    actor: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> NewEvent {
    event(
        t,
        subjects::TERRITORY_MERGE_CONFLICT_RESOLVED,
        "tde.territories.v1.TerritoryMergeConflictResolved",
        &pb::TerritoryMergeConflictResolved {
            territory_id: t.id.clone(),
            resolution: resolution_to_pb(resolution) as i32,
            surviving_territory_id: survivor_id.to_string(),
            official_code: t.official_code.clone(),
            reason: reason.to_string(),
            resolve_time: Some(timestamp(at)),
            actor: actor.to_string(),
        },
    )
}

pub fn diagnostic_recorded(t: &Territory) -> NewEvent {
    event(
        t,
        subjects::DIAGNOSTIC_RECORDED,
        "tde.territories.v1.DiagnosticRecorded",
        &pb::DiagnosticRecorded {
            territory_id: t.id.clone(),
            diagnostic: t.diagnostic.as_ref().map(diagnostic_to_pb),
        },
    )
}

/// The whole roster and the time zone: notifications keeps its recipients from this alone.
/// A person as the roster's readers need them (invitations): name, address, role. Phone
/// numbers stay in this service: no consumer needs them, and every copy is one more to erase.
fn recipient_to_pb(p: &crate::domain::contact::Person) -> pb::Person {
    let mut person = person_to_pb(p);
    person.phone.clear();
    person
}

pub fn steering_body_changed(t: &Territory) -> NewEvent {
    event(
        t,
        subjects::STEERING_BODY_CHANGED,
        "tde.territories.v1.SteeringBodyChanged",
        &pb::SteeringBodyChanged {
            territory_id: t.id.clone(),
            territory_name: t.name.clone(),
            time_zone: t.time_zone.clone(),
            steering_body: t.steering_body.as_ref().map(|b| {
                let mut body = steering_body_to_pb(b);
                body.members.iter_mut().for_each(|m| m.phone.clear());
                body
            }),
            privileged_contact: t.privileged_contact.as_ref().map(recipient_to_pb),
            operational_team: t.operational_team.iter().map(recipient_to_pb).collect(),
        },
    )
}

/// A person's data was erased from `territory_ids` (see `PersonalDataErased`).
pub fn personal_data_erased(
    email_sha256: String,
    territory_ids: Vec<String>,
    at: chrono::DateTime<chrono::Utc>,
) -> NewEvent {
    NewEvent::new(
        SERVICE,
        "person",
        email_sha256.clone(),
        subjects::PERSONAL_DATA_ERASED,
        "tde.territories.v1.PersonalDataErased",
        &pb::PersonalDataErased {
            email_sha256,
            territory_ids,
            erase_time: Some(timestamp(at)),
        },
    )
}

/// The consumer of the plans events (stream `TDE_PLANS`), through the inbox.
pub struct PlanEvents {
    cache: crate::api::territories::TerritoryCache,
}

impl PlanEvents {
    pub fn new(cache: crate::api::territories::TerritoryCache) -> Self {
        Self { cache }
    }
}

/// The actor of the moves the plans events cause, in stage histories.
pub const PLANS_ACTOR: &str = "tde-plans";

#[async_trait::async_trait]
impl tde_runtime::inbox::EventHandler for PlanEvents {
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &tde_runtime::bus::Envelope,
    ) -> Result<(), tde_runtime::inbox::HandlerError> {
        use tde_runtime::inbox::HandlerError;
        if event.event_type != "tde.plans.v1.CharterSigned" {
            return Ok(());
        }
        let signed =
            <tde_proto::plans::v1::CharterSigned as prost::Message>::decode(event.payload.clone())?;
        let Some(mut territory) =
            crate::storage::find_for_update(txn, &signed.territory_id).await?
        else {
            // Plans are created only for registered territories: this one cannot exist.
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "charter signed for unknown territory {}",
                signed.territory_id
            )));
        };
        let expected = territory.version;
        let reason = format!(
            "charte d'accompagnement signée (version {}, le {})",
            signed.charter_version, signed.signed_on
        );
        let steps = territory.record_charter_signed(PLANS_ACTOR, &reason, tde_runtime::api::now());
        if steps.is_empty() {
            tracing::info!(territory_id = %territory.id, stage = %territory.stage, "charter signed: territory already past that stage");
            return Ok(());
        }
        // Each step is published as the API publishes it; the history keeps every step, the
        // event of step n names the stage it left and the one it reached.
        let mut events = Vec::new();
        let final_stage = territory.stage;
        for (i, from) in steps.iter().enumerate() {
            let mut step = territory.clone();
            step.stage = steps.get(i + 1).copied().unwrap_or(final_stage);
            step.stage_history
                .truncate(territory.stage_history.len() - (steps.len() - 1 - i));
            events.push(stage_changed(&step, *from));
        }
        if !crate::storage::update(txn, &territory, expected).await? {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "territory {} changed concurrently",
                territory.id
            )));
        }
        tde_runtime::outbox::enqueue(txn, events).await?;
        tracing::info!(territory_id = %territory.id, "charter signed: territory at stage charter_signed");
        Ok(())
    }

    async fn committed(&self, event: &tde_runtime::bus::Envelope) {
        // The aggregate of CharterSigned is the plan: evict by territory, decoded again.
        if event.event_type == "tde.plans.v1.CharterSigned"
            && let Ok(signed) = <tde_proto::plans::v1::CharterSigned as prost::Message>::decode(
                event.payload.clone(),
            )
        {
            self.cache.evict(&signed.territory_id);
        }
    }
}

/// The right to erasure on this service's own stream: the roster events published before an
/// erasure name the person, and the stream keeps every event. On `personal_data.erased`, the
/// `steering_body_changed` events naming the person are erased from the stream (the newer
/// roster, published with the erasure, stays). Through the inbox, so that an unreachable bus
/// only delays it.
pub struct RosterErasure {
    ctx: tde_runtime::ServiceContext,
}

impl RosterErasure {
    pub fn new(ctx: &tde_runtime::ServiceContext) -> Self {
        Self { ctx: ctx.clone() }
    }
}

/// Whether a `steering_body_changed` payload names the person with fingerprint `sha256`.
fn roster_names(payload: &[u8], sha256: &str) -> bool {
    let Ok(roster) = <pb::SteeringBodyChanged as prost::Message>::decode(payload) else {
        return false;
    };
    roster
        .privileged_contact
        .iter()
        .chain(&roster.operational_team)
        .chain(roster.steering_body.iter().flat_map(|b| &b.members))
        .any(|p| tde_runtime::personal_data::fingerprint(&p.email) == sha256)
}

#[async_trait::async_trait]
impl tde_runtime::inbox::EventHandler for RosterErasure {
    async fn handle(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        event: &tde_runtime::bus::Envelope,
    ) -> Result<(), tde_runtime::inbox::HandlerError> {
        use tde_runtime::inbox::HandlerError;
        if event.event_type != "tde.territories.v1.PersonalDataErased" {
            return Ok(());
        }
        let erased = <pb::PersonalDataErased as prost::Message>::decode(event.payload.clone())?;
        let sha256 = erased.email_sha256;
        if !tde_runtime::personal_data::is_fingerprint(&sha256) {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "erasure event without a valid fingerprint"
            )));
        }
        let names = move |payload: &[u8]| roster_names(payload, &sha256);
        tde_runtime::holdings::erase_published(
            &self.ctx,
            txn,
            subjects::STEERING_BODY_CHANGED,
            "tde.territories.v1.SteeringBodyChanged",
            &names,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::contact::{MAX_MEMBERS, MAX_NAME, Person, SteeringBody};
    use crate::domain::territory::{AuthorityFacts, AuthorityKind, MAX_TEAM, Zone};

    /// The largest text a bounded field takes: `chars` four-byte characters.
    fn widest(chars: usize) -> String {
        "𝔐".repeat(chars)
    }

    fn widest_person(i: usize) -> Person {
        // The longest address the parser takes: 64 + @ + a long domain (≤ 254 in all).
        let label = "d".repeat(60);
        let email = format!("{:a<64}@{label}.{label}.{label}.fr", i);
        Person::new(
            &widest(MAX_NAME),
            &email,
            "+33 6 98 76 54 32",
            &widest(MAX_NAME),
        )
        .expect("a valid person")
    }

    #[test]
    fn the_largest_roster_fits_in_one_event() {
        let facts = AuthorityFacts {
            name: widest(MAX_NAME),
            population: 1,
            departement_code: "42".into(),
            region_code: "84".into(),
            zone: Zone::Metro,
            epci_siren: None,
        };
        let mut t = Territory::register(
            uuid::Uuid::now_v7().to_string(),
            AuthorityKind::Commune,
            "42218".into(),
            facts,
            "test",
            chrono::Utc::now(),
        );
        t.privileged_contact = Some(widest_person(0));
        t.operational_team = (0..MAX_TEAM).map(widest_person).collect();
        t.steering_body = Some(
            SteeringBody::new(
                &widest(MAX_NAME),
                false,
                (0..MAX_MEMBERS).map(|i| Ok(widest_person(i))).collect(),
            )
            .expect("a valid steering body"),
        );
        let event = steering_body_changed(&t);
        assert!(
            !String::from_utf8_lossy(&event.payload).contains("+33698765432"),
            "phone numbers stay out of the roster's event"
        );
        assert!(
            event.payload.len() <= tde_runtime::bus::MAX_EVENT_PAYLOAD,
            "{} bytes",
            event.payload.len()
        );
    }
}
