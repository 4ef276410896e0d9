//! Webhooks (signed, retried, dead-lettered) and the calendar feeds over HTTP.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Datelike as _, NaiveDate, Utc};
use icalendar::{Calendar, Component as _};
use tde_notifications::settings::NotificationSettings;
use tde_notifications::testing::{SmtpServer, configure};
use tde_proto::notifications::v1 as pb;
use tde_runtime::testing::{TestEnv, Topology};

use common::{App, MeetingSpec};

type Seen = Arc<Mutex<Vec<(axum::http::HeaderMap, bytes::Bytes)>>>;

/// A webhook receiver answering `status` and keeping what it got.
async fn receiver(status: u16) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push((headers, body));
                axum::http::StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

fn later(month: u32, day: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(Utc::now().year() + 1, month, day)
        .unwrap()
        .and_hms_opt(10, 0, 0)
        .unwrap()
}

async fn wait(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn webhooks_are_signed_and_failing_ones_dead_lettered() {
    let smtp = SmtpServer::start();
    let mut env = TestEnv::new(Topology::Postgres, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.max_attempts = 3;
            // Receivers on the loopback interface, over http: what `tde dev` allows.
            n.dev = true;
            n.allow_insecure_webhooks = true;
        });
    let app = App::start_in(env).await;
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(
        &territory,
        "Saint-Étienne",
        "Europe/Paris",
        &[("Good", "good@x.fr"), ("Bad", "bad@x.fr")],
    )
    .await;
    let (good_url, good) = receiver(200).await;
    let (bad_url, bad) = receiver(500).await;
    // The roster is applied asynchronously: wait for the recipients.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .api()
        .list_recipients(pb::ListRecipientsRequest {
            territory_id: territory.clone(),
        })
        .await
        .map(|r| r.into_inner().recipients.len())
        .unwrap_or(0)
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "roster never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut secrets = Vec::new();
    for (email, url) in [("good@x.fr", &good_url), ("bad@x.fr", &bad_url)] {
        let set = app
            .api()
            .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
                territory_id: territory.clone(),
                email: email.into(),
                channel: pb::Channel::Webhook as i32,
                webhook_url: url.clone(),
                language: String::new(),
                reminders: Some(false),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(set.webhook_secret.len(), 43, "32 bytes, base64url");
        secrets.push(set.webhook_secret);
    }
    assert_ne!(secrets[0], secrets[1], "a secret per receiver");
    let bad_url_refused = app
        .api()
        .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
            territory_id: territory.clone(),
            email: "good@x.fr".into(),
            channel: 0,
            webhook_url: "ftp://example.org/hook".into(),
            language: String::new(),
            reminders: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_url_refused.code(), tonic::Code::InvalidArgument);

    let m = MeetingSpec::new(&territory, "Europe/Paris", later(5, 20));
    app.meeting_event("scheduled", &m).await;
    wait("the good webhook", || good.lock().unwrap().len() == 1).await;
    let (headers, body) = good.lock().unwrap()[0].clone();
    let timestamp: i64 = headers["x-tde-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let signature = headers["x-tde-signature"].to_str().unwrap().to_string();
    assert_eq!(
        signature,
        tde_notifications::domain::message::webhook_signature(&secrets[0], timestamp, &body)
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["type"],
        "tde.notifications.steering_meeting.invitation"
    );
    assert_eq!(json["meeting"]["id"], m.id.as_str());
    assert_eq!(json["meeting"]["time_zone"], "Europe/Paris");
    // The failing one: three attempts with back-off, then a dead letter; no reminders (opted out).
    wait("three attempts", || bad.lock().unwrap().len() == 3).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let dead = app
            .api()
            .list_notifications(pb::ListNotificationsRequest {
                meeting_id: m.id.clone(),
                status: pb::NotificationStatus::Dead as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .notifications;
        if dead.len() == 1 {
            // The class of the answer only, never what the receiver said.
            assert_eq!(dead[0].last_error, "webhook : erreur du destinataire (5xx)");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = app
        .api()
        .list_deliveries(pb::ListDeliveriesRequest {
            territory_id: territory.clone(),
            channel: pb::Channel::Webhook as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries;
    let outcomes: Vec<&str> = log.iter().map(|d| d.outcome.as_str()).collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "failed").count(), 2);
    assert_eq!(outcomes.iter().filter(|o| **o == "dead").count(), 1);
    assert_eq!(outcomes.iter().filter(|o| **o == "sent").count(), 1);
    let notifications = app.notifications(&m.id).await;
    assert!(
        notifications
            .iter()
            .all(|n| n.kind == pb::NotificationKind::Invitation as i32),
        "both opted out of reminders"
    );
    assert!(
        smtp.messages().is_empty(),
        "no e-mail for webhook recipients"
    );
}

#[tokio::test]
async fn a_territory_calendar_feed_behind_its_secret_link() {
    let smtp = SmtpServer::start();
    let mut env = TestEnv::new(Topology::Sqlite, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    let port = tde_runtime::testing::free_port();
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.feed_listen = Some(format!("127.0.0.1:{port}").parse().unwrap())
        });
    let app = App::start_in(env).await;
    let territory = uuid::Uuid::now_v7().to_string();
    app.roster(&territory, "Nouméa", "Pacific/Noumea", &[("A", "a@x.nc")])
        .await;
    let m1 = MeetingSpec::new(&territory, "Pacific/Noumea", later(4, 2));
    let m2 = MeetingSpec::new(&territory, "Pacific/Noumea", later(10, 2));
    app.meeting_event("scheduled", &m1).await;
    app.meeting_event("scheduled", &m2).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let path = loop {
        match app
            .api()
            .get_calendar_feed(pb::GetCalendarFeedRequest {
                territory_id: territory.clone(),
            })
            .await
        {
            Ok(r) if !app.notifications(&m2.id).await.is_empty() => break r.into_inner().path,
            _ => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "feed never available"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let body = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cal: Calendar = body.parse().expect("the feed parses");
    assert_eq!(cal.property_value("METHOD"), Some("PUBLISH"));
    let uids: Vec<_> = cal
        .events()
        .filter_map(|e| e.get_uid().map(str::to_string))
        .collect();
    assert_eq!(uids.len(), 2);
    assert!(body.contains("TZID:Pacific/Noumea"));
    let wrong = reqwest::get(format!(
        "http://127.0.0.1:{port}/calendars/{territory}/wrong.ics"
    ))
    .await
    .unwrap();
    assert_eq!(wrong.status(), 404);
}
