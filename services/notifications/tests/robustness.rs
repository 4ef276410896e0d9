//! One bad message never stops the sending: a recipient whose name no e-mail header can hold
//! is dead-lettered at once with its reason, and every other message, of this batch and of the
//! next ones, goes out; names are escaped in the calendars the recipients receive.

mod common;

use std::time::Duration;

use chrono::{Datelike as _, NaiveDate, Utc};
use icalendar::{Calendar, Component as _};
use tde_notifications::domain::message::decode_param_value;
use tde_notifications::testing::SmtpServer;
use tde_proto::notifications::v1 as pb;
use tde_runtime::testing::Topology;

use common::{App, MeetingSpec, wait_for_mail};

tde_runtime::on_both_topologies!(a_name_with_a_line_break_fails_alone,);

fn later(month: u32, day: u32, hour: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(Utc::now().year() + 1, month, day)
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
}

async fn a_name_with_a_line_break_fails_alone(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = App::start(topology, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[
            ("Anne", "a@x.fr"),
            ("Claire\r\nBcc: victim@example.com", "bad@x.fr"),
            ("Claire \"la maire\"", "claire@x.fr"),
            ("Claire\":mailto:someone-else@example.com;X=\"", "c2@x.fr"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = MeetingSpec::new(&territory, "Europe/Paris", later(4, 6, 10));
    app.meeting_event("scheduled", &first).await;
    let got = wait_for_mail(&smtp, "three invitations of the first meeting", |r| {
        r.len() == 3
    })
    .await;
    assert!(got.iter().all(|r| !r.to.contains("bad@x.fr")));
    // The calendars hold each name as it is, and each recipient as the only attendee.
    for (address, name) in [
        ("claire@x.fr", "Claire \"la maire\""),
        ("c2@x.fr", "Claire\":mailto:someone-else@example.com;X=\""),
    ] {
        let mail = got.iter().find(|r| r.to.contains(address)).unwrap();
        let cal: Calendar = mail.calendar.parse().expect("a calendar");
        let event = cal.events().next().unwrap();
        let attendees = &event.multi_properties()["ATTENDEE"];
        assert_eq!(attendees.len(), 1);
        assert_eq!(attendees[0].value(), format!("mailto:{address}"));
        let cn = attendees[0]
            .params()
            .get("CN")
            .map(|p| p.value().to_string());
        assert_eq!(cn.map(|c| decode_param_value(&c)).as_deref(), Some(name));
    }

    // The bad one is dead at its first attempt, with its reason.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead: Vec<pb::Notification> = app
            .notifications(&first.id)
            .await
            .into_iter()
            .filter(|n| n.status == pb::NotificationStatus::Dead as i32)
            .collect();
        if !dead.is_empty() {
            break dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].recipient, "bad@x.fr");
    assert_eq!(dead[0].attempts, 1, "dead at once");
    assert!(
        dead[0].last_error.contains("caractères de contrôle"),
        "{}",
        dead[0].last_error
    );

    // The dispatcher goes on: the next meeting's invitations go out too.
    let second = MeetingSpec::new(&territory, "Europe/Paris", later(5, 4, 10));
    app.meeting_event("scheduled", &second).await;
    wait_for_mail(&smtp, "three invitations of the second meeting", |r| {
        r.len() == 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 6);
}
