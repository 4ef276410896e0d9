//! The explained ranking of providers for one need (classement expliqué): every provider is
//! either excluded by a named hard rule, or scored by weighted factors whose contributions
//! sum to its score, so that a project lead can read why A ranks above B.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use tde_runtime::format::euros;

use super::need::{Need, NeedKind};
use super::provider::{Provider, ProviderStatus, Reach, Skill};

/// The hard rules, in the order they are checked: the first one that fails is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HardRule {
    /// Suspended or deactivated.
    NotActive,
    /// Declared a conflict of interest with the need's territory.
    ConflictOfInterest,
    /// A skill the need requires is not among the provider's.
    SkillMissing,
    /// Works neither in the territory's département, nor its région, nor nationally.
    OutsideArea,
    /// A training action needs a Qualiopi certification valid until the action's end.
    NoValidQualiopi,
    /// As many unfinished actions over the need's period as its capacity.
    NoCapacity,
    /// Day rate × working days of the period above the action's budget.
    OverBudget,
}

impl HardRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotActive => "not_active",
            Self::ConflictOfInterest => "conflict_of_interest",
            Self::SkillMissing => "skill_missing",
            Self::OutsideArea => "outside_area",
            Self::NoValidQualiopi => "no_valid_qualiopi",
            Self::NoCapacity => "no_capacity",
            Self::OverBudget => "over_budget",
        }
    }
}

/// The weights of the factors (configuration `[matching.weights]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    pub skill_coverage: f64,
    pub proximity: f64,
    pub load: f64,
    pub rating: f64,
    pub price: f64,
    pub rotation: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            skill_coverage: 0.20,
            proximity: 0.25,
            load: 0.15,
            rating: 0.15,
            price: 0.15,
            rotation: 0.10,
        }
    }
}

impl Weights {
    /// Names and weights, in the order factors are explained.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("skill_coverage", self.skill_coverage),
            ("proximity", self.proximity),
            ("load", self.load),
            ("rating", self.rating),
            ("price", self.price),
            ("rotation", self.rotation),
        ]
    }

    /// Each weight finite and non-negative, and at least one positive.
    pub fn check(&self) -> Result<(), String> {
        for (name, w) in self.named() {
            if !w.is_finite() || w < 0.0 {
                return Err(format!("weights.{name} must be a non-negative number"));
            }
        }
        if self.named().iter().all(|(_, w)| *w == 0.0) {
            return Err("weights: at least one must be positive".into());
        }
        Ok(())
    }
}

/// What is known of a provider's work besides its registration.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProviderStats {
    /// Unfinished actions of the provider whose period overlaps the need's.
    pub load_over_period: u32,
    /// Unfinished actions, whatever their period.
    pub current_load: u32,
    /// Mean of its ratings (1 to 5), none when never rated.
    pub mean_rating: Option<f64>,
    pub rating_count: u32,
    /// Actions accepted over the last 365 days.
    pub assignments_last_year: u32,
}

/// One factor of a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    pub name: &'static str,
    /// 0 to 1.
    pub value: f64,
    pub weight: f64,
    pub contribution: f64,
}

/// A provider's place for a need.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Excluded { rule: HardRule, detail: String },
    Scored { score: f64, factors: Vec<Factor> },
}

/// Proximity values: the same département is worth most.
fn proximity_value(reach: Reach) -> f64 {
    match reach {
        Reach::Departement => 1.0,
        Reach::Region => 0.6,
        Reach::National => 0.3,
    }
}

/// What the rules checked before the area read of a provider.
#[derive(Debug, Clone, Copy)]
pub struct Outline<'a> {
    pub status: ProviderStatus,
    pub conflict_territory_ids: &'a BTreeSet<String>,
    pub skills: &'a BTreeSet<Skill>,
}

impl<'a> From<&'a Provider> for Outline<'a> {
    fn from(p: &'a Provider) -> Self {
        Self {
            status: p.status,
            conflict_territory_ids: &p.conflict_territory_ids,
            skills: &p.skills,
        }
    }
}

/// The first of the rules checked before the area that the provider fails: those exclude it
/// wherever it works.
fn rule_before_area(need: &Need, p: Outline<'_>) -> Option<(HardRule, String)> {
    if p.status != ProviderStatus::Active {
        return Some((
            HardRule::NotActive,
            format!(
                "prestataire {}",
                match p.status {
                    ProviderStatus::Suspended => "suspendu",
                    _ => "désactivé",
                }
            ),
        ));
    }
    if p.conflict_territory_ids.contains(&need.territory_id) {
        return Some((
            HardRule::ConflictOfInterest,
            "conflit d'intérêts déclaré avec ce territoire".into(),
        ));
    }
    if let Some(missing) = need.skills.iter().find(|s| !p.skills.contains(*s)) {
        return Some((
            HardRule::SkillMissing,
            format!("compétence manquante : {missing}"),
        ));
    }
    None
}

