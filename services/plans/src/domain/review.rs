//! Reviews (bilans) of a plan year or of the whole plan, and celebrations.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::DomainError;

/// What a review covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReviewScope {
    /// One plan year (1 to 3): the subsidies service pays its balance only after it.
    Year(u8),
    /// The final review of the plan.
    Final,
}

/// A measured indicator, e.g. "habitants associés aux décisions", 340, "personnes".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The value at the diagnostic, where there is one.
    pub baseline: Option<f64>,
}

/// A review: indicators and a narrative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub scope: ReviewScope,
    pub indicators: Vec<Indicator>,
    pub narrative: String,
}

impl Review {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = super::Violations::default();
        if let ReviewScope::Year(y) = self.scope
            && !(1..=super::calendar::PLAN_YEARS).contains(&y)
        {
            v.add("year", "must be between 1 and 3 (0 for the final review)");
        }
        if self.narrative.trim().is_empty()
            || tde_runtime::input::problem(&self.narrative, 50000, true).is_some()
        {
            v.add("narrative", "is required (at most 50000 characters)");
        }
        if self.indicators.len() > 100 {
            v.add("indicators", "at most 100 indicators");
        }
        for (i, ind) in self.indicators.iter().enumerate() {
            if ind.name.trim().is_empty()
                || tde_runtime::input::problem(&ind.name, 200, false).is_some()
            {
                v.add(
                    format!("indicators[{i}].name"),
                    "is required (at most 200 characters, no control characters)",
                );
            }
            if tde_runtime::input::problem(&ind.unit, 50, false).is_some() {
                v.add(
                    format!("indicators[{i}].unit"),
                    "at most 50 characters, no control characters but line breaks",
                );
            }
            if !ind.value.is_finite() {
                v.add(format!("indicators[{i}].value"), "must be a finite number");
            }
            if ind.baseline.is_some_and(|b| !b.is_finite()) {
                v.add(
                    format!("indicators[{i}].baseline"),
                    "must be a finite number",
                );
            }
        }
        let mut names: Vec<&str> = self.indicators.iter().map(|i| i.name.trim()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            v.add("indicators", "each indicator once");
        }
        Ok(v.into_result()?)
    }
}

/// A celebration (célébration) of the territory's engagement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Celebration {
    pub date: NaiveDate,
    pub title: String,
    pub description: String,
    /// Whether it may be shown publicly (programme website, press).
    pub public: bool,
}

impl Celebration {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = super::Violations::default();
        if self.title.trim().is_empty()
            || tde_runtime::input::problem(&self.title, 200, false).is_some()
        {
            v.add(
                "title",
                "is required (at most 200 characters, no control characters)",
            );
        }
        if tde_runtime::input::problem(&self.description, 5000, true).is_some() {
            v.add(
                "description",
                "at most 5000 characters, no control characters but line breaks",
            );
        }
        Ok(v.into_result()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn indicator(name: &str, value: f64) -> Indicator {
        Indicator {
            name: name.into(),
            value,
            unit: "personnes".into(),
            baseline: Some(120.0),
        }
    }

    #[test]
    fn reviews_are_validated() {
        let ok = Review {
            scope: ReviewScope::Year(1),
            indicators: vec![indicator("habitants associés", 340.0)],
            narrative: "Une année de lancement.".into(),
        };
        assert!(ok.validate().is_ok());
        let bad = Review {
            scope: ReviewScope::Year(4),
            indicators: vec![indicator("x", f64::NAN), indicator("x", 1.0)],
            narrative: " ".into(),
        };
        let Err(DomainError::Invalid(v)) = bad.validate() else {
            panic!("refused");
        };
        let fields: Vec<_> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            vec!["year", "narrative", "indicators[0].value", "indicators"]
        );
        let final_review = Review {
            scope: ReviewScope::Final,
            ..ok
        };
        assert!(final_review.validate().is_ok());
    }

    #[test]
    fn celebrations_are_validated() {
        let c = Celebration {
            date: NaiveDate::from_ymd_opt(2027, 6, 21).unwrap(),
            title: "Fête de la participation".into(),
            description: String::new(),
            public: true,
        };
        assert!(c.validate().is_ok());
        assert!(
            Celebration {
                title: String::new(),
                ..c
            }
            .validate()
            .is_err()
        );
    }
}
