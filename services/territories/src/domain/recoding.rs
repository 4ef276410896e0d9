//! What a new vintage of the reference geography does to the accompanied territories, and how
//! the programme team settles what the data cannot decide. Rules only, without I/O.
//!
//! - A territory whose authority still exists takes what the vintage says of it: name,
//!   population, département, région, EPCI and time zone.
//! - A commune territory whose commune merged into another becomes that commune (its code and
//!   facts; the old code and name go to its history) when it is the only territory standing
//!   for it.
//! - When two or more territories stand for one commune (merged communes, or a merged commune
//!   and the commune that kept its code), none moves and none is merged: each one whose path is
//!   not over is flagged MERGED, naming the successor and the others, until the programme team
//!   resolves it (`resolve_merged`).
//! - A territory whose code is gone with no successor is flagged VANISHED (`resolve_vanished`).
//! - Territories whose path is over (completed, withdrawn) are records of what was
//!   accompanied: they follow their commune only when nothing else stands for it, and are never
//!   flagged (a resolved conflict does not come back with the next vintage).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::DomainError;
use super::geography::{Commune, Geography};
use super::territory::{
    AuthorityFacts, AuthorityKind, CodeChange, Diagnostic, Stage, StageChange, Territory,
    time_zone_for,
};

/// What a new vintage left for the programme team to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    /// The territory's commune is now one commune with another territory's.
    Merged,
    /// The territory's code is gone, with no successor.
    Vanished,
}

impl IssueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merged => "merged",
            Self::Vanished => "vanished",
        }
    }
}

/// A geography issue on a territory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeographyIssue {
    pub kind: IssueKind,
    /// The vintage that raised it.
    pub vintage: String,
    /// MERGED: the commune the territory is now part of.
    pub successor_code: Option<String>,
    pub successor_name: Option<String>,
    /// MERGED: the other territories standing for it, in id order.
    #[serde(default)]
    pub others: Vec<String>,
    pub detected_at: DateTime<Utc>,
}

impl GeographyIssue {
    /// The same issue, whichever vintage raised it and when: a later vintage saying the same
    /// is no news.
    fn same_as(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.successor_code == other.successor_code
            && self.successor_name == other.successor_name
            && self.others == other.others
    }

    /// For people, e.g. "merged into 19248 Les Trois-Saints, shared with <id>".
    pub fn describe(&self) -> String {
        match self.kind {
            IssueKind::Merged => {
                let others = if self.others.is_empty() {
                    "no other territory".to_string()
                } else {
                    self.others.join(", ")
                };
                format!(
                    "merged into {} {}, shared with {others}",
                    self.successor_code.as_deref().unwrap_or_default(),
                    self.successor_name.as_deref().unwrap_or_default(),
                )
            }
            IssueKind::Vanished => format!(
                "code gone from the {} geography, with no successor",
                self.vintage
            ),
        }
    }
}

/// A territory merged into another, as it was then: both histories stay on the survivor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergedTerritory {
    pub id: String,
    pub kind: AuthorityKind,
    pub official_code: String,
    pub name: String,
    pub stage: Stage,
    pub stage_history: Vec<StageChange>,
    pub code_history: Vec<CodeChange>,
    pub diagnostic: Option<Diagnostic>,
    pub merged_at: DateTime<Utc>,
    pub actor: String,
    pub reason: String,
}

/// What following a vintage did to one territory, to know which events to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Followed {
    /// It took a new code (the last entry of its code history says which).
    pub recoded: bool,
    /// Same code, new facts: the name it had before.
    pub updated_from: Option<String>,
    /// A new or changed issue.
    pub flagged: bool,
    /// Its issue no longer holds.
    pub cleared: bool,
}

impl Followed {
    pub fn changed(&self) -> bool {
        self.recoded || self.updated_from.is_some() || self.flagged || self.cleared
    }
}

impl Territory {
    /// What the territory holds of the reference geography.
    pub fn facts(&self) -> AuthorityFacts {
        AuthorityFacts {
            name: self.name.clone(),
            population: self.population,
            departement_code: self.departement_code.clone(),
            region_code: self.region_code.clone(),
            zone: self.zone,
            epci_siren: self.epci_siren.clone(),
        }
    }

