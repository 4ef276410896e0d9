//! The subsidy (subvention) of a plan year: requested from a submitted plan year, decided
//! with four eyes (proposed by one person, approved by another), committed against an
//! envelope, paid in tranches, decommitted or clawed back.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tde_runtime::format::euros;

use super::siret::Siret;
use super::{DomainError, Violations};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubsidyStatus {
    /// Demandée: opened from a submitted plan year.
    Requested,
    /// A decision is proposed, waiting for another person's approval.
    Proposed,
    /// Attribuée en totalité.
    Granted,
    /// Attribuée en partie.
    PartiallyGranted,
    /// Refusée.
    Refused,
    /// Never decided: the plan stopped first.
    Closed,
}

impl SubsidyStatus {
    pub const ALL: [Self; 6] = [
        Self::Requested,
        Self::Proposed,
        Self::Granted,
        Self::PartiallyGranted,
        Self::Refused,
        Self::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Proposed => "proposed",
            Self::Granted => "granted",
            Self::PartiallyGranted => "partially_granted",
            Self::Refused => "refused",
            Self::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Not decided yet: its request may still change.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Requested | Self::Proposed)
    }

    /// Money was granted.
    pub fn is_granted(self) -> bool {
        matches!(self, Self::Granted | Self::PartiallyGranted)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LegalActKind {
    /// Convention attributive.
    Convention,
    /// Arrêté attributif.
    Order,
}

/// The legal act granting the subsidy (convention or arrêté attributif).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegalAct {
    pub kind: LegalActKind,
    pub reference: String,
    pub date: NaiveDate,
}

/// A decision proposed by one person, for another to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub amount_cents: i64,
    pub legal_act: LegalAct,
    pub beneficiary_siret: String,
    pub budget_year: i32,
    pub commitment_number: String,
    pub comment: String,
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
}

/// The decision, once taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub legal_act: Option<LegalAct>,
    pub beneficiary_siret: String,
    /// Chorus legal-commitment number (engagement juridique, EJ).
    pub commitment_number: String,
    pub refusal_reason: String,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subsidy {
    pub id: String,
    pub plan_id: String,
    /// 1 to 3.
    pub plan_year: u8,
    /// 0 for the year's first request, n for its n-th amendment (avenant).
    pub amendment_number: i32,
    pub territory_id: String,
    pub territory_name: String,
    pub region_code: String,
    pub year_start: NaiveDate,
    /// Exclusive.
    pub year_end: NaiveDate,
    pub submission_number: i32,
    pub requested_cents: i64,
    pub status: SubsidyStatus,
    pub proposal: Option<Proposal>,
    pub decision: Option<Decision>,
    /// The year it is charged to: the decision's, else the plan year's start year.
    pub budget_year: i32,
    pub envelope_id: Option<String>,
    pub granted_cents: i64,
    pub decommitted_cents: i64,
    pub paid_cents: i64,
    pub clawed_back_cents: i64,
    pub advance_percent: u8,
    pub reviewed: bool,
    pub plan_stopped: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a proposal says, as the caller gave it.
#[derive(Debug, Clone)]
pub struct ProposalInput<'a> {
    pub amount_cents: i64,
    pub legal_act: Option<LegalAct>,
    pub beneficiary_siret: &'a str,
    pub budget_year: i32,
    pub commitment_number: &'a str,
    pub comment: &'a str,
}

pub const MAX_REFERENCE: usize = 100;
pub const MAX_TEXT: usize = 1_000;

impl ProposalInput<'_> {
    /// Checks the proposal as the caller wrote it, whatever the subsidy it is for: every
    /// violation at once. (That it asks at most the amount requested needs the subsidy.)
    pub fn check(&self) -> Result<(), DomainError> {
        let mut v = Violations::default();
        self.check_into(&mut v);
        Ok(v.into_result()?)
    }

    /// Adds the proposal's violations to `v`; its SIRET when valid.
    fn check_into(&self, v: &mut Violations) -> Option<Siret> {
        if self.amount_cents <= 0 {
            v.add(
                "amount_cents",
                "must be positive (to refuse the subsidy, use RefuseSubsidy)",
            );
        }
        match &self.legal_act {
            None => v.add(
                "legal_act",
                "is required: the convention or arrêté attributif",
            ),
            Some(act) => {
                if act.reference.trim().is_empty() {
                    v.add("legal_act.reference", "is required");
                } else {
                    v.check(super::text(
                        "legal_act.reference",
                        &act.reference,
                        MAX_REFERENCE,
                    ));
                }
            }
        }
        let siret = v.check(
            Siret::parse(self.beneficiary_siret)
                .map_err(|e| DomainError::invalid("beneficiary_siret", e.to_string())),
        );
        v.check(super::envelope::check_budget_year(
            "budget_year",
            self.budget_year,
        ));
        v.check(super::text(
            "commitment_number",
            self.commitment_number,
            MAX_REFERENCE,
        ));
        v.check(super::multiline("comment", self.comment, MAX_TEXT));
        siret
    }
}

