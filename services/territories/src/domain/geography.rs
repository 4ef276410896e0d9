//! The reference geography (code officiel géographique) in the format of
//! `@etalab/decoupage-administratif`: four JSON files, parsed and checked without I/O; its
//! compact form (the same files keeping only what tde reads); vintages as years.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::DomainError;
use super::territory::{AuthorityFacts, AuthorityKind, Zone, time_zone_for};

/// The four files of a vintage.
pub const FILES: [&str; 4] = [
    "regions.json",
    "departements.json",
    "communes.json",
    "epci.json",
];

// The records below are what tde reads of each file; serialised again, they are the compact
// form of a vintage (unknown fields are dropped, absent ones stay absent).

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionRecord {
    pub code: String,
    pub nom: String,
    pub zone: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartementRecord {
    pub code: String,
    pub nom: String,
    pub region: String,
    pub zone: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommuneRecord {
    pub code: String,
    pub nom: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub departement: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siren: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes_postaux: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anciens_codes: Vec<String>,
    /// Of a delegated or associated commune: the current commune it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chef_lieu: Option<String>,
    /// Of a municipal arrondissement: its commune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commune: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpciMemberRecord {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EpciRecord {
    pub code: String,
    pub nom: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub population_municipale: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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
    /// The year, as text ("2026"): how it is stored and published.
    pub vintage: String,
    pub year: u16,
    /// SHA-256 of what was read (not of the bytes): the same vintage imported twice, raw or
    /// compact, changes nothing.
    pub content_hash: String,
    pub regions: Vec<Region>,
    pub departements: Vec<Departement>,
    pub communes: Vec<Commune>,
    pub epcis: Vec<Epci>,
    /// Delegated and associated communes, and municipal arrondissements: code → the current
    /// commune they belong to (`chefLieu`), where the file says.
    pub parts: Vec<(String, String)>,
}

fn zone(field: &str, z: &str) -> Result<Zone, DomainError> {
    Zone::parse(z).ok_or_else(|| DomainError::invalid(field, format!("unknown zone {z:?}")))
}

fn parse<T: serde::de::DeserializeOwned>(file: &str, bytes: &[u8]) -> Result<Vec<T>, DomainError> {
    serde_json::from_slice(bytes)
        .map_err(|e| DomainError::invalid(file, format!("not in the reference format: {e}")))
}

/// The years a vintage may name: the code officiel géographique starts in 1943.
pub const VINTAGE_YEARS: std::ops::RangeInclusive<u16> = 1943..=2100;

/// Parses a vintage: a year (millésime) such as 2026. Vintages compare as numbers.
pub fn parse_vintage(vintage: &str) -> Result<u16, DomainError> {
    let v = vintage.trim();
    let year = (v.len() == 4 && v.chars().all(|c| c.is_ascii_digit()))
        .then(|| v.parse::<u16>().ok())
        .flatten()
        .filter(|y| VINTAGE_YEARS.contains(y));
    year.ok_or_else(|| {
        DomainError::invalid(
            "vintage",
            format!(
                "a year between {} and {}, such as 2026",
                VINTAGE_YEARS.start(),
                VINTAGE_YEARS.end()
            ),
        )
    })
}

/// The year of a vintage as stored, including the dated labels ("2026-01-01") earlier
/// versions accepted; None when there is none.
pub fn stored_year(vintage: &str) -> Option<u16> {
    let digits: String = vintage.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The four files of a vintage in compact form: each file parsed as tde reads it, and written
/// again with only those fields. The result parses exactly as the original does.
pub fn compact(file: &str, bytes: &[u8]) -> Result<Vec<u8>, DomainError> {
    fn again<T: serde::de::DeserializeOwned + Serialize>(
        file: &str,
        bytes: &[u8],
    ) -> Result<Vec<u8>, DomainError> {
        let records: Vec<T> = parse(file, bytes)?;
        serde_json::to_vec(&records)
            .map_err(|e| DomainError::invalid(file, format!("cannot be written again: {e}")))
    }
    match file {
        "regions.json" => again::<RegionRecord>(file, bytes),
        "departements.json" => again::<DepartementRecord>(file, bytes),
        "communes.json" => again::<CommuneRecord>(file, bytes),
        "epci.json" => again::<EpciRecord>(file, bytes),
        _ => Err(DomainError::invalid(
            "file",
            format!("{file} is not a file of the reference format"),
        )),
    }
}

/// Feeds the content read (not the bytes) to the hash: field by field, each length-prefixed
/// so that no two contents feed the same bytes.
struct ContentHasher(Sha256);

impl ContentHasher {
    fn text(&mut self, s: &str) -> &mut Self {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s.as_bytes());
        self
    }

    fn number(&mut self, n: i64) -> &mut Self {
        self.0.update(n.to_le_bytes());
        self
    }

    fn list(&mut self, items: &[String]) -> &mut Self {
        self.number(items.len() as i64);
        for i in items {
            self.text(i);
        }
        self
    }
}

fn content_hash(
    regions: &[Region],
    departements: &[Departement],
    communes: &[Commune],
    epcis: &[Epci],
    parts: &[(String, String)],
) -> String {
    let mut h = ContentHasher(Sha256::new());
    h.number(regions.len() as i64);
    for r in regions {
        h.text(&r.code).text(&r.name).text(r.zone.as_str());
    }
    h.number(departements.len() as i64);
    for d in departements {
        h.text(&d.code)
            .text(&d.name)
            .text(&d.region_code)
            .text(d.zone.as_str());
    }
    h.number(communes.len() as i64);
    for c in communes {
        h.text(&c.code)
            .text(&c.name)
            .text(&c.departement_code)
            .text(&c.region_code)
            .text(c.zone.as_str())
            .number(c.population)
            .text(&c.siren)
            .text(c.epci_siren.as_deref().unwrap_or_default())
            .list(&c.postal_codes)
            .list(&c.former_codes);
    }
    h.number(epcis.len() as i64);
    for e in epcis {
        h.text(&e.siren)
            .text(&e.name)
            .text(&e.kind)
            .number(e.population)
            .list(&e.members)
            .text(&e.departement_code)
            .text(&e.region_code)
            .text(e.zone.as_str());
    }
    h.number(parts.len() as i64);
    for (code, chef_lieu) in parts {
        h.text(code).text(chef_lieu);
    }
    format!("{:x}", h.0.finalize())
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
        let year = parse_vintage(vintage)?;

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
        let mut parts = Vec::new();
        for c in parse::<CommuneRecord>("communes.json", communes)? {
            if c.kind != "commune-actuelle" {
                if let Some(chef_lieu) = c.chef_lieu.or(c.commune)
                    && chef_lieu != c.code
                {
                    parts.push((c.code, chef_lieu));
                }
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
            vintage: year.to_string(),
            year,
            content_hash: content_hash(&regions, &departements, &communes_out, &epcis_out, &parts),
            regions,
            departements,
            communes: communes_out,
            epcis: epcis_out,
            parts,
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

    /// Lookups by code over the whole vintage.
    pub fn index(&self) -> GeographyIndex<'_> {
        let mut former: HashMap<&str, &str> = self
            .parts
            .iter()
            .map(|(code, chef_lieu)| (code.as_str(), chef_lieu.as_str()))
            .collect();
        // `anciensCodes` is the INSEE record of the merger: it wins over `chefLieu`.
        former.extend(self.former_codes());
        let mut population_of_departement: HashMap<&str, i64> = HashMap::new();
        for c in &self.communes {
            *population_of_departement
                .entry(c.departement_code.as_str())
                .or_default() += c.population;
        }
        GeographyIndex {
            communes: self.communes.iter().map(|c| (c.code.as_str(), c)).collect(),
            epcis: self.epcis.iter().map(|e| (e.siren.as_str(), e)).collect(),
            departements: self
                .departements
                .iter()
                .map(|d| (d.code.as_str(), d))
                .collect(),
            former,
            population_of_departement,
        }
    }
}

/// Lookups of one vintage by code.
pub struct GeographyIndex<'a> {
    communes: HashMap<&'a str, &'a Commune>,
    epcis: HashMap<&'a str, &'a Epci>,
    departements: HashMap<&'a str, &'a Departement>,
    /// Code of a commune that is no longer current → the commune it became part of.
    former: HashMap<&'a str, &'a str>,
    population_of_departement: HashMap<&'a str, i64>,
}

/// How many successive mergers a successor is followed through.
const MAX_SUCCESSION: usize = 8;

impl<'a> GeographyIndex<'a> {
    pub fn commune(&self, code: &str) -> Option<&'a Commune> {
        self.communes.get(code).copied()
    }

    /// Whether the authority of `kind` with `code` exists in this vintage.
    pub fn exists(&self, kind: AuthorityKind, code: &str) -> bool {
        match kind {
            AuthorityKind::Commune => self.communes.contains_key(code),
            AuthorityKind::Epci => self.epcis.contains_key(code),
            AuthorityKind::Departement => self.departements.contains_key(code),
        }
    }

    /// The current commune a commune that is no longer current became part of, following
    /// successive mergers; None when the vintage names none.
    pub fn successor(&self, code: &str) -> Option<&'a Commune> {
        let mut code = code;
        for _ in 0..MAX_SUCCESSION {
            let next = *self.former.get(code)?;
            if let Some(c) = self.commune(next) {
                return Some(c);
            }
            code = next;
        }
        None
    }

    /// What a territory of `kind` with `code` takes from this vintage, as registration does
    /// (`storage::geography::authority_facts` reads the same from the database).
    pub fn facts(&self, kind: AuthorityKind, code: &str) -> Option<AuthorityFacts> {
        match kind {
            AuthorityKind::Commune => self.commune(code).map(|c| AuthorityFacts {
                name: c.name.clone(),
                population: c.population,
                departement_code: c.departement_code.clone(),
                region_code: c.region_code.clone(),
                zone: c.zone,
                epci_siren: c.epci_siren.clone(),
            }),
            AuthorityKind::Epci => self.epcis.get(code).map(|e| AuthorityFacts {
                name: e.name.clone(),
                population: e.population,
                departement_code: e.departement_code.clone(),
                region_code: e.region_code.clone(),
                zone: e.zone,
                epci_siren: None,
            }),
            AuthorityKind::Departement => self.departements.get(code).map(|d| AuthorityFacts {
                name: d.name.clone(),
                population: self
                    .population_of_departement
                    .get(d.code.as_str())
                    .copied()
                    .unwrap_or(0),
                departement_code: d.code.clone(),
                region_code: d.region_code.clone(),
                zone: d.zone,
                epci_siren: None,
            }),
        }
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
    fn the_compact_form_reads_as_the_original() {
        let files: Vec<Vec<u8>> = [
            ("regions.json", REGIONS),
            ("departements.json", DEPS),
            ("communes.json", COMMUNES),
            ("epci.json", EPCI),
        ]
        .iter()
        .map(|(file, text)| compact(file, text.as_bytes()).unwrap())
        .collect();
        let original = Geography::parse(
            "2026",
            REGIONS.as_bytes(),
            DEPS.as_bytes(),
            COMMUNES.as_bytes(),
            EPCI.as_bytes(),
        )
        .unwrap();
        let again = Geography::parse("2026", &files[0], &files[1], &files[2], &files[3]).unwrap();
        assert_eq!(again.content_hash, original.content_hash);
        assert_eq!(again.communes, original.communes);
        assert!(compact("other.json", b"[]").is_err());
        assert_eq!(
            original.index().successor("01340").map(|c| c.code.as_str()),
            Some("01015")
        );
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
        for bad in ["999", "2026-01-01", "1942", "2101", "20260", "deux"] {
            assert!(parse_vintage(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_vintage(" 2026 "), Ok(2026));
        assert!(
            parse_vintage("999").unwrap_or(0) < parse_vintage("2026").unwrap_or(0),
            "years compare as numbers"
        );
        assert_eq!(stored_year("2026-01-01"), Some(2026));
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