    fn set_facts(&mut self, facts: AuthorityFacts) {
        self.time_zone = time_zone_for(&facts.departement_code).to_string();
        self.name = facts.name;
        self.population = facts.population;
        self.departement_code = facts.departement_code;
        self.region_code = facts.region_code;
        self.zone = facts.zone;
        self.epci_siren = facts.epci_siren;
    }

    /// Becomes another authority after a merger: its code and facts; the old code and name go
    /// to the history.
    pub fn recode(
        &mut self,
        new_code: &str,
        facts: AuthorityFacts,
        vintage: &str,
        now: DateTime<Utc>,
    ) {
        self.code_history.push(CodeChange {
            old_code: self.official_code.clone(),
            new_code: new_code.to_string(),
            vintage: vintage.to_string(),
            at: now,
            old_name: self.name.clone(),
            new_name: facts.name.clone(),
        });
        self.official_code = new_code.to_string();
        self.set_facts(facts);
        self.touch(now);
    }

    /// Takes what a new vintage says of its authority; returns the name it had when anything
    /// changed.
    pub fn refresh(&mut self, facts: AuthorityFacts, now: DateTime<Utc>) -> Option<String> {
        if self.facts() == facts && self.time_zone == time_zone_for(&facts.departement_code) {
            return None;
        }
        let old_name = self.name.clone();
        self.set_facts(facts);
        self.touch(now);
        Some(old_name)
    }

    /// Raises `issue`; false when the territory already had the same one.
    pub fn raise(&mut self, issue: GeographyIssue, now: DateTime<Utc>) -> bool {
        if self
            .geography_issue
            .as_ref()
            .is_some_and(|i| i.same_as(&issue))
        {
            return false;
        }
        self.geography_issue = Some(issue);
        self.touch(now);
        true
    }

    /// Clears its issue; false when it had none.
    pub fn clear_issue(&mut self, now: DateTime<Utc>) -> bool {
        if self.geography_issue.take().is_none() {
            return false;
        }
        self.touch(now);
        true
    }

    fn as_merged(&self, actor: &str, reason: &str, now: DateTime<Utc>) -> MergedTerritory {
        MergedTerritory {
            id: self.id.clone(),
            kind: self.kind,
            official_code: self.official_code.clone(),
            name: self.name.clone(),
            stage: self.stage,
            stage_history: self.stage_history.clone(),
            code_history: self.code_history.clone(),
            diagnostic: self.diagnostic.clone(),
            merged_at: now,
            actor: actor.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Where a territory's authority is in a vintage.
enum Place<'g> {
    Exists,
    MergedInto(&'g Commune),
    Vanished,
}

/// Applies a vintage to `territories`: all of them, since what happens to one depends on the
/// others. Returns the index of each territory changed and what happened to it.
pub fn follow_vintage(
    g: &Geography,
    territories: &mut [Territory],
    now: DateTime<Utc>,
) -> Vec<(usize, Followed)> {
    let index = g.index();
    let places: Vec<Place> = territories
        .iter()
        .map(|t| {
            if index.exists(t.kind, &t.official_code) {
                Place::Exists
            } else if t.kind == AuthorityKind::Commune
                && let Some(c) = index.successor(&t.official_code)
            {
                Place::MergedInto(c)
            } else {
                Place::Vanished
            }
        })
        .collect();
    // Who stands for each current commune already, and who comes to it.
    let mut holders: HashMap<&str, usize> = HashMap::new();
    let mut arriving: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, (t, place)) in territories.iter().zip(&places).enumerate() {
        match place {
            Place::Exists if t.kind == AuthorityKind::Commune => {
                holders.insert(t.official_code.as_str(), i);
            }
            Place::MergedInto(c) => arriving.entry(c.code.as_str()).or_default().push(i),
            _ => {}
        }
    }

    let n = territories.len();
    let mut moves: Vec<Option<&Commune>> = vec![None; n];
    let mut issues: Vec<Option<GeographyIssue>> = vec![None; n];
    let is_open = |i: usize| !territories[i].stage.is_final();
    for (code, movers) in &arriving {
        let Some(successor) = index.commune(code) else {
            continue;
        };
        let holder = holders.get(code).copied();
        let open: Vec<usize> = movers.iter().copied().filter(|&i| is_open(i)).collect();
        if open.is_empty() {
            // Paths that are over follow their commune only when nothing else stands for it.
            if let ([only], None) = (movers.as_slice(), holder) {
                moves[*only] = Some(successor);
            }
            continue;
        }
        if let ([only], None) = (open.as_slice(), holder) {
            moves[*only] = Some(successor);
            continue;
        }
        let mut members: Vec<usize> = open.clone();
        members.extend(holder);
        let flagged = open.iter().copied().chain(holder.filter(|&h| is_open(h)));
        for m in flagged {
            let mut others: Vec<String> = members
                .iter()
                .filter(|&&o| o != m)
                .map(|&o| territories[o].id.clone())
                .collect();
            others.sort();
            issues[m] = Some(GeographyIssue {
                kind: IssueKind::Merged,
                vintage: g.vintage.clone(),
                successor_code: Some(successor.code.clone()),
                successor_name: Some(successor.name.clone()),
                others,
                detected_at: now,
            });
        }
    }
    for (i, place) in places.iter().enumerate() {
        if matches!(place, Place::Vanished) && is_open(i) {
            issues[i] = Some(GeographyIssue {
                kind: IssueKind::Vanished,
                vintage: g.vintage.clone(),
                successor_code: None,
                successor_name: None,
                others: Vec::new(),
                detected_at: now,
            });
        }
    }

    let mut changed = Vec::new();
    for (i, t) in territories.iter_mut().enumerate() {
        let mut done = Followed::default();
        if let Some(c) = moves[i] {
            if let Some(facts) = index.facts(AuthorityKind::Commune, &c.code) {
                t.recode(&c.code, facts, &g.vintage, now);
                done.recoded = true;
            }
        } else if matches!(places[i], Place::Exists)
            && let Some(facts) = index.facts(t.kind, &t.official_code)
        {
            done.updated_from = t.refresh(facts, now);
        }
        match issues[i].take() {
            Some(issue) => done.flagged = t.raise(issue, now),
            None => done.cleared = t.clear_issue(now),
        }
        if done.changed() {
            changed.push((i, done));
        }
    }
    changed
}

/// How the programme team settles an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// MERGED: this territory continues, the others are withdrawn. VANISHED: it becomes the
    /// authority named.
    Keep,
    /// MERGED: this territory continues and the others are merged into it.
    Merge,
    /// VANISHED: the territory is withdrawn.
    Withdraw,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Merge => "merge",
            Self::Withdraw => "withdraw",
        }
    }
}

