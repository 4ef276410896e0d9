//! The reference geography as files: the vintage shipped inside tde, the folders a vintage is
//! read from (the package's raw JSON, or the compact form), and the conversion of an official
//! release of `@etalab/decoupage-administratif` into the compact form.
//!
//! The compact form is a folder holding the four files of the package gzip-compressed
//! (`communes.json.gz`, …) with only the fields tde reads, and `vintage.json` saying which
//! vintage it is, where it comes from, its counts and the hash of its content. It parses
//! exactly as the raw files do.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};

use crate::domain::geography::{self, FILES, Geography};

/// The vintage shipped with tde: what `tde dev` loads when no geography is loaded.
pub const SHIPPED_VINTAGE: u16 = 2026;

/// Where the shipped vintage is kept in the repository, from this crate.
pub const SHIPPED_DIR: &str = "geography/2026";

/// The shipped vintage, compressed, in the order of `FILES`.
const SHIPPED_FILES: [&[u8]; 4] = [
    include_bytes!("../geography/2026/regions.json.gz"),
    include_bytes!("../geography/2026/departements.json.gz"),
    include_bytes!("../geography/2026/communes.json.gz"),
    include_bytes!("../geography/2026/epci.json.gz"),
];
const SHIPPED_MANIFEST: &str = include_str!("../geography/2026/vintage.json");

/// The manifest of a vintage in compact form.
pub const MANIFEST: &str = "vintage.json";

/// Largest decompressed file accepted (the national communes file is under 9 MB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// `vintage.json`: which vintage a compact folder holds and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub vintage: u16,
    /// The npm package it was converted from, and its version.
    pub package: String,
    pub package_version: String,
    pub licence: String,
    pub regions: usize,
    pub departements: usize,
    pub communes: usize,
    pub epcis: usize,
    /// `Geography::content_hash` of the content: checked on every read.
    pub content_sha256: String,
}

fn gunzip(what: &str, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("{what}: not a gzip file"))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        bail!("{what}: larger than {MAX_FILE_BYTES} bytes once decompressed");
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    // GzEncoder writes no time stamp in its header: the same content gives the same bytes.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn parse_manifest(what: &str, text: &str) -> anyhow::Result<Manifest> {
    serde_json::from_str(text).with_context(|| format!("{what}: not a vintage manifest"))
}

/// Parses the four files (JSON) as the vintage `vintage`, checked against `manifest`.
fn parse(
    vintage: u16,
    files: &[Vec<u8>; 4],
    manifest: Option<&Manifest>,
) -> anyhow::Result<Geography> {
    let [r, d, c, e] = files;
    let g = Geography::parse(&vintage.to_string(), r, d, c, e)?;
    if let Some(m) = manifest
        && m.content_sha256 != g.content_hash
    {
        bail!(
            "the files of vintage {vintage} do not match their {MANIFEST} (content hash {} instead of {})",
            g.content_hash,
            m.content_sha256
        );
    }
    Ok(g)
}

fn shipped_manifest() -> anyhow::Result<Manifest> {
    parse_manifest("the shipped vintage.json", SHIPPED_MANIFEST)
}

/// The four files of the vintage shipped with tde, as JSON (in the order of `FILES`), and
/// its year: what the import RPC takes.
pub fn shipped_files() -> anyhow::Result<(u16, [Vec<u8>; 4])> {
    let manifest = shipped_manifest()?;
    let mut files: [Vec<u8>; 4] = Default::default();
    for (i, name) in FILES.iter().enumerate() {
        files[i] = gunzip(&format!("the shipped {name}.gz"), SHIPPED_FILES[i])?;
    }
    Ok((manifest.vintage, files))
}

/// The vintage shipped with tde.
pub fn shipped() -> anyhow::Result<Geography> {
    let manifest = shipped_manifest()?;
    let (year, files) = shipped_files()?;
    parse(year, &files, Some(&manifest))
}

/// The four files of a folder, as JSON (`<file>` as is, or `<file>.gz` decompressed), in the
/// order of `FILES`, and its manifest if it has one.
pub fn read_files(dir: &Path) -> anyhow::Result<(Option<Manifest>, [Vec<u8>; 4])> {
    let manifest_path = dir.join(MANIFEST);
    let manifest = if manifest_path.is_file() {
        let text = std::fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        Some(parse_manifest(&manifest_path.display().to_string(), &text)?)
    } else {
        None
    };
    let mut files: [Vec<u8>; 4] = Default::default();
    for (i, name) in FILES.iter().enumerate() {
        let raw = dir.join(name);
        let compressed = dir.join(format!("{name}.gz"));
        files[i] = if raw.is_file() {
            std::fs::read(&raw).with_context(|| format!("reading {}", raw.display()))?
        } else if compressed.is_file() {
            let bytes = std::fs::read(&compressed)
                .with_context(|| format!("reading {}", compressed.display()))?;
            gunzip(&compressed.display().to_string(), &bytes)?
        } else {
            bail!(
                "{}: neither {name} nor {name}.gz is there (a vintage is regions, départements, communes and epci)",
                dir.display()
            );
        };
    }
    Ok((manifest, files))
}

