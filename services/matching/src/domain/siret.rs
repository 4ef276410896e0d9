//! SIRET numbers (numéro SIRET): 14 digits, the SIREN of the company (9) then the
//! establishment's number (5), checked with the Luhn key — except La Poste's establishments
//! (SIREN 356 000 000), too many for the key, whose digits sum to a multiple of 5 instead.

use std::fmt;

/// La Poste's SIREN: its SIRET numbers follow the multiple-of-5 rule, not Luhn.
const LA_POSTE_SIREN: &str = "356000000";

/// A SIRET that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Siret(String);

/// Why a SIRET is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SiretError {
    #[error("must be 14 digits")]
    Shape,
    #[error("its check digit is wrong (Luhn key)")]
    Luhn,
    #[error("its digits must sum to a multiple of 5 (La Poste's establishments)")]
    LaPoste,
}

/// The Luhn sum: every second digit from the right doubled (minus 9 above 9).
fn luhn_sum(digits: &[u8]) -> u32 {
    digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let d = u32::from(*d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum()
}

impl Siret {
    /// Spaces are accepted between groups ("356 000 000 00048"), as people write them.
    pub fn parse(raw: &str) -> Result<Self, SiretError> {
        let compact: String = raw.chars().filter(|c| *c != ' ').collect();
        if compact.len() != 14 || !compact.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SiretError::Shape);
        }
        let digits: Vec<u8> = compact.bytes().map(|b| b - b'0').collect();
        if compact.starts_with(LA_POSTE_SIREN) {
            // La Poste's numbers that pass the Luhn key (its head office) are valid too.
            let plain: u32 = digits.iter().map(|d| u32::from(*d)).sum();
            if luhn_sum(&digits).is_multiple_of(10) || plain.is_multiple_of(5) {
                return Ok(Self(compact));
            }
            return Err(SiretError::LaPoste);
        }
        if !luhn_sum(&digits).is_multiple_of(10) {
            return Err(SiretError::Luhn);
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The company's SIREN: the first 9 digits.
    pub fn siren(&self) -> &str {
        &self.0[..9]
    }
}

impl fmt::Display for Siret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_siret_passes_and_keeps_its_siren() {
        let s = Siret::parse("732 829 320 00074").expect("valid");
        assert_eq!(s.as_str(), "73282932000074");
        assert_eq!(s.siren(), "732829320");
        // La Poste's head office has a valid Luhn key.
        assert!(Siret::parse("35600000000048").is_ok());
    }

    #[test]
    fn a_wrong_check_digit_is_refused() {
        assert_eq!(Siret::parse("73282932000075"), Err(SiretError::Luhn));
    }

    #[test]
    fn shape_is_checked_first() {
        assert_eq!(Siret::parse("1300260320001"), Err(SiretError::Shape));
        assert_eq!(Siret::parse("1300260320001A"), Err(SiretError::Shape));
        assert_eq!(Siret::parse(""), Err(SiretError::Shape));
        assert_eq!(
            Siret::parse("７３２８２９３２０００７４"),
            Err(SiretError::Shape)
        );
    }

    #[test]
    fn la_poste_establishments_sum_to_a_multiple_of_five() {
        // 3 + 5 + 6 + 5 + 1 = 20, although its Luhn sum is not a multiple of 10.
        let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<_>>();
        let la_poste = "35600000000051";
        assert_ne!(luhn_sum(&digits(la_poste)) % 10, 0);
        assert!(Siret::parse(la_poste).is_ok());
        // Neither rule: refused, naming La Poste's rule.
        assert_eq!(Siret::parse("35600000000052"), Err(SiretError::LaPoste));
        // The same digits outside La Poste need the Luhn key.
        assert_eq!(Siret::parse("35700000000051"), Err(SiretError::Luhn));
    }
}
