//! A territory's accompaniment plan and its charter (charte d'accompagnement).

use chrono::{DateTime, NaiveDate, Utc};

use super::DomainError;

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanStatus {
    /// Being prepared; its charter is not fully signed yet.
    Draft,
    /// The charter is signed: the plan runs.
    Active,
    Completed,
    /// Stopped early (the territory withdrew, or the programme decided so).
    Stopped,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Draft => "draft",
            PlanStatus::Active => "active",
            PlanStatus::Completed => "completed",
            PlanStatus::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Draft, Self::Active, Self::Completed, Self::Stopped]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, PlanStatus::Completed | PlanStatus::Stopped)
    }

    /// Whether the plan may move to `target`.
    pub fn can_move_to(self, target: PlanStatus) -> bool {
        use PlanStatus::*;
        matches!(
            (self, target),
            (Draft, Active) | (Active, Completed) | (Draft, Stopped) | (Active, Stopped)
        )
    }
}

impl std::fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Someone who signs the charter for a party (the territory, ANCT…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatory {
    pub name: String,
    /// Function, e.g. "maire", "directeur général de l'ANCT".
    pub role: String,
    pub signed_on: Option<NaiveDate>,
}

/// One version of the charter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharterVersion {
    /// 1, 2, …
    pub number: u32,
    /// Where the document is kept (e.g. a GED reference or a URL).
    pub document_ref: String,
    /// Lowercase hex SHA-256 of the document: what was signed.
    pub content_sha256: String,
    /// What changed from the previous version.
    pub change_summary: String,
    pub signatories: Vec<Signatory>,
    pub created_at: DateTime<Utc>,
}

impl CharterVersion {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = super::Violations::default();
        if self.document_ref.trim().is_empty() || self.document_ref.len() > 500 {
            v.add("document_ref", "is required (at most 500 characters)");
        }
        if self.content_sha256.len() != 64
            || !self
                .content_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            v.add("content_sha256", "must be 64 lowercase hexadecimal digits");
        }
        if self.change_summary.chars().count() > 2_000 {
            v.add("change_summary", "at most 2000 characters");
        }
        if self.signatories.is_empty() {
            v.add("signatories", "at least one signatory");
        }
        if self.signatories.len() > 20 {
            v.add("signatories", "at most 20 signatories");
        }
        for (i, s) in self.signatories.iter().enumerate() {
            if s.name.trim().is_empty() || s.name.chars().count() > 200 {
                v.add(
                    format!("signatories[{i}].name"),
                    "is required (at most 200 characters)",
                );
            }
            if s.role.trim().is_empty() || s.role.chars().count() > 200 {
                v.add(
                    format!("signatories[{i}].role"),
                    "is required (at most 200 characters)",
                );
            }
        }
        Ok(v.into_result()?)
    }

    pub fn fully_signed(&self) -> bool {
        !self.signatories.is_empty() && self.signatories.iter().all(|s| s.signed_on.is_some())
    }
}

/// The charter: its versions, the last one being the one to sign.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Charter {
    pub versions: Vec<CharterVersion>,
}

/// What signing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// Recorded; others have still to sign.
    Partly,
    /// The last signature: the charter is signed, the plan becomes active.
    Fully,
}

impl Charter {
    pub fn current(&self) -> Option<&CharterVersion> {
        self.versions.last()
    }

    /// Adds a version; only before the charter is signed (later changes are amendments of
    /// the plan years, not of the charter).
    pub fn add_version(
        &mut self,
        status: PlanStatus,
        mut version: CharterVersion,
    ) -> Result<u32, DomainError> {
        if status != PlanStatus::Draft {
            return Err(DomainError::WrongState {
                what: "plan",
                current: status.to_string(),
                action: "add a charter version",
            });
        }
        version.number = self.versions.last().map_or(1, |v| v.number + 1);
        for s in &mut version.signatories {
            s.signed_on = None;
        }
        version.validate()?;
        self.versions.push(version);
        Ok(self.versions.len() as u32)
    }

