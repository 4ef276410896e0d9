//! What a territory event says about the territory, part by part: the reading every service
//! that keeps a copy of the territories (plans, notifications, subsidies, matching) shares.
//! Each part is set whole by the events that carry it, so that a copy can apply an event's
//! part only when the event is newer than the last one applied to that part (see
//! `tde_runtime::read_model`).

use prost::Message as _;

use crate::territories::v1::{
    AuthorityKind, Person, PersonalDataErased, Stage, SteeringBody, SteeringBodyChanged,
    TerritoryCodeChanged, TerritoryGeographyUpdated, TerritoryRegistered, TerritoryStageChanged,
    TerritoryWithdrawn,
};

/// Where the territory is: its authority and its place in the geography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `commune`, `epci` or `departement`.
    pub kind: String,
    pub official_code: String,
    pub departement_code: String,
    pub region_code: String,
}

/// The people of the territory, whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Roster {
    pub privileged_contact: Option<Person>,
    pub operational_team: Vec<Person>,
    pub steering_body: Option<SteeringBody>,
}

/// The parts of a territory an event sets; `None`: the event does not say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TerritoryFacts {
    pub territory_id: String,
    pub name: Option<String>,
    pub time_zone: Option<String>,
    pub location: Option<Location>,
    /// `prospect`, `diagnostic`, `charter_signed`, `in_path`, `completed` or `withdrawn`.
    pub stage: Option<String>,
    /// Why the stage changed, when the event says (a withdrawal's reason).
    pub stage_reason: String,
    pub roster: Option<Roster>,
}

/// A territory event, as a copy of the territories reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum TerritoryEvent {
    Facts(Box<TerritoryFacts>),
    /// A person's data was erased everywhere: their fingerprint (see
    /// `tde_runtime::personal_data`).
    PersonalDataErased {
        email_sha256: String,
    },
    /// Nothing a copy keeps (diagnostics, later event types).
    Other,
}

impl TerritoryFacts {
    pub const NAME: &'static str = "name";
    pub const TIME_ZONE: &'static str = "time_zone";
    pub const LOCATION: &'static str = "location";
    pub const STAGE: &'static str = "stage";
    pub const ROSTER: &'static str = "roster";

    /// The parts this event sets.
    pub fn parts(&self) -> Vec<&'static str> {
        let mut parts = Vec::new();
        if self.name.is_some() {
            parts.push(Self::NAME);
        }
        if self.time_zone.is_some() {
            parts.push(Self::TIME_ZONE);
        }
        if self.location.is_some() {
            parts.push(Self::LOCATION);
        }
        if self.stage.is_some() {
            parts.push(Self::STAGE);
        }
        if self.roster.is_some() {
            parts.push(Self::ROSTER);
        }
        parts
    }

    /// Forgets the parts not in `keep` (those a newer event already set).
    pub fn keep_only(&mut self, keep: &[&str]) {
        let kept = |part: &str| keep.contains(&part);
        if !kept(Self::NAME) {
            self.name = None;
        }
        if !kept(Self::TIME_ZONE) {
            self.time_zone = None;
        }
        if !kept(Self::LOCATION) {
            self.location = None;
        }
        if !kept(Self::STAGE) {
            self.stage = None;
            self.stage_reason.clear();
        }
        if !kept(Self::ROSTER) {
            self.roster = None;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts().is_empty()
    }
}

/// `commune` for `AUTHORITY_KIND_COMMUNE`; empty for an unknown value.
pub fn kind_name(raw: i32) -> String {
    AuthorityKind::try_from(raw)
        .ok()
        .and_then(|k| k.as_str_name().strip_prefix("AUTHORITY_KIND_"))
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

/// `charter_signed` for `STAGE_CHARTER_SIGNED`; empty for an unknown value.
pub fn stage_name(raw: i32) -> String {
    Stage::try_from(raw)
        .ok()
        .and_then(|s| s.as_str_name().strip_prefix("STAGE_"))
        .map(str::to_ascii_lowercase)
        .unwrap_or_default()
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// What a new geography vintage says of a territory: its name, zone and place.
fn placed(
    territory_id: String,
    name: String,
    time_zone: String,
    location: Location,
) -> TerritoryFacts {
    TerritoryFacts {
        territory_id,
        name: some(name),
        time_zone: some(time_zone),
        location: Some(location),
        ..Default::default()
    }
}

/// A territory event that cannot be read: it will never be (a consumer parks it).
#[derive(Debug)]
pub struct UnreadableEvent(String);

impl std::fmt::Display for UnreadableEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unreadable territory event: {}", self.0)
    }
}

