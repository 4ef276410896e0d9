//! The accompanied territory (territoire accompagné): its kind and official code, the stage of
//! its path as a state machine, its diagnostic, and the time zone it lives in.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::contact::{EmailAddress, Person, SteeringBody};
use super::recoding::{GeographyIssue, MergedTerritory};
use super::{DomainError, Violations, nest};

/// The kind of local authority (collectivité).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorityKind {
    Commune,
    Epci,
    Departement,
}

impl AuthorityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Commune => "commune",
            Self::Epci => "epci",
            Self::Departement => "departement",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "commune" => Some(Self::Commune),
            "epci" => Some(Self::Epci),
            "departement" => Some(Self::Departement),
            _ => None,
        }
    }

    /// Checks the shape of an official code of this kind: INSEE code of a commune (5
    /// characters, Corsica 2A/2B), SIREN of an EPCI (9 digits, Luhn checksum), code of a
    /// département (2 or 3 characters).
    pub fn validate_code(self, code: &str) -> Result<(), DomainError> {
        let field = "official_code";
        let ok = match self {
            Self::Commune => {
                code.len() == 5
                    && code.is_ascii()
                    && (code.chars().all(|c| c.is_ascii_digit())
                        || ((code.starts_with("2A") || code.starts_with("2B"))
                            && code[2..].chars().all(|c| c.is_ascii_digit())))
            }
            Self::Epci => {
                if code.len() == 9 && code.chars().all(|c| c.is_ascii_digit()) && !luhn(code) {
                    return Err(DomainError::invalid(
                        field,
                        "is not a valid SIREN (checksum)",
                    ));
                }
                code.len() == 9 && code.chars().all(|c| c.is_ascii_digit())
            }
            Self::Departement => {
                matches!(code, "2A" | "2B")
                    || ((code.len() == 2 || code.len() == 3)
                        && code.chars().all(|c| c.is_ascii_digit()))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(DomainError::invalid(
                field,
                match self {
                    Self::Commune => "a commune's INSEE code has 5 characters, e.g. 42218",
                    Self::Epci => "an EPCI's SIREN has 9 digits, e.g. 200000172",
                    Self::Departement => {
                        "a département's code has 2 or 3 characters, e.g. 42, 2A, 974"
                    }
                },
            ))
        }
    }
}

/// The Luhn checksum of SIREN numbers.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The stage of a territory's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Prospect,
    Diagnostic,
    CharterSigned,
    InPath,
    Completed,
    Withdrawn,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prospect => "prospect",
            Self::Diagnostic => "diagnostic",
            Self::CharterSigned => "charter_signed",
            Self::InPath => "in_path",
            Self::Completed => "completed",
            Self::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Prospect,
            Self::Diagnostic,
            Self::CharterSigned,
            Self::InPath,
            Self::Completed,
            Self::Withdrawn,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Withdrawn)
    }

    /// The stage that follows on the path, if any.
    pub fn next(self) -> Option<Self> {
        match self {
            Self::Prospect => Some(Self::Diagnostic),
            Self::Diagnostic => Some(Self::CharterSigned),
            Self::CharterSigned => Some(Self::InPath),
            Self::InPath => Some(Self::Completed),
            Self::Completed | Self::Withdrawn => None,
        }
    }

    /// Checks a move: to the next stage, or to withdrawn from any stage not final.
    pub fn transition(self, target: Self) -> Result<Self, DomainError> {
        let allowed = if target == Self::Withdrawn {
            !self.is_final()
        } else {
            self.next() == Some(target)
        };
        if allowed {
            Ok(target)
        } else {
            Err(DomainError::IllegalTransition {
                current: self,
                target,
            })
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Zone of the reference geography.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Zone {
    Metro,
    Drom,
    Com,
}

impl Zone {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metro => "metro",
            Self::Drom => "drom",
            Self::Com => "com",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "metro" => Some(Self::Metro),
            "drom" => Some(Self::Drom),
            "com" => Some(Self::Com),
            _ => None,
        }
    }
}

/// The IANA time zone of a département or overseas collectivity.
pub fn time_zone_for(departement_code: &str) -> &'static str {
    match departement_code {
        "971" => "America/Guadeloupe",
        "972" => "America/Martinique",
        "973" => "America/Cayenne",
        "974" => "Indian/Reunion",
        "975" => "America/Miquelon",
        "976" => "Indian/Mayotte",
        "977" => "America/St_Barthelemy",
        "978" => "America/Marigot",
        // Terres australes et antarctiques françaises: administered from Saint-Pierre (La Réunion).
        "984" => "Indian/Kerguelen",
        "986" => "Pacific/Wallis",
        "987" => "Pacific/Tahiti",
        "988" => "Pacific/Noumea",
        // Clipperton has no inhabitants; it is administered from French Polynesia.
        "989" => "Pacific/Tahiti",
        _ => "Europe/Paris",
    }
}

