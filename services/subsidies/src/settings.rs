//! The subsidies service's own settings: the `[subsidies]` section, accepted only by a
//! process that runs this service.

use serde::{Deserialize, Serialize};
use tde_runtime::config::{InvalidKey, Profile, ServiceSettings};

use crate::domain::siret::Siret;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubsidySettings {
    /// Share of a grant paid as advance at approval, for envelopes that do not set their own
    /// (percent).
    pub default_advance_percent: u8,
    /// Days after a plan year ends within which its review (bilan) is expected: past it, the
    /// review is overdue and listed with the balance waiting on it.
    pub review_due_days: u32,
    /// The attributing body, as open-data exports name it (SCDL `nomAttribuant`).
    pub grantor_name: String,
    /// Its SIRET (SCDL `idAttribuant`).
    pub grantor_siret: String,
}

impl Default for SubsidySettings {
    fn default() -> Self {
        Self {
            default_advance_percent: 50,
            review_due_days: 90,
            grantor_name: "Agence nationale de la cohésion des territoires".into(),
            grantor_siret: "13002603200016".into(),
        }
    }
}

impl ServiceSettings for SubsidySettings {
    const SECTION: &'static str = crate::SERVICE;

    fn validate(&self, _profile: Profile) -> Result<(), InvalidKey> {
        if self.default_advance_percent > 100 {
            return Err(InvalidKey::new(
                "default_advance_percent",
                "must be a percentage, 0 to 100",
            ));
        }
        if self.review_due_days == 0 || self.review_due_days > 730 {
            return Err(InvalidKey::new(
                "review_due_days",
                "must be between 1 and 730 days",
            ));
        }
        if self.grantor_name.trim().is_empty() {
            return Err(InvalidKey::new("grantor_name", "must not be empty"));
        }
        if let Err(e) = Siret::parse(&self.grantor_siret) {
            return Err(InvalidKey::new("grantor_siret", e.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        assert!(
            SubsidySettings::default()
                .validate(Profile::Production)
                .is_ok()
        );
        let bad = SubsidySettings {
            default_advance_percent: 101,
            ..Default::default()
        };
        assert_eq!(
            bad.validate(Profile::Production).unwrap_err().key,
            "default_advance_percent"
        );
        let bad = SubsidySettings {
            grantor_siret: "13002603200017".into(),
            ..Default::default()
        };
        assert_eq!(
            bad.validate(Profile::Production).unwrap_err().key,
            "grantor_siret"
        );
    }
}
