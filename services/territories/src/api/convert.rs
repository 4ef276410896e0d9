//! Mapping between the protobuf messages and the domain, with field violations named after
//! the request's fields.

use tde_proto::territories::v1 as pb;
use tde_runtime::api::{Caller, timestamp};
use tde_runtime::auth::scope::CONTACTS_READ;

use crate::domain::contact::{Person, SteeringBody};
use crate::domain::geography::{Commune, Departement, Epci, Region};
use crate::domain::recoding::{GeographyIssue, IssueKind, MergedTerritory, Resolution};
use crate::domain::territory::{
    AuthorityKind, CodeChange, Diagnostic, EngagementTheme, Stage, StageChange, Territory, Zone,
};
use crate::domain::{DomainError, nest};

pub fn kind_from_pb(field: &str, value: i32) -> Result<AuthorityKind, DomainError> {
    match pb::AuthorityKind::try_from(value) {
        Ok(pb::AuthorityKind::Commune) => Ok(AuthorityKind::Commune),
        Ok(pb::AuthorityKind::Epci) => Ok(AuthorityKind::Epci),
        Ok(pb::AuthorityKind::Departement) => Ok(AuthorityKind::Departement),
        Ok(pb::AuthorityKind::Unspecified) => Err(DomainError::invalid(
            field,
            "is required: commune, epci or departement",
        )),
        Err(_) => Err(DomainError::invalid(field, format!("unknown kind {value}"))),
    }
}

pub fn kind_to_pb(kind: AuthorityKind) -> pb::AuthorityKind {
    match kind {
        AuthorityKind::Commune => pb::AuthorityKind::Commune,
        AuthorityKind::Epci => pb::AuthorityKind::Epci,
        AuthorityKind::Departement => pb::AuthorityKind::Departement,
    }
}

/// None for UNSPECIFIED (a filter left empty).
pub fn stage_from_pb(field: &str, value: i32) -> Result<Option<Stage>, DomainError> {
    Ok(match pb::Stage::try_from(value) {
        Ok(pb::Stage::Unspecified) => None,
        Ok(pb::Stage::Prospect) => Some(Stage::Prospect),
        Ok(pb::Stage::Diagnostic) => Some(Stage::Diagnostic),
        Ok(pb::Stage::CharterSigned) => Some(Stage::CharterSigned),
        Ok(pb::Stage::InPath) => Some(Stage::InPath),
        Ok(pb::Stage::Completed) => Some(Stage::Completed),
        Ok(pb::Stage::Withdrawn) => Some(Stage::Withdrawn),
        Err(_) => {
            return Err(DomainError::invalid(
                field,
                format!("unknown stage {value}"),
            ));
        }
    })
}

pub fn stage_to_pb(stage: Stage) -> pb::Stage {
    match stage {
        Stage::Prospect => pb::Stage::Prospect,
        Stage::Diagnostic => pb::Stage::Diagnostic,
        Stage::CharterSigned => pb::Stage::CharterSigned,
        Stage::InPath => pb::Stage::InPath,
        Stage::Completed => pb::Stage::Completed,
        Stage::Withdrawn => pb::Stage::Withdrawn,
    }
}

pub fn zone_to_pb(zone: Zone) -> pb::Zone {
    match zone {
        Zone::Metro => pb::Zone::Metro,
        Zone::Drom => pb::Zone::Drom,
        Zone::Com => pb::Zone::Com,
    }
}

fn theme_from_pb(field: &str, value: i32) -> Result<EngagementTheme, DomainError> {
    use pb::EngagementTheme as P;
    Ok(match P::try_from(value) {
        Ok(P::Youth) => EngagementTheme::Youth,
        Ok(P::EcologicalTransition) => EngagementTheme::EcologicalTransition,
        Ok(P::Solidarity) => EngagementTheme::Solidarity,
        Ok(P::CitizenParticipation) => EngagementTheme::CitizenParticipation,
        Ok(P::Volunteering) => EngagementTheme::Volunteering,
        Ok(P::Culture) => EngagementTheme::Culture,
        Ok(P::Sport) => EngagementTheme::Sport,
        Ok(P::Education) => EngagementTheme::Education,
        Ok(P::Health) => EngagementTheme::Health,
        Ok(P::LivingEnvironment) => EngagementTheme::LivingEnvironment,
        Ok(P::CivilProtection) => EngagementTheme::CivilProtection,
        Ok(P::Unspecified) | Err(_) => {
            return Err(DomainError::invalid(
                field,
                format!("unknown engagement theme {value}"),
            ));
        }
    })
}

fn theme_to_pb(theme: EngagementTheme) -> pb::EngagementTheme {
    use pb::EngagementTheme as P;
    match theme {
        EngagementTheme::Youth => P::Youth,
        EngagementTheme::EcologicalTransition => P::EcologicalTransition,
        EngagementTheme::Solidarity => P::Solidarity,
        EngagementTheme::CitizenParticipation => P::CitizenParticipation,
        EngagementTheme::Volunteering => P::Volunteering,
        EngagementTheme::Culture => P::Culture,
        EngagementTheme::Sport => P::Sport,
        EngagementTheme::Education => P::Education,
        EngagementTheme::Health => P::Health,
        EngagementTheme::LivingEnvironment => P::LivingEnvironment,
        EngagementTheme::CivilProtection => P::CivilProtection,
    }
}

