//! What the notifications say, in French: the e-mail's subject, text and HTML, its
//! iCalendar part (RFC 5545, methods of RFC 5546), and the webhook's JSON.

use chrono::{
    DateTime, Datelike as _, Duration, NaiveDateTime, Offset as _, TimeZone as _, Timelike as _,
    Utc,
};
use chrono_tz::Tz;
use icalendar::{Alarm, Calendar, Component as _, EventLike as _, Property};

use super::Kind;
use super::recipient::Recipient;
use super::schedule::Meeting;

/// The sender and organizer.
#[derive(Debug, Clone)]
pub struct Organizer {
    pub email: String,
    pub name: String,
}

/// An e-mail ready to send.
#[derive(Debug, Clone)]
pub struct Email {
    pub message_id: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// The iCalendar object, and its METHOD.
    pub calendar: String,
    pub method: &'static str,
}

const DAYS: [&str; 7] = [
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
];
const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// "4 décembre 2026": a day without its weekday (notices, periods).
pub fn french_day(d: chrono::NaiveDate) -> String {
    format!("{} {} {}", d.day(), MONTHS[d.month0() as usize], d.year())
}

/// "mardi 30 mars 2027".
pub fn french_date(t: NaiveDateTime) -> String {
    let day = if t.day() == 1 {
        "1er".to_string()
    } else {
        t.day().to_string()
    };
    format!(
        "{} {day} {} {}",
        DAYS[t.weekday().num_days_from_monday() as usize],
        MONTHS[t.month0() as usize],
        t.year()
    )
}

/// "10 h" or "10 h 30".
pub fn french_time(t: NaiveDateTime) -> String {
    if t.minute() == 0 {
        format!("{} h", t.hour())
    } else {
        format!("{} h {:02}", t.hour(), t.minute())
    }
}

/// The Message-ID of one notification: the same for every attempt.
pub fn message_id(
    meeting_id: &str,
    sequence: u32,
    recipient: &str,
    kind: Kind,
    domain: &str,
) -> String {
    let who = &super::fingerprint(recipient)[..16];
    format!("<{}.{sequence}.{meeting_id}.{who}@{domain}>", kind.as_str())
}

fn venue_text(m: &Meeting) -> String {
    match (m.place.trim(), m.video_link.trim()) {
        (p, "") => p.to_string(),
        ("", l) => format!("en visioconférence : {l}"),
        (p, l) => format!("{p} (ou en visioconférence : {l})"),
    }
}

fn subject(m: &Meeting, kind: Kind) -> String {
    let (day, time) = (french_date(m.start_local), french_time(m.start_local));
    let what = format!("comité de pilotage de {}", m.territory_name);
    match kind {
        Kind::Invitation => format!("Invitation : {what}, le {day} à {time}"),
        Kind::Update => format!("Mise à jour : {what}, le {day} à {time}"),
        Kind::Cancellation => format!("Annulation : {what} du {day}"),
        Kind::Reminder(1) => format!("Rappel : {what} demain, {day} à {time}"),
        Kind::Reminder(n) => format!("Rappel : {what} dans {n} jours, le {day} à {time}"),
    }
}