/// Longest reason accepted.
pub const MAX_REASON: usize = 2_000;

/// A reason: trimmed, bounded, without control characters; required or not.
pub fn check_reason(reason: &str, required: bool) -> Result<String, DomainError> {
    let reason = reason.trim();
    if required && reason.is_empty() {
        return Err(DomainError::invalid(
            "reason",
            "is required: it is recorded in the history of the territories withdrawn",
        ));
    }
    if reason.chars().count() > MAX_REASON {
        return Err(DomainError::invalid(
            "reason",
            format!("at most {MAX_REASON} characters"),
        ));
    }
    if reason.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "reason",
            "must not hold control characters (line breaks included)",
        ));
    }
    Ok(reason.to_string())
}

fn no_issue(t: &Territory) -> DomainError {
    DomainError::Precondition {
        kind: "GEOGRAPHY_ISSUE",
        subject: t.id.clone(),
        description: format!("territory {} has no geography issue to resolve", t.id),
    }
}

fn path_over(t: &Territory) -> DomainError {
    DomainError::Precondition {
        kind: "STAGE",
        subject: t.stage.as_str().to_string(),
        description: format!(
            "territory {} is {}: the territory that continues must be one whose path is not over",
            t.id, t.stage
        ),
    }
}

/// What a resolution did, to know which events to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settled {
    /// The survivor took the successor's code.
    pub recoded: bool,
    /// The survivor kept its code and took new facts: the name it had.
    pub updated_from: Option<String>,
    /// The index in `others` and the stage left, of each territory withdrawn now.
    pub withdrawn: Vec<(usize, Stage)>,
}

/// The issue of `survivor`, checked for `resolution`.
pub fn issue_for(
    survivor: &Territory,
    resolution: Resolution,
) -> Result<&GeographyIssue, DomainError> {
    let issue = survivor
        .geography_issue
        .as_ref()
        .ok_or_else(|| no_issue(survivor))?;
    match (issue.kind, resolution) {
        (IssueKind::Merged, Resolution::Withdraw) => Err(DomainError::invalid(
            "resolution",
            "a MERGED issue is resolved by KEEP or MERGE, naming the territory that continues",
        )),
        (IssueKind::Vanished, Resolution::Merge) => Err(DomainError::invalid(
            "resolution",
            "a VANISHED issue is resolved by KEEP with successor_code, or by WITHDRAW",
        )),
        _ => Ok(issue),
    }
}

