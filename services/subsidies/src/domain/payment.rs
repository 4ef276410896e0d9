//! Payments in tranches (versements): the advance (avance) at approval, the balance (solde)
//! after the year's review. Each goes scheduled → authorised → sent → paid, or failed with
//! the paying system's reason; one not yet sent can be cancelled.

use chrono::{DateTime, NaiveDate, Utc};
use tde_runtime::format::euros;

use super::DomainError;
use super::money::advance_of;
use super::subsidy::Subsidy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentKind {
    Advance,
    Balance,
}

impl PaymentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Advance => "advance",
            Self::Balance => "balance",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Advance, Self::Balance]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Scheduled,
    Authorised,
    Sent,
    Paid,
    Failed,
    Cancelled,
}

impl PaymentStatus {
    pub const ALL: [Self; 6] = [
        Self::Scheduled,
        Self::Authorised,
        Self::Sent,
        Self::Paid,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Authorised => "authorised",
            Self::Sent => "sent",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Money on its way: not paid yet, not given up.
    pub fn is_in_flight(self) -> bool {
        matches!(self, Self::Scheduled | Self::Authorised | Self::Sent)
    }
}

/// What the paying system reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent { reference: String },
    Paid { reference: String, on: NaiveDate },
    Failed { reason: String },
}

