//! The rules of notifications, without I/O: who is told what and when (`schedule`), the
//! recipients of a territory (`recipient`), and what the messages say (`message`, in French,
//! with their iCalendar parts).

pub mod message;
pub mod recipient;
pub mod schedule;

/// What a notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Invitation,
    /// The meeting moved, or the recipient joined the roster after the invitation.
    Update,
    Cancellation,
    /// A reminder `n` days before.
    Reminder(u32),
}

impl Kind {
    pub fn as_str(self) -> String {
        match self {
            Kind::Invitation => "invitation".into(),
            Kind::Update => "update".into(),
            Kind::Cancellation => "cancellation".into(),
            Kind::Reminder(days) => format!("reminder_{days}d"),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "invitation" => Some(Kind::Invitation),
            "update" => Some(Kind::Update),
            "cancellation" => Some(Kind::Cancellation),
            other => other
                .strip_prefix("reminder_")
                .and_then(|d| d.strip_suffix('d'))
                .and_then(|d| d.parse().ok())
                .map(Kind::Reminder),
        }
    }

    pub fn is_reminder(self) -> bool {
        matches!(self, Kind::Reminder(_))
    }
}

/// How a recipient is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Pending,
    Sent,
    Dead,
    Dropped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Sent => "sent",
            Status::Dead => "dead",
            Status::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Sent, Self::Dead, Self::Dropped]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

pub use tde_runtime::personal_data::fingerprint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in [
            Kind::Invitation,
            Kind::Update,
            Kind::Cancellation,
            Kind::Reminder(7),
            Kind::Reminder(1),
        ] {
            assert_eq!(Kind::parse(&k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("reminder_xd"), None);
    }
}
