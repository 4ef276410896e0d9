//! Budget envelopes (enveloppes): one national envelope per budget year, optionally split
//! into sub-envelopes per région. A commitment against a sub-envelope also counts against the
//! national one, so that neither is ever exceeded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::money::MAX_CENTS;
use super::{DomainError, Violations};

/// An envelope and its balances (committed and paid are derived from the ledger, and kept on
/// the row so that approvals check them atomically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub id: String,
    pub budget_year: i32,
    /// Empty for the national envelope.
    pub region_code: String,
    /// The national envelope of the year, for a sub-envelope.
    pub parent_id: Option<String>,
    pub amount_cents: i64,
    pub committed_cents: i64,
    pub paid_cents: i64,
    pub advance_percent: u8,
    pub changes: Vec<EnvelopeChange>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One change of an envelope's amount, with the reason and the act that decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeChange {
    pub previous_cents: i64,
    pub amount_cents: i64,
    pub reason: String,
    pub act_reference: String,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// Longest reason and act reference.
pub const MAX_REASON: usize = 500;
pub const MAX_REFERENCE: usize = 100;

/// Checks a budget year: the programme runs in this century.
pub fn check_budget_year(field: &str, year: i32) -> Result<i32, DomainError> {
    if (2020..=2100).contains(&year) {
        Ok(year)
    } else {
        Err(DomainError::invalid(
            field,
            "must be a budget year between 2020 and 2100",
        ))
    }
}

/// Checks a région code (INSEE, e.g. "84"; overseas collectivities such as "975" count as
/// régions); empty is the national level.
pub fn check_region(field: &str, code: &str) -> Result<(), DomainError> {
    if code.is_empty() || tde_runtime::geography::is_region(code) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            field,
            "must be a région's INSEE code of the 2026 geography (e.g. 84), or empty for the national envelope",
        ))
    }
}

/// Checks a reason and an act reference (both required for money decisions).
pub fn check_reason_and_act(v: &mut Violations, reason: &str, act: &str) {
    if reason.trim().is_empty() {
        v.add("reason", "is required: why the amount is set or changed");
    } else {
        v.check(super::multiline("reason", reason, MAX_REASON));
    }
    if act.trim().is_empty() {
        v.add(
            "act_reference",
            "is required: the act deciding the amount (loi de finances, décision…)",
        );
    } else {
        v.check(super::text("act_reference", act, MAX_REFERENCE));
    }
}

/// Checks a new amount and why it is set: every violation at once, whatever the envelope.
pub fn check_amount_change(amount_cents: i64, reason: &str, act: &str) -> Result<(), DomainError> {
    let mut v = Violations::default();
    check_amount(&mut v, amount_cents);
    check_reason_and_act(&mut v, reason, act);
    Ok(v.into_result()?)
}

fn check_amount(v: &mut Violations, amount_cents: i64) {
    if !(0..=MAX_CENTS).contains(&amount_cents) {
        v.add(
            "amount_cents",
            format!("must be between 0 and {MAX_CENTS} euro cents"),
        );
    }
}

