//! Name search that ignores case, accents, hyphens and apostrophes: "saint etienne" finds
//! "Saint-Étienne", "l abergement" finds "L'Abergement-Clémenciat".

use unicode_normalization::UnicodeNormalization as _;
use unicode_normalization::char::is_combining_mark;

/// Lowercase, without accents, punctuation as single spaces.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut space = true;
    for c in name.nfd().filter(|c| !is_combining_mark(*c)) {
        let mapped: &str = match c {
            'œ' | 'Œ' => "oe",
            'æ' | 'Æ' => "ae",
            'ß' => "ss",
            _ => "",
        };
        if !mapped.is_empty() {
            out.push_str(mapped);
            space = false;
        } else if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            space = false;
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn ignores_case_accents_hyphens_apostrophes() {
        assert_eq!(normalize("Saint-Étienne"), "saint etienne");
        assert_eq!(normalize("saint etienne"), "saint etienne");
        assert_eq!(
            normalize("L'Abergement-Clémenciat"),
            "l abergement clemenciat"
        );
        assert_eq!(normalize("L’Haÿ-les-Roses"), "l hay les roses");
        assert_eq!(normalize("  Œuilly  "), "oeuilly");
        assert_eq!(normalize("CC Faucigny - Glières"), "cc faucigny glieres");
        assert_eq!(normalize("%_"), "");
    }
}
