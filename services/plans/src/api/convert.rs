//! Conversions between the protobuf messages and the domain.

use std::collections::BTreeSet;

use chrono::{NaiveDate, NaiveDateTime};

use tde_proto::plans::v1 as pb;
use tde_runtime::api::{Caller, timestamp};

use crate::domain::DomainError;
use crate::domain::action::{
    Action, ActionKind, ActionStatus, Audience, budget_cents, programme_fingerprint,
};
use crate::domain::meeting::{MeetingStatus, SteeringMeeting, years_without_meeting};
use crate::domain::plan::{CharterVersion, Plan, PlanStatus, Signatory};
use crate::domain::review::{Celebration, Indicator, Review, ReviewScope};
use crate::storage::{ActionRecord, LOCAL_FORMAT, MeetingRecord};

pub const DATE_FORMAT: &str = "%Y-%m-%d";

pub fn date_from_pb(field: &str, raw: &str) -> Result<NaiveDate, DomainError> {
    if raw.trim().is_empty() {
        return Err(DomainError::invalid(field, "is required (YYYY-MM-DD)"));
    }
    NaiveDate::parse_from_str(raw.trim(), DATE_FORMAT)
        .map_err(|_| DomainError::invalid(field, "is not a date (YYYY-MM-DD)"))
}

fn date_to_pb(d: NaiveDate) -> String {
    d.format(DATE_FORMAT).to_string()
}

/// A local time, `YYYY-MM-DDTHH:MM` (seconds accepted when zero).
pub fn local_from_pb(field: &str, raw: &str) -> Result<NaiveDateTime, DomainError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(DomainError::invalid(
            field,
            "is required (local time, YYYY-MM-DDTHH:MM)",
        ));
    }
    NaiveDateTime::parse_from_str(raw, LOCAL_FORMAT)
        .or_else(|_| NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| DomainError::invalid(field, "is not a local time (YYYY-MM-DDTHH:MM)"))
        .and_then(|t| {
            use chrono::Timelike as _;
            if t.second() != 0 || t.nanosecond() != 0 {
                Err(DomainError::invalid(
                    field,
                    "meetings are set to the minute",
                ))
            } else {
                Ok(t)
            }
        })
}

pub fn plan_status_to_pb(s: PlanStatus) -> pb::PlanStatus {
    match s {
        PlanStatus::Draft => pb::PlanStatus::Draft,
        PlanStatus::Active => pb::PlanStatus::Active,
        PlanStatus::Completed => pb::PlanStatus::Completed,
        PlanStatus::Stopped => pb::PlanStatus::Stopped,
    }
}

/// None for "unspecified" (no filter).
pub fn plan_status_from_pb(field: &str, raw: i32) -> Result<Option<PlanStatus>, DomainError> {
    match pb::PlanStatus::try_from(raw) {
        Ok(pb::PlanStatus::Unspecified) => Ok(None),
        Ok(pb::PlanStatus::Draft) => Ok(Some(PlanStatus::Draft)),
        Ok(pb::PlanStatus::Active) => Ok(Some(PlanStatus::Active)),
        Ok(pb::PlanStatus::Completed) => Ok(Some(PlanStatus::Completed)),
        Ok(pb::PlanStatus::Stopped) => Ok(Some(PlanStatus::Stopped)),
        Err(_) => Err(DomainError::invalid(field, "is not a plan status")),
    }
}

pub fn kind_to_pb(k: ActionKind) -> pb::ActionKind {
    match k {
        ActionKind::Training => pb::ActionKind::Training,
        ActionKind::ChangeManagement => pb::ActionKind::ChangeManagement,
        ActionKind::EngagementProject => pb::ActionKind::EngagementProject,
        ActionKind::FieldSupport => pb::ActionKind::FieldSupport,
    }
}

