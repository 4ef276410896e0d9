//! When each notification of a meeting is due, in the territory's own time zone.

use chrono::{DateTime, Duration, NaiveDateTime, NaiveTime, TimeZone as _, Utc};
use chrono_tz::Tz;

use super::Kind;
use super::recipient::Recipient;

/// A meeting as the plans events describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub id: String,
    pub sequence: u32,
    pub plan_id: String,
    pub territory_id: String,
    pub territory_name: String,
    pub zone: Tz,
    pub start_local: NaiveDateTime,
    pub end_local: NaiveDateTime,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub place: String,
    pub video_link: String,
    pub agenda: String,
    pub cancelled: bool,
    pub cancel_reason: String,
}

/// A notification to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub kind: Kind,
    /// The recipient's address.
    pub recipient: String,
    pub due: DateTime<Utc>,
}

/// The local time of a territory's reminders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderRule {
    pub days: &'static [u32],
    pub at: NaiveTime,
}

/// When the reminder `days` before a meeting is due: at `at`, local time, on the local day
/// `days` before the meeting's. A local time the clocks skip moves to the first instant that
/// exists after it.
pub fn reminder_due(
    start_local: NaiveDateTime,
    zone: Tz,
    days: u32,
    at: NaiveTime,
) -> Option<DateTime<Utc>> {
    let day = start_local.date() - Duration::days(i64::from(days));
    let local = day.and_time(at);
    let resolved = match zone.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => t,
        chrono::LocalResult::Ambiguous(first, _) => first,
        chrono::LocalResult::None => {
            // In a daylight-saving gap: the gap is at most a few hours.
            (1..=180).find_map(|m| {
                zone.from_local_datetime(&(local + Duration::minutes(m)))
                    .single()
            })?
        }
    };
    Some(resolved.with_timezone(&Utc))
}

/// What `recipients` must receive about `meeting` as of `now`: `first` (the invitation, the
/// update or the cancellation) at once, and the reminders still ahead.
pub fn plan(
    meeting: &Meeting,
    first: Kind,
    recipients: &[Recipient],
    reminder_days: &[u32],
    at: NaiveTime,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    let mut planned: Vec<Planned> = recipients
        .iter()
        .map(|r| Planned {
            kind: first,
            recipient: r.email.clone(),
            due: now,
        })
        .collect();
    planned.extend(reminders(meeting, recipients, reminder_days, at, now));
    planned
}

/// The reminders of `meeting` still ahead as of `now`, for the recipients who want them; none
/// for a cancelled meeting. A reminder whose time has passed is not sent late.
pub fn reminders(
    meeting: &Meeting,
    recipients: &[Recipient],
    reminder_days: &[u32],
    at: NaiveTime,
    now: DateTime<Utc>,
) -> Vec<Planned> {
    if meeting.cancelled {
        return Vec::new();
    }
    let due: Vec<(u32, DateTime<Utc>)> = reminder_days
        .iter()
        .filter_map(|days| {
            reminder_due(meeting.start_local, meeting.zone, *days, at)
                .filter(|due| *due > now && *due < meeting.start)
                .map(|due| (*days, due))
        })
        .collect();
    recipients
        .iter()
        .filter(|r| r.reminders)
        .flat_map(|r| {
            due.iter().map(|(days, due)| Planned {
                kind: Kind::Reminder(*days),
                recipient: r.email.clone(),
                due: *due,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::recipient::{Recipient, RosterEntry};
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    fn nine() -> NaiveTime {
        NaiveTime::from_hms_opt(9, 0, 0).unwrap()
    }

    fn meeting(zone: &str, start: NaiveDateTime) -> Meeting {
        let zone: Tz = zone.parse().unwrap();
        let utc = zone
            .from_local_datetime(&start)
            .single()
            .unwrap()
            .with_timezone(&Utc);
        Meeting {
            id: "m".into(),
            sequence: 0,
            plan_id: "p".into(),
            territory_id: "t".into(),
            territory_name: "Saint-Étienne".into(),
            zone,
            start_local: start,
            end_local: start + Duration::hours(2),
            start: utc,
            end: utc + Duration::hours(2),
            place: "Mairie".into(),
            video_link: String::new(),
            agenda: String::new(),
            cancelled: false,
            cancel_reason: String::new(),
        }
    }

    fn recipient(email: &str, reminders: bool) -> Recipient {
        let mut r = Recipient::new(
            "t",
            &RosterEntry {
                name: "X",
                email,
                role: "steering_body",
            },
        );
        r.reminders = reminders;
        r
    }

    #[test]
    fn reminders_at_nine_local_across_daylight_saving() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Meeting on 2027-04-01 (summer time); the 7-day reminder falls on 2027-03-25 (winter).
        let start = at(2027, 4, 1, 10, 0);
        let seven = reminder_due(start, paris, 7, nine()).unwrap();
        let one = reminder_due(start, paris, 1, nine()).unwrap();
        assert_eq!(
            seven,
            Utc.with_ymd_and_hms(2027, 3, 25, 8, 0, 0).unwrap(),
            "UTC+1"
        );
        assert_eq!(
            one,
            Utc.with_ymd_and_hms(2027, 3, 31, 7, 0, 0).unwrap(),
            "UTC+2"
        );
    }

    #[test]
    fn overseas_territories_get_their_reminders_at_their_nine() {
        for (zone, utc_hour, day_shift) in [
            ("Pacific/Noumea", 22, 1), // 09:00 at UTC+11 is 22:00 UTC the day before
            ("Indian/Reunion", 5, 0),  // UTC+4
            ("America/Guadeloupe", 13, 0), // UTC−4
        ] {
            let tz: Tz = zone.parse().unwrap();
            let due = reminder_due(at(2027, 6, 10, 10, 0), tz, 1, nine()).unwrap();
            assert_eq!(
                due.format("%H").to_string(),
                format!("{utc_hour:02}"),
                "{zone}"
            );
            assert_eq!(
                due.date_naive(),
                NaiveDate::from_ymd_opt(2027, 6, 9 - day_shift).unwrap(),
                "{zone}"
            );
        }
    }

    #[test]
    fn a_reminder_whose_time_passed_is_not_planned() {
        let m = meeting("Europe/Paris", at(2027, 6, 10, 10, 0));
        let people = [recipient("a@x.fr", true), recipient("b@x.fr", false)];
        // Scheduled three days ahead: the 7-day reminder is already past.
        let now = Utc.with_ymd_and_hms(2027, 6, 7, 12, 0, 0).unwrap();
        let planned = plan(&m, Kind::Invitation, &people, &[7, 1], nine(), now);
        let kinds: Vec<_> = planned
            .iter()
            .map(|p| (p.recipient.as_str(), p.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("a@x.fr", Kind::Invitation),
                ("b@x.fr", Kind::Invitation),
                ("a@x.fr", Kind::Reminder(1)),
            ],
            "b opted out of reminders, but is invited"
        );
        let mut cancelled = m.clone();
        cancelled.cancelled = true;
        let planned = plan(
            &cancelled,
            Kind::Cancellation,
            &people,
            &[7, 1],
            nine(),
            now,
        );
        assert!(planned.iter().all(|p| p.kind == Kind::Cancellation));
    }

    #[test]
    fn a_skipped_local_time_moves_forward() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let two_thirty = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        // 2027-03-28 02:30 does not exist in Paris: 03:00 (01:00 UTC) is taken.
        let due = reminder_due(at(2027, 3, 29, 10, 0), paris, 1, two_thirty).unwrap();
        assert_eq!(due, Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap());
    }
}
