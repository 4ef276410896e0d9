//! The recipients of a territory's meetings: its privileged contact, operational team and
//! steering-body members, from the territory's roster, with their preferences.

use super::Channel;

/// Someone told of a territory's steering meetings (personal data: never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct Recipient {
    pub territory_id: String,
    /// Lowercase.
    pub email: String,
    pub name: String,
    /// privileged_contact, operational_team or steering_body.
    pub role: String,
    pub language: String,
    pub channel: Channel,
    pub webhook_url: Option<String>,
    /// Reminders wanted (invitations, updates and cancellations are always sent).
    pub reminders: bool,
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipient")
            .field("territory_id", &self.territory_id)
            .field("role", &self.role)
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

/// A person of the roster, as the territory event gives it.
#[derive(Debug, Clone)]
pub struct RosterEntry<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub role: &'static str,
}

impl Recipient {
    /// A new recipient with the default preferences: e-mail, in French, with reminders.
    pub fn new(territory_id: &str, entry: &RosterEntry<'_>) -> Self {
        Self {
            territory_id: territory_id.to_string(),
            email: tde_runtime::personal_data::normalize_email(entry.email),
            name: entry.name.trim().to_string(),
            role: entry.role.to_string(),
            language: "fr".into(),
            channel: Channel::Email,
            webhook_url: None,
            reminders: true,
        }
    }
}

/// The roster's people with an address, each once (the first role named wins).
pub fn roster<'a>(entries: impl IntoIterator<Item = RosterEntry<'a>>) -> Vec<RosterEntry<'a>> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|e| email_address::EmailAddress::is_valid(e.email.trim()))
        .filter(|e| seen.insert(tde_runtime::personal_data::normalize_email(e.email)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_person_once_with_an_address() {
        let people = roster([
            RosterEntry {
                name: "A",
                email: "a@x.fr",
                role: "privileged_contact",
            },
            RosterEntry {
                name: "A",
                email: "A@X.fr ",
                role: "steering_body",
            },
            RosterEntry {
                name: "B",
                email: "",
                role: "steering_body",
            },
            RosterEntry {
                name: "C",
                email: "c@x.fr",
                role: "operational_team",
            },
        ]);
        let emails: Vec<_> = people.iter().map(|p| p.role).collect();
        assert_eq!(emails, ["privileged_contact", "operational_team"]);
        let r = Recipient::new("t", &people[0]);
        assert_eq!(r.email, "a@x.fr");
        assert!(r.reminders);
        assert!(!format!("{r:?}").contains("a@x.fr"), "no address in Debug");
    }
}