impl Outcome {
    /// Checks what the caller reported, whatever the payment's state: bad input is named as
    /// such before anything is read.
    pub fn check(&self) -> Result<(), DomainError> {
        match self {
            Self::Sent { reference } | Self::Paid { reference, .. } => {
                super::text("reference", reference, MAX_REFERENCE)
            }
            Self::Failed { reason } if reason.trim().is_empty() => {
                Err(DomainError::invalid("failure_reason", "is required"))
            }
            Self::Failed { reason } => super::text("failure_reason", reason, MAX_REASON),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub subsidy_id: String,
    pub territory_id: String,
    pub region_code: String,
    pub envelope_id: String,
    pub kind: PaymentKind,
    pub amount_cents: i64,
    pub status: PaymentStatus,
    pub reference: String,
    pub failure_reason: String,
    pub paid_on: Option<NaiveDate>,
    pub authorised_by: String,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub const MAX_REFERENCE: usize = 100;
pub const MAX_REASON: usize = 1_000;

impl Payment {
    pub fn schedule(
        id: String,
        subsidy: &Subsidy,
        envelope_id: &str,
        kind: PaymentKind,
        amount_cents: i64,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            subsidy_id: subsidy.id.clone(),
            territory_id: subsidy.territory_id.clone(),
            region_code: subsidy.region_code.clone(),
            envelope_id: envelope_id.to_string(),
            kind,
            amount_cents,
            status: PaymentStatus::Scheduled,
            reference: String::new(),
            failure_reason: String::new(),
            paid_on: None,
            authorised_by: String::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn wrong_state(&self, action: &'static str) -> DomainError {
        DomainError::WrongState {
            what: "payment",
            current: self.status.as_str().to_string(),
            action,
        }
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }

    pub fn authorise(&mut self, actor: &str, now: DateTime<Utc>) -> Result<(), DomainError> {
        if self.status != PaymentStatus::Scheduled {
            return Err(self.wrong_state("authorise it: only a scheduled payment can be"));
        }
        self.status = PaymentStatus::Authorised;
        self.authorised_by = actor.to_string();
        self.touch(now);
        Ok(())
    }

    /// Records what the paying system said. Only an authorised payment is sent; paid or
    /// failed from authorised or sent.
    pub fn record(&mut self, outcome: Outcome, now: DateTime<Utc>) -> Result<(), DomainError> {
        outcome.check()?;
        match outcome {
            Outcome::Sent { reference } => {
                if self.status != PaymentStatus::Authorised {
                    return Err(self.wrong_state("record it sent: it must be authorised first"));
                }
                self.status = PaymentStatus::Sent;
                if !reference.trim().is_empty() {
                    self.reference = reference.trim().to_string();
                }
            }
            Outcome::Paid { reference, on } => {
                if !matches!(self.status, PaymentStatus::Authorised | PaymentStatus::Sent) {
                    return Err(self.wrong_state("record it paid: it must be authorised first"));
                }
                self.status = PaymentStatus::Paid;
                self.paid_on = Some(on);
                if !reference.trim().is_empty() {
                    self.reference = reference.trim().to_string();
                }
            }
            Outcome::Failed { reason } => {
                if !matches!(self.status, PaymentStatus::Authorised | PaymentStatus::Sent) {
                    return Err(self.wrong_state("record it failed: it must be authorised first"));
                }
                self.status = PaymentStatus::Failed;
                self.failure_reason = reason.trim().to_string();
            }
        }
        self.touch(now);
        Ok(())
    }

    /// Gives up a payment not yet sent (the plan stopped).
    pub fn cancel(&mut self, now: DateTime<Utc>) -> bool {
        if !matches!(
            self.status,
            PaymentStatus::Scheduled | PaymentStatus::Authorised
        ) {
            return false;
        }
        self.status = PaymentStatus::Cancelled;
        self.touch(now);
        true
    }

    pub fn etag(&self) -> String {
        super::etag(self.version)
    }
}

/// What payments of a subsidy hold: paid, and on their way, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tranches {
    pub advance_paid_or_in_flight: i64,
    pub balance_paid_or_in_flight: i64,
    pub in_flight: i64,
}

impl Tranches {
    pub fn of<'a>(payments: impl IntoIterator<Item = &'a Payment>) -> Self {
        let mut t = Self::default();
        for p in payments {
            let live = p.status.is_in_flight();
            if live {
                t.in_flight += p.amount_cents;
            }
            if live || p.status == PaymentStatus::Paid {
                match p.kind {
                    PaymentKind::Advance => t.advance_paid_or_in_flight += p.amount_cents,
                    PaymentKind::Balance => t.balance_paid_or_in_flight += p.amount_cents,
                }
            }
        }
        t
    }
}

/// The amount of the next payment of `kind` for `subsidy`, given its payments so far; or why
/// none can be scheduled.
pub fn next_tranche(
    subsidy: &Subsidy,
    kind: PaymentKind,
    tranches: Tranches,
) -> Result<i64, DomainError> {
    if !subsidy.status.is_granted() {
        return Err(DomainError::WrongState {
            what: "subsidy",
            current: subsidy.status.as_str().to_string(),
            action: "pay it: nothing was granted",
        });
    }
    if subsidy.plan_stopped {
        return Err(DomainError::refused(
            "PLAN_STOPPED",
            subsidy.plan_id.clone(),
            "the plan was stopped: nothing more is paid (record a clawback for what was paid)",
        ));
    }
    let free = subsidy.remaining_cents() - tranches.in_flight;
    let amount = match kind {
        PaymentKind::Advance => (advance_of(subsidy.committed_cents(), subsidy.advance_percent)
            - tranches.advance_paid_or_in_flight)
            .min(free),
        PaymentKind::Balance => {
            if !subsidy.reviewed {
                return Err(DomainError::refused(
                    "REVIEW_MISSING",
                    subsidy.id.clone(),
                    format!(
                        "the balance of plan year {} cannot be paid before its review (bilan) is recorded in the plans service",
                        subsidy.plan_year
                    ),
                ));
            }
            free
        }
    };
    if amount <= 0 {
        return Err(DomainError::refused(
            "NOTHING_TO_PAY",
            subsidy.id.clone(),
            format!(
                "no {} is left to pay: {} committed, {} paid, {} in payments under way",
                kind.as_str(),
                euros(subsidy.committed_cents()),
                euros(subsidy.paid_cents),
                euros(tranches.in_flight),
            ),
        ));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subsidy::{LegalAct, LegalActKind, ProposalInput, SubsidyStatus};

    fn granted(amount: i64, percent: u8) -> Subsidy {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut s = Subsidy::request(
            "s".into(),
            "p".into(),
            1,
            0,
            ("t", "T", "84"),
            (d("2027-01-01"), d("2028-01-01")),
            1,
            amount,
            Utc::now(),
        );
        s.propose(
            ProposalInput {
                amount_cents: amount,
                legal_act: Some(LegalAct {
                    kind: LegalActKind::Order,
                    reference: "A-1".into(),
                    date: d("2027-02-01"),
                }),
                beneficiary_siret: "21750001600019",
                budget_year: 2027,
                commitment_number: "",
                comment: "",
            },
            "alice",
            Utc::now(),
        )
        .unwrap();
        s.approve("", "bob", Utc::now()).unwrap();
        s.advance_percent = percent;
        assert_eq!(s.status, SubsidyStatus::Granted);
        s
    }

    fn pay(s: &mut Subsidy, kind: PaymentKind, amount: i64) -> Payment {
        let mut p = Payment::schedule("x".into(), s, "e", kind, amount, Utc::now());
        p.authorise("carol", Utc::now()).unwrap();
        p.record(
            Outcome::Paid {
                reference: "VIR-1".into(),
                on: Utc::now().date_naive(),
            },
            Utc::now(),
        )
        .unwrap();
        s.record_paid(amount, Utc::now()).unwrap();
        p
    }

    #[test]
    fn advance_then_balance_after_review_pay_the_grant_exactly() {
        let mut s = granted(1_000_001, 50);
        let advance = next_tranche(&s, PaymentKind::Advance, Tranches::default()).unwrap();
        assert_eq!(advance, 500_001);
        let a = pay(&mut s, PaymentKind::Advance, advance);
        let err = next_tranche(&s, PaymentKind::Balance, Tranches::of([&a])).unwrap_err();
        let DomainError::Refused {
            kind, description, ..
        } = err
        else {
            panic!()
        };
        assert_eq!(kind, "REVIEW_MISSING");
        assert!(description.contains("review (bilan)"), "{description}");
        s.mark_reviewed(Utc::now());
        let balance = next_tranche(&s, PaymentKind::Balance, Tranches::of([&a])).unwrap();
        assert_eq!(advance + balance, 1_000_001);
        let b = pay(&mut s, PaymentKind::Balance, balance);
        assert_eq!(s.remaining_cents(), 0);
        assert!(matches!(
            next_tranche(&s, PaymentKind::Balance, Tranches::of([&a, &b])),
            Err(DomainError::Refused {
                kind: "NOTHING_TO_PAY",
                ..
            })
        ));
    }

    #[test]
    fn a_live_advance_is_not_scheduled_twice_and_a_failed_one_again() {
        let s = granted(1_000, 30);
        let mut p = Payment::schedule("a".into(), &s, "e", PaymentKind::Advance, 300, Utc::now());
        assert!(next_tranche(&s, PaymentKind::Advance, Tranches::of([&p])).is_err());
        p.authorise("carol", Utc::now()).unwrap();
        p.record(
            Outcome::Failed {
                reason: "IBAN clos".into(),
            },
            Utc::now(),
        )
        .unwrap();
        assert_eq!(
            next_tranche(&s, PaymentKind::Advance, Tranches::of([&p])).unwrap(),
            300
        );
    }

    #[test]
    fn payment_states_move_forward_only() {
        let s = granted(1_000, 50);
        let mut p = Payment::schedule("a".into(), &s, "e", PaymentKind::Advance, 500, Utc::now());
        let sent = Outcome::Sent {
            reference: "R".into(),
        };
        assert!(matches!(
            p.record(sent.clone(), Utc::now()),
            Err(DomainError::WrongState { .. })
        ));
        p.authorise("carol", Utc::now()).unwrap();
        assert!(p.authorise("carol", Utc::now()).is_err());
        assert!(matches!(
            p.record(Outcome::Failed { reason: "".into() }, Utc::now()),
            Err(DomainError::Invalid(_))
        ));
        p.record(sent, Utc::now()).unwrap();
        assert_eq!(p.reference, "R");
        assert!(!p.cancel(Utc::now()), "a sent payment is not cancelled");
        p.record(
            Outcome::Paid {
                reference: String::new(),
                on: Utc::now().date_naive(),
            },
            Utc::now(),
        )
        .unwrap();
        assert_eq!(p.status, PaymentStatus::Paid);
        assert_eq!(p.reference, "R");
        assert!(
            p.record(Outcome::Failed { reason: "x".into() }, Utc::now())
                .is_err()
        );
    }

    #[test]
    fn a_stopped_plan_pays_nothing_more() {
        let mut s = granted(1_000, 50);
        s.stop(Utc::now());
        assert!(matches!(
            next_tranche(&s, PaymentKind::Advance, Tranches::default()),
            Err(DomainError::Refused {
                kind: "PLAN_STOPPED",
                ..
            })
        ));
    }
}
