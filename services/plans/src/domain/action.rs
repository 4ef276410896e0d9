//! Actions of a plan year, and the programme of a year submitted for funding.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::DomainError;

/// What an action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActionKind {
    Training,
    ChangeManagement,
    EngagementProject,
    FieldSupport,
}

/// Who an action is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Audience {
    ElectedOfficials,
    Agents,
    Partners,
    Inhabitants,
}

impl ActionKind {
    pub const ALL: [ActionKind; 4] = [
        Self::Training,
        Self::ChangeManagement,
        Self::EngagementProject,
        Self::FieldSupport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Training => "training",
            Self::ChangeManagement => "change_management",
            Self::EngagementProject => "engagement_project",
            Self::FieldSupport => "field_support",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Audience {
    pub const ALL: [Audience; 4] = [
        Self::ElectedOfficials,
        Self::Agents,
        Self::Partners,
        Self::Inhabitants,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ElectedOfficials => "elected_officials",
            Self::Agents => "agents",
            Self::Partners => "partners",
            Self::Inhabitants => "inhabitants",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Where an action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionStatus {
    Planned,
    InProgress,
    Done,
    Cancelled,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Planned => "planned",
            ActionStatus::InProgress => "in_progress",
            ActionStatus::Done => "done",
            ActionStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Planned, Self::InProgress, Self::Done, Self::Cancelled]
            .into_iter()
            .find(|a| a.as_str() == s)
    }

    pub fn can_move_to(self, target: ActionStatus) -> bool {
        use ActionStatus::*;
        matches!(
            (self, target),
            (Planned, InProgress)
                | (InProgress, Done)
                | (Planned, Cancelled)
                | (InProgress, Cancelled)
        )
    }
}

/// The largest budget of one action: 10 million euros, in cents.
pub const MAX_ACTION_BUDGET_CENTS: i64 = 1_000_000_000;

/// The most actions one plan year holds (cancelled ones included): a year's programme
/// travels whole in `plan.year_submitted`, which must stay below the bus's payload limit
/// (`tde_runtime::bus::MAX_EVENT_PAYLOAD`), and no real programme comes near it.
pub const MAX_ACTIONS_PER_YEAR: u64 = 200;

/// Refuses a new action in plan year `year` that already holds `existing` actions.
pub fn ensure_room_in_year(year: u8, existing: u64) -> Result<(), DomainError> {
    if existing >= MAX_ACTIONS_PER_YEAR {
        return Err(DomainError::WrongState {
            what: "plan year",
            current: format!(
                "{year} holding {existing} actions, the most a year can hold ({MAX_ACTIONS_PER_YEAR})"
            ),
            action: "add another (cancelled actions count too)",
        });
    }
    Ok(())
}

/// An action of a plan year.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub id: String,
    pub year: u8,
    pub kind: ActionKind,
    pub title: String,
    pub description: String,
    pub audiences: BTreeSet<Audience>,
    /// Skills needed, from the closed list of `tde.plans.v1.Skill` (by name).
    pub skills: BTreeSet<String>,
    pub planned_start: NaiveDate,
    pub planned_end: NaiveDate,
    /// Euro cents: money is never a floating-point number.
    pub budget_cents: i64,
    pub status: ActionStatus,
    /// Set by matching once a provider is assigned.
    pub provider_id: Option<String>,
}

impl Action {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = super::Violations::default();
        if self.title.trim().is_empty()
            || tde_runtime::input::problem(&self.title, 200, false).is_some()
        {
            v.add(
                "title",
                "is required (at most 200 characters, no control characters)",
            );
        }
        if tde_runtime::input::problem(&self.description, 5000, true).is_some() {
            v.add(
                "description",
                "at most 5000 characters, no control characters but line breaks",
            );
        }
        if self.audiences.is_empty() {
            v.add("audiences", "at least one audience");
        }
        if self.planned_end < self.planned_start {
            v.add("planned_end", "must not be before planned_start");
        }
        if !(0..=MAX_ACTION_BUDGET_CENTS).contains(&self.budget_cents) {
            v.add(
                "budget_cents",
                format!("must be between 0 and {MAX_ACTION_BUDGET_CENTS} (10 M€)"),
            );
        }
        Ok(v.into_result()?)
    }

    /// Counts in the programme's budget unless cancelled.
    pub fn counts(&self) -> bool {
        self.status != ActionStatus::Cancelled
    }
}

