//! Values written for French readers, the same way in every service's messages and in the
//! operator commands.

use std::fmt::Write as _;

/// Between groups of three digits: a narrow no-break space (U+202F), as French typography
/// writes thousands, and never a line break inside an amount.
const THOUSANDS: char = '\u{202f}';

/// Before the currency sign: a no-break space (U+00A0).
const BEFORE_SIGN: char = '\u{a0}';

/// An amount in euro cents as French readers write it: `1 234 567,89 €`, `-0,05 €`.
/// Integers only (no floating point touches an amount); defined for every i64.
pub fn euros(cents: i64) -> String {
    // `unsigned_abs`: i64::MIN has no positive i64.
    let abs = cents.unsigned_abs();
    let digits = (abs / 100).to_string();
    let mut out = String::with_capacity(digits.len() * 2 + 8);
    if cents < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(THOUSANDS);
        }
        out.push(c);
    }
    // Writing to a String cannot fail.
    let _ = write!(out, ",{:02}{BEFORE_SIGN}€", abs % 100);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_read_as_french_readers_write_them() {
        assert_eq!(euros(0), "0,00\u{a0}€");
        assert_eq!(euros(5), "0,05\u{a0}€");
        assert_eq!(euros(-5), "-0,05\u{a0}€");
        assert_eq!(euros(99_999), "999,99\u{a0}€");
        assert_eq!(euros(100_000), "1\u{202f}000,00\u{a0}€");
        assert_eq!(euros(123_456_789), "1\u{202f}234\u{202f}567,89\u{a0}€");
        assert_eq!(euros(-123_456_789), "-1\u{202f}234\u{202f}567,89\u{a0}€");
        assert_eq!(
            euros(i64::MAX),
            "92\u{202f}233\u{202f}720\u{202f}368\u{202f}547\u{202f}758,07\u{a0}€"
        );
        assert_eq!(
            euros(i64::MIN),
            "-92\u{202f}233\u{202f}720\u{202f}368\u{202f}547\u{202f}758,08\u{a0}€"
        );
    }

    /// Reads an amount back: the sign, the groups, the cents.
    fn parse(text: &str) -> i128 {
        let body = text.strip_suffix("\u{a0}€").expect("ends with « €»");
        let (negative, body) = match body.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        let (units, cents) = body.split_once(',').expect("a decimal comma");
        assert_eq!(cents.len(), 2, "two decimals: {text:?}");
        let groups: Vec<&str> = units.split(THOUSANDS).collect();
        assert!((1..=3).contains(&groups[0].len()), "first group: {text:?}");
        assert!(
            !groups[0].starts_with('0') || units == "0",
            "no leading zero: {text:?}"
        );
        assert!(
            groups[1..].iter().all(|g| g.len() == 3),
            "groups of three: {text:?}"
        );
        let value: i128 = format!("{}{cents}", groups.concat())
            .parse()
            .expect("digits only");
        if negative { -value } else { value }
    }

    /// Any i64, with small amounts and the bounds drawn often.
    fn cents() -> impl Strategy<Value = i64> {
        prop_oneof![
            any::<i64>(),
            -1_000_000i64..1_000_000,
            Just(i64::MIN),
            Just(i64::MAX),
        ]
    }

    proptest! {
        #[test]
        fn every_amount_reads_back_exactly(cents in cents()) {
            prop_assert_eq!(parse(&euros(cents)), i128::from(cents));
        }

        #[test]
        fn an_amount_is_one_unbreakable_word(cents in cents()) {
            let text = euros(cents);
            prop_assert!(!text.contains(' '), "{:?}", text);
            prop_assert_eq!(text.starts_with('-'), cents < 0);
        }
    }
}
