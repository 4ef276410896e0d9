//! Money in euro cents (integers only: no floating point ever touches an amount): bounds, the
//! advance of a grant, and the decimal amounts of open-data files (amounts for people are
//! written by `tde_runtime::format::euros`).

/// The largest amount accepted anywhere: 10 billion euros, far above any envelope, and small
/// enough that sums of many amounts never overflow an i64.
pub const MAX_CENTS: i64 = 1_000_000_000_000;

/// `22000.80`: the decimal euros of open-data files (a dot, two decimals).
pub fn decimal_eur(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// The advance of a grant: `percent` of it, rounded to the nearest cent (half up), never
/// more than the grant. The balance is what is left (`payment::next_tranche`), so that
/// advance + balance is the grant exactly.
pub fn advance_of(granted_cents: i64, percent: u8) -> i64 {
    let granted = i128::from(granted_cents.max(0));
    let advance = (granted * i128::from(percent.min(100)) + 50) / 100;
    // At most the grant, and the grant fits in i64: the conversion cannot fail.
    i64::try_from(advance).unwrap_or(granted_cents)
}

/// Checks an amount given by a caller: positive, at most `MAX_CENTS`.
pub fn positive(field: &str, cents: i64) -> Result<i64, super::DomainError> {
    if cents <= 0 {
        return Err(super::DomainError::invalid(
            field,
            "must be a positive amount in euro cents",
        ));
    }
    if cents > MAX_CENTS {
        return Err(super::DomainError::invalid(
            field,
            format!("must be at most {} (in cents)", MAX_CENTS),
        ));
    }
    Ok(cents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advance_is_never_more_than_the_grant() {
        for granted in [0, 1, 2, 3, 99, 100, 101, 12_345, 1_000_001, 999_999_999_999] {
            for percent in [0, 1, 30, 33, 50, 67, 99, 100] {
                let advance = advance_of(granted, percent);
                assert!((0..=granted).contains(&advance), "{granted} at {percent}%");
            }
        }
    }

    #[test]
    fn the_advance_rounds_to_the_nearest_cent_half_up() {
        // 50% of 1,01 € is 0,505 €: 0,51 € of advance.
        assert_eq!(advance_of(101, 50), 51);
        // 33% of 1,00 €: 0,33 €.
        assert_eq!(advance_of(100, 33), 33);
        // 1/3 of 0,02 € is 0,0066: rounds to 0,01 €.
        assert_eq!(advance_of(2, 33), 1);
        assert_eq!(advance_of(1, 49), 0);
        assert_eq!(advance_of(2_000_000, 50), 1_000_000);
        // A percentage above 100 is read as 100: never more than the grant.
        assert_eq!(advance_of(500, 250), 500);
    }

    #[test]
    fn open_data_amounts_have_a_decimal_dot() {
        assert_eq!(decimal_eur(2_200_080), "22000.80");
        assert_eq!(decimal_eur(-7), "-0.07");
    }

    #[test]
    fn caller_amounts_are_positive_and_bounded() {
        assert!(positive("amount_cents", 0).is_err());
        assert!(positive("amount_cents", -5).is_err());
        assert!(positive("amount_cents", MAX_CENTS + 1).is_err());
        assert_eq!(positive("amount_cents", 42), Ok(42));
    }
}
