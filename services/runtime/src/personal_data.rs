//! Personal data named without being repeated: an e-mail address becomes a fingerprint (the
//! SHA-256 of its one normal form) wherever a service must say "this person" — erasure
//! events, audit resources, lookups of what a service holds about someone.

use sha2::Digest as _;
use unicode_normalization::UnicodeNormalization as _;

/// The normal form of an address: trimmed, NFC, lowercased. Every service compares and
/// fingerprints addresses in this form, so that one person is one fingerprint everywhere.
pub fn normalize_email(email: &str) -> String {
    email.trim().nfc().collect::<String>().to_lowercase()
}

/// Lowercase hex SHA-256 of the normalised address.
pub fn fingerprint(email: &str) -> String {
    hex(&sha2::Sha256::digest(normalize_email(email).as_bytes()))
}

/// Whether `s` has the shape of a fingerprint (64 lowercase hex digits): what a consumer
/// checks before using one taken from an event.
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A short, safe prefix of a fingerprint for logs (never panics, whatever `s` is).
pub fn short(s: &str) -> &str {
    match s.char_indices().nth(12) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_person_one_fingerprint() {
        let composed = "andré@exemple.fr";
        let decomposed = "andre\u{301}@exemple.fr";
        assert_eq!(fingerprint(composed), fingerprint(decomposed));
        assert_eq!(
            fingerprint(" Andre\u{301}@Exemple.FR "),
            fingerprint(composed)
        );
        assert_ne!(fingerprint("a@x.fr"), fingerprint("b@x.fr"));
        assert!(is_fingerprint(&fingerprint("a@x.fr")));
        // The SHA-256 of "a@x.fr", as other systems compute it.
        assert_eq!(fingerprint("A@X.FR"), hex(&sha2::Sha256::digest(b"a@x.fr")));
    }

    #[test]
    fn shapes_and_prefixes_never_panic() {
        assert!(!is_fingerprint("abc"));
        assert!(!is_fingerprint(&"G".repeat(64)));
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("ééééééééééééééé"), "éééééééééééé");
        assert_eq!(short(&"a".repeat(64)), "a".repeat(12));
    }
}
