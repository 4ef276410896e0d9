//! A territory's accompaniment plan and its charter (charte d'accompagnement).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::DomainError;
use super::action::{Action, Submission, submit};
use super::calendar::{PLAN_YEARS, plan_year, year_of};
use super::review::{Celebration, Review, ReviewScope};

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

/// Someone who signs the charter for a party (the territory, ANCT…). Personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatory {
    pub name: String,
    /// Function, e.g. "maire", "directeur général de l'ANCT".
    pub role: String,
    /// Lowercase; optional. An erasure request names the person by its SHA-256.
    #[serde(default)]
    pub email: Option<String>,
    pub signed_on: Option<NaiveDate>,
}

impl Signatory {
    /// What remains of a signatory whose personal data was erased: the role and the date,
    /// which the charter's history needs.
    pub fn erase(&mut self) {
        self.name = ERASED.to_string();
        self.email = None;
    }

    /// The address's fingerprint, as erasure events name a person.
    pub fn email_fingerprint(&self) -> Option<String> {
        self.email
            .as_deref()
            .map(tde_runtime::personal_data::fingerprint)
    }
}

/// The name left in place of an erased person.
pub const ERASED: &str = "(données effacées)";

/// One version of the charter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        if tde_runtime::input::problem(&self.change_summary, 2000, true).is_some() {
            v.add(
                "change_summary",
                "at most 2000 characters, no control characters but line breaks",
            );
        }
        if self.signatories.is_empty() {
            v.add("signatories", "at least one signatory");
        }
        if self.signatories.len() > 20 {
            v.add("signatories", "at most 20 signatories");
        }
        for (i, s) in self.signatories.iter().enumerate() {
            if s.name.trim().is_empty()
                || tde_runtime::input::problem(&s.name, 200, false).is_some()
            {
                v.add(
                    format!("signatories[{i}].name"),
                    "is required (at most 200 characters, no control characters)",
                );
            }
            if s.role.trim().is_empty()
                || tde_runtime::input::problem(&s.role, 200, false).is_some()
            {
                v.add(
                    format!("signatories[{i}].role"),
                    "is required (at most 200 characters, no control characters)",
                );
            }
            if let Some(email) = &s.email
                && !email_address::EmailAddress::is_valid(email)
            {
                v.add(
                    format!("signatories[{i}].email"),
                    "is not a valid e-mail address",
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

/// A submission of a plan year, as the plan records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct YearSubmission {
    pub year: u8,
    pub submission: Submission,
    pub at: DateTime<Utc>,
    pub actor: String,
}

/// A review, as the plan records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedReview {
    pub review: Review,
    pub at: DateTime<Utc>,
    pub actor: String,
}

/// A territory's accompaniment plan: three plan years from its start date.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub id: String,
    pub territory_id: String,
    pub territory_name: String,
    pub region_code: String,
    pub title: String,
    pub start_date: NaiveDate,
    pub status: PlanStatus,
    /// Why it was stopped.
    pub status_reason: String,
    pub charter: Charter,
    pub submissions: Vec<YearSubmission>,
    pub reviews: Vec<RecordedReview>,
    pub celebrations: Vec<Celebration>,
    /// + 1 at every change: the etag.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn validate_title(title: &str) -> Result<(), DomainError> {
    if title.trim().is_empty() || tde_runtime::input::problem(title, 200, false).is_some() {
        return Err(DomainError::invalid(
            "title",
            "is required (at most 200 characters, no control characters)",
        ));
    }
    Ok(())
}

fn validate_start(start: NaiveDate) -> Result<(), DomainError> {
    plan_year(start, PLAN_YEARS)
        .map(|_| ())
        .map_err(|_| DomainError::invalid("start_date", "is out of range"))
}

impl Plan {
    /// A new draft plan for a territory.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        territory_id: String,
        territory_name: String,
        region_code: String,
        title: &str,
        start_date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let mut v = super::Violations::default();
        v.check(validate_title(title));
        v.check(validate_start(start_date));
        v.into_result()?;
        Ok(Self {
            id,
            territory_id,
            territory_name,
            region_code,
            title: title.trim().to_string(),
            start_date,
            status: PlanStatus::Draft,
            status_reason: String::new(),
            charter: Charter::default(),
            submissions: Vec::new(),
            reviews: Vec::new(),
            celebrations: Vec::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }

    pub fn etag(&self) -> String {
        self.version.to_string()
    }

    fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }

