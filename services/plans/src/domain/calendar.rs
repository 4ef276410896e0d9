//! Dates and times of a plan: its three plan years, and steering meetings held at a local
//! wall-clock time in the territory's own time zone.

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::DomainError;

/// A plan has three plan years.
pub const PLAN_YEARS: u8 = 3;

/// Year `n` (1 to 3) of a plan starting on `start`: from start + (n − 1) years (inclusive) to
/// start + n years (exclusive). A plan starting on 29 February has its anniversaries on
/// 28 February in common years, so that the years follow one another without gap or overlap.
pub fn plan_year(start: NaiveDate, n: u8) -> Result<(NaiveDate, NaiveDate), DomainError> {
    if !(1..=PLAN_YEARS).contains(&n) {
        return Err(DomainError::invalid(
            "year",
            format!("must be between 1 and {PLAN_YEARS}"),
        ));
    }
    let add = |years: u32| {
        start
            .checked_add_months(Months::new(12 * years))
            .ok_or_else(|| DomainError::invalid("start_date", "is out of range"))
    };
    Ok((add(u32::from(n) - 1)?, add(u32::from(n))?))
}

/// The plan year (1 to 3) that holds `day`, if any.
pub fn year_of(start: NaiveDate, day: NaiveDate) -> Option<u8> {
    (1..=PLAN_YEARS).find(|n| {
        plan_year(start, *n)
            .map(|(from, to)| from <= day && day < to)
            .unwrap_or(false)
    })
}

/// Parses an IANA time zone name.
pub fn time_zone(field: &str, name: &str) -> Result<Tz, DomainError> {
    name.parse::<Tz>()
        .map_err(|_| DomainError::invalid(field, "is not an IANA time zone, e.g. Europe/Paris"))
}

/// A local wall-clock time in a time zone, and the instant it denotes.
///
/// The local time and the zone are what people agreed on ("10:00 in Nouméa"): they are kept,
/// and the UTC instant is derived from them, so that a meeting at 10:00 stays at 10:00 local
/// time whatever daylight-saving rules apply on its day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub local: NaiveDateTime,
    pub zone: Tz,
    pub utc: DateTime<Utc>,
}

impl LocalTime {
    /// `local` in `zone`. A time that does not exist (skipped when clocks go forward) is
    /// refused; one that exists twice (clocks go back) is the first of the two.
    pub fn new(field: &str, local: NaiveDateTime, zone: Tz) -> Result<Self, DomainError> {
        let utc = match zone.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => t,
            chrono::LocalResult::Ambiguous(first, _) => first,
            chrono::LocalResult::None => {
                return Err(DomainError::invalid(
                    field,
                    format!(
                        "{local} does not exist in {zone}: the clocks skip that hour (daylight-saving change)"
                    ),
                ));
            }
        }
        .with_timezone(&Utc);
        Ok(Self { local, zone, utc })
    }
}

/// A meeting's start and end, both in the territory's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingTime {
    pub start: LocalTime,
    pub end: LocalTime,
}

impl MeetingTime {
    /// Checks that the meeting ends after it starts, lasts at most a day, and is not in the
    /// past at `now`.
    pub fn new(
        start: NaiveDateTime,
        end: NaiveDateTime,
        zone: Tz,
        now: DateTime<Utc>,
    ) -> Result<Self, DomainError> {
        let mut v = super::Violations::default();
        let start = v.check(LocalTime::new("start_time", start, zone));
        let end = v.check(LocalTime::new("end_time", end, zone));
        v.into_result()?;
        let (Some(start), Some(end)) = (start, end) else {
            return Err(DomainError::invalid("start_time", "is required"));
        };
        if end.utc <= start.utc {
            return Err(DomainError::invalid("end_time", "must be after the start"));
        }
        if end.utc - start.utc > chrono::Duration::hours(24) {
            return Err(DomainError::invalid(
                "end_time",
                "a meeting lasts at most a day",
            ));
        }
        if start.utc < now {
            return Err(DomainError::invalid(
                "start_time",
                "is in the past: a meeting is scheduled ahead",
            ));
        }
        Ok(Self { start, end })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        day(y, m, d).and_hms_opt(h, min, 0).unwrap()
    }

