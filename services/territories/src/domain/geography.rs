//! The reference geography (code officiel géographique) in the format of
//! `@etalab/decoupage-administratif`: four JSON files, parsed and checked without I/O.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::DomainError;
use super::territory::{Zone, time_zone_for};

/// The four files of a vintage.
pub const FILES: [&str; 4] = [
    "regions.json",
    "departements.json",
    "communes.json",
    "epci.json",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionRecord {
    pub code: String,
    pub nom: String,
    pub zone: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartementRecord {
    pub code: String,
    pub nom: String,
    pub region: String,
    pub zone: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommuneRecord {
    pub code: String,
    pub nom: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub departement: Option<String>,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub population: Option<i64>,
    pub siren: Option<String>,
    #[serde(default)]
    pub codes_postaux: Vec<String>,
    #[serde(default)]
    pub anciens_codes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpciMemberRecord {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpciRecord {
    pub code: String,
    pub nom: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub population_municipale: Option<i64>,
    pub population_totale: Option<i64>,
    #[serde(default)]
    pub membres: Vec<EpciMemberRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub code: String,
    pub name: String,
    pub zone: Zone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departement {
    pub code: String,
    pub name: String,
    pub region_code: String,
    pub zone: Zone,
}

impl Departement {
    pub fn time_zone(&self) -> &'static str {
        time_zone_for(&self.code)
    }
}

/// A current commune (commune actuelle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commune {
    pub code: String,
    pub name: String,
    pub departement_code: String,
    pub region_code: String,
    pub zone: Zone,
    pub population: i64,
    pub siren: String,
    pub epci_siren: Option<String>,
    pub postal_codes: Vec<String>,
    pub former_codes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epci {
    pub siren: String,
    pub name: String,
    pub kind: String,
    pub population: i64,
    pub members: Vec<String>,
    /// The département holding most of its members (ties: the smallest code).
    pub departement_code: String,
    pub region_code: String,
    pub zone: Zone,
}

/// A whole vintage, checked.
#[derive(Debug, Clone)]
pub struct Geography {
    pub vintage: String,
    /// SHA-256 of the four files: the same vintage imported twice changes nothing.
    pub content_hash: String,
    pub regions: Vec<Region>,
    pub departements: Vec<Departement>,
    pub communes: Vec<Commune>,
    pub epcis: Vec<Epci>,
}

fn zone(field: &str, z: &str) -> Result<Zone, DomainError> {
    Zone::parse(z).ok_or_else(|| DomainError::invalid(field, format!("unknown zone {z:?}")))
}

fn parse<T: serde::de::DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<Vec<T>, DomainError> {
    serde_json::from_slice(bytes)
        .map_err(|e| DomainError::invalid(file, format!("not in the reference format: {e}")))
}

/// Checks a vintage name: a year or a dated label, e.g. "2026" or "2026-01-01".
pub fn validate_vintage(vintage: &str) -> Result<(), DomainError> {
    let ok = !vintage.is_empty()
        && vintage.len() <= 20
        && vintage.starts_with(|c: char| c.is_ascii_digit())
        && vintage
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "vintage",
            "a year such as 2026, or a date such as 2026-01-01",
        ))
    }
}

impl Geography {
    /// Parses and checks the four files of a vintage.
    pub fn parse(
        vintage: &str,
        regions: &[u8],
        departements: &[u8],
        communes: &[u8],
        epcis: &[u8],
    ) -> Result<Self, DomainError> {
        validate_vintage(vintage)?;
        let mut hasher = Sha256::new();
        for part in [regions, departements, communes, epcis] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let content_hash = format!("{:x}", hasher.finalize());

        let regions: Vec<Region> = parse::<RegionRecord>("regions.json", regions)?
            .into_iter()
            .map(|r| {
                Ok(Region {
                    zone: zone("regions.json", &r.zone)?,
                    code: r.code,
                    name: r.nom,
                })
            })
            .collect::<Result<_, DomainError>>()?;
        let departements: Vec<Departement> =
            parse::<DepartementRecord>("departements.json", departements)?
                .into_iter()
                .map(|d| {
                    Ok(Departement {
                        zone: zone("departements.json", &d.zone)?,
                        code: d.code,
                        name: d.nom,
                        region_code: d.region,
                    })
                })
                .collect::<Result<_, DomainError>>()?;
        let departement_zone: HashMap<&str, (Zone, &str)> = departements
            .iter()
            .map(|d| (d.code.as_str(), (d.zone, d.region_code.as_str())))
            .collect();

        let epci_records: Vec<EpciRecord> = parse("epci.json", epcis)?;
        let mut epci_of: HashMap<String, String> = HashMap::new();
        for e in &epci_records {
            for m in &e.membres {
                epci_of.insert(m.code.clone(), e.code.clone());
            }
        }

        let mut communes_out = Vec::new();
        for c in parse::<CommuneRecord>("communes.json", communes)? {
            if c.kind != "commune-actuelle" {
                continue;
            }
            let Some(departement_code) = c.departement else {
                return Err(DomainError::invalid(
                    "communes.json",
                    format!("commune {} has no département", c.code),
                ));
            };
            let Some(&(dep_zone, dep_region)) = departement_zone.get(departement_code.as_str())
            else {
                return Err(DomainError::invalid(
                    "communes.json",
                    format!(
                        "commune {} is in unknown département {departement_code}",
                        c.code
                    ),
                ));
            };
            communes_out.push(Commune {
                zone: match &c.zone {
                    Some(z) => zone("communes.json", z)?,
                    None => dep_zone,
                },
                region_code: c.region.unwrap_or_else(|| dep_region.to_string()),
                epci_siren: epci_of.get(&c.code).cloned(),
                code: c.code,
                name: c.nom,
                departement_code,
                population: c.population.unwrap_or(0),
                siren: c.siren.unwrap_or_default(),
                postal_codes: c.codes_postaux,
                former_codes: c.anciens_codes,
            });
        }
        let commune_index: HashMap<&str, &Commune> =
            communes_out.iter().map(|c| (c.code.as_str(), c)).collect();

        let mut epcis_out = Vec::new();
        for e in epci_records {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for m in &e.membres {
                if let Some(c) = commune_index.get(m.code.as_str()) {
                    *counts.entry(c.departement_code.as_str()).or_default() += 1;
                }
            }
            // Most members first; BTreeMap order breaks ties by the smallest code.
            let Some((dep, _)) = counts
                .iter()
                .fold(None, |best: Option<(&str, usize)>, (d, n)| match best {
                    Some((_, bn)) if bn >= *n => best,
                    _ => Some((d, *n)),
                })
            else {
                return Err(DomainError::invalid(
                    "epci.json",
                    format!("EPCI {} has no current member commune", e.code),
                ));
            };
            let (dep_zone, dep_region) = departement_zone[dep];
            epcis_out.push(Epci {
                departement_code: dep.to_string(),
                region_code: dep_region.to_string(),
                zone: dep_zone,
                population: e.population_municipale.or(e.population_totale).unwrap_or(0),
                members: e.membres.into_iter().map(|m| m.code).collect(),
                siren: e.code,
                name: e.nom,
                kind: e.kind,
            });
        }

        if regions.is_empty() || departements.is_empty() || communes_out.is_empty() {
            return Err(DomainError::invalid(
                "files",
                "regions, départements and communes must not be empty",
            ));
        }
        Ok(Self {
            vintage: vintage.to_string(),
            content_hash,
            regions,
            departements,
            communes: communes_out,
            epcis: epcis_out,
        })
    }

    /// Former code → current code, from the `anciensCodes` of merged communes.
    pub fn former_codes(&self) -> HashMap<&str, &str> {
        self.communes
            .iter()
            .flat_map(|c| {
                c.former_codes
                    .iter()
                    .map(move |f| (f.as_str(), c.code.as_str()))
            })
            .filter(|(old, new)| old != new)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGIONS: &str = r#"[{"code":"84","nom":"Auvergne-Rhône-Alpes","zone":"metro"},{"code":"04","nom":"La Réunion","zone":"drom"}]"#;
    const DEPS: &str = r#"[{"code":"01","nom":"Ain","region":"84","zone":"metro"},{"code":"974","nom":"La Réunion","region":"04","zone":"drom"}]"#;
    const COMMUNES: &str = r#"[
      {"code":"01015","nom":"Arboys en Bugey","type":"commune-actuelle","departement":"01","region":"84","zone":"metro","population":710,"siren":"200053668","anciensCodes":["01340"]},
      {"code":"01340","nom":"Ancienne","type":"commune-deleguee","departement":"01","region":"84"},
      {"code":"97411","nom":"Saint-Denis","type":"commune-actuelle","departement":"974","region":"04","zone":"drom","population":150000}
    ]"#;
    const EPCI: &str = r#"[{"code":"200000172","nom":"CC Test","type":"CC","populationMunicipale":900,"membres":[{"code":"01015"}]}]"#;

    #[test]
    fn parses_current_communes_and_derives_epci_place() {
        let g = Geography::parse(
            "2026",
            REGIONS.as_bytes(),
            DEPS.as_bytes(),
            COMMUNES.as_bytes(),
            EPCI.as_bytes(),
        )
        .unwrap();
        assert_eq!(
            g.communes.len(),
            2,
            "delegated communes are not current communes"
        );
        assert_eq!(g.communes[0].epci_siren.as_deref(), Some("200000172"));
        assert_eq!(g.epcis[0].departement_code, "01");
        assert_eq!(g.epcis[0].region_code, "84");
        assert_eq!(g.former_codes().get("01340"), Some(&"01015"));
        let same = Geography::parse(
            "2026",
            REGIONS.as_bytes(),
            DEPS.as_bytes(),
            COMMUNES.as_bytes(),
            EPCI.as_bytes(),
        )
        .unwrap();
        assert_eq!(g.content_hash, same.content_hash);
    }

    #[test]
    fn refuses_bad_files_and_vintages() {
        assert!(
            Geography::parse(
                "2026",
                b"{",
                DEPS.as_bytes(),
                COMMUNES.as_bytes(),
                EPCI.as_bytes()
            )
            .is_err()
        );
        assert!(
            Geography::parse(
                "",
                REGIONS.as_bytes(),
                DEPS.as_bytes(),
                COMMUNES.as_bytes(),
                EPCI.as_bytes()
            )
            .is_err()
        );
        assert!(
            Geography::parse(
                "../x",
                REGIONS.as_bytes(),
                DEPS.as_bytes(),
                COMMUNES.as_bytes(),
                EPCI.as_bytes()
            )
            .is_err()
        );
        let orphan = r#"[{"code":"99001","nom":"X","type":"commune-actuelle","departement":"99"}]"#;
        assert!(
            Geography::parse(
                "2026",
                REGIONS.as_bytes(),
                DEPS.as_bytes(),
                orphan.as_bytes(),
                b"[]"
            )
            .is_err()
        );
    }
}