/// None when the message is absent (the field is cleared).
pub fn diagnostic_from_pb(d: Option<&pb::Diagnostic>) -> Result<Option<Diagnostic>, DomainError> {
    let Some(d) = d else { return Ok(None) };
    let mut themes = Vec::new();
    let mut errors = crate::domain::Violations::default();
    for (i, t) in d.themes.iter().enumerate() {
        if let Some(t) = errors.check(theme_from_pb(
            &format!("territory.diagnostic.themes[{i}]"),
            *t,
        )) {
            themes.push(t);
        }
    }
    errors.into_result()?;
    Diagnostic::new(themes, &d.text, tde_runtime::api::now())
        .map(Some)
        .map_err(|e| nest("territory.", e))
}

pub fn person_from_pb(prefix: &str, p: &pb::Person) -> Result<Person, DomainError> {
    Person::new(&p.name, &p.email, &p.phone, &p.role).map_err(|e| nest(prefix, e))
}

pub fn steering_body_from_pb(
    b: Option<&pb::SteeringBody>,
) -> Result<Option<SteeringBody>, DomainError> {
    let Some(b) = b else { return Ok(None) };
    let members = b.members.iter().map(|m| person_from_pb("", m)).collect();
    SteeringBody::new(&b.name, b.relies_on_existing_body, members)
        .map(Some)
        .map_err(|e| nest("territory.", e))
}

pub fn person_to_pb(p: &Person) -> pb::Person {
    pb::Person {
        name: p.name.clone(),
        email: p.email.as_str().to_string(),
        phone: p
            .phone
            .as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        role: p.role.clone(),
    }
}

pub fn steering_body_to_pb(b: &SteeringBody) -> pb::SteeringBody {
    pb::SteeringBody {
        name: b.name.clone(),
        relies_on_existing_body: b.relies_on_existing_body,
        members: b.members.iter().map(person_to_pb).collect(),
    }
}

pub fn diagnostic_to_pb(d: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        themes: d.themes.iter().map(|t| theme_to_pb(*t) as i32).collect(),
        text: d.text.clone(),
        record_time: Some(timestamp(d.recorded_at)),
    }
}

fn stage_change_to_pb(c: &StageChange) -> pb::StageChange {
    pb::StageChange {
        from_stage: c.from.map(stage_to_pb).unwrap_or(pb::Stage::Unspecified) as i32,
        to_stage: stage_to_pb(c.to) as i32,
        change_time: Some(timestamp(c.at)),
        actor: c.actor.clone(),
        reason: c.reason.clone(),
    }
}

fn code_change_to_pb(c: &CodeChange) -> pb::CodeChange {
    pb::CodeChange {
        old_code: c.old_code.clone(),
        new_code: c.new_code.clone(),
        vintage: c.vintage.clone(),
        change_time: Some(timestamp(c.at)),
        old_name: c.old_name.clone(),
        new_name: c.new_name.clone(),
    }
}

pub fn issue_kind_to_pb(kind: IssueKind) -> pb::GeographyIssueKind {
    match kind {
        IssueKind::Merged => pb::GeographyIssueKind::Merged,
        IssueKind::Vanished => pb::GeographyIssueKind::Vanished,
    }
}

/// None for UNSPECIFIED (a filter left empty).
pub fn issue_kind_from_pb(field: &str, value: i32) -> Result<Option<IssueKind>, DomainError> {
    match pb::GeographyIssueKind::try_from(value) {
        Ok(pb::GeographyIssueKind::Unspecified) => Ok(None),
        Ok(pb::GeographyIssueKind::Merged) => Ok(Some(IssueKind::Merged)),
        Ok(pb::GeographyIssueKind::Vanished) => Ok(Some(IssueKind::Vanished)),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown geography issue kind {value}"),
        )),
    }
}

pub fn resolution_from_pb(field: &str, value: i32) -> Result<Resolution, DomainError> {
    match pb::GeographyResolution::try_from(value) {
        Ok(pb::GeographyResolution::Keep) => Ok(Resolution::Keep),
        Ok(pb::GeographyResolution::Merge) => Ok(Resolution::Merge),
        Ok(pb::GeographyResolution::Withdraw) => Ok(Resolution::Withdraw),
        Ok(pb::GeographyResolution::Unspecified) => Err(DomainError::invalid(
            field,
            "is required: keep, merge or withdraw",
        )),
        Err(_) => Err(DomainError::invalid(
            field,
            format!("unknown resolution {value}"),
        )),
    }
}