impl Envelope {
    /// A new envelope, before its first change is recorded.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        budget_year: i32,
        region_code: &str,
        parent_id: Option<String>,
        amount_cents: i64,
        advance_percent: u8,
        reason: &str,
        act_reference: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let mut v = Violations::default();
        v.check(check_budget_year("budget_year", budget_year));
        v.check(check_region("region_code", region_code));
        check_amount(&mut v, amount_cents);
        if advance_percent > 100 {
            v.add("advance_percent", "must be a percentage, 0 to 100");
        }
        check_reason_and_act(&mut v, reason, act_reference);
        v.into_result()?;
        Ok(Self {
            id,
            budget_year,
            region_code: region_code.to_string(),
            parent_id,
            amount_cents,
            committed_cents: 0,
            paid_cents: 0,
            advance_percent,
            changes: vec![EnvelopeChange {
                previous_cents: 0,
                amount_cents,
                reason: reason.trim().to_string(),
                act_reference: act_reference.trim().to_string(),
                actor: actor.to_string(),
                at: now,
            }],
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn etag(&self) -> String {
        super::etag(self.version)
    }

    pub fn available_cents(&self) -> i64 {
        self.amount_cents - self.committed_cents
    }

    pub fn is_national(&self) -> bool {
        self.region_code.is_empty()
    }

    /// How the envelope is named to people: "l'enveloppe 2027" or "l'enveloppe 2027 de la
    /// région 84".
    pub fn label(&self) -> String {
        if self.is_national() {
            format!("envelope {}", self.budget_year)
        } else {
            format!(
                "envelope {} of région {}",
                self.budget_year, self.region_code
            )
        }
    }

    /// Raises or lowers the amount. Never below what is committed; a national envelope never
    /// below the sum of its sub-envelopes (`floor`), a sub-envelope never beyond what its
    /// national envelope has not given to other régions (`ceiling`).
    #[allow(clippy::too_many_arguments)]
    pub fn change_amount(
        &mut self,
        amount_cents: i64,
        floor: i64,
        ceiling: Option<i64>,
        reason: &str,
        act_reference: &str,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        check_amount_change(amount_cents, reason, act_reference)?;
        if amount_cents < self.committed_cents {
            return Err(DomainError::refused(
                "BELOW_COMMITTED",
                self.id.clone(),
                format!(
                    "the {} cannot go below what is committed: {} committed, {} asked",
                    self.label(),
                    tde_runtime::format::euros(self.committed_cents),
                    tde_runtime::format::euros(amount_cents),
                ),
            ));
        }
        if amount_cents < floor {
            return Err(DomainError::refused(
                "BELOW_SUB_ENVELOPES",
                self.id.clone(),
                format!(
                    "the {} cannot go below its régions' sub-envelopes: {} given to them",
                    self.label(),
                    tde_runtime::format::euros(floor),
                ),
            ));
        }
        if let Some(ceiling) = ceiling
            && amount_cents > ceiling
        {
            return Err(DomainError::refused(
                "BEYOND_NATIONAL",
                self.id.clone(),
                format!(
                    "the {} can be at most {}: what the national envelope has not given to other régions",
                    self.label(),
                    tde_runtime::format::euros(ceiling),
                ),
            ));
        }
        self.changes.push(EnvelopeChange {
            previous_cents: self.amount_cents,
            amount_cents,
            reason: reason.trim().to_string(),
            act_reference: act_reference.trim().to_string(),
            actor: actor.to_string(),
            at: now,
        });
        self.amount_cents = amount_cents;
        self.version += 1;
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_is_one_of_the_geography_overseas_collectivities_included() {
        for code in ["", "84", "94", "04", "975", "988"] {
            assert!(check_region("region_code", code).is_ok(), "{code:?}");
        }
        for code in ["99", "00", "05", "2A", "8", "840", " 84"] {
            assert!(check_region("region_code", code).is_err(), "{code:?}");
        }
    }

    fn envelope(amount: i64) -> Envelope {
        Envelope::new(
            "e".into(),
            2027,
            "",
            None,
            amount,
            50,
            "loi de finances",
            "LFI 2027",
            "n",
            Utc::now(),
        )
        .unwrap()
    }

    #[test]
    fn an_envelope_needs_a_year_a_reason_and_an_act() {
        let err = Envelope::new(
            "e".into(),
            1999,
            "8",
            None,
            -1,
            120,
            "",
            "",
            "n",
            Utc::now(),
        )
        .unwrap_err();
        let DomainError::Invalid(v) = err else {
            panic!("{err:?}")
        };
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "budget_year",
                "region_code",
                "amount_cents",
                "advance_percent",
                "reason",
                "act_reference"
            ]
        );
    }

    #[test]
    fn never_below_what_is_committed_nor_its_regions() {
        let mut e = envelope(1_000);
        e.committed_cents = 600;
        let now = Utc::now();
        let err = e
            .change_amount(599, 0, None, "gel", "DM 1", "n", now)
            .unwrap_err();
        assert!(matches!(
            err,
            DomainError::Refused {
                kind: "BELOW_COMMITTED",
                ..
            }
        ));
        let err = e
            .change_amount(700, 800, None, "gel", "DM 1", "n", now)
            .unwrap_err();
        assert!(matches!(
            err,
            DomainError::Refused {
                kind: "BELOW_SUB_ENVELOPES",
                ..
            }
        ));
        let err = e
            .change_amount(900, 0, Some(850), "hausse", "DM 2", "n", now)
            .unwrap_err();
        assert!(matches!(
            err,
            DomainError::Refused {
                kind: "BEYOND_NATIONAL",
                ..
            }
        ));
        e.change_amount(600, 0, None, "gel", "DM 1", "n", now)
            .unwrap();
        assert_eq!(e.available_cents(), 0);
        assert_eq!(e.changes.len(), 2);
        assert_eq!(e.changes[1].previous_cents, 1_000);
        assert_eq!(e.version, 2);
    }
}
