//! Trusted providers (prestataires de confiance): who they are, what they can do, where, how
//! many actions at once and at what day rate.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::siret::Siret;
use super::{DomainError, Violations};

/// The closed list of skills (`tde.common.v1.Skill`), by stored name (`facilitation`).
pub type Skill = String;

/// Where a provider works.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Area {
    /// A département (code officiel: "42", "2A", "971").
    Departement(String),
    /// A région (code officiel: "84").
    Region(String),
    National,
}

impl Area {
    fn validate(&self, field: &str, v: &mut Violations) {
        let ok = match self {
            Area::Departement(c) => tde_runtime::geography::is_departement(c),
            Area::Region(c) => tde_runtime::geography::is_region(c),
            Area::National => true,
        };
        if !ok {
            v.add(
                field,
                "is not a département or région code of the 2026 geography",
            );
        }
    }
}

/// Active providers are ranked; suspended and deactivated ones are excluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderStatus {
    Active,
    Suspended,
    Deactivated,
}

impl ProviderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deactivated => "deactivated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Suspended, Self::Deactivated]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Who receives proposals: personal data (exported and erased on request).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// A trusted provider (prestataire de confiance).
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub id: String,
    pub siret: Siret,
    pub name: String,
    /// Code NAF (activité principale), e.g. "85.59A".
    pub naf_code: String,
    /// Certified training organisation (Qualiopi) until this day, inclusive.
    pub qualiopi_expiry: Option<NaiveDate>,
    pub skills: BTreeSet<Skill>,
    pub areas: BTreeSet<Area>,
    /// Actions it can run at the same time.
    pub capacity: u32,
    /// Day rate in euro cents, excluding tax.
    pub day_rate_cents: i64,
    pub status: ProviderStatus,
    pub status_reason: String,
    /// Territories it must not serve (conflits d'intérêts déclarés).
    pub conflict_territory_ids: BTreeSet<String>,
    pub contact: Contact,
}

pub const MAX_CAPACITY: u32 = 1_000;

impl Provider {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = Violations::default();
        if self.name.trim().is_empty() {
            v.add("name", "is required");
        }
        if let Some(p) = tde_runtime::input::problem(&self.name, 200, false) {
            v.add("name", p);
        }
        let naf = self.naf_code.as_bytes();
        // NN.NNL: two digits, a dot, two digits and a letter.
        let naf_ok = naf.len() == 6
            && naf[..2].iter().all(u8::is_ascii_digit)
            && naf[2] == b'.'
            && naf[3..5].iter().all(u8::is_ascii_digit)
            && naf[5].is_ascii_uppercase();
        if !naf_ok {
            v.add("naf_code", "must be a NAF code such as 85.59A");
        }
        if self.skills.is_empty() {
            v.add("skills", "at least one skill");
        }
        if self.areas.is_empty() {
            v.add(
                "areas",
                "at least one area: a département, a région or national",
            );
        }
        for (i, a) in self.areas.iter().enumerate() {
            a.validate(&format!("areas[{i}]"), &mut v);
        }
        if self.areas.len() > 120 {
            v.add("areas", "at most 120 areas");
        }
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            v.add(
                "capacity",
                format!("between 1 and {MAX_CAPACITY} actions at once"),
            );
        }
        if self.day_rate_cents <= 0 || self.day_rate_cents > 100_000_000 {
            v.add(
                "day_rate_cents",
                "a positive day rate in euro cents, at most 1,000,000 €",
            );
        }
        if self.conflict_territory_ids.len() > 200 {
            v.add("conflict_territory_ids", "at most 200 territories");
        }
        for (i, t) in self.conflict_territory_ids.iter().enumerate() {
            if uuid::Uuid::parse_str(t).is_err() {
                v.add(
                    format!("conflict_territory_ids[{i}]"),
                    "is not a territory id",
                );
            }
        }
        if let Some(p) = tde_runtime::input::problem(&self.contact.name, 200, false) {
            v.add("contact.name", p);
        }
        if !self.contact.email.is_empty()
            && !email_address::EmailAddress::is_valid(&self.contact.email)
        {
            v.add("contact.email", "is not an e-mail address");
        }
        if self.contact.email.is_empty() {
            v.add("contact.email", "is required: proposals are sent to it");
        }
        v.into_result().map_err(|e| DomainError::Invalid(e.0))
    }

    /// How close the provider works to a département of a région: 1 the same département,
    /// 2 the same région, 3 nationally; `None` outside its areas.
    pub fn reach(&self, departement_code: &str, region_code: &str) -> Option<Reach> {
        let mut best = None;
        for a in &self.areas {
            let r = match a {
                Area::Departement(d) if !departement_code.is_empty() && d == departement_code => {
                    Reach::Departement
                }
                Area::Region(r) if !region_code.is_empty() && r == region_code => Reach::Region,
                Area::National => Reach::National,
                _ => continue,
            };
            best = Some(best.map_or(r, |b: Reach| b.min(r)));
        }
        best
    }

    /// Whether its Qualiopi certification is valid through `day`.
    pub fn certified_on(&self, day: NaiveDate) -> bool {
        self.qualiopi_expiry.is_some_and(|e| e >= day)
    }
}