pub fn kind_from_pb(field: &str, raw: i32) -> Result<ActionKind, DomainError> {
    match pb::ActionKind::try_from(raw) {
        Ok(pb::ActionKind::Training) => Ok(ActionKind::Training),
        Ok(pb::ActionKind::ChangeManagement) => Ok(ActionKind::ChangeManagement),
        Ok(pb::ActionKind::EngagementProject) => Ok(ActionKind::EngagementProject),
        Ok(pb::ActionKind::FieldSupport) => Ok(ActionKind::FieldSupport),
        Ok(pb::ActionKind::Unspecified) => Err(DomainError::invalid(field, "is required")),
        Err(_) => Err(DomainError::invalid(field, "is not an action kind")),
    }
}

pub fn audience_to_pb(a: Audience) -> pb::Audience {
    match a {
        Audience::ElectedOfficials => pb::Audience::ElectedOfficials,
        Audience::Agents => pb::Audience::Agents,
        Audience::Partners => pb::Audience::Partners,
        Audience::Inhabitants => pb::Audience::Inhabitants,
    }
}

pub fn audiences_from_pb(field: &str, raw: &[i32]) -> Result<BTreeSet<Audience>, DomainError> {
    raw.iter()
        .enumerate()
        .map(|(i, a)| match pb::Audience::try_from(*a) {
            Ok(pb::Audience::ElectedOfficials) => Ok(Audience::ElectedOfficials),
            Ok(pb::Audience::Agents) => Ok(Audience::Agents),
            Ok(pb::Audience::Partners) => Ok(Audience::Partners),
            Ok(pb::Audience::Inhabitants) => Ok(Audience::Inhabitants),
            _ => Err(DomainError::invalid(
                format!("{field}[{i}]"),
                "is not an audience",
            )),
        })
        .collect()
}

/// A skill's stored name: the proto value without prefix, lowercase (`facilitation`).
pub fn skill_name(raw: i32) -> Option<String> {
    match pb::Skill::try_from(raw) {
        Ok(pb::Skill::Unspecified) | Err(_) => None,
        Ok(s) => s
            .as_str_name()
            .strip_prefix("SKILL_")
            .map(str::to_ascii_lowercase),
    }
}

pub fn skill_to_pb(name: &str) -> i32 {
    pb::Skill::from_str_name(&format!("SKILL_{}", name.to_ascii_uppercase()))
        .unwrap_or(pb::Skill::Unspecified) as i32
}

pub fn skills_from_pb(field: &str, raw: &[i32]) -> Result<BTreeSet<String>, DomainError> {
    let mut v = tde_runtime::Violations::default();
    let mut skills = BTreeSet::new();
    if raw.len() > 20 {
        v.add(field, "at most 20 skills");
    }
    for (i, s) in raw.iter().enumerate() {
        match skill_name(*s) {
            Some(name) => {
                skills.insert(name);
            }
            None => v.add(format!("{field}[{i}]"), "is not a skill of the list"),
        }
    }
    v.into_result()?;
    Ok(skills)
}

pub fn action_status_to_pb(s: ActionStatus) -> pb::ActionStatus {
    match s {
        ActionStatus::Planned => pb::ActionStatus::Planned,
        ActionStatus::InProgress => pb::ActionStatus::InProgress,
        ActionStatus::Done => pb::ActionStatus::Done,
        ActionStatus::Cancelled => pb::ActionStatus::Cancelled,
    }
}

/// None for "unspecified".
pub fn action_status_from_pb(field: &str, raw: i32) -> Result<Option<ActionStatus>, DomainError> {
    match pb::ActionStatus::try_from(raw) {
        Ok(pb::ActionStatus::Unspecified) => Ok(None),
        Ok(pb::ActionStatus::Planned) => Ok(Some(ActionStatus::Planned)),
        Ok(pb::ActionStatus::InProgress) => Ok(Some(ActionStatus::InProgress)),
        Ok(pb::ActionStatus::Done) => Ok(Some(ActionStatus::Done)),
        Ok(pb::ActionStatus::Cancelled) => Ok(Some(ActionStatus::Cancelled)),
        Err(_) => Err(DomainError::invalid(field, "is not an action status")),
    }
}

