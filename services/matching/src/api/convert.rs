//! Conversions between the protobuf messages and the domain types.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use tde_proto::common::v1::Skill;
use tde_proto::matching::v1 as pb;
use tde_runtime::api::timestamp;
use tde_runtime::{ApiError, Violations};

use crate::domain::need::{Need, NeedKind};
use crate::domain::proposal::{Proposal, ProposalStatus};
use crate::domain::provider::{Area, ProviderStatus};
use crate::domain::ranking::ProviderStats;
use crate::storage::{AssignmentRecord, ProviderRecord};

/// A skill's stored name: the proto value without prefix, lowercase (`facilitation`), as the
/// plans service stores it.
pub fn skill_name(raw: i32) -> Option<String> {
    match Skill::try_from(raw) {
        Ok(Skill::Unspecified) | Err(_) => None,
        Ok(s) => s
            .as_str_name()
            .strip_prefix("SKILL_")
            .map(str::to_ascii_lowercase),
    }
}

pub fn skill_to_pb(name: &str) -> i32 {
    Skill::from_str_name(&format!("SKILL_{}", name.to_ascii_uppercase()))
        .unwrap_or(Skill::Unspecified) as i32
}

pub fn skills_from_pb(field: &str, raw: &[i32], v: &mut Violations) -> BTreeSet<String> {
    if raw.len() > 30 {
        v.add(field, "at most 30 skills");
    }
    let mut skills = BTreeSet::new();
    for (i, s) in raw.iter().enumerate() {
        match skill_name(*s) {
            Some(name) => {
                skills.insert(name);
            }
            None => v.add(format!("{field}[{i}]"), "is not a skill of the list"),
        }
    }
    skills
}

pub fn date_from_pb(field: &str, s: &str, v: &mut Violations) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            v.add(field, "must be a date such as 2027-03-15");
            None
        }
    }
}

pub fn areas_from_pb(field: &str, raw: &[pb::Area], v: &mut Violations) -> BTreeSet<Area> {
    let mut areas = BTreeSet::new();
    for (i, a) in raw.iter().enumerate() {
        match &a.area {
            Some(pb::area::Area::DepartementCode(c)) => {
                areas.insert(Area::Departement(c.trim().to_ascii_uppercase()));
            }
            Some(pb::area::Area::RegionCode(c)) => {
                areas.insert(Area::Region(c.trim().to_string()));
            }
            Some(pb::area::Area::National(true)) => {
                areas.insert(Area::National);
            }
            _ => v.add(
                format!("{field}[{i}]"),
                "a département, a région or national",
            ),
        }
    }
    areas
}

pub fn area_to_pb(a: &Area) -> pb::Area {
    pb::Area {
        area: Some(match a {
            Area::Departement(c) => pb::area::Area::DepartementCode(c.clone()),
            Area::Region(c) => pb::area::Area::RegionCode(c.clone()),
            Area::National => pb::area::Area::National(true),
        }),
    }
}

pub fn provider_status_from_pb(raw: i32) -> Option<ProviderStatus> {
    match pb::ProviderStatus::try_from(raw).ok()? {
        pb::ProviderStatus::Active => Some(ProviderStatus::Active),
        pb::ProviderStatus::Suspended => Some(ProviderStatus::Suspended),
        pb::ProviderStatus::Deactivated => Some(ProviderStatus::Deactivated),
        pb::ProviderStatus::Unspecified => None,
    }
}

pub fn provider_status_to_pb(s: ProviderStatus) -> pb::ProviderStatus {
    match s {
        ProviderStatus::Active => pb::ProviderStatus::Active,
        ProviderStatus::Suspended => pb::ProviderStatus::Suspended,
        ProviderStatus::Deactivated => pb::ProviderStatus::Deactivated,
    }
}

/// `with_contact`: the caller holds `contacts:read` (the contact is personal data).
pub fn provider_to_pb(
    r: &ProviderRecord,
    stats: &ProviderStats,
    with_contact: bool,
) -> pb::Provider {
    let p = &r.provider;
    pb::Provider {
        id: p.id.clone(),
        siret: p.siret.as_str().to_string(),
        name: p.name.clone(),
        naf_code: p.naf_code.clone(),
        qualiopi_expiry_date: p.qualiopi_expiry.map(|d| d.to_string()).unwrap_or_default(),
        skills: p.skills.iter().map(|s| skill_to_pb(s)).collect(),
        areas: p.areas.iter().map(area_to_pb).collect(),
        capacity: i32::try_from(p.capacity).unwrap_or(i32::MAX),
        day_rate_cents: p.day_rate_cents,
        status: provider_status_to_pb(p.status) as i32,
        status_reason: p.status_reason.clone(),
        conflict_territory_ids: p.conflict_territory_ids.iter().cloned().collect(),
        contact: with_contact.then(|| pb::ProviderContact {
            name: p.contact.name.clone(),
            email: p.contact.email.clone(),
        }),
        current_load: i32::try_from(stats.current_load).unwrap_or(i32::MAX),
        mean_rating: stats.mean_rating.unwrap_or(0.0),
        rating_count: i32::try_from(stats.rating_count).unwrap_or(i32::MAX),
        etag: r.etag(),
        create_time: Some(timestamp(r.created_at)),
        update_time: Some(timestamp(r.updated_at)),
    }
}