/// Engagement issues (enjeux d'engagement): a closed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngagementTheme {
    Youth,
    EcologicalTransition,
    Solidarity,
    CitizenParticipation,
    Volunteering,
    Culture,
    Sport,
    Education,
    Health,
    LivingEnvironment,
    CivilProtection,
}

/// Longest free text accepted in a diagnostic.
pub const MAX_DIAGNOSTIC_TEXT: usize = 20_000;

/// Diagnostic des enjeux d'engagement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub themes: Vec<EngagementTheme>,
    pub text: String,
    pub recorded_at: DateTime<Utc>,
}

impl Diagnostic {
    pub fn new(
        mut themes: Vec<EngagementTheme>,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let mut v = Violations::default();
        if themes.is_empty() {
            v.add("diagnostic.themes", "name at least one engagement issue");
        }
        let text = text.trim();
        if let Some(why) = tde_runtime::input::problem(text, MAX_DIAGNOSTIC_TEXT, true) {
            v.add("diagnostic.text", why);
        }
        v.into_result()?;
        themes.sort();
        themes.dedup();
        Ok(Self {
            themes,
            text: text.to_string(),
            recorded_at: now,
        })
    }
}

/// One transition of the path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageChange {
    /// None for the registration itself.
    pub from: Option<Stage>,
    pub to: Stage,
    pub at: DateTime<Utc>,
    pub actor: String,
    #[serde(default)]
    pub reason: String,
}

/// An official code replaced after communes merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeChange {
    pub old_code: String,
    pub new_code: String,
    pub vintage: String,
    pub at: DateTime<Utc>,
    /// The authority's name under the old code and under the new one (empty in changes
    /// recorded before names were kept).
    #[serde(default)]
    pub old_name: String,
    #[serde(default)]
    pub new_name: String,
}

/// What the reference geography says about an authority, copied at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityFacts {
    pub name: String,
    pub population: i64,
    pub departement_code: String,
    pub region_code: String,
    pub zone: Zone,
    /// The EPCI a commune belongs to.
    pub epci_siren: Option<String>,
}