pub fn meeting_status_to_pb(s: MeetingStatus) -> pb::MeetingStatus {
    match s {
        MeetingStatus::Scheduled => pb::MeetingStatus::Scheduled,
        MeetingStatus::Cancelled => pb::MeetingStatus::Cancelled,
        MeetingStatus::Held => pb::MeetingStatus::Held,
    }
}

pub fn meeting_status_from_pb(field: &str, raw: i32) -> Result<Option<MeetingStatus>, DomainError> {
    match pb::MeetingStatus::try_from(raw) {
        Ok(pb::MeetingStatus::Unspecified) => Ok(None),
        Ok(pb::MeetingStatus::Scheduled) => Ok(Some(MeetingStatus::Scheduled)),
        Ok(pb::MeetingStatus::Cancelled) => Ok(Some(MeetingStatus::Cancelled)),
        Ok(pb::MeetingStatus::Held) => Ok(Some(MeetingStatus::Held)),
        Err(_) => Err(DomainError::invalid(field, "is not a meeting status")),
    }
}

/// A new action's fields from a request (`prefix` names them, e.g. `action.`).
pub fn action_from_pb(prefix: &str, a: &pb::Action) -> Result<Action, DomainError> {
    let mut v = tde_runtime::Violations::default();
    let f = |name: &str| format!("{prefix}{name}");
    let kind = v.check(kind_from_pb(&f("kind"), a.kind));
    let audiences = v.check(audiences_from_pb(&f("audiences"), &a.audiences));
    let skills = v.check(skills_from_pb(&f("skills"), &a.skills));
    let start = v.check(date_from_pb(&f("planned_start"), &a.planned_start));
    let end = v.check(date_from_pb(&f("planned_end"), &a.planned_end));
    let year = u8::try_from(a.year).ok().filter(|y| (1..=3).contains(y));
    if year.is_none() {
        v.add(f("year"), "must be 1, 2 or 3");
    }
    for (field, set) in [
        ("id", !a.id.is_empty()),
        ("territory_id", !a.territory_id.is_empty()),
        ("status", a.status != 0),
        ("provider_id", !a.provider_id.is_empty()),
    ] {
        if set {
            v.add(f(field), "is set by the server");
        }
    }
    v.into_result()?;
    let (Some(kind), Some(audiences), Some(skills), Some(start), Some(end), Some(year)) =
        (kind, audiences, skills, start, end, year)
    else {
        return Err(DomainError::invalid(f("kind"), "is required"));
    };
    let action = Action {
        id: uuid::Uuid::now_v7().to_string(),
        year,
        kind,
        title: a.title.trim().to_string(),
        description: a.description.trim().to_string(),
        audiences,
        skills,
        planned_start: start,
        planned_end: end,
        budget_cents: a.budget_cents,
        status: ActionStatus::Planned,
        provider_id: None,
    };
    action.validate().map_err(|e| match e {
        DomainError::Invalid(v) => DomainError::Invalid(
            v.into_iter()
                .map(|x| tde_runtime::FieldViolation::new(f(&x.field), x.description))
                .collect(),
        ),
        other => other,
    })?;
    Ok(action)
}

/// Checks that an action's period lies in its plan year.
pub fn check_period(plan: &Plan, action: &Action, prefix: &str) -> Result<(), DomainError> {
    let (from, to) = plan.year(action.year)?;
    if action.planned_start < from || action.planned_end >= to {
        return Err(DomainError::invalid(
            format!("{prefix}planned_start"),
            format!(
                "the period must lie in plan year {} ({} to {})",
                action.year,
                from,
                to.pred_opt().unwrap_or(to)
            ),
        ));
    }
    Ok(())
}