fn outside_area(need: &Need) -> (HardRule, String) {
    (
        HardRule::OutsideArea,
        format!(
            "n'intervient ni dans le département {} ni dans la région {}",
            need.departement_code, need.region_code
        ),
    )
}

/// The rule that excludes a provider known to work outside the need's area: the first rule
/// checked before the area it fails, or `outside_area`. The same verdict as `hard_rule`,
/// from only what those rules read (a ranking listing every exclusion loads no more).
pub fn rule_outside_area(need: &Need, p: Outline<'_>) -> (HardRule, String) {
    rule_before_area(need, p).unwrap_or_else(|| outside_area(need))
}

/// The first hard rule the provider fails for the need, with a French detail.
pub fn hard_rule(need: &Need, p: &Provider, stats: &ProviderStats) -> Option<(HardRule, String)> {
    if let Some(failed) = rule_before_area(need, p.into()) {
        return Some(failed);
    }
    let Some(_) = p.reach(&need.departement_code, &need.region_code) else {
        return Some(outside_area(need));
    };
    if need.kind == NeedKind::Training && !p.certified_on(need.planned_end) {
        return Some((
            HardRule::NoValidQualiopi,
            match p.qualiopi_expiry {
                Some(d) => format!("certification Qualiopi expirée le {}", d.format("%d/%m/%Y")),
                None => "pas de certification Qualiopi pour une action de formation".into(),
            },
        ));
    }
    if stats.load_over_period >= p.capacity {
        return Some((
            HardRule::NoCapacity,
            format!(
                "{} action(s) en cours sur la période pour une capacité de {}",
                stats.load_over_period, p.capacity
            ),
        ));
    }
    let cost = cost_cents(need, p);
    if cost > need.budget_cents {
        return Some((
            HardRule::OverBudget,
            format!(
                "{} jours × {} = {} au-delà du budget de {}",
                need.working_days(),
                euros(p.day_rate_cents),
                euros(cost),
                euros(need.budget_cents)
            ),
        ));
    }
    None
}

/// What the provider would cost for the need: day rate × working days of the period.
pub fn cost_cents(need: &Need, p: &Provider) -> i64 {
    p.day_rate_cents.saturating_mul(need.working_days())
}

/// Scores a provider that passed every hard rule: each factor in 0..=1, times its weight.
pub fn score(need: &Need, p: &Provider, stats: &ProviderStats, w: &Weights) -> Vec<Factor> {
    // Every candidate covers the needed skills (a hard rule): coverage then measures how
    // much of what the provider offers the need uses, so that a specialist ranks above a
    // generalist.
    let skill_coverage = if p.skills.is_empty() {
        0.0
    } else {
        need.skills.len().min(p.skills.len()) as f64 / p.skills.len() as f64
    };
    let proximity = p
        .reach(&need.departement_code, &need.region_code)
        .map_or(0.0, proximity_value);
    let load = if p.capacity == 0 {
        0.0
    } else {
        1.0 - (f64::from(stats.current_load.min(p.capacity)) / f64::from(p.capacity))
    };
    // Never rated: neutral, neither rewarded nor punished.
    let rating = stats
        .mean_rating
        .map_or(0.5, |m| ((m - 1.0) / 4.0).clamp(0.0, 1.0));
    let price = if need.budget_cents <= 0 {
        0.0
    } else {
        (1.0 - cost_cents(need, p) as f64 / need.budget_cents as f64).clamp(0.0, 1.0)
    };
    let rotation = 1.0 / (1.0 + f64::from(stats.assignments_last_year));
    let values = [skill_coverage, proximity, load, rating, price, rotation];
    w.named()
        .into_iter()
        .zip(values)
        .map(|((name, weight), value)| Factor {
            name,
            value,
            weight,
            contribution: value * weight,
        })
        .collect()
}

/// The verdict for one provider.
pub fn judge(need: &Need, p: &Provider, stats: &ProviderStats, w: &Weights) -> Verdict {
    match hard_rule(need, p, stats) {
        Some((rule, detail)) => Verdict::Excluded { rule, detail },
        None => {
            let factors = score(need, p, stats, w);
            Verdict::Scored {
                score: factors.iter().map(|f| f.contribution).sum(),
                factors,
            }
        }
    }
}