/// Resolves a MERGED issue: `survivor` continues as the commune `successor_code` (with
/// `facts`), and each of `others` (the rest of the conflict) is withdrawn (KEEP) or merged
/// into it (MERGE). A territory already holding the successor's code must be the survivor: one
/// territory per authority.
pub fn resolve_merged(
    survivor: &mut Territory,
    others: &mut [Territory],
    resolution: Resolution,
    facts: AuthorityFacts,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Settled, DomainError> {
    let issue = issue_for(survivor, resolution)?.clone();
    let successor_code = issue
        .successor_code
        .clone()
        .ok_or_else(|| no_issue(survivor))?;
    // A territory whose path is over continues only when it already stands for the commune:
    // then keeping it is the one way to settle the others.
    if survivor.stage.is_final() && survivor.official_code != successor_code {
        return Err(path_over(survivor));
    }
    if let Some(holder) = others.iter().find(|o| o.official_code == successor_code) {
        return Err(DomainError::Precondition {
            kind: "GEOGRAPHY_ISSUE",
            subject: holder.id.clone(),
            description: format!(
                "territory {} already stands for {successor_code}: keep it, or merge the others into it",
                holder.id
            ),
        });
    }
    let reason = check_reason(reason, resolution == Resolution::Keep)?;
    let continues = format!(
        "{successor_code} {} continues as territory {}",
        facts.name, survivor.id
    );
    let mut settled = Settled::default();
    for (i, other) in others.iter_mut().enumerate() {
        let why = match resolution {
            Resolution::Merge => {
                let why = if reason.is_empty() {
                    format!("merged: {continues}")
                } else {
                    format!("merged: {continues}: {reason}")
                };
                survivor
                    .merged_territories
                    .push(other.as_merged(actor, &why, now));
                why
            }
            _ => format!("geography {}: {continues}: {reason}", issue.vintage),
        };
        if !other.stage.is_final() {
            let from = other.move_to(Stage::Withdrawn, actor, &why, now)?;
            settled.withdrawn.push((i, from));
        }
        other.clear_issue(now);
    }
    if survivor.official_code == successor_code {
        settled.updated_from = survivor.refresh(facts, now);
    } else {
        survivor.recode(&successor_code, facts, &issue.vintage, now);
        settled.recoded = true;
    }
    survivor.clear_issue(now);
    Ok(settled)
}

/// Resolves a VANISHED issue: KEEP makes the territory the authority `successor` (its code and
/// facts, checked free by the caller); WITHDRAW withdraws it. Returns the stage left when it
/// was withdrawn now.
pub fn resolve_vanished(
    t: &mut Territory,
    resolution: Resolution,
    successor: Option<(&str, AuthorityFacts)>,
    actor: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Option<Stage>, DomainError> {
    let issue = issue_for(t, resolution)?.clone();
    let mut withdrawn = None;
    match resolution {
        Resolution::Withdraw => {
            let reason = check_reason(reason, true)?;
            if !t.stage.is_final() {
                let why = format!("geography {}: {reason}", issue.vintage);
                withdrawn = Some(t.move_to(Stage::Withdrawn, actor, &why, now)?);
            }
        }
        _ => {
            check_reason(reason, false)?;
            if t.stage.is_final() {
                return Err(path_over(t));
            }
            let Some((code, facts)) = successor else {
                return Err(DomainError::invalid(
                    "successor_code",
                    "is required: the official code of the authority the territory now is",
                ));
            };
            t.recode(code, facts, &issue.vintage, now);
        }
    }
    t.clear_issue(now);
    Ok(withdrawn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::territory::Zone;

    const REGIONS: &str = r#"[{"code":"75","nom":"Nouvelle-Aquitaine","zone":"metro"}]"#;
    const DEPS: &str = r#"[{"code":"19","nom":"Corrèze","region":"75","zone":"metro"}]"#;
    const BEFORE: &str = r#"[
      {"code":"19223","nom":"Saint-Martin-Sepert","type":"commune-actuelle","departement":"19","region":"75","population":230},
      {"code":"19230","nom":"Saint-Pardoux-Corbier","type":"commune-actuelle","departement":"19","region":"75","population":380},
      {"code":"19248","nom":"Saint-Ybard","type":"commune-actuelle","departement":"19","region":"75","population":700},
      {"code":"19001","nom":"Affieux","type":"commune-actuelle","departement":"19","region":"75","population":400},
      {"code":"19002","nom":"Aix","type":"commune-actuelle","departement":"19","region":"75","population":300}
    ]"#;
    const AFTER: &str = r#"[
      {"code":"19248","nom":"Les Trois-Saints","type":"commune-actuelle","departement":"19","region":"75","population":1388,"anciensCodes":["19223","19230"]},
      {"code":"19223","nom":"Saint-Martin-Sepert","type":"commune-deleguee","departement":"19","region":"75","chefLieu":"19248"},
      {"code":"19001","nom":"Affieux","type":"commune-actuelle","departement":"19","region":"75","population":410}
    ]"#;
    const EPCI: &str = r#"[{"code":"241927243","nom":"CC du Pays d'Uzerche","type":"CC","populationMunicipale":1800,"membres":[{"code":"19248"},{"code":"19001"}]}]"#;

    fn vintage(year: &str, communes: &str) -> Geography {
        Geography::parse(
            year,
            REGIONS.as_bytes(),
            DEPS.as_bytes(),
            communes.as_bytes(),
            EPCI.as_bytes(),
        )
        .unwrap()
    }

    fn territory(g: &Geography, code: &str) -> Territory {
        let facts = g.index().facts(AuthorityKind::Commune, code).unwrap();
        Territory::register(
            format!("t-{code}"),
            AuthorityKind::Commune,
            code.into(),
            facts,
            "test",
            Utc::now(),
        )
    }

    #[test]
    fn two_territories_on_one_new_commune_are_flagged_not_moved() {
        let before = vintage("2024", BEFORE);
        let after = vintage("2026", AFTER);
        let mut ts = vec![territory(&before, "19223"), territory(&before, "19230")];
        let changed = follow_vintage(&after, &mut ts, Utc::now());
        assert_eq!(changed.len(), 2);
        for (t, other) in [(&ts[0], "t-19230"), (&ts[1], "t-19223")] {
            assert!(t.code_history.is_empty(), "nobody moves");
            let issue = t.geography_issue.as_ref().unwrap();
            assert_eq!(issue.kind, IssueKind::Merged);
            assert_eq!(issue.successor_code.as_deref(), Some("19248"));
            assert_eq!(issue.others, vec![other.to_string()]);
            assert_eq!(
                issue.describe(),
                format!("merged into 19248 Les Trois-Saints, shared with {other}")
            );
        }
        assert!(
            follow_vintage(&after, &mut ts, Utc::now()).is_empty(),
            "the same vintage again is no news"
        );
    }

    #[test]
    fn a_lone_territory_becomes_its_new_commune_and_others_follow_the_facts() {
        let before = vintage("2024", BEFORE);
        let after = vintage("2026", AFTER);
        let mut ts = vec![territory(&before, "19230"), territory(&before, "19001")];
        let changed = follow_vintage(&after, &mut ts, Utc::now());
        assert_eq!(changed.len(), 2);
        let t = &ts[0];
        assert_eq!(
            (t.official_code.as_str(), t.name.as_str(), t.population),
            ("19248", "Les Trois-Saints", 1388)
        );
        assert_eq!(t.epci_siren.as_deref(), Some("241927243"));
        assert_eq!(t.code_history[0].old_code, "19230");
        assert_eq!(t.code_history[0].old_name, "Saint-Pardoux-Corbier");
        assert_eq!(t.code_history[0].new_name, "Les Trois-Saints");
        assert!(changed[0].1.recoded);
        assert_eq!(ts[1].population, 410);
        assert_eq!(changed[1].1.updated_from.as_deref(), Some("Affieux"));
    }

    #[test]
    fn the_commune_keeping_its_code_counts_and_must_be_the_one_that_continues() {
        let before = vintage("2024", BEFORE);
        let after = vintage("2026", AFTER);
        let mut ts = vec![territory(&before, "19248"), territory(&before, "19223")];
        follow_vintage(&after, &mut ts, Utc::now());
        assert_eq!(
            ts[0].name, "Les Trois-Saints",
            "the holder follows the facts"
        );
        assert_eq!(
            ts[0].geography_issue.as_ref().unwrap().others,
            vec!["t-19223"]
        );
        assert_eq!(ts[1].official_code, "19223");
        let facts = after
            .index()
            .facts(AuthorityKind::Commune, "19248")
            .unwrap();
        let (holder, mover) = ts.split_at_mut(1);
        let (holder, mover) = (&mut holder[0], &mut mover[0]);
        let e = resolve_merged(
            mover,
            std::slice::from_mut(holder),
            Resolution::Keep,
            facts.clone(),
            "n",
            "r",
            Utc::now(),
        );
        assert!(matches!(e, Err(DomainError::Precondition { .. })), "{e:?}");
        let settled = resolve_merged(
            holder,
            std::slice::from_mut(mover),
            Resolution::Merge,
            facts,
            "n",
            "",
            Utc::now(),
        )
        .unwrap();
        assert!(!settled.recoded, "it already holds the code");
        assert_eq!(mover.stage, Stage::Withdrawn);
        assert_eq!(holder.merged_territories[0].official_code, "19223");
        assert!(holder.geography_issue.is_none() && mover.geography_issue.is_none());
    }

    #[test]
    fn keeping_one_withdraws_the_other_and_a_withdrawn_one_is_not_flagged_again() {
        let before = vintage("2024", BEFORE);
        let after = vintage("2026", AFTER);
        let mut ts = vec![territory(&before, "19223"), territory(&before, "19230")];
        follow_vintage(&after, &mut ts, Utc::now());
        let facts = after
            .index()
            .facts(AuthorityKind::Commune, "19248")
            .unwrap();
        let (a, b) = ts.split_at_mut(1);
        assert!(matches!(
            resolve_merged(
                &mut b[0],
                a,
                Resolution::Keep,
                facts.clone(),
                "n",
                " ",
                Utc::now()
            ),
            Err(DomainError::Invalid(_))
        ));
        assert!(matches!(
            resolve_merged(
                &mut b[0],
                a,
                Resolution::Keep,
                facts.clone(),
                "n",
                "a\nb",
                Utc::now()
            ),
            Err(DomainError::Invalid(_))
        ));
        let settled = resolve_merged(
            &mut b[0],
            a,
            Resolution::Keep,
            facts,
            "n",
            "une seule commune",
            Utc::now(),
        )
        .unwrap();
        assert!(settled.recoded);
        assert_eq!(settled.withdrawn, vec![(0, Stage::Prospect)]);
        assert_eq!(b[0].official_code, "19248");
        assert_eq!(
            a[0].official_code, "19223",
            "the withdrawn one keeps its code"
        );
        assert!(
            a[0].stage_history
                .last()
                .unwrap()
                .reason
                .ends_with("une seule commune")
        );
        assert!(
            follow_vintage(&vintage("2027", AFTER), &mut ts, Utc::now())
                .iter()
                .all(|(_, f)| !f.flagged),
            "resolved for good"
        );
    }

    #[test]
    fn a_code_without_successor_is_flagged_vanished_and_resolved() {
        let before = vintage("2024", BEFORE);
        let after = vintage("2026", AFTER);
        let mut ts = vec![territory(&before, "19002")];
        follow_vintage(&after, &mut ts, Utc::now());
        let t = &mut ts[0];
        assert_eq!(
            t.geography_issue.as_ref().map(|i| i.kind),
            Some(IssueKind::Vanished)
        );
        assert!(matches!(
            resolve_vanished(t, Resolution::Merge, None, "n", "", Utc::now()),
            Err(DomainError::Invalid(_))
        ));
        assert!(matches!(
            resolve_vanished(t, Resolution::Keep, None, "n", "", Utc::now()),
            Err(DomainError::Invalid(_))
        ));
        let facts = AuthorityFacts {
            name: "Affieux".into(),
            population: 410,
            departement_code: "19".into(),
            region_code: "75".into(),
            zone: Zone::Metro,
            epci_siren: None,
        };
        resolve_vanished(
            t,
            Resolution::Keep,
            Some(("19001", facts)),
            "n",
            "",
            Utc::now(),
        )
        .unwrap();
        assert_eq!(t.official_code, "19001");
        assert!(t.geography_issue.is_none());
        assert!(matches!(
            resolve_vanished(t, Resolution::Withdraw, None, "n", "x", Utc::now()),
            Err(DomainError::Precondition { .. })
        ));
    }
}