    /// Records that signatory `index` of version `number` signed on `on`. Only the current
    /// version can be signed, once per signatory, not in the future.
    pub fn sign(
        &mut self,
        number: u32,
        index: usize,
        on: NaiveDate,
        today: NaiveDate,
    ) -> Result<Signed, DomainError> {
        let Some(current) = self.versions.last_mut() else {
            return Err(DomainError::WrongState {
                what: "charter",
                current: "without any version".into(),
                action: "sign",
            });
        };
        if number != current.number {
            return Err(DomainError::WrongState {
                what: "charter",
                current: format!("at version {}", current.number),
                action: "sign another version",
            });
        }
        if on > today {
            return Err(DomainError::invalid("signed_on", "is in the future"));
        }
        let Some(signatory) = current.signatories.get_mut(index) else {
            return Err(DomainError::invalid(
                "signatory_index",
                format!("the version has {} signatories", current.signatories.len()),
            ));
        };
        if signatory.signed_on.is_some() {
            return Err(DomainError::WrongState {
                what: "signatory",
                current: "signed already".into(),
                action: "sign again",
            });
        }
        signatory.signed_on = Some(on);
        Ok(if current.fully_signed() {
            Signed::Fully
        } else {
            Signed::Partly
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(signatories: &[&str]) -> CharterVersion {
        CharterVersion {
            number: 0,
            document_ref: "ged://charte/42218".into(),
            content_sha256: "a".repeat(64),
            change_summary: String::new(),
            signatories: signatories
                .iter()
                .map(|n| Signatory {
                    name: n.to_string(),
                    role: "maire".into(),
                    signed_on: None,
                })
                .collect(),
            created_at: Utc::now(),
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 6, d).unwrap()
    }

    #[test]
    fn plan_status_machine() {
        use PlanStatus::*;
        let all = [Draft, Active, Completed, Stopped];
        let allowed: Vec<_> = all
            .iter()
            .flat_map(|a| all.iter().map(move |b| (*a, *b)))
            .filter(|(a, b)| a.can_move_to(*b))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Draft, Active),
                (Draft, Stopped),
                (Active, Completed),
                (Active, Stopped)
            ]
        );
        assert!(Completed.is_final() && Stopped.is_final());
        for s in all {
            assert_eq!(PlanStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn the_charter_is_signed_by_every_signatory_of_its_last_version() {
        let mut charter = Charter::default();
        assert_eq!(
            charter
                .add_version(PlanStatus::Draft, version(&["Maire", "ANCT"]))
                .unwrap(),
            1
        );
        assert_eq!(charter.sign(1, 0, day(2), day(3)).unwrap(), Signed::Partly);
        // A new version: signatures start over.
        assert_eq!(
            charter
                .add_version(PlanStatus::Draft, version(&["Maire", "ANCT"]))
                .unwrap(),
            2
        );
        assert!(
            charter.sign(1, 1, day(2), day(3)).is_err(),
            "an old version"
        );
        assert!(charter.sign(2, 0, day(4), day(3)).is_err(), "in the future");
        assert!(
            charter.sign(2, 5, day(2), day(3)).is_err(),
            "no such signatory"
        );
        assert_eq!(charter.sign(2, 0, day(3), day(3)).unwrap(), Signed::Partly);
        assert!(charter.sign(2, 0, day(3), day(3)).is_err(), "twice");
        assert_eq!(charter.sign(2, 1, day(3), day(3)).unwrap(), Signed::Fully);
        assert!(
            charter
                .add_version(PlanStatus::Active, version(&["x"]))
                .is_err(),
            "no new version once active"
        );
    }

    #[test]
    fn charter_versions_are_validated() {
        let mut bad = version(&[]);
        bad.content_sha256 = "XYZ".into();
        bad.document_ref = String::new();
        let Err(DomainError::Invalid(v)) = Charter::default().add_version(PlanStatus::Draft, bad)
        else {
            panic!("refused");
        };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["document_ref", "content_sha256", "signatories"]
        );
    }
}