pub fn need_kind_to_pb(k: NeedKind) -> pb::NeedKind {
    match k {
        NeedKind::Training => pb::NeedKind::Training,
        NeedKind::ChangeManagement => pb::NeedKind::ChangeManagement,
        NeedKind::EngagementProject => pb::NeedKind::EngagementProject,
        NeedKind::FieldSupport => pb::NeedKind::FieldSupport,
    }
}

pub fn need_to_pb(n: &Need, pending_proposal_id: Option<&str>) -> pb::Need {
    pb::Need {
        id: n.id.clone(),
        plan_id: n.plan_id.clone(),
        territory_id: n.territory_id.clone(),
        territory_name: n.territory_name.clone(),
        departement_code: n.departement_code.clone(),
        region_code: n.region_code.clone(),
        year: i32::from(n.year),
        kind: need_kind_to_pb(n.kind) as i32,
        title: n.title.clone(),
        skills: n.skills.iter().map(|s| skill_to_pb(s)).collect(),
        planned_start: n.planned_start.to_string(),
        planned_end: n.planned_end.to_string(),
        budget_cents: n.budget_cents,
        status: n.status.clone(),
        provider_id: n.provider_id.clone().unwrap_or_default(),
        pending_proposal_id: pending_proposal_id.unwrap_or_default().to_string(),
    }
}

pub fn proposal_status_to_pb(s: ProposalStatus) -> pb::ProposalStatus {
    match s {
        ProposalStatus::Pending => pb::ProposalStatus::Pending,
        ProposalStatus::Accepted => pb::ProposalStatus::Accepted,
        ProposalStatus::Declined => pb::ProposalStatus::Declined,
        ProposalStatus::Expired => pb::ProposalStatus::Expired,
        ProposalStatus::Withdrawn => pb::ProposalStatus::Withdrawn,
        ProposalStatus::Superseded => pb::ProposalStatus::Superseded,
    }
}

pub fn proposal_status_from_pb(field: &str, raw: i32) -> Result<Option<ProposalStatus>, ApiError> {
    match pb::ProposalStatus::try_from(raw) {
        Ok(pb::ProposalStatus::Unspecified) => Ok(None),
        Ok(pb::ProposalStatus::Pending) => Ok(Some(ProposalStatus::Pending)),
        Ok(pb::ProposalStatus::Accepted) => Ok(Some(ProposalStatus::Accepted)),
        Ok(pb::ProposalStatus::Declined) => Ok(Some(ProposalStatus::Declined)),
        Ok(pb::ProposalStatus::Expired) => Ok(Some(ProposalStatus::Expired)),
        Ok(pb::ProposalStatus::Withdrawn) => Ok(Some(ProposalStatus::Withdrawn)),
        Ok(pb::ProposalStatus::Superseded) => Ok(Some(ProposalStatus::Superseded)),
        Err(_) => Err(ApiError::invalid(field, "is not a proposal status")),
    }
}

/// The need's facts are copied onto the proposal for the provider, who cannot read needs.
pub fn proposal_to_pb(p: &Proposal, need: Option<&Need>) -> pb::Proposal {
    pb::Proposal {
        id: p.id.clone(),
        need_id: p.need_id.clone(),
        provider_id: p.provider_id.clone(),
        territory_id: p.territory_id.clone(),
        territory_name: need.map(|n| n.territory_name.clone()).unwrap_or_default(),
        title: need.map(|n| n.title.clone()).unwrap_or_default(),
        planned_start: need
            .map(|n| n.planned_start.to_string())
            .unwrap_or_default(),
        planned_end: need.map(|n| n.planned_end.to_string()).unwrap_or_default(),
        status: proposal_status_to_pb(p.status) as i32,
        score: p.score,
        rank: i32::try_from(p.rank).unwrap_or(i32::MAX),
        override_justification: p.override_justification.clone(),
        decline_reason: p.decline_reason.clone(),
        deadline: Some(timestamp(p.deadline)),
        create_time: Some(timestamp(p.created_at)),
        answer_time: p.answered_at.map(timestamp),
        etag: p.version.to_string(),
    }
}

pub fn assignment_to_pb(a: &AssignmentRecord) -> pb::Assignment {
    pb::Assignment {
        action_id: a.action_id.clone(),
        provider_id: a.provider_id.clone(),
        territory_id: a.territory_id.clone(),
        finished: a.finished,
        rating: a.rating.map_or(0, i32::from),
        rating_comment: a.rating_comment.clone(),
        accept_time: Some(timestamp(a.accepted_at)),
    }
}