/// The vintage a folder holds: the one its manifest names, or `vintage` for raw files. Both
/// given must agree.
pub fn vintage_of(
    dir: &Path,
    manifest: Option<&Manifest>,
    vintage: Option<&str>,
) -> anyhow::Result<u16> {
    let given = vintage
        .map(|v| geography::parse_vintage(v).map_err(|e| anyhow!("{e}")))
        .transpose()?;
    match (manifest.map(|m| m.vintage), given) {
        (Some(m), Some(g)) if m != g => bail!(
            "{} holds vintage {m} (its {MANIFEST}), not {g}",
            dir.display()
        ),
        (Some(v), _) | (None, Some(v)) => Ok(v),
        (None, None) => bail!(
            "{}: which vintage is it? Give it (--vintage 2027), or convert the folder with `tde geography convert`",
            dir.display()
        ),
    }
}

/// Reads the vintage in `dir`, raw or compact (see `vintage_of` for `vintage`).
pub fn read_dir(dir: &Path, vintage: Option<&str>) -> anyhow::Result<Geography> {
    let (manifest, files) = read_files(dir)?;
    let year = vintage_of(dir, manifest.as_ref(), vintage)?;
    parse(year, &files, manifest.as_ref())
}

/// The package's data folder: `<from>/data` (the root of the npm package) or `<from>`.
fn data_dir(from: &Path) -> PathBuf {
    let nested = from.join("data");
    if nested.join("communes.json").is_file() {
        nested
    } else {
        from.to_path_buf()
    }
}

#[derive(Deserialize)]
struct PackageJson {
    name: String,
    version: String,
}

/// The first of `name` in the package's folders: `from`, then its parent (the package's root
/// when `from` is its `data` folder).
fn package_file(from: &Path, name: &str) -> Option<PathBuf> {
    [from.join(name), from.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_file())
}

