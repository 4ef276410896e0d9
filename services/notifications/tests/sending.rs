//! The notifications service end to end within itself: territory and meeting events in,
//! e-mails out to a real SMTP server, parsed back (MIME and iCalendar).

mod common;

use std::time::Duration;

use chrono::{Datelike as _, NaiveDate, Utc};
use icalendar::{Calendar, Component as _};
use tde_notifications::testing::SmtpServer;
use tde_proto::notifications::v1 as pb;
use tde_runtime::testing::Topology;

use common::{App, MeetingSpec, wait_for_mail};

tde_runtime::on_both_topologies!(
    invitations_updates_and_cancellations_in_french_with_icalendar,
    reminders_at_nine_local_and_roster_changes,
    smtp_down_then_back_delivers_once_and_bad_addresses_are_dead_lettered,
);

fn later(month: u32, day: u32, hour: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(Utc::now().year() + 1, month, day)
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
}

async fn invitations_updates_and_cancellations_in_french_with_icalendar(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = App::start(topology, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[
            ("Delphine Martin", "delphine@mairie.fr"),
            ("Paul Durand", "paul@mairie.fr"),
        ],
    )
    .await;
    // The last Sunday of March: 10:00 in Paris is 08:00 UTC that day.
    let switch = (25..=31)
        .map(|d| later(3, d, 10))
        .find(|d| d.weekday() == chrono::Weekday::Sun)
        .unwrap();
    let mut m = MeetingSpec::new(&territory, "Europe/Paris", switch);
    // The roster may arrive after the meeting: both orders end with everyone invited.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.meeting_event("scheduled", &m).await;
    let got = wait_for_mail(&smtp, "two invitations", |r| r.len() == 2).await;
    let delphine = got
        .iter()
        .find(|r| r.to.contains("delphine@mairie.fr"))
        .unwrap();
    assert!(
        delphine
            .subject
            .starts_with("Invitation : comité de pilotage de Saint-Étienne, le dimanche"),
        "{}",
        delphine.subject
    );
    assert!(delphine.text.contains("Bonjour Delphine Martin,"));
    assert!(
        delphine
            .html
            .contains("<strong>Lieu :</strong> Hôtel de ville")
    );
    assert_eq!(delphine.method, "REQUEST");
    let cal: Calendar = delphine.calendar.parse().expect("iCalendar parses");
    assert_eq!(cal.property_value("METHOD"), Some("REQUEST"));
    let event = cal.events().next().expect("an event");
    assert_eq!(
        event.get_uid(),
        Some(format!("{}@tde.anct.gouv.fr", m.id).as_str())
    );
    assert_eq!(event.get_sequence(), Some(0));
    assert!(delphine.calendar.contains(&format!(
        "DTSTART;TZID=Europe/Paris:{}",
        switch.format("%Y%m%dT%H%M%S")
    )));
    assert!(
        delphine.calendar.contains("ATTENDEE;CN=Delphine Martin")
            || delphine.calendar.contains("mailto:delphine@mairie.fr")
    );
    assert!(delphine.calendar.contains("ORGANIZER;CN="));
    assert!(delphine.calendar.contains("BEGIN:VALARM"));
    assert!(delphine.calendar.contains("BEGIN:VTIMEZONE"));

    // Rescheduled: an update with the next sequence, same UID.
    m.sequence = 1;
    m.start_local = later(4, 8, 14);
    app.meeting_event("rescheduled", &m).await;
    let got = wait_for_mail(&smtp, "two updates", |r| r.len() == 4).await;
    let update = got
        .iter()
        .find(|r| r.subject.starts_with("Mise à jour") && r.to.contains("paul@mairie.fr"))
        .expect("paul's update");
    let cal: Calendar = update.calendar.parse().unwrap();
    let event = cal.events().next().unwrap();
    assert_eq!(event.get_sequence(), Some(1));
    assert_eq!(
        event.get_uid(),
        Some(format!("{}@tde.anct.gouv.fr", m.id).as_str())
    );

    // Cancelled: METHOD:CANCEL, and the reminders of every sequence dropped.
    m.sequence = 2;
    app.meeting_event("cancelled", &m).await;
    let got = wait_for_mail(&smtp, "two cancellations", |r| r.len() == 6).await;
    let cancel = got
        .iter()
        .find(|r| r.subject.starts_with("Annulation"))
        .unwrap();
    assert_eq!(cancel.method, "CANCEL");
    assert!(cancel.text.contains("Motif : Préfète indisponible"));
    assert!(cancel.calendar.contains("STATUS:CANCELLED"));
    let notifications = app.notifications(&m.id).await;
    assert!(
        notifications
            .iter()
            .filter(|n| n.kind == pb::NotificationKind::Reminder7Days as i32
                || n.kind == pb::NotificationKind::Reminder1Day as i32)
            .all(|n| n.status == pb::NotificationStatus::Dropped as i32),
        "no reminder of a cancelled meeting"
    );
    // Each (meeting, sequence, recipient, kind) once, with its own stable Message-ID.
    let mut ids: Vec<&str> = got.iter().map(|r| r.message_id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    // A redelivered event adds nothing.
    app.meeting_event("cancelled", &m).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(smtp.messages().len(), 6);
}

async fn reminders_at_nine_local_and_roster_changes(topology: Topology) {
    let smtp = SmtpServer::start();
    let app = App::start(topology, &smtp).await;
    let mut checked = Vec::new();
    for (zone, utc_hour_of_nine) in [
        ("Europe/Paris", 7),    // summer: 09:00 is 07:00 UTC
        ("Pacific/Noumea", 22), // the day before, UTC
        ("Indian/Reunion", 5),
        ("America/Guadeloupe", 13),
    ] {
        let territory = uuid::Uuid::now_v7().to_string();
        app.roster(
            &territory,
            "Territoire",
            zone,
            &[("Ana", &format!("ana-{}@x.fr", &territory[30..]))],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = MeetingSpec::new(&territory, zone, later(6, 17, 10));
        app.meeting_event("scheduled", &m).await;
        checked.push((m, utc_hour_of_nine));
    }
    wait_for_mail(&smtp, "four invitations", |r| r.len() == 4).await;
    // A territory's own reminder time: its coming reminders move.
    let (paris, _) = &checked[0];
    let set = app
        .api()
        .set_reminder_time(pb::SetReminderTimeRequest {
            territory_id: paris.territory_id.clone(),
            local_time: "08:30".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.local_time, "08:30");
    let moved: Vec<String> = app
        .notifications(&paris.id)
        .await
        .iter()
        .filter(|n| n.status == pb::NotificationStatus::Pending as i32)
        .map(|n| {
            tde_runtime::api::from_timestamp(n.due_time.as_ref().unwrap())
                .unwrap()
                .format("%H:%M")
                .to_string()
        })
        .collect();
    assert_eq!(
        moved,
        ["06:30", "06:30"],
        "08:30 in Paris in summer, both reminders"
    );
    let bad = app
        .api()
        .set_reminder_time(pb::SetReminderTimeRequest {
            territory_id: paris.territory_id.clone(),
            local_time: "25:00".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    for (m, hour) in checked.iter().skip(1) {
        let notifications = app.notifications(&m.id).await;
        let one_day = notifications
            .iter()
            .find(|n| n.kind == pb::NotificationKind::Reminder1Day as i32)
            .expect("a reminder the day before");
        let due = tde_runtime::api::from_timestamp(one_day.due_time.as_ref().unwrap()).unwrap();
        assert_eq!(
            due.format("%H:%M").to_string(),
            format!("{hour:02}:00"),
            "{}",
            m.zone
        );
        assert!(
            notifications
                .iter()
                .any(|n| n.kind == pb::NotificationKind::Reminder7Days as i32)
        );
    }

    // A roster change between the invitation and the reminder: who left gets no reminder,
    // who joined is invited and reminded.
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[("A", "a@x.fr"), ("B", "b@x.fr")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = MeetingSpec::new(&territory, "Europe/Paris", later(9, 20, 10));
    app.meeting_event("scheduled", &m).await;
    wait_for_mail(&smtp, "a and b invited", |r| r.len() == 6).await;
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[("A", "a@x.fr"), ("C", "c@x.fr")],
    )
    .await;
    wait_for_mail(&smtp, "c invited", |r| {
        r.iter().any(|x| x.to.contains("<c@x.fr>"))
    })
    .await;
    app.make_due(&m.id, "reminder_1d").await;
    let got = wait_for_mail(&smtp, "reminders of a and c", |r| {
        r.iter().filter(|x| x.subject.starts_with("Rappel")).count() == 2
    })
    .await;
    let reminded: Vec<&str> = got
        .iter()
        .filter(|x| x.subject.starts_with("Rappel"))
        .map(|x| x.to.as_str())
        .collect();
    assert!(reminded.iter().any(|t| t.contains("<a@x.fr>")));
    assert!(reminded.iter().any(|t| t.contains("<c@x.fr>")));
    assert!(
        !reminded.iter().any(|t| t.contains("<b@x.fr>")),
        "b left the roster"
    );
    let reminder = got
        .iter()
        .find(|x| x.subject.starts_with("Rappel"))
        .unwrap();
    assert!(reminder.subject.contains("demain"), "{}", reminder.subject);
}

async fn smtp_down_then_back_delivers_once_and_bad_addresses_are_dead_lettered(topology: Topology) {
    let mut smtp = SmtpServer::start();
    let app = App::start(topology, &smtp).await;
    smtp.stop();
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[
            ("A", "a@x.fr"),
            ("Nobody", "nobody@rejected.example"),
            ("B", "b@x.fr"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let m = MeetingSpec::new(&territory, "Europe/Paris", later(5, 12, 10));
    app.meeting_event("scheduled", &m).await;
    // Attempts fail while the server is down, and are logged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let failed = app
            .api()
            .list_deliveries(pb::ListDeliveriesRequest {
                outcome: "failed".into(),
                territory_id: territory.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        if failed.len() >= 3 {
            assert!(failed.iter().all(|d| !d.error.is_empty()));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failed attempt logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    smtp.resume();
    let got = wait_for_mail(&smtp, "a and b invited once the server is back", |r| {
        r.len() == 2
    })
    .await;
    assert!(got.iter().all(|r| !r.to.contains("rejected.example")));
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(smtp.messages().len(), 2, "delivered once");
    let notifications = app.notifications(&m.id).await;
    let invitations: Vec<_> = notifications
        .iter()
        .filter(|n| n.kind == pb::NotificationKind::Invitation as i32)
        .collect();
    assert_eq!(invitations.len(), 3);
    let dead: Vec<_> = invitations
        .iter()
        .filter(|n| n.status == pb::NotificationStatus::Dead as i32)
        .collect();
    assert_eq!(dead.len(), 1, "{invitations:?}");
    assert!(dead[0].recipient.contains("rejected.example"));
    assert!(dead[0].last_error.contains("550"), "{}", dead[0].last_error);
    assert!(
        !dead[0].last_error.contains("nobody@"),
        "no address in the error: {}",
        dead[0].last_error
    );
    assert_eq!(
        invitations
            .iter()
            .filter(|n| n.status == pb::NotificationStatus::Sent as i32)
            .count(),
        2
    );
    // The dead letter is visible, and can be retried (it dies again here).
    let retried = app
        .api()
        .retry_notification(pb::RetryNotificationRequest {
            id: dead[0].id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .notification
        .unwrap();
    assert_eq!(retried.status, pb::NotificationStatus::Pending as i32);
    let sent = invitations
        .iter()
        .find(|n| n.status == pb::NotificationStatus::Sent as i32)
        .unwrap();
    let again = app
        .api()
        .retry_notification(pb::RetryNotificationRequest {
            id: sent.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        again.code(),
        tonic::Code::FailedPrecondition,
        "only dead letters are retried"
    );
}
