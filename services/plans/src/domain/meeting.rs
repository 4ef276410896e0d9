//! Steering meetings (comités de pilotage): scheduled, rescheduled (same identity, next
//! sequence number, as calendar invitations need), cancelled, or held with minutes.

use chrono::{DateTime, Utc};

use super::DomainError;
use super::calendar::MeetingTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MeetingStatus {
    Scheduled,
    Cancelled,
    Held,
}

impl MeetingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MeetingStatus::Scheduled => "scheduled",
            MeetingStatus::Cancelled => "cancelled",
            MeetingStatus::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Scheduled, Self::Cancelled, Self::Held]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Where a meeting takes place: a place, a video link, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venue {
    pub place: String,
    pub video_link: String,
}

impl Venue {
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut v = super::Violations::default();
        if self.place.trim().is_empty() && self.video_link.trim().is_empty() {
            v.add("place", "a place or a video link is required");
        }
        if tde_runtime::input::problem(&self.place, 500, false).is_some() {
            v.add(
                "place",
                "at most 500 characters, no control characters but line breaks",
            );
        }
        if !self.video_link.is_empty()
            && (!self.video_link.starts_with("https://") || self.video_link.len() > 2_000)
        {
            v.add("video_link", "must be an https:// link");
        }
        Ok(v.into_result()?)
    }
}

/// A steering meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteeringMeeting {
    pub id: String,
    pub plan_id: String,
    pub territory_id: String,
    /// The plan year it belongs to (1 to 3).
    pub year: u8,
    /// 0 when scheduled, + 1 at every change the invitees must hear of.
    pub sequence: u32,
    pub status: MeetingStatus,
    pub time: MeetingTime,
    pub venue: Venue,
    pub agenda: String,
    pub cancel_reason: String,
    pub minutes: String,
    pub decisions: Vec<String>,
}

fn wrong(current: MeetingStatus, action: &'static str) -> DomainError {
    DomainError::WrongState {
        what: "steering meeting",
        current: current.as_str().into(),
        action,
    }
}

impl SteeringMeeting {
    pub fn validate_agenda(agenda: &str) -> Result<(), DomainError> {
        if tde_runtime::input::problem(agenda, 10000, true).is_some() {
            return Err(DomainError::invalid(
                "agenda",
                "at most 10000 characters, no control characters but line breaks",
            ));
        }
        Ok(())
    }

    /// Moves it: same identity, next sequence number.
    pub fn reschedule(
        &mut self,
        time: MeetingTime,
        venue: Option<Venue>,
    ) -> Result<(), DomainError> {
        if self.status != MeetingStatus::Scheduled {
            return Err(wrong(self.status, "reschedule it"));
        }
        if let Some(venue) = venue {
            venue.validate()?;
            self.venue = venue;
        }
        self.time = time;
        self.sequence += 1;
        Ok(())
    }

    pub fn cancel(&mut self, reason: &str) -> Result<(), DomainError> {
        if self.status != MeetingStatus::Scheduled {
            return Err(wrong(self.status, "cancel it"));
        }
        if reason.trim().is_empty() || tde_runtime::input::problem(reason, 2000, true).is_some() {
            return Err(DomainError::invalid(
                "reason",
                "is required (at most 2000 characters)",
            ));
        }
        self.status = MeetingStatus::Cancelled;
        self.cancel_reason = reason.trim().to_string();
        self.sequence += 1;
        Ok(())
    }

