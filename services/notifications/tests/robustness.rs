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

tde_runtime::on_both_topologies!(
    a_name_with_a_line_break_fails_alone,
    a_relay_down_longer_than_the_old_retries_loses_nothing,
);

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

/// The relay is down for longer than six attempts from 100 ms doubling to 1 s (what the old
/// defaults did, shortened): transient failures are retried until `retry_for_ms`, so that
/// everything goes out once the relay is back, and nothing is dead-lettered but the address
/// the relay refuses for good (5xx), as soon as the relay answers.
async fn a_relay_down_longer_than_the_old_retries_loses_nothing(topology: Topology) {
    let mut smtp = SmtpServer::start();
    let mut env = tde_runtime::testing::TestEnv::new(topology, &["notifications"]).await;
    tde_notifications::testing::configure(&mut env, Some(&smtp));
    env.settings.services.update(
        |n: &mut tde_notifications::settings::NotificationSettings| {
            n.reminder_days = vec![];
            n.retry_backoff_ms = 100;
            n.max_backoff_ms = 1_000;
            n.retry_for_ms = 120_000;
        },
    );
    let app = App::start_in(env).await;
    smtp.stop();
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[
            ("A", "a@x.fr"),
            ("B", "b@x.fr"),
            ("C", "c@x.fr"),
            ("Nobody", "nobody@rejected.example"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = MeetingSpec::new(&territory, "Europe/Paris", later(6, 8, 10));
    app.meeting_event("scheduled", &m).await;
    // Down for 6 s: more than 0.1 + 0.2 + 0.4 + 0.8 + 1 + 1 s of the six old attempts.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let attempts: i32 = app
        .notifications(&m.id)
        .await
        .iter()
        .map(|n| n.attempts)
        .max()
        .unwrap_or(0);
    assert!(
        attempts > 6,
        "retried past the old limit: {attempts} attempts"
    );
    assert!(
        app.notifications(&m.id)
            .await
            .iter()
            .all(|n| n.status == pb::NotificationStatus::Pending as i32),
        "nothing dead-lettered while the relay is down"
    );
    smtp.resume();
    wait_for_mail(&smtp, "three invitations once the relay is back", |r| {
        r.len() == 3
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = app.notifications(&m.id).await;
        let dead: Vec<_> = all
            .iter()
            .filter(|n| n.status == pb::NotificationStatus::Dead as i32)
            .collect();
        let sent = all
            .iter()
            .filter(|n| n.status == pb::NotificationStatus::Sent as i32)
            .count();
        if sent == 3 && dead.len() == 1 {
            assert!(dead[0].recipient.contains("rejected.example"));
            assert!(dead[0].last_error.contains("550"), "{}", dead[0].last_error);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sent {sent}, dead {}",
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(smtp.messages().len(), 3, "each once");
}

/// Dead letters are retried in bulk: by territory, meeting or due-time range, among the
/// territories the caller sees; the call says how many.
#[tokio::test]
async fn dead_letters_are_retried_in_one_call() {
    let smtp = SmtpServer::start();
    let app = App::start(Topology::Sqlite, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[
            ("A", "a@x.fr"),
            ("N1", "n1@rejected.example"),
            ("N2", "n2@rejected.example"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = MeetingSpec::new(&territory, "Europe/Paris", later(7, 5, 10));
    let second = MeetingSpec::new(&territory, "Europe/Paris", later(7, 12, 10));
    app.meeting_event("scheduled", &first).await;
    app.meeting_event("scheduled", &second).await;
    let dead_of = |meeting: String| {
        let app = &app;
        async move {
            app.notifications(&meeting)
                .await
                .into_iter()
                .filter(|n| n.status == pb::NotificationStatus::Dead as i32)
                .count()
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dead_of(first.id.clone()).await + dead_of(second.id.clone()).await < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let retry = |r: pb::RetryDeadNotificationsRequest| {
        let mut api = app.api();
        async move { api.retry_dead_notifications(r).await }
    };
    // Without any filter: refused, so that nobody retries everything by mistake.
    let refused = retry(pb::RetryDeadNotificationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    // A range before every due time: nothing.
    let none = retry(pb::RetryDeadNotificationsRequest {
        territory_id: territory.clone(),
        due_time_to: Some(tde_runtime::api::timestamp(
            Utc::now() - chrono::Duration::days(1),
        )),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(none.retried, 0);
    // Another territory's project lead sees nothing of it.
    let lead = tde_runtime::auth::TokenSpec::new(tde_runtime::auth::Role::ProjectLead, "cdp")
        .territory(uuid::Uuid::now_v7().to_string());
    let channel = tde_runtime::testing::channel_as(app.platform.local_addr, &lead).await;
    let hidden =
        tde_proto::notifications::v1::notification_service_client::NotificationServiceClient::new(
            channel,
        )
        .retry_dead_notifications(pb::RetryDeadNotificationsRequest {
            territory_id: territory.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    // One meeting's, then the territory's.
    let one = retry(pb::RetryDeadNotificationsRequest {
        meeting_id: first.id.clone(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(one.retried, 2);
    // Retried, they are refused again by the relay (550) and dead again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dead_of(first.id.clone()).await < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = retry(pb::RetryDeadNotificationsRequest {
        territory_id: territory.clone(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(all.retried, 4);
}

/// A dead letter put back by hand gets a whole retry window from then, however long ago it
/// was due: the relay still down, it is retried, not dead again at its first failure.
#[tokio::test]
async fn a_retried_old_dead_letter_gets_a_new_retry_window() {
    use sea_orm::{ConnectionTrait as _, Statement};
    let mut smtp = SmtpServer::start();
    let app = App::start(Topology::Sqlite, &smtp).await;
    smtp.stop();
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[("A", "a@x.fr")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = MeetingSpec::new(&territory, "Europe/Paris", later(8, 3, 10));
    app.meeting_event("scheduled", &m).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let invitation = loop {
        if let Some(n) = app
            .notifications(&m.id)
            .await
            .into_iter()
            .find(|n| n.kind == pb::NotificationKind::Invitation as i32 && n.attempts >= 1)
        {
            break n;
        }
        assert!(tokio::time::Instant::now() < deadline, "never attempted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // As if it had died two days ago, after a long outage.
    let db = &app.ctx().db;
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE notifications SET status = 'dead', lease_until = NULL, due_at = $1 WHERE id = $2",
        [
            (Utc::now() - chrono::Duration::days(2)).into(),
            invitation.id.clone().into(),
        ],
    ))
    .await
    .unwrap();
    app.api()
        .retry_notification(pb::RetryNotificationRequest {
            id: invitation.id.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let now = app
        .notifications(&m.id)
        .await
        .into_iter()
        .find(|n| n.id == invitation.id)
        .unwrap();
    assert_eq!(
        now.status,
        pb::NotificationStatus::Pending as i32,
        "still retried: {}",
        now.last_error
    );
    assert!(now.attempts >= 2, "{} attempts", now.attempts);
    smtp.resume();
    wait_for_mail(&smtp, "the invitation once the relay is back", |r| {
        r.len() == 1
    })
    .await;
}
