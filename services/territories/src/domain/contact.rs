//! People of a territory: privileged contact, operational team, steering-body members.
//! Their names, e-mails and phones are personal data: validated at construction, never
//! printed by `Debug` (so never logged by accident).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{DomainError, Violations, nest};

/// A syntactically valid e-mail address, in the platform's normal form (trimmed, NFC,
/// lowercased: see `tde_runtime::personal_data`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let normal = tde_runtime::personal_data::normalize_email(raw);
        if normal.len() > 254
            || !email_address::EmailAddress::is_valid(&normal)
            || !normal.contains('.')
        {
            return Err(DomainError::invalid(field, "is not a valid e-mail address"));
        }
        Ok(Self(normal))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How events name a person without republishing the address.
    pub fn fingerprint(&self) -> String {
        tde_runtime::personal_data::fingerprint(&self.0)
    }
}

impl fmt::Debug for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EmailAddress(<redacted>)")
    }
}

/// A French phone number in E.164 form (+33…, or an overseas prefix such as +590, +262, +687).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PhoneNumber(String);

/// Numbering plans tried in turn for national numbers: metropolitan France, then the overseas
/// départements and collectivities.
const FRENCH_PLANS: &[phonenumber::country::Id] = {
    use phonenumber::country::Id::*;
    &[FR, GP, MQ, GF, RE, YT, PM, BL, MF, WF, PF, NC]
};

impl PhoneNumber {
    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        let invalid = || DomainError::invalid(field, "is not a valid French phone number");
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > 32 {
            return Err(invalid());
        }
        for plan in FRENCH_PLANS {
            if let Ok(number) = phonenumber::parse(Some(*plan), raw)
                && phonenumber::is_valid(&number)
            {
                let french = number
                    .country()
                    .id()
                    .is_some_and(|id| FRENCH_PLANS.contains(&id));
                if !french {
                    return Err(invalid());
                }
                return Ok(Self(
                    number.format().mode(phonenumber::Mode::E164).to_string(),
                ));
            }
        }
        Err(invalid())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

pub const MAX_NAME: usize = 200;

/// A person of the territory. The e-mail is required (invitations go there); the phone is not.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub email: EmailAddress,
    pub phone: Option<PhoneNumber>,
    /// Role or function, e.g. "maire", "DGS".
    pub role: String,
}

impl Person {
    pub fn new(name: &str, email: &str, phone: &str, role: &str) -> Result<Self, DomainError> {
        let mut v = Violations::default();
        let name = name.trim();
        if name.is_empty() {
            v.add("name", "is required");
        } else if let Some(why) = tde_runtime::input::problem(name, MAX_NAME, false) {
            // A line break in a name would become a header or a calendar line elsewhere.
            v.add("name", why);
        }
        let email = v.check(EmailAddress::parse("email", email));
        let phone = if phone.trim().is_empty() {
            Some(None)
        } else {
            v.check(PhoneNumber::parse("phone", phone)).map(Some)
        };
        let role = role.trim();
        if let Some(why) = tde_runtime::input::problem(role, MAX_NAME, false) {
            v.add("role", why);
        }
        v.into_result()?;
        match (email, phone) {
            (Some(email), Some(phone)) => Ok(Self {
                name: name.to_string(),
                email,
                phone,
                role: role.to_string(),
            }),
            _ => Err(DomainError::invalid("", "invalid person")),
        }
    }
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Person")
            .field("name", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

pub const MAX_MEMBERS: usize = 200;

/// Instance de pilotage stratégique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SteeringBody {
    pub name: String,
    /// Whether it relies on an existing governance body.
    pub relies_on_existing_body: bool,
    pub members: Vec<Person>,
}

impl SteeringBody {
    pub fn new(
        name: &str,
        relies_on_existing_body: bool,
        members: Vec<Result<Person, DomainError>>,
    ) -> Result<Self, DomainError> {
        let mut v = Violations::default();
        let name = name.trim();
        if name.is_empty() {
            v.add("steering_body.name", "is required");
        } else if let Some(why) = tde_runtime::input::problem(name, MAX_NAME, false) {
            v.add("steering_body.name", why);
        }
        if members.len() > MAX_MEMBERS {
            v.add(
                "steering_body.members",
                format!("at most {MAX_MEMBERS} members"),
            );
        }
        let mut people: Vec<Person> = Vec::new();
        for (i, m) in members.into_iter().enumerate() {
            let field = format!("steering_body.members[{i}].");
            if let Some(p) = v.check(m.map_err(|e| nest(&field, e))) {
                if people.iter().any(|q| q.email == p.email) {
                    v.add(
                        format!("{field}email"),
                        "appears twice in the steering body",
                    );
                }
                people.push(p);
            }
        }
        v.into_result()?;
        Ok(Self {
            name: name.to_string(),
            relies_on_existing_body,
            members: people,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            EmailAddress::parse("e", " Marie.Dupont@Mairie-Exemple.fr ")
                .unwrap()
                .as_str(),
            "marie.dupont@mairie-exemple.fr"
        );
        for bad in [
            "",
            "marie",
            "marie@",
            "@x.fr",
            "a b@x.fr",
            "marie@localhost",
        ] {
            assert!(EmailAddress::parse("e", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn french_phones_become_e164() {
        let p = |s| PhoneNumber::parse("phone", s).map(|p| p.as_str().to_string());
        assert_eq!(p("06 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(p("01.23.45.67.89").unwrap(), "+33123456789");
        assert_eq!(p("+33 6 12 34 56 78").unwrap(), "+33612345678");
        assert_eq!(p("0690 12 34 56").unwrap(), "+590690123456");
        assert_eq!(p("0262 12 34 56").unwrap(), "+262262123456");
        assert!(p("12").is_err());
        assert!(p("+1 202 555 0143").is_err(), "not a French number");
        assert!(p("abc").is_err());
    }

    #[test]
    fn personal_data_never_prints() {
        let person =
            Person::new("Marie Dupont", "marie@exemple.fr", "0612345678", "maire").unwrap();
        let shown = format!("{person:?}");
        assert!(!shown.contains("Marie"));
        assert!(!shown.contains("marie@"));
        assert!(!shown.contains("612345678"));
    }

    #[test]
    fn steering_body_violations_name_the_member() {
        let err = SteeringBody::new(
            "Comité",
            true,
            vec![
                Person::new("A", "a@x.fr", "", "élu"),
                Person::new("B", "not-an-email", "", "agent"),
            ],
        )
        .unwrap_err();
        let DomainError::Invalid(v) = err else {
            panic!()
        };
        assert_eq!(v[0].field, "steering_body.members[1].email");
    }
}