/// A plan year's budget: the sum of its actions that are not cancelled, in cents.
pub fn budget_cents<'a>(actions: impl IntoIterator<Item = &'a Action>) -> Result<i64, DomainError> {
    actions
        .into_iter()
        .filter(|a| a.counts())
        .try_fold(0i64, |sum, a| sum.checked_add(a.budget_cents))
        .ok_or_else(|| DomainError::invalid("budget_cents", "the total overflows"))
}

/// A fingerprint of a programme (its counted actions and their budgets, kinds and periods):
/// two equal fingerprints mean the same programme was submitted.
pub fn programme_fingerprint<'a>(actions: impl IntoIterator<Item = &'a Action>) -> String {
    let mut lines: Vec<String> = actions
        .into_iter()
        .filter(|a| a.counts())
        .map(|a| {
            format!(
                "{}|{:?}|{}|{}|{}|{}",
                a.id, a.kind, a.title, a.planned_start, a.planned_end, a.budget_cents
            )
        })
        .collect();
    lines.sort();
    sha2::Sha256::digest(lines.join("\n").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A year's programme as submitted for funding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submission {
    /// 1 for the first submission, 2 for the first amendment…
    pub number: u32,
    pub budget_cents: i64,
    pub fingerprint: String,
}

/// Submits a year's programme: its budget frozen. A first submission, or an amendment when the
/// programme changed since the last one; the same programme twice is refused.
pub fn submit<'a>(
    last: Option<&Submission>,
    actions: impl IntoIterator<Item = &'a Action> + Clone,
) -> Result<Submission, DomainError> {
    let fingerprint = programme_fingerprint(actions.clone());
    let budget = budget_cents(actions.clone())?;
    if actions.into_iter().filter(|a| a.counts()).count() == 0 {
        return Err(DomainError::WrongState {
            what: "plan year",
            current: "without actions".into(),
            action: "submit its programme",
        });
    }
    match last {
        Some(previous) if previous.fingerprint == fingerprint => Err(DomainError::WrongState {
            what: "plan year",
            current: format!("submitted already (submission {})", previous.number),
            action: "submit the same programme again",
        }),
        _ => Ok(Submission {
            number: last.map_or(1, |s| s.number + 1),
            budget_cents: budget,
            fingerprint,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: &str, budget: i64, status: ActionStatus) -> Action {
        Action {
            id: id.into(),
            year: 1,
            kind: ActionKind::Training,
            title: "Formation des élus".into(),
            description: String::new(),
            audiences: [Audience::ElectedOfficials].into(),
            skills: ["FACILITATION".to_string()].into(),
            planned_start: NaiveDate::from_ymd_opt(2027, 1, 10).unwrap(),
            planned_end: NaiveDate::from_ymd_opt(2027, 2, 10).unwrap(),
            budget_cents: budget,
            status,
            provider_id: None,
        }
    }

    #[test]
    fn budgets_sum_counted_actions_in_cents() {
        let actions = [
            action("a", 1_250_050, ActionStatus::Planned),
            action("b", 99, ActionStatus::Done),
            action("c", 1_000_000, ActionStatus::Cancelled),
        ];
        assert_eq!(budget_cents(&actions).unwrap(), 1_250_149);
        let huge = [
            action("a", i64::MAX, ActionStatus::Planned),
            action("b", 1, ActionStatus::Planned),
        ];
        assert!(budget_cents(&huge).is_err());
        assert!(action("x", -1, ActionStatus::Planned).validate().is_err());
        assert!(
            action("x", MAX_ACTION_BUDGET_CENTS + 1, ActionStatus::Planned)
                .validate()
                .is_err()
        );
    }

    #[test]
    fn a_changed_programme_needs_an_amendment() {
        let mut actions = vec![action("a", 100_000, ActionStatus::Planned)];
        let first = submit(None, &actions).unwrap();
        assert_eq!((first.number, first.budget_cents), (1, 100_000));
        assert!(submit(Some(&first), &actions).is_err(), "unchanged");
        actions.push(action("b", 50_000, ActionStatus::Planned));
        let amendment = submit(Some(&first), &actions).unwrap();
        assert_eq!((amendment.number, amendment.budget_cents), (2, 150_000));
        // A status change that does not change the programme is no amendment.
        actions[0].status = ActionStatus::InProgress;
        assert!(submit(Some(&amendment), &actions).is_err());
        assert!(
            submit(None, &[action("c", 1, ActionStatus::Cancelled)]).is_err(),
            "empty"
        );
    }

    #[test]
    fn action_status_machine() {
        use ActionStatus::*;
        let all = [Planned, InProgress, Done, Cancelled];
        let allowed: Vec<_> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_move_to(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Planned, InProgress),
                (Planned, Cancelled),
                (InProgress, Done),
                (InProgress, Cancelled)
            ]
        );
    }
}