/// An accompanied territory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Territory {
    pub id: String,
    pub kind: AuthorityKind,
    pub official_code: String,
    pub name: String,
    pub population: i64,
    pub departement_code: String,
    pub region_code: String,
    pub zone: Zone,
    pub time_zone: String,
    pub stage: Stage,
    pub stage_history: Vec<StageChange>,
    pub diagnostic: Option<Diagnostic>,
    pub privileged_contact: Option<Person>,
    pub operational_team: Vec<Person>,
    pub steering_body: Option<SteeringBody>,
    pub code_history: Vec<CodeChange>,
    /// The EPCI a commune belongs to, from the reference geography.
    pub epci_siren: Option<String>,
    /// What a new vintage left for the programme team to decide (see `recoding`).
    pub geography_issue: Option<GeographyIssue>,
    /// Territories merged into this one, with their histories.
    pub merged_territories: Vec<MergedTerritory>,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Territory {
    /// A newly registered territory, at the prospect stage.
    pub fn register(
        id: String,
        kind: AuthorityKind,
        official_code: String,
        facts: AuthorityFacts,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let time_zone = time_zone_for(&facts.departement_code).to_string();
        Self {
            id,
            kind,
            official_code,
            name: facts.name,
            population: facts.population,
            departement_code: facts.departement_code,
            region_code: facts.region_code,
            zone: facts.zone,
            epci_siren: facts.epci_siren,
            time_zone,
            stage: Stage::Prospect,
            stage_history: vec![StageChange {
                from: None,
                to: Stage::Prospect,
                at: now,
                actor: actor.to_string(),
                reason: "registered".into(),
            }],
            diagnostic: None,
            privileged_contact: None,
            operational_team: Vec::new(),
            steering_body: None,
            code_history: Vec::new(),
            geography_issue: None,
            merged_territories: Vec::new(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    /// Moves along the path (or withdraws), recording who and when.
    pub fn move_to(
        &mut self,
        target: Stage,
        actor: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Stage, DomainError> {
        let from = self.stage;
        self.stage = from.transition(target)?;
        self.stage_history.push(StageChange {
            from: Some(from),
            to: target,
            at: now,
            actor: actor.to_string(),
            reason: reason.trim().to_string(),
        });
        self.touch(now);
        Ok(from)
    }

    /// Follows the signature of the territory's charter (the plans service's CharterSigned):
    /// moves the territory along its path up to charter_signed, one recorded step at a time.
    /// Returns the stage of each step's start; none when the territory is already there or
    /// further (a redelivered event has no second effect), or withdrawn.
    pub fn record_charter_signed(
        &mut self,
        actor: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Vec<Stage> {
        let mut steps = Vec::new();
        while matches!(self.stage, Stage::Prospect | Stage::Diagnostic) {
            let Some(next) = self.stage.next() else { break };
            match self.move_to(next, actor, reason, now) {
                Ok(from) => steps.push(from),
                Err(_) => break,
            }
        }
        steps
    }

    /// Where the person with `email` appears: privileged_contact, operational_team or
    /// steering_body.
    pub fn appearances(&self, email: &EmailAddress) -> Vec<(&'static str, &Person)> {
        let mut found = Vec::new();
        if let Some(p) = self
            .privileged_contact
            .as_ref()
            .filter(|p| &p.email == email)
        {
            found.push(("privileged_contact", p));
        }
        for p in self.operational_team.iter().filter(|p| &p.email == email) {
            found.push(("operational_team", p));
        }
        if let Some(body) = &self.steering_body {
            for p in body.members.iter().filter(|p| &p.email == email) {
                found.push(("steering_body", p));
            }
        }
        found
    }

    /// Removes every appearance of the person with `email` (right to erasure), whatever the
    /// stage: the law applies to withdrawn territories too. Returns how many were removed.
    pub fn erase_person(&mut self, email: &EmailAddress, now: DateTime<Utc>) -> usize {
        let before = self.appearances(email).len();
        if before == 0 {
            return 0;
        }
        if self
            .privileged_contact
            .as_ref()
            .is_some_and(|p| &p.email == email)
        {
            self.privileged_contact = None;
        }
        self.operational_team.retain(|p| &p.email != email);
        if let Some(body) = &mut self.steering_body {
            body.members.retain(|p| &p.email != email);
        }
        self.touch(now);
        before
    }

    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.updated_at = now;
    }

    pub fn etag(&self) -> String {
        self.version.to_string()
    }
}

/// The fields a caller may change with UpdateTerritory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdatableField {
    Diagnostic,
    PrivilegedContact,
    OperationalTeam,
    SteeringBody,
}

impl UpdatableField {
    pub const ALL: [Self; 4] = [
        Self::Diagnostic,
        Self::PrivilegedContact,
        Self::OperationalTeam,
        Self::SteeringBody,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Self::Diagnostic => "diagnostic",
            Self::PrivilegedContact => "privileged_contact",
            Self::OperationalTeam => "operational_team",
            Self::SteeringBody => "steering_body",
        }
    }

    /// Parses the paths of a field mask; server-owned or unknown paths are refused.
    pub fn parse_mask(paths: &[String]) -> Result<Vec<Self>, DomainError> {
        if paths.is_empty() {
            return Err(DomainError::invalid(
                "update_mask",
                "name the fields to change: diagnostic, privileged_contact, operational_team, steering_body",
            ));
        }
        if paths.len() > Self::ALL.len() * 2 {
            return Err(DomainError::invalid(
                "update_mask",
                format!("at most {} paths", Self::ALL.len() * 2),
            ));
        }
        let mut fields = Vec::new();
        let mut v = Violations::default();
        for path in paths {
            match Self::ALL.into_iter().find(|f| f.path() == path) {
                Some(f) if !fields.contains(&f) => fields.push(f),
                Some(_) => {}
                None => v.add(
                    "update_mask",
                    format!(
                        "{} cannot be updated; allowed: diagnostic, privileged_contact, operational_team, steering_body",
                        tde_runtime::input::quote(path)
                    ),
                ),
            }
        }
        v.into_result()?;
        Ok(fields)
    }
}

/// The validated new values of an update (absent fields of the mask are cleared).
#[derive(Debug, Clone, Default)]
pub struct TerritoryChanges {
    pub diagnostic: Option<Option<Diagnostic>>,
    pub privileged_contact: Option<Option<Person>>,
    pub operational_team: Option<Vec<Person>>,
    pub steering_body: Option<Option<SteeringBody>>,
}

/// What an update changed, to know which events to publish.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub diagnostic: bool,
    pub roster: bool,
    pub any: bool,
}

impl Territory {
    /// Applies validated changes; refused on a final stage.
    pub fn apply(
        &mut self,
        changes: TerritoryChanges,
        now: DateTime<Utc>,
    ) -> Result<Changed, DomainError> {
        if self.stage.is_final() {
            return Err(DomainError::IllegalTransition {
                current: self.stage,
                target: self.stage,
            });
        }
        let mut changed = Changed::default();
        if let Some(d) = changes.diagnostic {
            // The same themes and text again are not a new diagnostic (its time would differ).
            let same = match (&d, &self.diagnostic) {
                (Some(new), Some(old)) => new.themes == old.themes && new.text == old.text,
                (None, None) => true,
                _ => false,
            };
            if !same {
                self.diagnostic = d;
                changed.diagnostic = true;
            }
        }
        if let Some(c) = changes.privileged_contact
            && c != self.privileged_contact
        {
            self.privileged_contact = c;
            changed.roster = true;
        }
        if let Some(t) = changes.operational_team
            && t != self.operational_team
        {
            // The operational team is among the recipients of steering-meeting invitations.
            self.operational_team = t;
            changed.roster = true;
        }
        if let Some(s) = changes.steering_body
            && s != self.steering_body
        {
            self.steering_body = s;
            changed.roster = true;
        }
        changed.any |= changed.diagnostic || changed.roster;
        if changed.any {
            self.touch(now);
        }
        Ok(changed)
    }
}

/// Validates an operational team.
/// The most people in an operational team. The roster travels whole in
/// `steering_body_changed`, which must stay below the bus's payload limit.
pub const MAX_TEAM: usize = 50;

pub fn validate_team(
    members: Vec<Result<Person, DomainError>>,
) -> Result<Vec<Person>, DomainError> {
    if members.len() > MAX_TEAM {
        return Err(DomainError::invalid(
            "operational_team",
            format!("at most {MAX_TEAM} people"),
        ));
    }
    let mut v = Violations::default();
    let mut team = Vec::new();
    for (i, m) in members.into_iter().enumerate() {
        if let Some(p) = v.check(m.map_err(|e| nest(&format!("operational_team[{i}]."), e))) {
            team.push(p);
        }
    }
    v.into_result()?;
    Ok(team)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operational_team_is_bounded() {
        let person = || Person::new("Claire Durand", "claire@mairie.fr", "", "DGS");
        assert!(validate_team((0..MAX_TEAM).map(|_| person()).collect()).is_ok());
        let Err(DomainError::Invalid(v)) =
            validate_team((0..=MAX_TEAM).map(|_| person()).collect())
        else {
            panic!("refused");
        };
        assert_eq!(v[0].field, "operational_team");
    }

    #[test]
    fn the_path_moves_one_stage_at_a_time() {
        use Stage::*;
        assert_eq!(Prospect.transition(Diagnostic), Ok(Diagnostic));
        assert_eq!(Diagnostic.transition(CharterSigned), Ok(CharterSigned));
        assert_eq!(CharterSigned.transition(InPath), Ok(InPath));
        assert_eq!(InPath.transition(Completed), Ok(Completed));
        assert!(Prospect.transition(CharterSigned).is_err());
        assert!(InPath.transition(Diagnostic).is_err());
        assert!(Prospect.transition(Prospect).is_err());
    }

    #[test]
    fn withdrawal_from_any_stage_not_final() {
        use Stage::*;
        for s in [Prospect, Diagnostic, CharterSigned, InPath] {
            assert_eq!(s.transition(Withdrawn), Ok(Withdrawn));
        }
        for s in [Completed, Withdrawn] {
            let err = s.transition(Withdrawn).unwrap_err();
            assert_eq!(
                err,
                DomainError::IllegalTransition {
                    current: s,
                    target: Withdrawn
                }
            );
            assert!(s.transition(Diagnostic).is_err());
        }
    }

    fn loire_commune(name: &str) -> AuthorityFacts {
        AuthorityFacts {
            name: name.into(),
            population: 172_000,
            departement_code: "42".into(),
            region_code: "84".into(),
            zone: Zone::Metro,
            epci_siren: None,
        }
    }

    #[test]
    fn moves_are_recorded_with_actor_and_time() {
        let now = Utc::now();
        let facts = loire_commune("Saint-Étienne");
        let mut t = Territory::register(
            "id".into(),
            AuthorityKind::Commune,
            "42218".into(),
            facts,
            "alice",
            now,
        );
        assert_eq!(t.time_zone, "Europe/Paris");
        assert_eq!(
            t.move_to(Stage::Diagnostic, "bob", "met", now),
            Ok(Stage::Prospect)
        );
        assert_eq!(t.stage_history.len(), 2);
        assert_eq!(t.stage_history[1].actor, "bob");
        assert_eq!(t.version, 2);
        assert!(t.move_to(Stage::Completed, "bob", "", now).is_err());
        assert_eq!(t.stage, Stage::Diagnostic, "a refused move changes nothing");
        assert_eq!(t.version, 2);
    }

    #[test]
    fn a_signed_charter_moves_the_territory_once() {
        let now = Utc::now();
        let mut t = Territory::register(
            "id".into(),
            AuthorityKind::Commune,
            "42218".into(),
            loire_commune("Saint-Étienne"),
            "alice",
            now,
        );
        assert_eq!(t.stage, Stage::Prospect);
        let steps = t.record_charter_signed("tde-plans", "charte signée", now);
        assert_eq!(steps, vec![Stage::Prospect, Stage::Diagnostic]);
        assert_eq!(t.stage, Stage::CharterSigned);
        let version = t.version;
        assert!(t.record_charter_signed("tde-plans", "", now).is_empty());
        assert_eq!(t.version, version, "no second effect");
        t.move_to(Stage::Withdrawn, "n", "", now).unwrap();
        assert!(t.record_charter_signed("tde-plans", "", now).is_empty());
        assert_eq!(t.stage, Stage::Withdrawn);
    }

    #[test]
    fn official_codes_are_checked_by_kind() {
        use AuthorityKind::*;
        assert!(Commune.validate_code("42218").is_ok());
        assert!(Commune.validate_code("2A004").is_ok());
        assert!(Commune.validate_code("4221").is_err());
        assert!(Commune.validate_code("42 18").is_err());
        assert!(Epci.validate_code("200000172").is_ok());
        assert!(Epci.validate_code("200000173").is_err(), "bad checksum");
        assert!(Epci.validate_code("20000017").is_err());
        assert!(Departement.validate_code("42").is_ok());
        assert!(Departement.validate_code("2B").is_ok());
        assert!(Departement.validate_code("974").is_ok());
        assert!(Departement.validate_code("4").is_err());
    }

    #[test]
    fn every_overseas_zone_is_a_real_iana_zone() {
        for code in [
            "01", "2A", "971", "972", "973", "974", "975", "976", "977", "978", "984", "986",
            "987", "988", "989",
        ] {
            let tz = time_zone_for(code);
            assert!(tz.parse::<chrono_tz::Tz>().is_ok(), "{code}: {tz}");
        }
        assert_eq!(time_zone_for("973"), "America/Cayenne");
        assert_eq!(time_zone_for("988"), "Pacific/Noumea");
        assert_eq!(time_zone_for("69"), "Europe/Paris");
    }

    #[test]
    fn diagnostics_need_a_theme_and_bounded_text() {
        let now = Utc::now();
        assert!(Diagnostic::new(vec![], "x", now).is_err());
        let d = Diagnostic::new(
            vec![EngagementTheme::Youth, EngagementTheme::Youth],
            "  texte ",
            now,
        )
        .unwrap();
        assert_eq!(d.themes, vec![EngagementTheme::Youth]);
        assert_eq!(d.text, "texte");
        assert!(
            Diagnostic::new(
                vec![EngagementTheme::Sport],
                &"a".repeat(MAX_DIAGNOSTIC_TEXT + 1),
                now
            )
            .is_err()
        );
    }

    #[test]
    fn the_same_diagnostic_again_changes_nothing() {
        let now = Utc::now();
        let facts = loire_commune("Aboën");
        let mut t = Territory::register(
            "id".into(),
            AuthorityKind::Commune,
            "42001".into(),
            facts,
            "a",
            now,
        );
        let d = || Diagnostic::new(vec![EngagementTheme::Youth], "texte", Utc::now()).unwrap();
        let first = TerritoryChanges {
            diagnostic: Some(Some(d())),
            ..Default::default()
        };
        assert!(t.apply(first, now).unwrap().diagnostic);
        let version = t.version;
        let again = TerritoryChanges {
            diagnostic: Some(Some(d())),
            ..Default::default()
        };
        let changed = t.apply(again, now).unwrap();
        assert!(!changed.any);
        assert_eq!(t.version, version, "no new version, no event");
    }

    #[test]
    fn field_masks_refuse_server_owned_fields() {
        assert!(UpdatableField::parse_mask(&[]).is_err());
        assert!(UpdatableField::parse_mask(&["stage".into()]).is_err());
        assert!(UpdatableField::parse_mask(&["etag".into()]).is_err());
        assert_eq!(
            UpdatableField::parse_mask(&["diagnostic".into(), "steering_body".into()]).unwrap(),
            vec![UpdatableField::Diagnostic, UpdatableField::SteeringBody]
        );
    }
}