/// Checks the Chorus commitment number given at approval (empty: the proposal's).
pub fn check_commitment_number(value: &str) -> Result<(), DomainError> {
    super::text("commitment_number", value, MAX_REFERENCE)
}

/// Checks the reason of a refusal (the territory is told it).
pub fn check_refusal_reason(reason: &str) -> Result<(), DomainError> {
    if reason.trim().is_empty() {
        return Err(DomainError::invalid(
            "reason",
            "is required: the territory is told why",
        ));
    }
    super::multiline("reason", reason, MAX_TEXT)
}

impl Subsidy {
    /// Opens the request of a plan year (or an amendment for more money).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        id: String,
        plan_id: String,
        plan_year: u8,
        amendment_number: i32,
        territory: (&str, &str, &str),
        (year_start, year_end): (NaiveDate, NaiveDate),
        submission_number: i32,
        requested_cents: i64,
        now: DateTime<Utc>,
    ) -> Self {
        use chrono::Datelike as _;
        let (territory_id, territory_name, region_code) = territory;
        Self {
            id,
            plan_id,
            plan_year,
            amendment_number,
            territory_id: territory_id.to_string(),
            territory_name: territory_name.to_string(),
            region_code: region_code.to_string(),
            year_start,
            year_end,
            submission_number,
            requested_cents,
            status: SubsidyStatus::Requested,
            proposal: None,
            decision: None,
            budget_year: year_start.year(),
            envelope_id: None,
            granted_cents: 0,
            decommitted_cents: 0,
            paid_cents: 0,
            clawed_back_cents: 0,
            advance_percent: 0,
            reviewed: false,
            plan_stopped: false,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// What is committed: granted minus decommitted.
    pub fn committed_cents(&self) -> i64 {
        self.granted_cents - self.decommitted_cents
    }

    /// What is still to pay: committed minus paid.
    pub fn remaining_cents(&self) -> i64 {
        self.committed_cents() - self.paid_cents
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }

    fn wrong_state(&self, action: &'static str) -> DomainError {
        DomainError::WrongState {
            what: "subsidy",
            current: self.status.as_str().to_string(),
            action,
        }
    }

    fn not_stopped(&self, action: &'static str) -> Result<(), DomainError> {
        if self.plan_stopped {
            return Err(DomainError::refused(
                "PLAN_STOPPED",
                self.plan_id.clone(),
                format!("the plan of this subsidy was stopped: cannot {action}"),
            ));
        }
        Ok(())
    }

    /// A new submission of the plan year changes what an undecided request asks for.
    /// `Ok(false)`: nothing changed. A proposal above the new amount is withdrawn.
    pub fn update_request(
        &mut self,
        requested_cents: i64,
        submission_number: i32,
        now: DateTime<Utc>,
    ) -> bool {
        if !self.status.is_open() || submission_number <= self.submission_number {
            return false;
        }
        self.submission_number = submission_number;
        self.requested_cents = requested_cents;
        if self
            .proposal
            .as_ref()
            .is_some_and(|p| p.amount_cents > requested_cents)
        {
            self.proposal = None;
            self.status = SubsidyStatus::Requested;
        }
        self.touch(now);
        true
    }

    /// A new submission asks nothing beyond what was already decided: the open request
    /// closes. `false`: nothing changed (decided, or not a newer submission).
    pub fn close_request(&mut self, submission_number: i32, now: DateTime<Utc>) -> bool {
        if !self.status.is_open() || submission_number <= self.submission_number {
            return false;
        }
        self.submission_number = submission_number;
        self.status = SubsidyStatus::Closed;
        self.proposal = None;
        self.touch(now);
        true
    }

    /// A newer submission that asks this decided subsidy nothing is remembered, so that its
    /// redelivery changes nothing. `false`: not a newer submission.
    pub fn note_submission(&mut self, submission_number: i32, now: DateTime<Utc>) -> bool {
        if submission_number <= self.submission_number {
            return false;
        }
        self.submission_number = submission_number;
        self.touch(now);
        true
    }

    /// Proposes a decision; replaces an earlier proposal not yet approved.
    pub fn propose(
        &mut self,
        input: ProposalInput<'_>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        // What the caller wrote is checked first: bad input is named as such, whatever the
        // state.
        let mut v = Violations::default();
        let siret = input.check_into(&mut v);
        v.into_result()?;
        if !self.status.is_open() {
            return Err(self.wrong_state("propose a decision"));
        }
        self.not_stopped("propose a decision")?;
        if input.amount_cents > self.requested_cents {
            return Err(DomainError::invalid(
                "amount_cents",
                format!(
                    "must be at most the amount requested, {}",
                    euros(self.requested_cents)
                ),
            ));
        }
        let (Some(siret), Some(legal_act)) = (siret, input.legal_act) else {
            return Err(DomainError::invalid("beneficiary_siret", "is required"));
        };
        self.proposal = Some(Proposal {
            amount_cents: input.amount_cents,
            legal_act: LegalAct {
                reference: legal_act.reference.trim().to_string(),
                ..legal_act
            },
            beneficiary_siret: siret.as_str().to_string(),
            budget_year: input.budget_year,
            commitment_number: input.commitment_number.trim().to_string(),
            comment: input.comment.trim().to_string(),
            proposed_by: actor.to_string(),
            proposed_at: now,
        });
        self.status = SubsidyStatus::Proposed;
        self.touch(now);
        Ok(())
    }

    /// Approves the proposal: the second pair of eyes. Returns the amount to commit against
    /// the envelope of the proposal's budget year (the caller commits it atomically, or
    /// drops the whole change).
    pub fn approve(
        &mut self,
        commitment_number: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, DomainError> {
        check_commitment_number(commitment_number)?;
        if self.status != SubsidyStatus::Proposed {
            return Err(self.wrong_state("approve a decision: none is proposed"));
        }
        self.not_stopped("approve a decision")?;
        let Some(proposal) = self.proposal.take() else {
            return Err(self.wrong_state("approve a decision: none is proposed"));
        };
        if proposal.proposed_by == actor {
            let description = "four eyes: who proposed a decision cannot approve it; another person with subsidies:approve must".to_string();
            self.proposal = Some(proposal);
            return Err(DomainError::refused(
                "FOUR_EYES",
                self.id.clone(),
                description,
            ));
        }
        let commitment_number = if commitment_number.trim().is_empty() {
            proposal.commitment_number.clone()
        } else {
            commitment_number.trim().to_string()
        };
        self.status = if proposal.amount_cents == self.requested_cents {
            SubsidyStatus::Granted
        } else {
            SubsidyStatus::PartiallyGranted
        };
        self.granted_cents = proposal.amount_cents;
        self.budget_year = proposal.budget_year;
        self.decision = Some(Decision {
            legal_act: Some(proposal.legal_act.clone()),
            beneficiary_siret: proposal.beneficiary_siret.clone(),
            commitment_number,
            refusal_reason: String::new(),
            decided_by: actor.to_string(),
            decided_at: now,
        });
        let amount = proposal.amount_cents;
        self.proposal = Some(proposal);
        self.touch(now);
        Ok(amount)
    }

    /// Refuses the subsidy, with a reason.
    pub fn refuse(
        &mut self,
        reason: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        check_refusal_reason(reason)?;
        if !self.status.is_open() {
            return Err(self.wrong_state("refuse it"));
        }
        self.status = SubsidyStatus::Refused;
        self.decision = Some(Decision {
            legal_act: None,
            beneficiary_siret: String::new(),
            commitment_number: String::new(),
            refusal_reason: reason.trim().to_string(),
            decided_by: actor.to_string(),
            decided_at: now,
        });
        self.touch(now);
        Ok(())
    }

    /// Checks a decommitment of `amount` (what will not be paid); `in_flight` is what
    /// payments scheduled, authorised or sent hold.
    pub fn decommit(
        &mut self,
        amount: i64,
        in_flight: i64,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        if !self.status.is_granted() {
            return Err(self.wrong_state("decommit: nothing was granted"));
        }
        let free = self.remaining_cents() - in_flight;
        if amount > free {
            return Err(DomainError::refused(
                "BEYOND_UNPAID",
                self.id.clone(),
                format!(
                    "only {} can be decommitted: {} committed, {} paid, {} in payments under way",
                    euros(free.max(0)),
                    euros(self.committed_cents()),
                    euros(self.paid_cents),
                    euros(in_flight),
                ),
            ));
        }
        self.decommitted_cents += amount;
        self.touch(now);
        Ok(())
    }

    /// The plan stopped (`stop`): decommits what will not be paid, all that is neither paid
    /// nor `in_flight` (with the paying system), through the rule of every decommitment.
    /// Returns the amount decommitted (0 when nothing is left, or nothing was granted).
    pub fn decommit_unpaid(
        &mut self,
        in_flight: i64,
        now: DateTime<Utc>,
    ) -> Result<i64, DomainError> {
        let unpaid = self.remaining_cents() - in_flight;
        if !self.status.is_granted() || unpaid <= 0 {
            return Ok(0);
        }
        self.decommit(unpaid, in_flight, now)?;
        Ok(unpaid)
    }

    /// Checks a clawback order of `amount` (at most what was paid and not yet clawed back).
    pub fn claw_back(&mut self, amount: i64, now: DateTime<Utc>) -> Result<(), DomainError> {
        let recoverable = self.paid_cents - self.clawed_back_cents;
        if amount > recoverable {
            return Err(DomainError::refused(
                "BEYOND_PAID",
                self.id.clone(),
                format!(
                    "at most {} can be clawed back: {} paid, {} already ordered back",
                    euros(recoverable.max(0)),
                    euros(self.paid_cents),
                    euros(self.clawed_back_cents),
                ),
            ));
        }
        self.clawed_back_cents += amount;
        self.touch(now);
        Ok(())
    }

    /// Records a payment of `amount`; never more paid than committed.
    pub fn record_paid(&mut self, amount: i64, now: DateTime<Utc>) -> Result<(), DomainError> {
        if amount > self.remaining_cents() {
            return Err(DomainError::refused(
                "BEYOND_GRANTED",
                self.id.clone(),
                format!(
                    "paying {} would pay more than granted: {} left to pay",
                    euros(amount),
                    euros(self.remaining_cents()),
                ),
            ));
        }
        self.paid_cents += amount;
        self.touch(now);
        Ok(())
    }

    /// The plan stopped: an undecided request is closed; nothing more will be paid.
    pub fn stop(&mut self, now: DateTime<Utc>) -> bool {
        if self.plan_stopped {
            return false;
        }
        self.plan_stopped = true;
        if self.status.is_open() {
            self.status = SubsidyStatus::Closed;
            self.proposal = None;
        }
        self.touch(now);
        true
    }

    /// The review of its plan year is recorded.
    pub fn mark_reviewed(&mut self, now: DateTime<Utc>) -> bool {
        if self.reviewed {
            return false;
        }
        self.reviewed = true;
        self.touch(now);
        true
    }

    pub fn etag(&self) -> String {
        super::etag(self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn requested(amount: i64) -> Subsidy {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        Subsidy::request(
            "s".into(),
            "p".into(),
            1,
            0,
            ("t", "Saint-Étienne", "84"),
            (d("2027-01-01"), d("2028-01-01")),
            1,
            amount,
            Utc::now(),
        )
    }

    fn act() -> Option<LegalAct> {
        Some(LegalAct {
            kind: LegalActKind::Convention,
            reference: "CONV-2027-042".into(),
            date: NaiveDate::from_ymd_opt(2027, 2, 1).unwrap(),
        })
    }

    fn input(amount: i64) -> ProposalInput<'static> {
        ProposalInput {
            amount_cents: amount,
            legal_act: act(),
            beneficiary_siret: "21750001600019",
            budget_year: 2027,
            commitment_number: "",
            comment: "",
        }
    }

    #[test]
    fn requested_proposed_approved_by_someone_else() {
        let mut s = requested(1_000_000);
        assert_eq!(s.budget_year, 2027);
        s.propose(input(1_000_000), "alice", Utc::now()).unwrap();
        assert_eq!(s.status, SubsidyStatus::Proposed);
        // Four eyes.
        let err = s.approve("", "alice", Utc::now()).unwrap_err();
        assert!(
            matches!(
                err,
                DomainError::Refused {
                    kind: "FOUR_EYES",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(s.status, SubsidyStatus::Proposed);
        assert!(s.proposal.is_some());
        assert_eq!(s.approve("EJ-1", "bob", Utc::now()).unwrap(), 1_000_000);
        assert_eq!(s.status, SubsidyStatus::Granted);
        assert_eq!(s.granted_cents, 1_000_000);
        assert_eq!(s.decision.as_ref().unwrap().commitment_number, "EJ-1");
        // Decided: no second decision.
        assert!(matches!(
            s.approve("", "carol", Utc::now()),
            Err(DomainError::WrongState { .. })
        ));
        assert!(matches!(
            s.refuse("non", "carol", Utc::now()),
            Err(DomainError::WrongState { .. })
        ));
    }

    #[test]
    fn a_smaller_grant_is_partial_and_never_above_the_request() {
        let mut s = requested(1_000);
        let err = s.propose(input(1_001), "alice", Utc::now()).unwrap_err();
        assert!(matches!(err, DomainError::Invalid(ref v) if v[0].field == "amount_cents"));
        s.propose(input(600), "alice", Utc::now()).unwrap();
        s.approve("", "bob", Utc::now()).unwrap();
        assert_eq!(s.status, SubsidyStatus::PartiallyGranted);
    }

    #[test]
    fn a_proposal_needs_a_legal_act_and_a_valid_siret() {
        let mut s = requested(1_000);
        let err = s
            .propose(
                ProposalInput {
                    legal_act: None,
                    beneficiary_siret: "21750001600018",
                    budget_year: 1990,
                    ..input(0)
                },
                "alice",
                Utc::now(),
            )
            .unwrap_err();
        let DomainError::Invalid(v) = err else {
            panic!()
        };
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "amount_cents",
                "legal_act",
                "beneficiary_siret",
                "budget_year"
            ]
        );
    }

    #[test]
    fn a_new_submission_updates_an_open_request_only_if_newer() {
        let mut s = requested(1_000);
        s.propose(input(900), "alice", Utc::now()).unwrap();
        assert!(!s.update_request(800, 1, Utc::now()), "same submission");
        assert!(s.update_request(800, 2, Utc::now()));
        // The proposal asked more than the new request: withdrawn.
        assert_eq!(s.status, SubsidyStatus::Requested);
        assert!(s.proposal.is_none());
        assert!(!s.update_request(700, 2, Utc::now()), "older or equal");
        assert_eq!(s.requested_cents, 800);
    }

    #[test]
    fn refusal_needs_a_reason() {
        let mut s = requested(1_000);
        assert!(matches!(
            s.refuse(" ", "bob", Utc::now()),
            Err(DomainError::Invalid(_))
        ));
        s.refuse("hors programme", "bob", Utc::now()).unwrap();
        assert_eq!(s.status, SubsidyStatus::Refused);
    }

    #[test]
    fn decommit_pay_and_claw_back_stay_within_the_grant() {
        let mut s = requested(1_000);
        s.propose(input(1_000), "alice", Utc::now()).unwrap();
        s.approve("", "bob", Utc::now()).unwrap();
        s.record_paid(500, Utc::now()).unwrap();
        // 500 left, 300 in a payment under way: at most 200 decommitted.
        let err = s.decommit(201, 300, Utc::now()).unwrap_err();
        assert!(matches!(
            err,
            DomainError::Refused {
                kind: "BEYOND_UNPAID",
                ..
            }
        ));
        s.decommit(200, 300, Utc::now()).unwrap();
        assert_eq!(s.committed_cents(), 800);
        assert_eq!(s.remaining_cents(), 300);
        assert!(matches!(
            s.record_paid(301, Utc::now()),
            Err(DomainError::Refused {
                kind: "BEYOND_GRANTED",
                ..
            })
        ));
        s.record_paid(300, Utc::now()).unwrap();
        assert_eq!(s.remaining_cents(), 0);
        assert!(s.claw_back(801, Utc::now()).is_err());
        s.claw_back(800, Utc::now()).unwrap();
        assert!(s.claw_back(1, Utc::now()).is_err());
    }

    #[test]
    fn a_stopped_plan_decommits_exactly_what_will_not_be_paid() {
        for granted in [1, 2, 999, 1_000, 1_000_001] {
            for paid in [0, 1, granted / 2, granted] {
                for in_flight in [0, 1, (granted - paid) / 3, granted - paid] {
                    if paid + in_flight > granted {
                        continue;
                    }
                    let case = format!("{granted} granted, {paid} paid, {in_flight} in flight");
                    let mut s = requested(granted);
                    s.propose(input(granted), "alice", Utc::now()).unwrap();
                    s.approve("", "bob", Utc::now()).unwrap();
                    s.record_paid(paid, Utc::now()).unwrap();
                    assert!(s.stop(Utc::now()));
                    let version = s.version;
                    let unpaid = s.decommit_unpaid(in_flight, Utc::now()).unwrap();
                    assert_eq!(unpaid, granted - paid - in_flight, "{case}");
                    assert_eq!(s.committed_cents(), paid + in_flight, "{case}");
                    assert_eq!(s.remaining_cents(), in_flight, "{case}");
                    // A decommitment is a change of the subsidy, as any other.
                    assert_eq!(s.version, version + i64::from(unpaid > 0), "{case}");
                    // Nothing more the second time.
                    assert_eq!(s.decommit_unpaid(in_flight, Utc::now()), Ok(0), "{case}");
                }
            }
        }
        // Nothing granted: nothing to decommit.
        let mut s = requested(1_000);
        s.stop(Utc::now());
        assert_eq!(s.decommit_unpaid(0, Utc::now()), Ok(0));
        assert_eq!(s.decommitted_cents, 0);
    }

    #[test]
    fn bad_input_is_named_whatever_the_state() {
        let granted = {
            let mut s = requested(1_000);
            s.propose(input(1_000), "alice", Utc::now()).unwrap();
            s.approve("", "bob", Utc::now()).unwrap();
            s
        };
        let refused = {
            let mut s = requested(1_000);
            s.refuse("hors programme", "bob", Utc::now()).unwrap();
            s
        };
        let stopped = {
            let mut s = requested(1_000);
            s.stop(Utc::now());
            s
        };
        let proposed = {
            let mut s = requested(1_000);
            s.propose(input(1_000), "alice", Utc::now()).unwrap();
            s
        };
        for s in [requested(1_000), proposed, granted, refused, stopped] {
            let state = format!("{:?}, stopped: {}", s.status, s.plan_stopped);
            let invalid = |r: Result<_, DomainError>| matches!(r, Err(DomainError::Invalid(_)));
            let bad_inputs = [
                ProposalInput {
                    amount_cents: 0,
                    ..input(1)
                },
                ProposalInput {
                    legal_act: None,
                    ..input(1)
                },
                ProposalInput {
                    beneficiary_siret: "1",
                    ..input(1)
                },
                ProposalInput {
                    budget_year: 1900,
                    ..input(1)
                },
                ProposalInput {
                    comment: "\u{1b}",
                    ..input(1)
                },
            ];
            for bad in bad_inputs {
                assert!(bad.check().is_err(), "{bad:?}");
                let what = format!("{bad:?} on {state}");
                assert!(
                    invalid(s.clone().propose(bad, "carol", Utc::now())),
                    "{what}"
                );
            }
            let long = "x".repeat(MAX_REFERENCE + 1);
            assert!(
                invalid(s.clone().approve(&long, "carol", Utc::now()).map(drop)),
                "{state}"
            );
            for reason in ["", " ", "\u{0}"] {
                assert!(
                    invalid(s.clone().refuse(reason, "carol", Utc::now())),
                    "{state}"
                );
            }
        }
    }

    #[test]
    fn a_newer_submission_is_remembered_once() {
        let mut s = requested(1_000);
        assert!(!s.note_submission(1, Utc::now()), "the same");
        assert!(s.note_submission(3, Utc::now()));
        assert_eq!((s.submission_number, s.version), (3, 2));
        assert!(!s.note_submission(2, Utc::now()), "older");
        assert!(!s.close_request(3, Utc::now()), "not newer");
        assert!(s.close_request(4, Utc::now()));
        assert_eq!(s.status, SubsidyStatus::Closed);
        assert_eq!((s.submission_number, s.version), (4, 3));
    }

    #[test]
    fn a_stopped_plan_closes_an_open_request() {
        let mut s = requested(1_000);
        s.propose(input(1_000), "alice", Utc::now()).unwrap();
        assert!(s.stop(Utc::now()));
        assert!(!s.stop(Utc::now()), "once");
        assert_eq!(s.status, SubsidyStatus::Closed);
        assert!(matches!(
            s.propose(input(1_000), "alice", Utc::now()),
            Err(DomainError::WrongState { .. })
        ));
    }
}