pub fn resolution_to_pb(resolution: Option<Resolution>) -> pb::GeographyResolution {
    match resolution {
        None => pb::GeographyResolution::Unspecified,
        Some(Resolution::Keep) => pb::GeographyResolution::Keep,
        Some(Resolution::Merge) => pb::GeographyResolution::Merge,
        Some(Resolution::Withdraw) => pb::GeographyResolution::Withdraw,
    }
}

pub fn issue_to_pb(i: &GeographyIssue) -> pb::GeographyIssue {
    pb::GeographyIssue {
        kind: issue_kind_to_pb(i.kind) as i32,
        vintage: i.vintage.clone(),
        successor_code: i.successor_code.clone().unwrap_or_default(),
        successor_name: i.successor_name.clone().unwrap_or_default(),
        other_territory_ids: i.others.clone(),
        detect_time: Some(timestamp(i.detected_at)),
        description: i.describe(),
    }
}

fn merged_to_pb(m: &MergedTerritory) -> pb::MergedTerritory {
    pb::MergedTerritory {
        id: m.id.clone(),
        kind: kind_to_pb(m.kind) as i32,
        official_code: m.official_code.clone(),
        name: m.name.clone(),
        stage: stage_to_pb(m.stage) as i32,
        stage_history: m.stage_history.iter().map(stage_change_to_pb).collect(),
        code_history: m.code_history.iter().map(code_change_to_pb).collect(),
        diagnostic: m.diagnostic.as_ref().map(diagnostic_to_pb),
        merge_time: Some(timestamp(m.merged_at)),
        actor: m.actor.clone(),
        reason: m.reason.clone(),
    }
}

pub fn territory_to_pb(t: &Territory) -> pb::Territory {
    pb::Territory {
        id: t.id.clone(),
        kind: kind_to_pb(t.kind) as i32,
        official_code: t.official_code.clone(),
        name: t.name.clone(),
        population: t.population,
        departement_code: t.departement_code.clone(),
        region_code: t.region_code.clone(),
        zone: zone_to_pb(t.zone) as i32,
        time_zone: t.time_zone.clone(),
        stage: stage_to_pb(t.stage) as i32,
        stage_history: t.stage_history.iter().map(stage_change_to_pb).collect(),
        diagnostic: t.diagnostic.as_ref().map(diagnostic_to_pb),
        privileged_contact: t.privileged_contact.as_ref().map(person_to_pb),
        operational_team: t.operational_team.iter().map(person_to_pb).collect(),
        steering_body: t.steering_body.as_ref().map(steering_body_to_pb),
        code_history: t.code_history.iter().map(code_change_to_pb).collect(),
        etag: t.etag(),
        create_time: Some(timestamp(t.created_at)),
        update_time: Some(timestamp(t.updated_at)),
        personal_data_withheld: false,
        epci_siren: t.epci_siren.clone().unwrap_or_default(),
        geography_issue: t.geography_issue.as_ref().map(issue_to_pb),
        merged_territories: t.merged_territories.iter().map(merged_to_pb).collect(),
    }
}

pub fn commune_to_pb(c: &Commune) -> pb::Commune {
    pb::Commune {
        code: c.code.clone(),
        name: c.name.clone(),
        departement_code: c.departement_code.clone(),
        region_code: c.region_code.clone(),
        zone: zone_to_pb(c.zone) as i32,
        population: c.population,
        siren: c.siren.clone(),
        epci_siren: c.epci_siren.clone().unwrap_or_default(),
        postal_codes: c.postal_codes.clone(),
        former_codes: c.former_codes.clone(),
    }
}

pub fn epci_to_pb(e: &Epci, members: &[Commune]) -> pb::Epci {
    pb::Epci {
        siren: e.siren.clone(),
        name: e.name.clone(),
        r#type: e.kind.clone(),
        population: e.population,
        members: members.iter().map(commune_to_pb).collect(),
    }
}

pub fn departement_to_pb(d: &Departement) -> pb::Departement {
    pb::Departement {
        code: d.code.clone(),
        name: d.name.clone(),
        region_code: d.region_code.clone(),
        zone: zone_to_pb(d.zone) as i32,
        time_zone: d.time_zone().to_string(),
    }
}

pub fn region_to_pb(r: &Region) -> pb::Region {
    pb::Region {
        code: r.code.clone(),
        name: r.name.clone(),
        zone: zone_to_pb(r.zone) as i32,
    }
}

/// A territory as `caller` may receive it: contacts' personal data only with the scope
/// contacts:read (and then the read goes on the audit trail); without it, they are left out
/// and the response says so.
pub fn for_caller(mut t: pb::Territory, caller: &Caller) -> pb::Territory {
    let holds_personal_data = t.privileged_contact.is_some()
        || !t.operational_team.is_empty()
        || t.steering_body
            .as_ref()
            .is_some_and(|b| !b.members.is_empty());
    if !holds_personal_data {
        return t;
    }
    if caller.has_scope(CONTACTS_READ) {
        caller.reads_personal_data();
        return t;
    }
    t.privileged_contact = None;
    t.operational_team.clear();
    if let Some(body) = &mut t.steering_body {
        body.members.clear();
    }
    t.personal_data_withheld = true;
    t
}