    #[test]
    fn plan_years_follow_each_other() {
        let start = day(2027, 3, 15);
        assert_eq!(
            plan_year(start, 1).unwrap(),
            (day(2027, 3, 15), day(2028, 3, 15))
        );
        assert_eq!(
            plan_year(start, 3).unwrap(),
            (day(2029, 3, 15), day(2030, 3, 15))
        );
        assert!(plan_year(start, 0).is_err());
        assert!(plan_year(start, 4).is_err());
        assert_eq!(year_of(start, day(2028, 3, 14)), Some(1));
        assert_eq!(year_of(start, day(2028, 3, 15)), Some(2));
        assert_eq!(year_of(start, day(2030, 3, 15)), None);
        assert_eq!(year_of(start, day(2027, 3, 14)), None);
    }

    #[test]
    fn a_plan_starting_on_29_february() {
        let start = day(2028, 2, 29);
        let years: Vec<_> = (1..=3).map(|n| plan_year(start, n).unwrap()).collect();
        assert_eq!(years[0], (day(2028, 2, 29), day(2029, 2, 28)));
        assert_eq!(years[1], (day(2029, 2, 28), day(2030, 2, 28)));
        assert_eq!(years[2], (day(2030, 2, 28), day(2031, 2, 28)));
        for pair in years.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "no gap, no overlap");
        }
        // Four years later it is a leap year again: still the 29th.
        assert_eq!(
            day(2028, 2, 29).checked_add_months(Months::new(48)),
            Some(day(2032, 2, 29))
        );
    }

    #[test]
    fn ten_o_clock_in_paris_stays_ten_o_clock_across_daylight_saving() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Winter (UTC+1), the day clocks go forward (29 March 2026, UTC+2 from 02:00 UTC+1),
        // and summer.
        let winter = LocalTime::new("t", at(2026, 3, 28, 10, 0), paris).unwrap();
        let switch = LocalTime::new("t", at(2026, 3, 29, 10, 0), paris).unwrap();
        let summer = LocalTime::new("t", at(2026, 7, 1, 10, 0), paris).unwrap();
        assert_eq!(
            winter.utc,
            Utc.with_ymd_and_hms(2026, 3, 28, 9, 0, 0).unwrap()
        );
        assert_eq!(
            switch.utc,
            Utc.with_ymd_and_hms(2026, 3, 29, 8, 0, 0).unwrap()
        );
        assert_eq!(
            summer.utc,
            Utc.with_ymd_and_hms(2026, 7, 1, 8, 0, 0).unwrap()
        );
        // The hour that does not exist, and the one that exists twice (25 October 2026).
        assert!(LocalTime::new("t", at(2026, 3, 29, 2, 30), paris).is_err());
        let twice = LocalTime::new("t", at(2026, 10, 25, 2, 30), paris).unwrap();
        assert_eq!(
            twice.utc,
            Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap()
        );
    }

    #[test]
    fn overseas_zones_have_their_own_offsets() {
        for (zone, utc_hour) in [
            ("Pacific/Noumea", 23),     // UTC+11: 10:00 is 23:00 UTC the day before
            ("Indian/Reunion", 6),      // UTC+4
            ("America/Guadeloupe", 14), // UTC−4
        ] {
            let tz: Tz = zone.parse().unwrap();
            let t = LocalTime::new("t", at(2026, 6, 10, 10, 0), tz).unwrap();
            assert_eq!(
                t.utc.format("%H").to_string(),
                format!("{utc_hour:02}"),
                "{zone}"
            );
        }
    }

    #[test]
    fn meeting_rules() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let ok = MeetingTime::new(at(2026, 6, 10, 10, 0), at(2026, 6, 10, 12, 0), paris, now);
        assert!(ok.is_ok());
        let backwards =
            MeetingTime::new(at(2026, 6, 10, 12, 0), at(2026, 6, 10, 10, 0), paris, now);
        assert!(matches!(backwards, Err(DomainError::Invalid(v)) if v[0].field == "end_time"));
        let past = MeetingTime::new(at(2026, 5, 10, 10, 0), at(2026, 5, 10, 12, 0), paris, now);
        assert!(matches!(past, Err(DomainError::Invalid(v)) if v[0].field == "start_time"));
        let long = MeetingTime::new(at(2026, 6, 10, 10, 0), at(2026, 6, 12, 10, 0), paris, now);
        assert!(long.is_err());
    }
}
