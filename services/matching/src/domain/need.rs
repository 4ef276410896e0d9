//! Needs (besoins): actions of the plans that need skills, as the plans events describe them.

use std::collections::BTreeSet;

use chrono::{Datelike as _, NaiveDate, Weekday};

/// What an action is (the plans service's kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NeedKind {
    Training,
    ChangeManagement,
    EngagementProject,
    FieldSupport,
}

impl NeedKind {
    pub const ALL: [NeedKind; 4] = [
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

/// An action of a plan, kept from the plans events.
#[derive(Debug, Clone, PartialEq)]
pub struct Need {
    /// The action's id.
    pub id: String,
    pub plan_id: String,
    pub territory_id: String,
    pub territory_name: String,
    pub departement_code: String,
    pub region_code: String,
    pub year: u8,
    pub kind: NeedKind,
    pub title: String,
    pub skills: BTreeSet<String>,
    pub planned_start: NaiveDate,
    /// Inclusive.
    pub planned_end: NaiveDate,
    pub budget_cents: i64,
    /// planned, in_progress, done, cancelled (the action's).
    pub status: String,
    pub provider_id: Option<String>,
    /// The action's version: events older than the stored one change nothing.
    pub version: i64,
    /// False once its plan is completed or stopped: its actions then need nobody.
    pub plan_open: bool,
}

impl Need {
    /// Whether it waits for a provider: skills needed, none assigned, not finished.
    pub fn is_open(&self) -> bool {
        self.provider_id.is_none()
            && self.plan_open
            && !self.skills.is_empty()
            && matches!(self.status.as_str(), "planned" | "in_progress")
    }

    /// Whether the action is over (done or cancelled): it no longer counts in a provider's load.
    pub fn is_finished(&self) -> bool {
        matches!(self.status.as_str(), "done" | "cancelled")
    }

    /// Working days (Monday to Friday) of the period: what a day rate is multiplied by.
    pub fn working_days(&self) -> i64 {
        let mut days = 0;
        let mut d = self.planned_start;
        while d <= self.planned_end {
            if !matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
                days += 1;
            }
            match d.succ_opt() {
                Some(next) => d = next,
                None => break,
            }
        }
        days
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn need(id: &str) -> Need {
        Need {
            id: id.to_string(),
            plan_id: "plan".into(),
            territory_id: "0192e0a0-0000-7000-8000-000000000001".into(),
            territory_name: "Saint-Étienne".into(),
            departement_code: "42".into(),
            region_code: "84".into(),
            year: 1,
            kind: NeedKind::ChangeManagement,
            title: "Ateliers".into(),
            skills: ["facilitation".to_string()].into(),
            // Monday 1 to Friday 5 March 2027: five working days.
            planned_start: NaiveDate::from_ymd_opt(2027, 3, 1).expect("date"),
            planned_end: NaiveDate::from_ymd_opt(2027, 3, 5).expect("date"),
            budget_cents: 500_000,
            status: "planned".into(),
            provider_id: None,
            version: 1,
            plan_open: true,
        }
    }

    #[test]
    fn working_days_skip_weekends() {
        let mut n = need("a");
        assert_eq!(n.working_days(), 5);
        n.planned_end = NaiveDate::from_ymd_opt(2027, 3, 14).expect("date");
        assert_eq!(n.working_days(), 10);
    }

    #[test]
    fn open_means_skills_no_provider_not_finished() {
        let mut n = need("a");
        assert!(n.is_open());
        n.provider_id = Some("p".into());
        assert!(!n.is_open());
        n.provider_id = None;
        n.status = "done".into();
        assert!(!n.is_open() && n.is_finished());
        n.status = "planned".into();
        n.plan_open = false;
        assert!(!n.is_open());
    }
}