impl std::error::Error for UnreadableEvent {}

impl From<prost::DecodeError> for UnreadableEvent {
    fn from(e: prost::DecodeError) -> Self {
        Self(e.to_string())
    }
}

/// Reads a territory event by its CloudEvents type (`ce-type`).
pub fn read(event_type: &str, payload: &[u8]) -> Result<TerritoryEvent, UnreadableEvent> {
    let facts = match event_type {
        "tde.territories.v1.TerritoryRegistered" => {
            let Some(t) = TerritoryRegistered::decode(payload)?.territory else {
                return Err(UnreadableEvent("registration without territory".into()));
            };
            TerritoryFacts {
                territory_id: t.id,
                name: Some(t.name),
                time_zone: some(t.time_zone),
                location: Some(Location {
                    kind: kind_name(t.kind),
                    official_code: t.official_code,
                    departement_code: t.departement_code,
                    region_code: t.region_code,
                }),
                stage: Some(stage_name(t.stage)),
                ..Default::default()
            }
        }
        "tde.territories.v1.TerritoryStageChanged" => {
            let e = TerritoryStageChanged::decode(payload)?;
            TerritoryFacts {
                territory_id: e.territory_id,
                name: some(e.territory_name),
                time_zone: some(e.time_zone),
                stage: Some(stage_name(e.to_stage)),
                ..Default::default()
            }
        }
        "tde.territories.v1.TerritoryCodeChanged" => {
            let e = TerritoryCodeChanged::decode(payload)?;
            placed(
                e.territory_id,
                e.territory_name,
                e.time_zone,
                Location {
                    kind: kind_name(e.kind),
                    official_code: e.new_code,
                    departement_code: e.departement_code,
                    region_code: e.region_code,
                },
            )
        }
        "tde.territories.v1.TerritoryGeographyUpdated" => {
            let e = TerritoryGeographyUpdated::decode(payload)?;
            placed(
                e.territory_id,
                e.territory_name,
                e.time_zone,
                Location {
                    kind: kind_name(e.kind),
                    official_code: e.official_code,
                    departement_code: e.departement_code,
                    region_code: e.region_code,
                },
            )
        }
        "tde.territories.v1.SteeringBodyChanged" => {
            let e = SteeringBodyChanged::decode(payload)?;
            TerritoryFacts {
                territory_id: e.territory_id,
                name: some(e.territory_name),
                time_zone: some(e.time_zone),
                roster: Some(Roster {
                    privileged_contact: e.privileged_contact,
                    operational_team: e.operational_team,
                    steering_body: e.steering_body,
                }),
                ..Default::default()
            }
        }
        "tde.territories.v1.TerritoryWithdrawn" => {
            let e = TerritoryWithdrawn::decode(payload)?;
            TerritoryFacts {
                territory_id: e.territory_id,
                stage: Some("withdrawn".into()),
                stage_reason: e.reason,
                ..Default::default()
            }
        }
        "tde.territories.v1.PersonalDataErased" => {
            let e = PersonalDataErased::decode(payload)?;
            return Ok(TerritoryEvent::PersonalDataErased {
                email_sha256: e.email_sha256,
            });
        }
        _ => return Ok(TerritoryEvent::Other),
    };
    if facts.territory_id.is_empty() {
        return Err(UnreadableEvent("no territory id".into()));
    }
    Ok(TerritoryEvent::Facts(Box::new(facts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_kept_or_forgotten_whole() {
        let e = SteeringBodyChanged {
            territory_id: "t".into(),
            territory_name: "Saint-Étienne".into(),
            time_zone: "Europe/Paris".into(),
            ..Default::default()
        };
        let TerritoryEvent::Facts(mut facts) =
            read("tde.territories.v1.SteeringBodyChanged", &e.encode_to_vec()).unwrap()
        else {
            panic!("facts expected")
        };
        assert_eq!(facts.parts(), vec!["name", "time_zone", "roster"]);
        facts.keep_only(&["roster"]);
        assert_eq!(facts.parts(), vec!["roster"]);
        assert!(matches!(
            read("tde.territories.v1.DiagnosticRecorded", &[]).unwrap(),
            TerritoryEvent::Other
        ));
        assert!(read("tde.territories.v1.TerritoryWithdrawn", &[]).is_err());
    }
}