    /// The first and the (exclusive) last day of plan year `n`.
    pub fn year(&self, n: u8) -> Result<(NaiveDate, NaiveDate), DomainError> {
        plan_year(self.start_date, n)
    }

    /// The plan year holding `day`, if any.
    pub fn year_of(&self, day: NaiveDate) -> Option<u8> {
        year_of(self.start_date, day)
    }

    fn wrong(&self, action: &'static str) -> DomainError {
        DomainError::WrongState {
            what: "plan",
            current: self.status.to_string(),
            action,
        }
    }

    /// Actions and meetings change only while the plan is a draft or active.
    pub fn ensure_open(&self, action: &'static str) -> Result<(), DomainError> {
        if self.status.is_final() {
            return Err(self.wrong(action));
        }
        Ok(())
    }

    fn move_to(
        &mut self,
        target: PlanStatus,
        reason: &str,
        action: &'static str,
        now: DateTime<Utc>,
    ) -> Result<PlanStatus, DomainError> {
        if !self.status.can_move_to(target) {
            return Err(self.wrong(action));
        }
        let from = self.status;
        self.status = target;
        self.status_reason = reason.trim().to_string();
        self.touch(now);
        Ok(from)
    }

    /// Updates the title.
    pub fn retitle(&mut self, title: &str, now: DateTime<Utc>) -> Result<(), DomainError> {
        validate_title(title)?;
        self.title = title.trim().to_string();
        self.touch(now);
        Ok(())
    }

    /// Moves the start date: only while the plan is a draft and nothing is dated by it yet.
    pub fn restart(
        &mut self,
        start: NaiveDate,
        has_dated_items: bool,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        if self.status != PlanStatus::Draft {
            return Err(self.wrong("change its start date"));
        }
        if has_dated_items {
            return Err(DomainError::WrongState {
                what: "plan",
                current: "holding actions or steering meetings".into(),
                action: "change its start date",
            });
        }
        validate_start(start)?;
        self.start_date = start;
        self.touch(now);
        Ok(())
    }

    /// Stops the plan (the territory withdrew, or the programme decided so).
    pub fn stop(&mut self, reason: &str, now: DateTime<Utc>) -> Result<PlanStatus, DomainError> {
        if reason.trim().is_empty() || tde_runtime::input::problem(reason, 2000, true).is_some() {
            return Err(DomainError::invalid(
                "reason",
                "is required (at most 2000 characters)",
            ));
        }
        self.move_to(PlanStatus::Stopped, reason, "stop it", now)
    }

    /// Completes an active plan; its final review must be recorded first.
    pub fn complete(&mut self, now: DateTime<Utc>) -> Result<PlanStatus, DomainError> {
        if self.status == PlanStatus::Active && self.review(ReviewScope::Final).is_none() {
            return Err(DomainError::WrongState {
                what: "plan",
                current: "without its final review".into(),
                action: "complete it",
            });
        }
        self.move_to(PlanStatus::Completed, "", "complete it", now)
    }

    pub fn add_charter_version(
        &mut self,
        version: CharterVersion,
        now: DateTime<Utc>,
    ) -> Result<u32, DomainError> {
        let number = self.charter.add_version(self.status, version)?;
        self.touch(now);
        Ok(number)
    }

    /// Records a signature; the last one makes the plan active.
    pub fn sign_charter(
        &mut self,
        number: u32,
        index: usize,
        on: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Signed, DomainError> {
        if self.status != PlanStatus::Draft {
            return Err(self.wrong("sign its charter"));
        }
        let signed = self.charter.sign(number, index, on, now.date_naive())?;
        if signed == Signed::Fully {
            self.status = PlanStatus::Active;
        }
        self.touch(now);
        Ok(signed)
    }

    pub fn last_submission(&self, year: u8) -> Option<&YearSubmission> {
        self.submissions.iter().rev().find(|s| s.year == year)
    }

    /// Submits plan year `year`'s programme (`actions`: the year's actions) for funding.
    pub fn submit_year<'a>(
        &mut self,
        year: u8,
        actions: impl IntoIterator<Item = &'a Action> + Clone,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Submission, DomainError> {
        self.year(year)?;
        if self.status != PlanStatus::Active {
            return Err(self.wrong("submit a programme (its charter must be signed)"));
        }
        let submission = submit(self.last_submission(year).map(|s| &s.submission), actions)?;
        self.submissions.push(YearSubmission {
            year,
            submission: submission.clone(),
            at: now,
            actor: actor.to_string(),
        });
        self.touch(now);
        Ok(submission)
    }