pub fn action_to_pb(r: &ActionRecord) -> pb::Action {
    let a = &r.action;
    pb::Action {
        id: a.id.clone(),
        plan_id: r.plan_id.clone(),
        territory_id: r.territory_id.clone(),
        year: i32::from(a.year),
        kind: kind_to_pb(a.kind) as i32,
        title: a.title.clone(),
        description: a.description.clone(),
        audiences: a
            .audiences
            .iter()
            .map(|x| audience_to_pb(*x) as i32)
            .collect(),
        skills: a.skills.iter().map(|s| skill_to_pb(s)).collect(),
        planned_start: date_to_pb(a.planned_start),
        planned_end: date_to_pb(a.planned_end),
        budget_cents: a.budget_cents,
        status: action_status_to_pb(a.status) as i32,
        provider_id: a.provider_id.clone().unwrap_or_default(),
        etag: r.etag(),
        create_time: Some(timestamp(r.created_at)),
        update_time: Some(timestamp(r.updated_at)),
    }
}

pub fn meeting_to_pb(r: &MeetingRecord) -> pb::SteeringMeeting {
    let m = &r.meeting;
    pb::SteeringMeeting {
        id: m.id.clone(),
        plan_id: m.plan_id.clone(),
        territory_id: m.territory_id.clone(),
        year: i32::from(m.year),
        sequence: m.sequence as i32,
        status: meeting_status_to_pb(m.status) as i32,
        time_zone: m.time.start.zone.name().to_string(),
        start_local: m.time.start.local.format(LOCAL_FORMAT).to_string(),
        end_local: m.time.end.local.format(LOCAL_FORMAT).to_string(),
        start_time: Some(timestamp(m.time.start.utc)),
        end_time: Some(timestamp(m.time.end.utc)),
        place: m.venue.place.clone(),
        video_link: m.venue.video_link.clone(),
        agenda: m.agenda.clone(),
        cancel_reason: m.cancel_reason.clone(),
        minutes: m.minutes.clone(),
        decisions: m.decisions.clone(),
        etag: r.etag(),
        create_time: Some(timestamp(r.created_at)),
        update_time: Some(timestamp(r.updated_at)),
    }
}

pub fn signatory_from_pb(s: &pb::Signatory) -> Signatory {
    let email = tde_runtime::personal_data::normalize_email(&s.email);
    Signatory {
        name: s.name.trim().to_string(),
        role: s.role.trim().to_string(),
        email: (!email.is_empty()).then_some(email),
        signed_on: None,
    }
}

pub fn charter_version_from_pb(r: &pb::AddCharterVersionRequest) -> CharterVersion {
    CharterVersion {
        number: 0,
        document_ref: r.document_ref.trim().to_string(),
        content_sha256: r.content_sha256.trim().to_ascii_lowercase(),
        change_summary: r.change_summary.trim().to_string(),
        signatories: r.signatories.iter().map(signatory_from_pb).collect(),
        created_at: tde_runtime::api::now(),
    }
}

pub fn review_from_pb(r: &pb::RecordReviewRequest) -> Result<Review, DomainError> {
    let scope = match r.year {
        0 => ReviewScope::Final,
        y => ReviewScope::Year(u8::try_from(y).map_err(|_| {
            DomainError::invalid("year", "must be 1 to 3, or 0 for the final review")
        })?),
    };
    Ok(Review {
        scope,
        indicators: r
            .indicators
            .iter()
            .map(|i| Indicator {
                name: i.name.trim().to_string(),
                value: i.value,
                unit: i.unit.trim().to_string(),
                baseline: i.baseline,
            })
            .collect(),
        narrative: r.narrative.trim().to_string(),
    })
}

pub fn celebration_from_pb(c: Option<&pb::Celebration>) -> Result<Celebration, DomainError> {
    let c = c.ok_or_else(|| DomainError::invalid("celebration", "is required"))?;
    Ok(Celebration {
        date: date_from_pb("celebration.date", &c.date)?,
        title: c.title.trim().to_string(),
        description: c.description.trim().to_string(),
        public: c.public,
    })
}

/// What a plan's rendering needs besides the plan: its actions and meetings.
#[derive(Debug, Default)]
pub struct PlanItems<'a> {
    pub actions: Vec<&'a Action>,
    pub meetings: Vec<&'a SteeringMeeting>,
}

