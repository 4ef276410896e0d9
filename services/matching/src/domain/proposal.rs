//! Proposals (propositions): a provider asked to deliver a need, before a deadline; it
//! accepts or declines, or the deadline passes.

use chrono::{DateTime, Utc};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProposalStatus {
    Pending,
    Accepted,
    Declined,
    Expired,
    /// Another proposal of the need was accepted, or the need closed.
    Withdrawn,
    /// Accepted, but the project lead set or removed the action's provider by hand: the
    /// plan keeps the lead's choice.
    Superseded,
}

impl ProposalStatus {
    pub const ALL: [ProposalStatus; 6] = [
        Self::Pending,
        Self::Accepted,
        Self::Declined,
        Self::Expired,
        Self::Withdrawn,
        Self::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Declined => "declined",
            Self::Expired => "expired",
            Self::Withdrawn => "withdrawn",
            Self::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub id: String,
    pub need_id: String,
    pub provider_id: String,
    pub territory_id: String,
    pub region_code: String,
    pub status: ProposalStatus,
    pub score: f64,
    pub rank: u32,
    /// Why someone other than the best ranked was proposed (empty otherwise).
    pub override_justification: String,
    pub decline_reason: String,
    pub deadline: DateTime<Utc>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub version: i64,
    /// The PlanAssignments call that sent it, if one did: its replay answers with them.
    pub batch_id: Option<String>,
}

fn wrong(p: &Proposal, action: &'static str) -> DomainError {
    DomainError::WrongState {
        what: "proposal",
        current: p.status.as_str().to_string(),
        action,
    }
}

impl Proposal {
    fn answer(
        &mut self,
        to: ProposalStatus,
        now: DateTime<Utc>,
        action: &'static str,
    ) -> Result<(), DomainError> {
        if self.status != ProposalStatus::Pending {
            return Err(wrong(self, action));
        }
        if now > self.deadline {
            return Err(DomainError::WrongState {
                what: "proposal",
                current: "past its deadline".into(),
                action,
            });
        }
        self.status = to;
        self.answered_at = Some(now);
        self.version += 1;
        Ok(())
    }

    pub fn accept(&mut self, now: DateTime<Utc>) -> Result<(), DomainError> {
        self.answer(ProposalStatus::Accepted, now, "accept it")
    }

    pub fn decline(&mut self, reason: &str, now: DateTime<Utc>) -> Result<(), DomainError> {
        if reason.trim().is_empty() {
            return Err(DomainError::invalid(
                "reason",
                "is required: why the proposal is declined",
            ));
        }
        self.answer(ProposalStatus::Declined, now, "decline it")?;
        self.decline_reason = reason.trim().to_string();
        Ok(())
    }

    /// Pending past its deadline: expired (by the expiry task).
    pub fn expire(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == ProposalStatus::Pending && now > self.deadline {
            self.status = ProposalStatus::Expired;
            self.answered_at = Some(now);
            self.version += 1;
            true
        } else {
            false
        }
    }

    /// An accepted proposal whose action's provider the project lead changed by hand.
    pub fn supersede(&mut self) -> bool {
        if self.status == ProposalStatus::Accepted {
            self.status = ProposalStatus::Superseded;
            self.version += 1;
            true
        } else {
            false
        }
    }

    /// A pending proposal of a need that found its provider otherwise, or closed.
    pub fn withdraw(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == ProposalStatus::Pending {
            self.status = ProposalStatus::Withdrawn;
            self.answered_at = Some(now);
            self.version += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn pending(now: DateTime<Utc>) -> Proposal {
        Proposal {
            id: "x".into(),
            need_id: "n".into(),
            provider_id: "p".into(),
            territory_id: "t".into(),
            region_code: "84".into(),
            status: ProposalStatus::Pending,
            score: 0.5,
            rank: 1,
            override_justification: String::new(),
            decline_reason: String::new(),
            deadline: now + Duration::days(7),
            created_by: "lead".into(),
            created_at: now,
            answered_at: None,
            version: 1,
            batch_id: None,
        }
    }

    #[test]
    fn answered_once_before_the_deadline() {
        let now = Utc::now();
        let mut p = pending(now);
        p.accept(now).expect("accepted");
        assert!(p.decline("trop tard", now).is_err());
        let mut p = pending(now);
        assert!(p.decline("  ", now).is_err());
        p.decline("indisponible", now).expect("declined");
        assert_eq!(p.status, ProposalStatus::Declined);
        let mut p = pending(now);
        let later = now + Duration::days(8);
        assert!(p.accept(later).is_err());
        assert!(p.expire(later));
        assert!(!p.expire(later));
        assert_eq!(p.status, ProposalStatus::Expired);
    }

    #[test]
    fn only_an_acceptance_is_superseded_and_once() {
        let now = Utc::now();
        let mut p = pending(now);
        assert!(!p.supersede());
        p.accept(now).expect("accepted");
        assert!(p.supersede());
        assert_eq!(p.status, ProposalStatus::Superseded);
        assert!(!p.supersede());
        assert_eq!(p.version, 3);
    }
}
