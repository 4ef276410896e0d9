//! The territories service's own settings: the `[territories]` section, accepted only by a
//! process that runs this service.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tde_runtime::config::{InvalidKey, Profile, ServiceSettings};

/// The territories service answers RGPD requests for the whole platform: it asks every
/// other service what it holds (see `tde_runtime::holdings`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TerritoriesSettings {
    /// The gRPC address of each other service's process, by service name, e.g.
    /// `plans = "http://plans:50051"`: asked for the personal data it holds. Services running
    /// in this process (`tde dev`) are asked directly.
    pub personal_data_peers: BTreeMap<String, String>,
    /// How long a peer has to answer (milliseconds).
    pub personal_data_timeout_ms: u64,
}

impl Default for TerritoriesSettings {
    fn default() -> Self {
        Self {
            personal_data_peers: BTreeMap::new(),
            personal_data_timeout_ms: 10_000,
        }
    }
}

impl ServiceSettings for TerritoriesSettings {
    const SECTION: &'static str = crate::SERVICE;

    fn validate(&self, profile: Profile) -> Result<(), InvalidKey> {
        if self.personal_data_timeout_ms == 0 {
            return Err(InvalidKey::new(
                "personal_data_timeout_ms",
                "must be positive",
            ));
        }
        for (service, address) in &self.personal_data_peers {
            let service_ok = !service.is_empty()
                && service.len() <= 40
                && service.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !service_ok {
                return Err(InvalidKey::new(
                    "personal_data_peers",
                    format!(
                        "{} is not a service name (lowercase letters)",
                        tde_runtime::input::quote(service)
                    ),
                ));
            }
            let parsed = address.parse::<http::Uri>().ok();
            let ok = parsed.as_ref().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            });
            if !ok {
                return Err(InvalidKey::new(
                    "personal_data_peers",
                    format!(
                        "{service}: {} is not an http:// or https:// address",
                        tde_runtime::input::quote(address)
                    ),
                ));
            }
            // Peers receive the caller's token: in plain text only inside the cluster.
            let host = parsed.as_ref().and_then(|u| u.host()).unwrap_or_default();
            let in_cluster = !host.contains('.')
                || host.ends_with(".svc")
                || host.ends_with(".cluster.local")
                || host.starts_with("127.");
            if profile == Profile::Production
                && parsed.as_ref().and_then(|u| u.scheme_str()) == Some("http")
                && !in_cluster
            {
                return Err(InvalidKey::new(
                    "personal_data_peers",
                    format!(
                        "{service}: {} would carry callers' tokens in plain text outside the cluster: use https://",
                        tde_runtime::input::quote(address)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl TerritoriesSettings {
    pub fn peers(&self) -> tde_runtime::holdings::Peers {
        tde_runtime::holdings::Peers {
            addresses: self.personal_data_peers.clone(),
            timeout: std::time::Duration::from_millis(self.personal_data_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_named_services_at_http_addresses() {
        let mut s = TerritoriesSettings::default();
        assert!(s.validate(Profile::Production).is_ok());
        s.personal_data_peers
            .insert("plans".into(), "http://plans:50051".into());
        assert!(s.validate(Profile::Production).is_ok());
        s.personal_data_peers
            .insert("notifications".into(), "ftp://x".into());
        assert_eq!(
            s.validate(Profile::Production).unwrap_err().key,
            "personal_data_peers"
        );
        let mut s = TerritoriesSettings::default();
        s.personal_data_peers
            .insert("Plans!".into(), "http://plans:50051".into());
        assert!(s.validate(Profile::Production).is_err());
        // Tokens in plain text: inside the cluster only, unless in development.
        for (address, production_ok) in [
            ("http://plans.tde.svc.cluster.local:50051", true),
            ("http://plans.tde.svc:50051", true),
            ("https://plans.example.org", true),
            ("http://plans.example.org:50051", false),
        ] {
            let mut s = TerritoriesSettings::default();
            s.personal_data_peers.insert("plans".into(), address.into());
            assert_eq!(
                s.validate(Profile::Production).is_ok(),
                production_ok,
                "{address}"
            );
            assert!(s.validate(Profile::Development).is_ok(), "{address}");
        }
    }
}