fn lead(m: &Meeting, kind: Kind) -> String {
    match kind {
        Kind::Invitation => "Vous êtes invité(e) au comité de pilotage du programme Territoires d'engagement.".into(),
        Kind::Update => "Le comité de pilotage auquel vous êtes convié(e) a changé : voici ses nouvelles informations.".into(),
        Kind::Cancellation => {
            let reason = m.cancel_reason.trim();
            if reason.is_empty() {
                "Le comité de pilotage est annulé.".into()
            } else {
                format!("Le comité de pilotage est annulé. Motif : {reason}")
            }
        }
        Kind::Reminder(1) => "Le comité de pilotage a lieu demain.".into(),
        Kind::Reminder(n) => format!("Le comité de pilotage a lieu dans {n} jours."),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The e-mail telling `to` about `meeting`.
pub fn email(
    m: &Meeting,
    kind: Kind,
    to: &Recipient,
    organizer: &Organizer,
    domain: &str,
) -> Email {
    let when = format!(
        "{} de {} à {} (heure de {})",
        french_date(m.start_local),
        french_time(m.start_local),
        french_time(m.end_local),
        m.zone.name()
    );
    let greeting = if to.name.trim().is_empty() {
        "Bonjour,".to_string()
    } else {
        format!("Bonjour {},", to.name.trim())
    };
    let mut text = format!(
        "{greeting}\n\n{}\n\nTerritoire : {}\nDate : {when}\nLieu : {}\n",
        lead(m, kind),
        m.territory_name,
        venue_text(m)
    );
    if !m.agenda.trim().is_empty() && kind != Kind::Cancellation {
        text.push_str(&format!("\nOrdre du jour :\n{}\n", m.agenda.trim()));
    }
    text.push_str(&format!(
        "\n{}\n\n-- \n{}\nMessage automatique : merci de ne pas y répondre.\n",
        if kind == Kind::Cancellation {
            "L'invitation jointe retire la réunion de votre agenda."
        } else {
            "L'invitation jointe ajoute la réunion à votre agenda."
        },
        organizer.name
    ));
    let mut html = format!(
        "<!DOCTYPE html><html lang=\"fr\"><body><p>{}</p><p>{}</p><ul><li><strong>Territoire :</strong> {}</li><li><strong>Date :</strong> {}</li><li><strong>Lieu :</strong> {}</li></ul>",
        escape(&greeting),
        escape(&lead(m, kind)),
        escape(&m.territory_name),
        escape(&when),
        escape(&venue_text(m)),
    );
    if !m.agenda.trim().is_empty() && kind != Kind::Cancellation {
        html.push_str(&format!(
            "<p><strong>Ordre du jour :</strong></p><p>{}</p>",
            escape(m.agenda.trim()).replace('\n', "<br>")
        ));
    }
    html.push_str(&format!(
        "<p style=\"color:#666\">{} — message automatique : merci de ne pas y répondre.</p></body></html>",
        escape(&organizer.name)
    ));
    let method = if kind == Kind::Cancellation {
        "CANCEL"
    } else {
        "REQUEST"
    };
    Email {
        message_id: message_id(&m.id, m.sequence, &to.email, kind, domain),
        subject: subject(m, kind),
        text,
        html,
        calendar: calendar(m, method, Some(to), organizer, domain),
        method,
    }
}

/// The VTIMEZONE of `zone` around `around`: its offset changes over three years, as explicit
/// observances (zones without daylight saving get one).
fn vtimezone(zone: Tz, around: DateTime<Utc>) -> String {
    let offset_at = |t: DateTime<Utc>| {
        zone.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let fmt_offset = |secs: i32| {
        let sign = if secs < 0 { '-' } else { '+' };
        let secs = secs.abs();
        format!("{sign}{:02}{:02}", secs / 3600, (secs % 3600) / 60)
    };
    let mut out = format!("BEGIN:VTIMEZONE\r\nTZID:{}\r\n", zone.name());
    let from = around - Duration::days(400);
    let to = around + Duration::days(400);
    let mut observances = Vec::new();
    let mut t = from;
    let mut current = offset_at(t);
    while t < to {
        let next = t + Duration::hours(1);
        let offset = offset_at(next);
        if offset != current {
            // The change happened within this hour: find its minute.
            let mut minute = t;
            while offset_at(minute) == current {
                minute += Duration::minutes(1);
            }
            observances.push((minute, current, offset));
            current = offset;
        }
        t = next;
    }
    if observances.is_empty() {
        let o = offset_at(around);
        out.push_str(&format!(
            "BEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:{0}\r\nTZOFFSETTO:{0}\r\nEND:STANDARD\r\n",
            fmt_offset(o)
        ));
    }
    for (at, before, after) in observances {
        let kind = if after > before {
            "DAYLIGHT"
        } else {
            "STANDARD"
        };
        let local = at + Duration::seconds(i64::from(before));
        out.push_str(&format!(
            "BEGIN:{kind}\r\nDTSTART:{}\r\nTZOFFSETFROM:{}\r\nTZOFFSETTO:{}\r\nEND:{kind}\r\n",
            local.format("%Y%m%dT%H%M%S"),
            fmt_offset(before),
            fmt_offset(after)
        ));
    }
    out.push_str("END:VTIMEZONE\r\n");
    out
}

/// A calendar's header: its version, product and method.
fn header(method: &str) -> Calendar {
    let mut cal = Calendar::empty();
    cal.append_property(Property::new("VERSION", "2.0"));
    cal.append_property(Property::new(
        "PRODID",
        "-//ANCT//Territoires d'engagement//FR",
    ));
    cal.append_property(Property::new("CALSCALE", "GREGORIAN"));
    cal.append_property(Property::new("METHOD", method));
    cal
}

/// Adds the VTIMEZONE components in front of the events. They are written as text: the
/// icalendar crate gives every component a DTSTAMP and a UID, which RFC 5545 does not allow
/// in time zone definitions.
fn with_timezones(calendar: String, zones: &[String]) -> String {
    let zones = zones.concat();
    match calendar.find("BEGIN:VEVENT") {
        Some(at) => format!("{}{zones}{}", &calendar[..at], &calendar[at..]),
        None => calendar.replacen("END:VCALENDAR", &format!("{zones}END:VCALENDAR"), 1),
    }
}

/// The iCalendar object of a meeting: `METHOD:REQUEST` or `CANCEL` for one attendee, or
/// `PUBLISH` (no attendee) for feeds.
pub fn calendar(
    m: &Meeting,
    method: &str,
    attendee: Option<&Recipient>,
    organizer: &Organizer,
    domain: &str,
) -> String {
    let mut cal = header(method);
    cal.push(event(m, method, attendee, organizer, domain));
    with_timezones(cal.done().to_string(), &[vtimezone(m.zone, m.start)])
}

/// Several meetings in one `PUBLISH` calendar: a territory's feed.
pub fn feed(
    meetings: &[Meeting],
    territory_name: &str,
    organizer: &Organizer,
    domain: &str,
) -> String {
    let mut cal = header("PUBLISH");
    cal.name(&text_value(&format!(
        "Comités de pilotage — {territory_name}"
    )));
    let mut zones: Vec<Tz> = meetings.iter().map(|m| m.zone).collect();
    zones.sort_by_key(|z| z.name());
    zones.dedup();
    let zones: Vec<String> = zones
        .into_iter()
        .map(|zone| {
            let around = meetings
                .iter()
                .find(|m| m.zone == zone)
                .map_or_else(Utc::now, |m| m.start);
            vtimezone(zone, around)
        })
        .collect();
    for m in meetings {
        cal.push(event(m, "PUBLISH", None, organizer, domain));
    }
    with_timezones(cal.done().to_string(), &zones)
}

/// A parameter value (CN…) as RFC 6868 encodes it: the icalendar crate quotes values with
/// `:`, `;` or `,` but writes a double quote or a line break as is, which would end the
/// parameter early and let a name rewrite the attendee's address. `^` becomes `^^`, `"`
/// becomes `^'`, a line break `^n`; other control characters are dropped.
pub fn param_value(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '^' => out.push_str("^^"),
            '"' => out.push_str("^'"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push_str("^n");
            }
            '\n' => out.push_str("^n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The reverse of `param_value` (RFC 6868), for clients and tests reading a CN back.
pub fn decode_param_value(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut chars = encoded.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('^', Some('^')) => {
                out.push('^');
                chars.next();
            }
            ('^', Some('\'')) => {
                out.push('"');
                chars.next();
            }
            ('^', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// A TEXT value for the icalendar crate, which escapes `\\`, `;`, `,` and LF but not CR or
/// the other control characters: line breaks become LF, the rest is dropped, so that no
/// character of a place or an agenda can end a content line.
pub fn text_value(raw: &str) -> String {
    raw.replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

/// A calendar address (`mailto:`): the address itself must not carry what would end the
/// value or the line; the recipient's address was checked as an address before this.
fn cal_address(email: &str) -> String {
    let clean: String = email
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | ';' | ':' | ','))
        .collect();
    format!("mailto:{clean}")
}

/// Whether `s` looks like an absolute http(s) URL without spaces (what a URI value may hold).
fn reqwest_like_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains(char::is_whitespace)
}

fn event(
    m: &Meeting,
    method: &str,
    attendee: Option<&Recipient>,
    organizer: &Organizer,
    domain: &str,
) -> icalendar::Event {
    let mut e = icalendar::Event::new();
    e.uid(&format!("{}@{domain}", text_value(&m.id)))
        .sequence(m.sequence)
        .timestamp(Utc::now())
        .summary(&text_value(&format!(
            "Comité de pilotage — {}",
            m.territory_name
        )))
        .starts(icalendar::CalendarDateTime::WithTimezone {
            date_time: m.start_local,
            tzid: m.zone.name().to_string(),
        })
        .ends(icalendar::CalendarDateTime::WithTimezone {
            date_time: m.end_local,
            tzid: m.zone.name().to_string(),
        })
        .location(&text_value(&venue_text(m)))
        .description(&text_value(m.agenda.trim()));
    let link = text_value(m.video_link.trim());
    if !link.is_empty() {
        // A URI value is written as is: nothing in it may end the line (text_value) and a
        // link that is not a URL is left out rather than written.
        if reqwest_like_url(&link) {
            e.url(&link);
        }
    }
    e.append_property(
        Property::new("ORGANIZER", cal_address(&organizer.email))
            .add_parameter("CN", &param_value(&organizer.name))
            .done(),
    );
    if let Some(to) = attendee {
        let mut p = Property::new("ATTENDEE", cal_address(&to.email));
        let name = param_value(to.name.trim());
        if !name.trim().is_empty() {
            p.add_parameter("CN", &name);
        }
        p.add_parameter("ROLE", "REQ-PARTICIPANT")
            .add_parameter("PARTSTAT", "NEEDS-ACTION")
            .add_parameter("RSVP", "TRUE");
        e.append_multi_property(p.done());
    }
    if method == "CANCEL" || m.cancelled {
        e.status(icalendar::EventStatus::Cancelled);
    } else {
        e.status(icalendar::EventStatus::Confirmed);
        e.alarm(Alarm::display(
            "Comité de pilotage dans une heure",
            -Duration::hours(1),
        ));
    }
    e.done()
}

/// The JSON body of a webhook notification.
pub fn webhook_body(
    m: &Meeting,
    kind: Kind,
    to: &Recipient,
    notification_id: &str,
) -> serde_json::Value {
    serde_json::json!({
        "type": format!("tde.notifications.steering_meeting.{}", kind.as_str()),
        "notification_id": notification_id,
        "meeting": {
            "id": m.id,
            "sequence": m.sequence,
            "plan_id": m.plan_id,
            "territory_id": m.territory_id,
            "territory_name": m.territory_name,
            "time_zone": m.zone.name(),
            "start_local": m.start_local.format("%Y-%m-%dT%H:%M").to_string(),
            "end_local": m.end_local.format("%Y-%m-%dT%H:%M").to_string(),
            "start_time": m.start.to_rfc3339(),
            "end_time": m.end.to_rfc3339(),
            "place": m.place,
            "video_link": m.video_link,
            "agenda": m.agenda,
            "cancelled": m.cancelled,
            "cancel_reason": m.cancel_reason,
        },
        "recipient": { "email": to.email, "name": to.name, "role": to.role },
        "subject": subject(m, kind),
    })
}

/// The signature header of a webhook: HMAC-SHA256 over `"{timestamp}.{body}"`, hex.
pub fn webhook_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    format!(
        "sha256={}",
        tag.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::recipient::RosterEntry;
    use chrono::NaiveDate;

    fn meeting(zone: &str, y: i32, mo: u32, d: u32) -> Meeting {
        let zone: Tz = zone.parse().unwrap();
        let start = NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap();
        let utc = zone
            .from_local_datetime(&start)
            .single()
            .unwrap()
            .with_timezone(&Utc);
        Meeting {
            id: "0193-m".into(),
            sequence: 2,
            plan_id: "p".into(),
            territory_id: "t".into(),
            territory_name: "Saint-Étienne".into(),
            zone,
            start_local: start,
            end_local: start + Duration::hours(2),
            start: utc,
            end: utc + Duration::hours(2),
            place: "Hôtel de ville".into(),
            video_link: "https://visio.example.fr/copil".into(),
            agenda: "1. Bilan\n2. Programme <2028>".into(),
            cancelled: false,
            cancel_reason: String::new(),
        }
    }

    fn organizer() -> Organizer {
        Organizer {
            email: "ne-pas-repondre@tde.anct.gouv.fr".into(),
            name: "Territoires d'engagement (ANCT)".into(),
        }
    }

    fn to() -> Recipient {
        Recipient::new(
            "t",
            &RosterEntry {
                name: "Delphine Martin",
                email: "delphine@mairie.fr",
                role: "steering_body",
            },
        )
    }

    #[test]
    fn an_invitation_in_french_with_its_calendar() {
        let m = meeting("Europe/Paris", 2027, 3, 30);
        let e = email(
            &m,
            Kind::Invitation,
            &to(),
            &organizer(),
            "tde.anct.gouv.fr",
        );
        assert_eq!(
            e.subject,
            "Invitation : comité de pilotage de Saint-Étienne, le mardi 30 mars 2027 à 10 h"
        );
        assert!(e.text.starts_with("Bonjour Delphine Martin,"));
        assert!(e.html.contains("Programme &lt;2028&gt;"), "escaped");
        let cal: Calendar = e.calendar.parse().unwrap();
        assert_eq!(cal.property_value("METHOD"), Some("REQUEST"));
        let event = cal.events().next().unwrap();
        assert_eq!(event.get_uid(), Some("0193-m@tde.anct.gouv.fr"));
        assert_eq!(event.get_sequence(), Some(2));
        assert!(
            e.calendar
                .contains("DTSTART;TZID=Europe/Paris:20270330T100000")
        );
        assert!(e.calendar.contains("BEGIN:VTIMEZONE"));
        assert!(
            e.calendar.contains("TZOFFSETTO:+0200"),
            "summer time observance"
        );
        assert!(e.calendar.contains("ATTENDEE"));
        assert!(e.calendar.contains("BEGIN:VALARM"));
        assert_eq!(
            e.message_id,
            message_id(
                "0193-m",
                2,
                "delphine@mairie.fr",
                Kind::Invitation,
                "tde.anct.gouv.fr"
            )
        );
    }

    #[test]
    fn a_cancellation_and_zones_without_daylight_saving() {
        let mut m = meeting("Pacific/Noumea", 2027, 6, 1);
        m.cancelled = true;
        m.cancel_reason = "Préfète indisponible".into();
        let e = email(
            &m,
            Kind::Cancellation,
            &to(),
            &organizer(),
            "tde.anct.gouv.fr",
        );
        assert!(e.subject.starts_with(
            "Annulation : comité de pilotage de Saint-Étienne du mardi 1er juin 2027"
        ));
        assert!(e.text.contains("Motif : Préfète indisponible"));
        assert!(e.calendar.contains("METHOD:CANCEL"));
        assert!(e.calendar.contains("STATUS:CANCELLED"));
        assert!(e.calendar.contains("TZOFFSETTO:+1100"));
        assert!(!e.calendar.contains("DAYLIGHT"));
    }

    /// The attendee's address and CN as a calendar client reads them back.
    fn attendee_of(calendar: &str) -> (String, Option<String>) {
        let cal: Calendar = calendar.parse().expect("a calendar the parser reads");
        let event = cal.events().next().expect("one event");
        let attendees = event.multi_properties().get("ATTENDEE").expect("attendee");
        assert_eq!(attendees.len(), 1, "one attendee");
        let a = &attendees[0];
        (
            a.value().to_string(),
            a.params().get("CN").map(|p| decode_param_value(p.value())),
        )
    }

    #[test]
    fn names_and_places_cannot_break_the_calendar() {
        let organizer = organizer();
        for name in [
            "Claire \"la maire\"",
            "Claire\":mailto:someone-else@example.com;X=\"",
            "Claire\r\nATTENDEE:mailto:someone-else@example.com",
            "Claire ^ ; , : Dupont",
        ] {
            let mut to = to();
            to.name = name.into();
            let mut m = meeting("Europe/Paris", 2027, 3, 30);
            m.place = "Mairie\r\nATTENDEE:mailto:someone-else@example.com".into();
            m.agenda = "1. Point\r\n2. \"Autre\"; point, final\u{7}".into();
            m.territory_name = "Saint-Étienne\r\nX-EVIL:1".into();
            let e = email(&m, Kind::Invitation, &to, &organizer, "tde.anct.gouv.fr");
            let (address, cn) = attendee_of(&e.calendar);
            assert_eq!(address, "mailto:delphine@mairie.fr", "{name:?}");
            let expected = name.replace("\r\n", "\n");
            assert_eq!(cn.as_deref(), Some(expected.as_str()), "{name:?}");
            assert!(!e.calendar.contains("someone-else@example.com\r\n"));
            assert!(!e.calendar.contains("\r\nX-EVIL"));
            // Every line ends with CRLF and holds no other control character.
            for line in e.calendar.split("\r\n") {
                assert!(
                    !line.chars().any(|c| c.is_control() && c != '\t'),
                    "{line:?}"
                );
            }
            let cal: Calendar = e.calendar.parse().unwrap();
            let event = cal.events().next().unwrap();
            assert_eq!(
                event.get_location(),
                Some(
                    "Mairie\nATTENDEE:mailto:someone-else@example.com (ou en visioconférence : https://visio.example.fr/copil)"
                )
            );
        }
        let quoted = {
            let mut to = to();
            to.name = "Claire \"la maire\"".into();
            email(
                &meeting("Europe/Paris", 2027, 3, 30),
                Kind::Invitation,
                &to,
                &organizer,
                "d",
            )
            .calendar
        };
        assert!(
            quoted.contains("CN=Claire ^'la maire^'"),
            "RFC 6868: {quoted}"
        );
    }

    #[test]
    fn webhook_signatures() {
        let sig = webhook_signature("secret", 1_700_000_000, b"{}");
        assert!(sig.starts_with("sha256="));
        assert_eq!(sig.len(), 7 + 64);
        assert_ne!(sig, webhook_signature("other", 1_700_000_000, b"{}"));
    }
}
