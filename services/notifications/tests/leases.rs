//! Leases that cannot double-send: two replicas on one PostgreSQL database, a relay so slow
//! that one send outlasts the lease. The replica sending renews its leases while its batch
//! is in flight and checks each one right before sending: every invitation goes out once.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Datelike as _, NaiveDate, Utc};
use sea_orm::{ConnectionTrait as _, Statement};
use tde_notifications::NotificationsModule;
use tde_notifications::settings::NotificationSettings;
use tde_notifications::testing::{SmtpServer, configure};
use tde_runtime::testing::{TestEnv, Topology};

use common::{App, MeetingSpec, parse};

const MEETINGS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_relay_outlasting_the_lease_sends_each_invitation_once() {
    let smtp = SmtpServer::start();
    // Each RCPT is answered after 3 s: one send takes longer than the 2 s lease.
    smtp.delay(Duration::from_secs(3));
    let mut env = TestEnv::new(Topology::Postgres, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.reminder_days = vec![];
            n.batch_size = 10;
            n.concurrency = 4;
            n.lease_ms = 2_000;
            n.poll_interval_ms = 50;
        });
    // Replica A, on the same database, namespace and relay as replica B (the App).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica_a = tde_runtime::server::start(
        env.settings.clone(),
        vec![Arc::new(NotificationsModule::default())],
        None,
        Some(listener),
    )
    .await
    .expect("replica A starts");
    let app = App::start_in(env).await;

    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[("Delphine", "delphine@mairie.fr")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let year = Utc::now().year() + 1;
    for i in 0..MEETINGS {
        let day = NaiveDate::from_ymd_opt(year, 2, 1).unwrap() + chrono::Duration::days(i as i64);
        app.meeting_event(
            "scheduled",
            &MeetingSpec::new(
                &territory,
                "Europe/Paris",
                day.and_hms_opt(10, 0, 0).unwrap(),
            ),
        )
        .await;
    }

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while smtp.messages().len() < MEETINGS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {MEETINGS} delivered",
            smtp.messages().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Longer than a lease and a send again: a replica that took rows over would have sent
    // them by now.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let received: Vec<_> = smtp.messages().iter().map(|m| parse(m)).collect();
    let distinct: HashSet<&str> = received.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(received.len(), MEETINGS, "zero duplicates");
    assert_eq!(distinct.len(), MEETINGS, "zero missing");
    let db = &app.ctx().db;
    let unsent = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM notifications WHERE status <> 'sent'",
        ))
        .await
        .unwrap()
        .len();
    assert_eq!(unsent, 0);
    drop(replica_a);
}

/// The record of a sent message that the database refuses (here: its delivery log table is
/// briefly gone, longer than the lease) is kept and written once the database answers
/// again, instead of being dropped and the message sent again after the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_record_the_database_refuses_is_kept_until_written() {
    let smtp = SmtpServer::start();
    let mut env = TestEnv::new(Topology::Postgres, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.reminder_days = vec![];
            n.lease_ms = 2_000;
        });
    let app = App::start_in(env).await;
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[("Delphine", "delphine@mairie.fr")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = &app.ctx().db;
    let sql = |s: &str| Statement::from_string(db.get_database_backend(), s.to_string());
    // Every record of an attempt fails while the delivery log is away.
    db.execute_raw(sql("ALTER TABLE deliveries RENAME TO deliveries_away"))
        .await
        .unwrap();
    let year = Utc::now().year() + 1;
    let m = MeetingSpec::new(
        &territory,
        "Europe/Paris",
        NaiveDate::from_ymd_opt(year, 3, 3)
            .unwrap()
            .and_hms_opt(10, 0, 0)
            .unwrap(),
    );
    app.meeting_event("scheduled", &m).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while smtp.messages().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Three leases long: a dropped record would have let the row be claimed and sent again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    db.execute_raw(sql("ALTER TABLE deliveries_away RENAME TO deliveries"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let sent = db
            .query_all_raw(sql("SELECT id FROM notifications WHERE status = 'sent'"))
            .await
            .unwrap()
            .len();
        if sent == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "sent once");
}
