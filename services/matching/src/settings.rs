//! The matching service's own settings: the `[matching]` section, accepted only by a process
//! that runs this service.

use serde::{Deserialize, Serialize};
use tde_runtime::config::{InvalidKey, Profile, ServiceSettings};

use crate::domain::ranking::Weights;

/// How providers are ranked and how long they have to answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingSettings {
    /// The weights of the ranking's factors: a programme decision, shown in every
    /// explanation.
    pub weights: Weights,
    /// How long a provider has to answer a proposal (hours).
    pub proposal_deadline_hours: u32,
    /// How often pending proposals past their deadline are expired (milliseconds).
    pub expiry_interval_ms: u64,
}

impl Default for MatchingSettings {
    fn default() -> Self {
        Self {
            weights: Weights::default(),
            proposal_deadline_hours: 7 * 24,
            expiry_interval_ms: 60_000,
        }
    }
}

impl ServiceSettings for MatchingSettings {
    const SECTION: &'static str = crate::SERVICE;

    fn validate(&self, _profile: Profile) -> Result<(), InvalidKey> {
        self.weights
            .check()
            .map_err(|m| InvalidKey::new("weights", m))?;
        if self.proposal_deadline_hours == 0 || self.proposal_deadline_hours > 90 * 24 {
            return Err(InvalidKey::new(
                "proposal_deadline_hours",
                "between 1 hour and 90 days",
            ));
        }
        if self.expiry_interval_ms < 100 {
            return Err(InvalidKey::new("expiry_interval_ms", "at least 100 ms"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_weights_are_named() {
        assert!(
            MatchingSettings::default()
                .validate(Profile::Production)
                .is_ok()
        );
        let bad = MatchingSettings {
            weights: Weights {
                price: f64::NAN,
                ..Weights::default()
            },
            ..MatchingSettings::default()
        };
        assert_eq!(
            bad.validate(Profile::Production).map_err(|e| e.key),
            Err("weights")
        );
    }
}
