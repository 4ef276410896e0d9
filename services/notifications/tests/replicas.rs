//! Two replicas on one PostgreSQL database share the sending; one is killed in the middle of
//! its batch; every notification still goes out exactly once.

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

const MEETINGS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_killed_mid_batch_send_each_notification_once() {
    let smtp = SmtpServer::start();
    let mut env = TestEnv::new(Topology::Postgres, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.reminder_days = vec![];
            n.batch_size = 10;
            n.concurrency = 4;
            n.lease_ms = 2_000;
        });
    let settings = env.settings.clone();

    // Replica A runs on its own runtime, which the test drops to kill it: every task stops
    // at its next await, its connections close, nothing is flushed.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let replica_a = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let platform = tde_runtime::server::start(
                settings,
                vec![Arc::new(NotificationsModule::default())],
                None,
                Some(listener),
            )
            .await
            .expect("replica A starts");
            started_tx.send(()).unwrap();
            let _ = kill_rx.await;
            std::mem::forget(platform);
        });
        runtime.shutdown_background();
    });
    started_rx.recv().unwrap();
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
        let day =
            NaiveDate::from_ymd_opt(year, 1, 1).unwrap() + chrono::Duration::days((i % 360) as i64);
        let start = day
            .and_hms_opt(8 + (i % 8) as u32, (i % 4) as u32 * 15, 0)
            .unwrap();
        app.meeting_event(
            "scheduled",
            &MeetingSpec::new(&territory, "Europe/Paris", start),
        )
        .await;
    }

    // Mid-way, hold the SMTP server at RCPT, so that the replicas' sends in flight are
    // between claim and delivery; check that both hold claims; kill A; release.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while smtp.messages().len() < MEETINGS / 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sending never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    smtp.pause(true);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let db = &app.ctx().db;
    let owners = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT DISTINCT lease_owner FROM notifications WHERE status = 'pending' AND lease_owner IS NOT NULL",
        ))
        .await
        .unwrap()
        .len();
    assert_eq!(owners, 2, "both replicas hold a batch when A is killed");
    kill_tx.send(()).unwrap();
    replica_a.join().unwrap();
    smtp.pause(false);

    // B finishes, taking over A's claims when their lease expires.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while smtp.messages().len() < MEETINGS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {MEETINGS} delivered",
            smtp.messages().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let received: Vec<_> = smtp.messages().iter().map(|m| parse(m)).collect();
    let distinct: HashSet<&str> = received.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(received.len(), MEETINGS, "zero duplicates");
    assert_eq!(distinct.len(), MEETINGS, "zero missing");
    let pending = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM notifications WHERE status <> 'sent'",
        ))
        .await
        .unwrap()
        .len();
    assert_eq!(pending, 0);
}