/// A plan as `caller` may see it: signatories' personal data is withheld without
/// `contacts:read`, and its reading is audited with it.
pub fn plan_to_pb(p: &Plan, items: &PlanItems<'_>, caller: &Caller) -> pb::Plan {
    let with_contacts = caller.has_scope(tde_runtime::auth::scope::CONTACTS_READ);
    let mut shows_people = false;
    let years = (1..=crate::domain::calendar::PLAN_YEARS)
        .filter_map(|n| {
            let (start, end) = p.year(n).ok()?;
            let actions: Vec<&Action> = items
                .actions
                .iter()
                .copied()
                .filter(|a| a.year == n)
                .collect();
            let last = p.last_submission(n);
            Some(pb::PlanYear {
                number: i32::from(n),
                start_date: date_to_pb(start),
                end_date: date_to_pb(end),
                budget_cents: budget_cents(actions.iter().copied()).unwrap_or(i64::MAX),
                submissions: p
                    .submissions
                    .iter()
                    .filter(|s| s.year == n)
                    .map(|s| pb::Submission {
                        number: s.submission.number as i32,
                        budget_cents: s.submission.budget_cents,
                        fingerprint: s.submission.fingerprint.clone(),
                        submit_time: Some(timestamp(s.at)),
                        actor: s.actor.clone(),
                    })
                    .collect(),
                changed_since_submission: last.is_some_and(|s| {
                    s.submission.fingerprint != programme_fingerprint(actions.iter().copied())
                }),
                reviewed: p.review(ReviewScope::Year(n)).is_some(),
            })
        })
        .collect();
    let charter = pb::Charter {
        signed: p.charter.current().is_some_and(|v| v.fully_signed()),
        versions: p
            .charter
            .versions
            .iter()
            .map(|v| pb::CharterVersion {
                number: v.number as i32,
                document_ref: v.document_ref.clone(),
                content_sha256: v.content_sha256.clone(),
                change_summary: v.change_summary.clone(),
                signatories: v
                    .signatories
                    .iter()
                    .map(|s| {
                        shows_people |= with_contacts;
                        pb::Signatory {
                            name: if with_contacts {
                                s.name.clone()
                            } else {
                                String::new()
                            },
                            email: if with_contacts {
                                s.email.clone().unwrap_or_default()
                            } else {
                                String::new()
                            },
                            role: s.role.clone(),
                            signed_on: s.signed_on.map(date_to_pb).unwrap_or_default(),
                        }
                    })
                    .collect(),
                create_time: Some(timestamp(v.created_at)),
            })
            .collect(),
    };
    if shows_people {
        caller.reads_personal_data();
    }
    let has_people = p.charter.versions.iter().any(|v| !v.signatories.is_empty());
    pb::Plan {
        id: p.id.clone(),
        territory_id: p.territory_id.clone(),
        territory_name: p.territory_name.clone(),
        region_code: p.region_code.clone(),
        title: p.title.clone(),
        start_date: date_to_pb(p.start_date),
        status: plan_status_to_pb(p.status) as i32,
        status_reason: p.status_reason.clone(),
        years,
        charter: Some(charter),
        reviews: p
            .reviews
            .iter()
            .map(|r| pb::Review {
                year: match r.review.scope {
                    ReviewScope::Year(y) => i32::from(y),
                    ReviewScope::Final => 0,
                },
                indicators: r
                    .review
                    .indicators
                    .iter()
                    .map(|i| pb::Indicator {
                        name: i.name.clone(),
                        value: i.value,
                        unit: i.unit.clone(),
                        baseline: i.baseline,
                    })
                    .collect(),
                narrative: r.review.narrative.clone(),
                record_time: Some(timestamp(r.at)),
                actor: r.actor.clone(),
            })
            .collect(),
        celebrations: p
            .celebrations
            .iter()
            .map(|c| pb::Celebration {
                date: date_to_pb(c.date),
                title: c.title.clone(),
                description: c.description.clone(),
                public: c.public,
            })
            .collect(),
        years_without_meeting: years_without_meeting(items.meetings.iter().copied())
            .into_iter()
            .map(i32::from)
            .collect(),
        personal_data_withheld: has_people && !with_contacts,
        etag: p.etag(),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.updated_at)),
    }
}