/// Converts a release of `@etalab/decoupage-administratif` (the package's root, e.g. from
/// `npm pack`, or its `data` folder) into the compact form of `vintage` in `to`: the four
/// files checked, reduced to what tde reads and compressed, `vintage.json`, the package's
/// LICENSE and a README. The package's version is read from its package.json, unless given.
/// Refuses to write over another vintage.
pub fn convert(
    from: &Path,
    to: &Path,
    vintage: &str,
    package_version: Option<&str>,
) -> anyhow::Result<Manifest> {
    let year = geography::parse_vintage(vintage).map_err(|e| anyhow!("{e}"))?;
    let data = data_dir(from);
    let (_, raw) = read_files(&data)?;
    let g = parse(year, &raw, None)?;

    let mut package = PackageJson {
        name: "@etalab/decoupage-administratif".into(),
        version: "unknown".into(),
    };
    if let Some(path) = package_file(&data, "package.json") {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        package = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a package.json", path.display()))?;
    }
    if let Some(v) = package_version {
        package.version = v.to_string();
    }

    let mut compact: [Vec<u8>; 4] = Default::default();
    for (i, name) in FILES.iter().enumerate() {
        compact[i] = geography::compact(name, &raw[i])?;
    }
    // What tde reads of the compact files is what it reads of the raw ones.
    let again = parse(year, &compact, None)?;
    if again.content_hash != g.content_hash {
        bail!("the compact form of vintage {year} would not read as the release does");
    }

    if let Ok(text) = std::fs::read_to_string(to.join(MANIFEST)) {
        let existing = parse_manifest(&to.join(MANIFEST).display().to_string(), &text)?;
        if existing.vintage != year {
            bail!(
                "{} holds vintage {}: convert vintage {year} into a folder of its own",
                to.display(),
                existing.vintage
            );
        }
    }
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for (i, name) in FILES.iter().enumerate() {
        let path = to.join(format!("{name}.gz"));
        std::fs::write(&path, gzip(&compact[i])?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let manifest = Manifest {
        vintage: year,
        package: package.name,
        package_version: package.version,
        licence: "Licence Ouverte / Open Licence (Etalab)".into(),
        regions: g.regions.len(),
        departements: g.departements.len(),
        communes: g.communes.len(),
        epcis: g.epcis.len(),
        content_sha256: g.content_hash.clone(),
    };
    let mut text = serde_json::to_string_pretty(&manifest)?;
    text.push('\n');
    std::fs::write(to.join(MANIFEST), text)
        .with_context(|| format!("writing {}", to.join(MANIFEST).display()))?;
    if let Some(licence) = package_file(&data, "LICENSE") {
        // Its contents, not its permissions (an unpacked package may be read-only).
        let text =
            std::fs::read(&licence).with_context(|| format!("reading {}", licence.display()))?;
        std::fs::write(to.join("LICENSE"), text)
            .with_context(|| format!("writing {}", to.join("LICENSE").display()))?;
    }
    std::fs::write(to.join("README.md"), readme(&manifest))
        .with_context(|| format!("writing {}", to.join("README.md").display()))?;
    Ok(manifest)
}

fn readme(m: &Manifest) -> String {
    format!(
        "# French administrative geography, vintage {vintage} (millésime {vintage})\n\
         \n\
         The reference geography of tde: communes, EPCI, départements and régions as published\n\
         in the npm package `{package}` version {version}, the data behind\n\
         geo.api.gouv.fr.\n\
         \n\
         - Sources named by the package: INSEE Code officiel géographique, DGCL list of EPCI à\n\
         \x20 fiscalité propre, INSEE legal populations, La Poste postal codes.\n\
         - Licence of the data: {licence}, which asks to name the source\n\
         \x20 (above) and its date (the vintage). The package's code is under the MIT licence\n\
         \x20 in `LICENSE`.\n\
         - Counts: {communes} current communes, {epcis} EPCI, {departements} départements,\n\
         \x20 {regions} régions.\n\
         \n\
         Compact form: the package's four files gzip-compressed, keeping only the fields tde reads\n\
         (every record stays, delegated and associated communes included); `vintage.json` holds\n\
         the counts and the hash of the content, checked on every import. Written by\n\
         `tde geography convert --from <package> --to <this folder> --vintage {vintage}`.\n",
        vintage = m.vintage,
        package = m.package,
        version = m.package_version,
        licence = m.licence,
        communes = m.communes,
        epcis = m.epcis,
        departements = m.departements,
        regions = m.regions,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's tables of régions and départements, which the other services check codes
    /// against, are exactly those of the shipped vintage.
    #[test]
    fn the_runtime_geography_is_the_shipped_vintage() {
        let g = shipped().expect("the shipped vintage");
        let mut regions: Vec<&str> = g.regions.iter().map(|r| r.code.as_str()).collect();
        regions.sort_unstable();
        assert_eq!(regions, tde_runtime::geography::REGIONS);
        let mut departements: Vec<(&str, &str)> = g
            .departements
            .iter()
            .map(|d| (d.code.as_str(), d.region_code.as_str()))
            .collect();
        departements.sort_unstable();
        assert_eq!(departements, tde_runtime::geography::DEPARTEMENTS);
    }

    #[test]
    fn the_shipped_vintage_reads_and_matches_its_manifest() {
        let g = shipped().expect("the shipped vintage");
        assert_eq!(g.year, SHIPPED_VINTAGE);
        assert_eq!(g.communes.len(), 34_969);
        assert_eq!(g.epcis.len(), 1_255);
        assert_eq!(g.departements.len(), 109);
        assert_eq!(g.regions.len(), 26);
        let index = g.index();
        assert_eq!(
            index.successor("19223").map(|c| c.name.as_str()),
            Some("Les Trois-Saints")
        );
    }

    #[test]
    fn a_converted_folder_reads_as_the_raw_one_and_names_its_vintage() {
        let raw = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/geo2027");
        let out = tempfile::tempdir().unwrap();
        let m = convert(&raw, out.path(), "2027", Some("6.0.0")).unwrap();
        assert_eq!(m.package_version, "6.0.0");
        assert_eq!(m.vintage, 2027);
        let compact = read_dir(out.path(), None).unwrap();
        let original = read_dir(&raw, Some("2027")).unwrap();
        assert_eq!(compact.content_hash, original.content_hash);
        assert_eq!(compact.communes, original.communes);
        assert!(
            read_dir(out.path(), Some("2026")).is_err(),
            "its manifest says 2027"
        );
        assert!(read_dir(&raw, None).is_err(), "raw files need a vintage");
        assert!(
            convert(&raw, out.path(), "2028", None).is_err(),
            "one vintage per folder"
        );
        assert!(convert(&raw, out.path(), "999", None).is_err());
    }
}