/// How close a provider works to a need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reach {
    Departement,
    Region,
    National,
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub fn provider(id: &str) -> Provider {
        Provider {
            id: id.to_string(),
            siret: Siret::parse("73282932000074").expect("valid"),
            name: format!("Prestataire {id}"),
            naf_code: "85.59A".into(),
            qualiopi_expiry: None,
            skills: ["facilitation".to_string()].into(),
            areas: [Area::Departement("42".into())].into(),
            capacity: 2,
            day_rate_cents: 60_000,
            status: ProviderStatus::Active,
            status_reason: String::new(),
            conflict_territory_ids: BTreeSet::new(),
            contact: Contact {
                name: "Camille Martin".into(),
                email: "camille@example.org".into(),
            },
        }
    }

    #[test]
    fn a_complete_provider_is_valid() {
        assert_eq!(provider("p").validate(), Ok(()));
    }

    #[test]
    fn areas_exist_in_the_geography() {
        for area in [
            Area::Departement("42".into()),
            Area::Departement("2A".into()),
            Area::Departement("974".into()),
            Area::Departement("975".into()),
            Area::Region("84".into()),
            Area::Region("04".into()),
            Area::Region("975".into()),
        ] {
            let mut p = provider("p");
            p.areas = [area.clone()].into();
            assert!(p.validate().is_ok(), "{area:?}");
        }
        for area in [
            Area::Departement("00".into()),
            Area::Departement("20".into()),
            Area::Departement("2C".into()),
            Area::Departement("96".into()),
            Area::Departement("970".into()),
            Area::Departement("42 ".into()),
            Area::Region("99".into()),
            Area::Region("05".into()),
            Area::Region("42".into()),
            Area::Region("".into()),
        ] {
            let mut p = provider("p");
            p.areas = [area.clone()].into();
            assert!(p.validate().is_err(), "{area:?}");
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut p = provider("p");
        p.naf_code = "8559A".into();
        p.capacity = 0;
        p.day_rate_cents = -1;
        p.areas = [Area::Departement("4".into())].into();
        p.contact.email = "not an address".into();
        let Err(DomainError::Invalid(v)) = p.validate() else {
            panic!("refused");
        };
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "naf_code",
                "areas[0]",
                "capacity",
                "day_rate_cents",
                "contact.email"
            ]
        );
    }

    #[test]
    fn the_closest_area_counts() {
        let mut p = provider("p");
        p.areas = [
            Area::National,
            Area::Region("84".into()),
            Area::Departement("42".into()),
        ]
        .into();
        assert_eq!(p.reach("42", "84"), Some(Reach::Departement));
        assert_eq!(p.reach("69", "84"), Some(Reach::Region));
        assert_eq!(p.reach("13", "93"), Some(Reach::National));
        p.areas = [Area::Departement("42".into())].into();
        assert_eq!(p.reach("69", "84"), None);
        // A territory whose département is not known yet is not matched by département.
        assert_eq!(p.reach("", "84"), None);
    }
}