    pub fn review(&self, scope: ReviewScope) -> Option<&RecordedReview> {
        self.reviews.iter().find(|r| r.review.scope == scope)
    }

    /// Records a year's review or the final one, once each, while the plan is active.
    pub fn record_review(
        &mut self,
        review: Review,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        review.validate()?;
        if self.status != PlanStatus::Active {
            return Err(self.wrong("record a review"));
        }
        if self.review(review.scope).is_some() {
            return Err(DomainError::WrongState {
                what: "review",
                current: "recorded already".into(),
                action: "record it again",
            });
        }
        self.reviews.push(RecordedReview {
            review,
            at: now,
            actor: actor.to_string(),
        });
        self.touch(now);
        Ok(())
    }

    pub fn add_celebration(
        &mut self,
        celebration: Celebration,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        celebration.validate()?;
        if self.status == PlanStatus::Stopped {
            return Err(self.wrong("add a celebration"));
        }
        if self.celebrations.len() >= 200 {
            return Err(DomainError::invalid("celebration", "at most 200 per plan"));
        }
        self.celebrations.push(celebration);
        self.touch(now);
        Ok(())
    }

    /// Erases the signatories whose address has SHA-256 `fingerprint`; whether any was.
    pub fn erase_person(&mut self, fingerprint: &str, now: DateTime<Utc>) -> bool {
        let mut erased = false;
        for s in self
            .charter
            .versions
            .iter_mut()
            .flat_map(|v| v.signatories.iter_mut())
        {
            if s.email_fingerprint().as_deref() == Some(fingerprint) {
                s.erase();
                erased = true;
            }
        }
        if erased {
            self.touch(now);
        }
        erased
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
                    email: None,
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

    #[test]
    fn a_plan_from_draft_to_completed() {
        let now = Utc::now();
        let mut plan = Plan::new(
            "p".into(),
            "t".into(),
            "Saint-Étienne".into(),
            "84".into(),
            "Plan d'engagement",
            day(1),
            now,
        )
        .unwrap();
        let mut v = version(&["Alice", "Bob"]);
        v.signatories[0].email = Some("alice@mairie.fr".into());
        plan.add_charter_version(v, now).unwrap();
        assert_eq!(plan.sign_charter(1, 0, day(1), now), Ok(Signed::Partly));
        assert_eq!(plan.status, PlanStatus::Draft);
        assert_eq!(plan.sign_charter(1, 1, day(1), now), Ok(Signed::Fully));
        assert_eq!(plan.status, PlanStatus::Active);
        assert!(plan.add_charter_version(version(&["C"]), now).is_err());
        assert!(plan.complete(now).is_err(), "the final review comes first");
        let review = Review {
            scope: ReviewScope::Final,
            indicators: Vec::new(),
            narrative: "Bilan".into(),
        };
        plan.record_review(review.clone(), "n", now).unwrap();
        assert!(plan.record_review(review, "n", now).is_err(), "once");
        assert_eq!(plan.complete(now), Ok(PlanStatus::Active));
        assert!(plan.stop("trop tard", now).is_err());

        use sha2::Digest as _;
        let fp: String = sha2::Sha256::digest(b"alice@mairie.fr")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(plan.erase_person(&fp, now));
        let alice = &plan.charter.versions[0].signatories[0];
        assert_eq!(alice.name, ERASED);
        assert_eq!(alice.email, None);
        assert_eq!(alice.signed_on, Some(day(1)), "the signature stays");
        assert!(!plan.erase_person(&fp, now));
    }

    #[test]
    fn the_start_date_moves_only_in_an_empty_draft() {
        let now = Utc::now();
        let mut plan = Plan::new(
            "p".into(),
            "t".into(),
            "T".into(),
            "84".into(),
            "P",
            day(1),
            now,
        )
        .unwrap();
        assert!(plan.restart(day(2), true, now).is_err());
        plan.restart(day(2), false, now).unwrap();
        assert_eq!(plan.year(1).unwrap().0, day(2));
        assert!(
            Plan::new(
                "p".into(),
                "t".into(),
                "T".into(),
                "84".into(),
                " ",
                day(1),
                now
            )
            .is_err()
        );
    }
}
