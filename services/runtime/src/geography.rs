//! The régions and départements of the official 2026 French administrative geography (COG
//! 2026, INSEE), for every service that checks a code it is given: a région or département
//! that does not exist is refused where it is entered, rather than stored and never matched.
//! Overseas collectivities (COM) count as their own région and département (e.g. 975). The
//! territories service checks these tables against the full reference data it embeds.

/// Région codes (INSEE), in order.
pub const REGIONS: &[&str] = &[
    "01", "02", "03", "04", "06", "11", "24", "27", "28", "32", "44", "52", "53", "75", "76", "84",
    "93", "94", "975", "977", "978", "984", "986", "987", "988", "989",
];

/// Département codes (INSEE) and the code of their région, in byte order of code.
pub const DEPARTEMENTS: &[(&str, &str)] = &[
    ("01", "84"),
    ("02", "32"),
    ("03", "84"),
    ("04", "93"),
    ("05", "93"),
    ("06", "93"),
    ("07", "84"),
    ("08", "44"),
    ("09", "76"),
    ("10", "44"),
    ("11", "76"),
    ("12", "76"),
    ("13", "93"),
    ("14", "28"),
    ("15", "84"),
    ("16", "75"),
    ("17", "75"),
    ("18", "24"),
    ("19", "75"),
    ("21", "27"),
    ("22", "53"),
    ("23", "75"),
    ("24", "75"),
    ("25", "27"),
    ("26", "84"),
    ("27", "28"),
    ("28", "24"),
    ("29", "53"),
    ("2A", "94"),
    ("2B", "94"),
    ("30", "76"),
    ("31", "76"),
    ("32", "76"),
    ("33", "75"),
    ("34", "76"),
    ("35", "53"),
    ("36", "24"),
    ("37", "24"),
    ("38", "84"),
    ("39", "27"),
    ("40", "75"),
    ("41", "24"),
    ("42", "84"),
    ("43", "84"),
    ("44", "52"),
    ("45", "24"),
    ("46", "76"),
    ("47", "75"),
    ("48", "76"),
    ("49", "52"),
    ("50", "28"),
    ("51", "44"),
    ("52", "44"),
    ("53", "52"),
    ("54", "44"),
    ("55", "44"),
    ("56", "53"),
    ("57", "44"),
    ("58", "27"),
    ("59", "32"),
    ("60", "32"),
    ("61", "28"),
    ("62", "32"),
    ("63", "84"),
    ("64", "75"),
    ("65", "76"),
    ("66", "76"),
    ("67", "44"),
    ("68", "44"),
    ("69", "84"),
    ("70", "27"),
    ("71", "27"),
    ("72", "52"),
    ("73", "84"),
    ("74", "84"),
    ("75", "11"),
    ("76", "28"),
    ("77", "11"),
    ("78", "11"),
    ("79", "75"),
    ("80", "32"),
    ("81", "76"),
    ("82", "76"),
    ("83", "93"),
    ("84", "93"),
    ("85", "52"),
    ("86", "75"),
    ("87", "75"),
    ("88", "44"),
    ("89", "27"),
    ("90", "27"),
    ("91", "11"),
    ("92", "11"),
    ("93", "11"),
    ("94", "11"),
    ("95", "11"),
    ("971", "01"),
    ("972", "02"),
    ("973", "03"),
    ("974", "04"),
    ("975", "975"),
    ("976", "06"),
    ("977", "977"),
    ("978", "978"),
    ("984", "984"),
    ("986", "986"),
    ("987", "987"),
    ("988", "988"),
    ("989", "989"),
];

/// Whether `code` is a région of the 2026 geography.
pub fn is_region(code: &str) -> bool {
    REGIONS.binary_search(&code).is_ok()
}

/// The région of département `code`, if it is one.
pub fn region_of(departement: &str) -> Option<&'static str> {
    DEPARTEMENTS
        .binary_search_by(|(d, _)| (*d).cmp(departement))
        .ok()
        .map(|i| DEPARTEMENTS[i].1)
}

/// Whether `code` is a département of the 2026 geography.
pub fn is_departement(code: &str) -> bool {
    region_of(code).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_are_sorted_for_binary_search() {
        assert!(REGIONS.windows(2).all(|w| w[0] < w[1]));
        assert!(DEPARTEMENTS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(DEPARTEMENTS.iter().all(|(_, r)| is_region(r)));
    }

    #[test]
    fn codes_are_known_or_not() {
        for code in ["84", "11", "94", "01", "975", "988"] {
            assert!(is_region(code), "{code}");
        }
        for code in ["", "8", "084", "99", "00", "05", "2A", "84 ", "８４"] {
            assert!(!is_region(code), "{code:?}");
        }
        assert_eq!(region_of("42"), Some("84"));
        assert_eq!(region_of("2A"), Some("94"));
        assert_eq!(region_of("974"), Some("04"));
        assert_eq!(region_of("975"), Some("975"));
        for code in ["", "20", "2C", "2a", "00", "96", "970", "42 ", "4"] {
            assert!(!is_departement(code), "{code:?}");
        }
    }
}