/// A ranked candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked<'a> {
    pub provider: &'a Provider,
    pub rank: u32,
    pub score: f64,
    pub factors: Vec<Factor>,
}

/// Providers for one need: candidates best first (ties by provider id, so that the same
/// input always ranks the same), and exclusions in provider order.
pub struct Ranking<'a> {
    pub candidates: Vec<Ranked<'a>>,
    pub exclusions: Vec<(&'a Provider, HardRule, String)>,
}

pub fn rank<'a>(
    need: &Need,
    providers: impl IntoIterator<Item = (&'a Provider, ProviderStats)>,
    w: &Weights,
) -> Ranking<'a> {
    let mut candidates = Vec::new();
    let mut exclusions = Vec::new();
    for (p, stats) in providers {
        match judge(need, p, &stats, w) {
            Verdict::Excluded { rule, detail } => exclusions.push((p, rule, detail)),
            Verdict::Scored { score, factors } => candidates.push(Ranked {
                provider: p,
                rank: 0,
                score,
                factors,
            }),
        }
    }
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.provider.id.cmp(&b.provider.id))
    });
    for (i, c) in candidates.iter_mut().enumerate() {
        c.rank = i as u32 + 1;
    }
    exclusions.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ranking {
        candidates,
        exclusions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::need::tests::need;
    use crate::domain::provider::Area;
    use crate::domain::provider::tests::provider;
    use chrono::NaiveDate;

    fn stats() -> ProviderStats {
        ProviderStats::default()
    }

    fn rule(n: &Need, p: &Provider, s: &ProviderStats) -> Option<HardRule> {
        hard_rule(n, p, s).map(|(r, _)| r)
    }

    #[test]
    fn an_eligible_provider_passes_every_rule() {
        assert_eq!(rule(&need("n"), &provider("p"), &stats()), None);
    }

    #[test]
    fn not_active_is_excluded() {
        let mut p = provider("p");
        p.status = ProviderStatus::Suspended;
        assert_eq!(rule(&need("n"), &p, &stats()), Some(HardRule::NotActive));
        p.status = ProviderStatus::Deactivated;
        assert_eq!(rule(&need("n"), &p, &stats()), Some(HardRule::NotActive));
    }

    #[test]
    fn a_conflict_of_interest_is_excluded() {
        let n = need("n");
        let mut p = provider("p");
        p.conflict_territory_ids.insert(n.territory_id.clone());
        assert_eq!(rule(&n, &p, &stats()), Some(HardRule::ConflictOfInterest));
    }

    #[test]
    fn a_missing_skill_is_excluded_and_named() {
        let mut n = need("n");
        n.skills.insert("youth_engagement".into());
        let (r, detail) = hard_rule(&n, &provider("p"), &stats()).expect("excluded");
        assert_eq!(r, HardRule::SkillMissing);
        assert!(detail.contains("youth_engagement"), "{detail}");
    }

    #[test]
    fn outside_its_areas_is_excluded() {
        let mut n = need("n");
        n.departement_code = "69".into();
        let mut p = provider("p");
        assert_eq!(rule(&n, &p, &stats()), Some(HardRule::OutsideArea));
        p.areas.insert(Area::Region("84".into()));
        assert_eq!(rule(&n, &p, &stats()), None);
        p.areas = [Area::National].into();
        assert_eq!(rule(&n, &p, &stats()), None);
    }

    #[test]
    fn outside_the_area_the_outline_names_the_rule_hard_rule_names() {
        let mut n = need("n");
        n.departement_code = "69".into();
        n.region_code = "84".into();
        let mut suspended = provider("suspended");
        suspended.status = ProviderStatus::Suspended;
        let mut conflicted = provider("conflicted");
        conflicted
            .conflict_territory_ids
            .insert(n.territory_id.clone());
        let mut unskilled = provider("unskilled");
        unskilled.skills = ["volunteering".to_string()].into();
        let mut elsewhere = provider("elsewhere");
        elsewhere.areas = [Area::Region("11".into())].into();
        for p in [provider("p"), suspended, conflicted, unskilled, elsewhere] {
            // A training need with no certification: the rules after the area never apply.
            let mut training = n.clone();
            training.kind = NeedKind::Training;
            for n in [&n, &training] {
                assert_eq!(
                    Some(rule_outside_area(n, (&p).into())),
                    hard_rule(n, &p, &stats()),
                    "{}",
                    p.id
                );
            }
        }
    }

    #[test]
    fn training_needs_qualiopi_valid_until_the_end() {
        let mut n = need("n");
        n.kind = NeedKind::Training;
        let mut p = provider("p");
        assert_eq!(rule(&n, &p, &stats()), Some(HardRule::NoValidQualiopi));
        // Expires the day before the action ends.
        p.qualiopi_expiry = NaiveDate::from_ymd_opt(2027, 3, 4);
        assert_eq!(rule(&n, &p, &stats()), Some(HardRule::NoValidQualiopi));
        p.qualiopi_expiry = NaiveDate::from_ymd_opt(2027, 3, 5);
        assert_eq!(rule(&n, &p, &stats()), None);
        // Other kinds do not need it.
        n.kind = NeedKind::FieldSupport;
        p.qualiopi_expiry = None;
        assert_eq!(rule(&n, &p, &stats()), None);
    }

    #[test]
    fn no_capacity_left_over_the_period_is_excluded() {
        let p = provider("p");
        let busy = ProviderStats {
            load_over_period: 2,
            current_load: 2,
            ..stats()
        };
        assert_eq!(rule(&need("n"), &p, &busy), Some(HardRule::NoCapacity));
        let one_left = ProviderStats {
            load_over_period: 1,
            current_load: 3,
            ..stats()
        };
        assert_eq!(rule(&need("n"), &p, &one_left), None);
    }

    #[test]
    fn over_budget_is_excluded() {
        let mut n = need("n");
        // 5 days × 600 € = 3,000 €.
        n.budget_cents = 299_999;
        let (r, detail) = hard_rule(&n, &provider("p"), &stats()).expect("excluded");
        assert_eq!(r, HardRule::OverBudget);
        assert!(detail.contains("3\u{202f}000,00\u{a0}€"), "{detail}");
        n.budget_cents = 300_000;
        assert_eq!(rule(&n, &provider("p"), &stats()), None);
    }

    #[test]
    fn scoring_arithmetic() {
        let mut n = need("n");
        n.budget_cents = 600_000; // cost 300,000: price 0.5
        let mut p = provider("p");
        p.skills.insert("volunteering".into()); // 1 needed of 2 offered: 0.5
        p.areas = [Area::Region("84".into())].into(); // région: 0.6
        p.capacity = 4;
        let s = ProviderStats {
            load_over_period: 1,
            current_load: 1,        // 1 - 1/4 = 0.75
            mean_rating: Some(4.0), // (4 - 1) / 4 = 0.75
            rating_count: 2,
            assignments_last_year: 3, // 1 / 4 = 0.25
        };
        let w = Weights::default();
        let f = score(&n, &p, &s, &w);
        let values: Vec<(&str, f64)> = f.iter().map(|f| (f.name, f.value)).collect();
        assert_eq!(
            values,
            [
                ("skill_coverage", 0.5),
                ("proximity", 0.6),
                ("load", 0.75),
                ("rating", 0.75),
                ("price", 0.5),
                ("rotation", 0.25)
            ]
        );
        let expected =
            0.5 * 0.20 + 0.6 * 0.25 + 0.75 * 0.15 + 0.75 * 0.15 + 0.5 * 0.15 + 0.25 * 0.10;
        let Verdict::Scored { score, factors } = judge(&n, &p, &s, &w) else {
            panic!("scored");
        };
        assert!((score - expected).abs() < 1e-12, "{score} vs {expected}");
        // The explanation sums to the score, and shows the weights used.
        let sum: f64 = factors.iter().map(|f| f.contribution).sum();
        assert_eq!(sum, score);
        assert!(factors.iter().all(|f| f.contribution == f.value * f.weight));
        assert_eq!(factors[1].weight, 0.25);
    }

    #[test]
    fn weights_change_the_order() {
        let n = need("n");
        let near = provider("near");
        let mut far = provider("far");
        far.areas = [Area::National].into();
        let busy_near = ProviderStats {
            current_load: 1,
            load_over_period: 1,
            ..stats()
        };
        let only_load = Weights {
            skill_coverage: 0.0,
            proximity: 0.0,
            load: 1.0,
            rating: 0.0,
            price: 0.0,
            rotation: 0.0,
        };
        let r = rank(&n, [(&near, busy_near), (&far, stats())], &only_load);
        assert_eq!(r.candidates[0].provider.id, "far");
        let r = rank(
            &n,
            [(&near, busy_near), (&far, stats())],
            &Weights::default(),
        );
        assert_eq!(r.candidates[0].provider.id, "near");
        assert_eq!(r.candidates[0].rank, 1);
        assert_eq!(r.candidates[1].rank, 2);
        assert!(Weights::default().check().is_ok());
        assert!(
            Weights {
                load: -1.0,
                ..Weights::default()
            }
            .check()
            .is_err()
        );
    }
}
