//! SIRET numbers (numéro SIRET: SIREN of the legal unit + NIC of the establishment), as the
//! beneficiary of a subsidy is identified in the State's accounting and in open data.

use std::fmt;

/// The SIREN of La Poste, whose establishments are too many for the Luhn key: their SIRET is
/// valid when the sum of its digits is a multiple of 5 (INSEE's published exception).
const LA_POSTE_SIREN: &str = "356000000";

/// A valid SIRET: 14 digits whose Luhn checksum holds (or La Poste's rule).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Siret(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiretError {
    #[error("must be 14 digits (spaces allowed between groups)")]
    NotFourteenDigits,
    #[error("is not a valid SIRET: its check digit does not match")]
    BadChecksum,
}

fn digits(s: &str) -> impl DoubleEndedIterator<Item = u32> + '_ {
    s.bytes().map(|b| u32::from(b - b'0'))
}

/// The Luhn checksum holds (rightmost digit is the key).
fn luhn(number: &str) -> bool {
    let sum: u32 = digits(number)
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl Siret {
    /// Parses a SIRET, ignoring spaces between digit groups ("130 026 032 00016").
    pub fn parse(raw: &str) -> Result<Self, SiretError> {
        let compact: String = raw.chars().filter(|c| *c != ' ').collect();
        if compact.len() != 14 || !compact.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SiretError::NotFourteenDigits);
        }
        let valid = if compact.starts_with(LA_POSTE_SIREN) {
            // La Poste's establishments: the Luhn key of the SIREN part holds, and the sum of
            // the 14 digits is a multiple of 5 (the NIC carries no Luhn key).
            digits(&compact).sum::<u32>().is_multiple_of(5)
        } else {
            luhn(&compact)
        };
        if valid {
            Ok(Self(compact))
        } else {
            Err(SiretError::BadChecksum)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The legal unit's SIREN (first 9 digits).
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
    fn valid_sirets_pass() {
        // Ville de Paris, ANCT, Lyon.
        for ok in [
            "21750001600019",
            "13002603200016",
            "130 026 032 00016",
            "21690123100011",
        ] {
            assert!(Siret::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            Siret::parse("130 026 032 00016").unwrap().as_str(),
            "13002603200016"
        );
        assert_eq!(Siret::parse("13002603200016").unwrap().siren(), "130026032");
    }

    #[test]
    fn a_wrong_digit_breaks_the_checksum() {
        assert_eq!(Siret::parse("13002603200017"), Err(SiretError::BadChecksum));
        assert_eq!(Siret::parse("21750001600018"), Err(SiretError::BadChecksum));
    }

    #[test]
    fn only_fourteen_digits() {
        for bad in [
            "",
            "1300260320001",
            "130026032000160",
            "1300260320001A",
            "13002603200-16",
        ] {
            assert_eq!(
                Siret::parse(bad),
                Err(SiretError::NotFourteenDigits),
                "{bad}"
            );
        }
    }

    #[test]
    fn la_poste_establishments_follow_the_sum_of_digits_rule() {
        // 3+5+6 + 0… = 14; NIC 00048: 14 + 4 + 8 = 26, not a multiple of 5; 00051: 20.
        assert!(Siret::parse("35600000000051").is_ok());
        assert!(Siret::parse("35600000000048").is_err());
        // Its Luhn-invalid establishments are valid by the rule: 00051 fails Luhn.
        assert!(!luhn("35600000000051"));
        // And a Luhn-valid number outside the rule is refused for La Poste.
        let luhn_valid = (0..100)
            .map(|n| format!("356000000000{n:02}"))
            .find(|s| luhn(s) && !digits(s).sum::<u32>().is_multiple_of(5))
            .expect("some Luhn-valid NIC breaks the sum rule");
        assert_eq!(Siret::parse(&luhn_valid), Err(SiretError::BadChecksum));
    }
}