    /// Records that it was held, once it has started.
    pub fn mark_held(
        &mut self,
        minutes: &str,
        decisions: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<(), DomainError> {
        if self.status != MeetingStatus::Scheduled {
            return Err(wrong(self.status, "mark it held"));
        }
        if now < self.time.start.utc {
            return Err(DomainError::WrongState {
                what: "steering meeting",
                current: "not started yet".into(),
                action: "mark it held",
            });
        }
        let mut v = super::Violations::default();
        if tde_runtime::input::problem(minutes, 50000, true).is_some() {
            v.add(
                "minutes",
                "at most 50000 characters, no control characters but line breaks",
            );
        }
        if decisions.len() > 100 {
            v.add("decisions", "at most 100 decisions");
        }
        for (i, d) in decisions.iter().enumerate() {
            if d.trim().is_empty() || tde_runtime::input::problem(d, 2000, false).is_some() {
                v.add(
                    format!("decisions[{i}]"),
                    "is required (at most 2000 characters)",
                );
            }
        }
        v.into_result()?;
        self.status = MeetingStatus::Held;
        self.minutes = minutes.to_string();
        self.decisions = decisions;
        Ok(())
    }
}

/// Plan years (1 to 3) of a plan that have no meeting scheduled or held.
pub fn years_without_meeting<'a>(
    meetings: impl IntoIterator<Item = &'a SteeringMeeting>,
) -> Vec<u8> {
    let mut covered = [false; super::calendar::PLAN_YEARS as usize];
    for m in meetings {
        if m.status != MeetingStatus::Cancelled
            && let Some(slot) = covered.get_mut(usize::from(m.year).wrapping_sub(1))
        {
            *slot = true;
        }
    }
    (1..=super::calendar::PLAN_YEARS)
        .filter(|y| !covered[usize::from(*y) - 1])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone as _};
    use chrono_tz::Tz;

    fn time(day: u32, now: DateTime<Utc>) -> MeetingTime {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 6, day).unwrap();
        MeetingTime::new(
            d.and_hms_opt(10, 0, 0).unwrap(),
            d.and_hms_opt(12, 0, 0).unwrap(),
            paris,
            now,
        )
        .unwrap()
    }

    fn meeting(now: DateTime<Utc>) -> SteeringMeeting {
        SteeringMeeting {
            id: "m".into(),
            plan_id: "p".into(),
            territory_id: "t".into(),
            year: 1,
            sequence: 0,
            status: MeetingStatus::Scheduled,
            time: time(10, now),
            venue: Venue {
                place: "Mairie, salle du conseil".into(),
                video_link: String::new(),
            },
            agenda: "Bilan du trimestre".into(),
            cancel_reason: String::new(),
            minutes: String::new(),
            decisions: vec![],
        }
    }

    #[test]
    fn meeting_state_machine() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap();
        let mut m = meeting(now);
        m.reschedule(time(11, now), None).unwrap();
        assert_eq!(m.sequence, 1);
        assert!(m.mark_held("", vec![], now).is_err(), "not started yet");
        let later = Utc.with_ymd_and_hms(2026, 6, 11, 9, 0, 0).unwrap();
        m.mark_held("Compte rendu", vec!["Lancer la formation".into()], later)
            .unwrap();
        assert_eq!(m.status, MeetingStatus::Held);
        assert!(m.cancel("trop tard").is_err());
        assert!(m.reschedule(time(12, now), None).is_err());

        let mut c = meeting(now);
        assert!(c.cancel(" ").is_err(), "a reason is required");
        c.cancel("élections").unwrap();
        assert_eq!((c.status, c.sequence), (MeetingStatus::Cancelled, 1));
        assert!(c.cancel("again").is_err());
        assert!(c.mark_held("", vec![], later).is_err());
    }

    #[test]
    fn years_without_a_meeting_are_reported() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).unwrap();
        let mut a = meeting(now);
        let mut b = meeting(now);
        b.year = 3;
        b.cancel("annulé").unwrap();
        assert_eq!(years_without_meeting([&a, &b]), vec![2, 3]);
        a.year = 2;
        assert_eq!(years_without_meeting([&a]), vec![1, 3]);
    }

    #[test]
    fn venues() {
        let none = Venue {
            place: String::new(),
            video_link: String::new(),
        };
        assert!(none.validate().is_err());
        let video = Venue {
            place: String::new(),
            video_link: "https://webconf.numerique.gouv.fr/xyz".into(),
        };
        assert!(video.validate().is_ok());
        let insecure = Venue {
            place: String::new(),
            video_link: "http://example.fr".into(),
        };
        assert!(insecure.validate().is_err());
    }
}
