//! Webhooks safe by construction: receivers resolving to loopback, private, link-local or
//! cloud-metadata addresses are refused at delivery (resolution faked: no traffic leaves the
//! machine), redirects are not followed, the receiver's answer is not echoed into the
//! delivery log, and each receiver has its own secret, rotated with an overlap.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Datelike as _, NaiveDate, Utc};
use tde_notifications::NotificationsModule;
use tde_notifications::delivery::webhook::Resolver;
use tde_notifications::domain::message::webhook_signature;
use tde_notifications::settings::NotificationSettings;
use tde_notifications::testing::{SmtpServer, configure};
use tde_proto::notifications::v1 as pb;
use tde_runtime::testing::{TestEnv, Topology};

use common::{App, MeetingSpec};

/// Names resolved from a table; anything else is unknown.
struct FakeDns(HashMap<&'static str, Vec<IpAddr>>);

#[async_trait]
impl Resolver for FakeDns {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "unknown"))
    }
}

fn later(month: u32, day: u32) -> chrono::NaiveDateTime {
    NaiveDate::from_ymd_opt(Utc::now().year() + 1, month, day)
        .unwrap()
        .and_hms_opt(10, 0, 0)
        .unwrap()
}

async fn start(dns: FakeDns, insecure: bool, smtp: &SmtpServer) -> App {
    let mut env = TestEnv::new(Topology::Sqlite, &["notifications"]).await;
    configure(&mut env, Some(smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.reminder_days = vec![];
            n.dev = insecure;
            n.allow_insecure_webhooks = insecure;
            n.webhook_secret_overlap_ms = 3_600_000;
        });
    let platform = env
        .start(vec![Arc::new(NotificationsModule::with_resolver(
            Arc::new(dns),
        ))])
        .await
        .expect("server starts");
    let channel = tde_runtime::testing::channel(platform.local_addr).await;
    App {
        env,
        platform,
        channel,
    }
}

async fn roster(app: &App, territory: &str, people: &[(&str, &str)]) {
    app.roster(territory, "Saint-Étienne", "Europe/Paris", people)
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .api()
        .list_recipients(pb::ListRecipientsRequest {
            territory_id: territory.into(),
        })
        .await
        .map(|r| r.into_inner().recipients.len())
        .unwrap_or(0)
        < people.len()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "roster never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn set_webhook(
    app: &App,
    territory: &str,
    email: &str,
    url: &str,
) -> Result<pb::UpdateRecipientPreferencesResponse, tonic::Status> {
    app.api()
        .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
            territory_id: territory.into(),
            email: email.into(),
            channel: pb::Channel::Webhook as i32,
            webhook_url: url.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// Waits until every notification of `meeting` is dead, and returns them.
async fn all_dead(app: &App, meeting: &str, count: usize) -> Vec<pb::Notification> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = app.notifications(meeting).await;
        if all.len() == count
            && all
                .iter()
                .all(|n| n.status == pb::NotificationStatus::Dead as i32)
        {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all dead: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn receivers_on_internal_addresses_are_refused_at_delivery() {
    let smtp = SmtpServer::start();
    let dns = FakeDns(HashMap::from([
        ("loopback.example.test", vec!["127.0.0.1".parse().unwrap()]),
        ("private.example.test", vec!["10.0.0.1".parse().unwrap()]),
        (
            "metadata.example.test",
            vec!["169.254.169.254".parse().unwrap()],
        ),
        ("v6.example.test", vec!["::1".parse().unwrap()]),
        // One public address and one private: the private one refuses the name.
        (
            "mixed.example.test",
            vec!["8.8.8.8".parse().unwrap(), "192.168.1.10".parse().unwrap()],
        ),
    ]));
    let app = start(dns, false, &smtp).await;
    let territory = uuid::Uuid::now_v7().to_string();
    let people = [
        ("A", "a@x.fr"),
        ("B", "b@x.fr"),
        ("C", "c@x.fr"),
        ("D", "d@x.fr"),
        ("E", "e@x.fr"),
    ];
    roster(&app, &territory, &people).await;

    // What the URL itself says is checked when it is set: https only, no internal address.
    for url in [
        "http://hooks.example.fr/x",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00:ec2::254]/x",
    ] {
        let refused = set_webhook(&app, &territory, "a@x.fr", url)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{url}");
    }
    // Names are accepted when set: what they resolve to is checked at each delivery.
    for ((_, email), host) in people.iter().zip([
        "loopback.example.test",
        "private.example.test",
        "metadata.example.test",
        "v6.example.test",
        "mixed.example.test",
    ]) {
        set_webhook(&app, &territory, email, &format!("https://{host}/hook"))
            .await
            .unwrap();
    }
    let m = MeetingSpec::new(&territory, "Europe/Paris", later(5, 20));
    app.meeting_event("scheduled", &m).await;
    for n in all_dead(&app, &m.id, people.len()).await {
        assert_eq!(n.attempts, 1, "refused at once");
        assert!(
            n.last_error
                .starts_with("webhook : adresse du destinataire interdite"),
            "{}",
            n.last_error
        );
    }
}

type Hits = Arc<Mutex<Vec<(String, axum::http::HeaderMap, bytes::Bytes)>>>;

/// A local receiver: `/redirect` answers 302 to `/internal` (a loopback address), `/fail`
/// 500 with a body of its own, `/ok` 200; every request is kept.
async fn local_receiver() -> (String, Hits) {
    let hits: Hits = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let internal = format!("{base}/internal");
    let kept = hits.clone();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: bytes::Bytes| {
            let kept = kept.clone();
            let internal = internal.clone();
            async move {
                let path = uri.path().to_string();
                kept.lock().unwrap().push((path.clone(), headers, body));
                use axum::response::IntoResponse as _;
                match path.as_str() {
                    "/redirect" => (
                        axum::http::StatusCode::FOUND,
                        [(axum::http::header::LOCATION, internal)],
                    )
                        .into_response(),
                    "/fail" => (
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "stack trace: db password hunter2",
                    )
                        .into_response(),
                    _ => axum::http::StatusCode::OK.into_response(),
                }
            }
        },
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, hits)
}

#[tokio::test]
async fn no_redirects_no_echo_and_secrets_per_receiver_rotated_with_overlap() {
    let smtp = SmtpServer::start();
    // As in `tde dev`: local receivers over http are allowed, redirects still are not.
    let app = start(FakeDns(HashMap::new()), true, &smtp).await;
    let (base, hits) = local_receiver().await;
    let territory = uuid::Uuid::now_v7().to_string();
    roster(
        &app,
        &territory,
        &[("R", "r@x.fr"), ("F", "f@x.fr"), ("K", "k@x.fr")],
    )
    .await;
    set_webhook(&app, &territory, "r@x.fr", &format!("{base}/redirect"))
        .await
        .unwrap();
    set_webhook(&app, &territory, "f@x.fr", &format!("{base}/fail"))
        .await
        .unwrap();
    let first = set_webhook(&app, &territory, "k@x.fr", &format!("{base}/ok"))
        .await
        .unwrap();
    assert!(!first.webhook_secret.is_empty(), "shown when set");
    // Rotation: a new secret, the previous one valid for the overlap.
    let rotated = app
        .api()
        .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
            territory_id: territory.clone(),
            email: "k@x.fr".into(),
            rotate_webhook_secret: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(rotated.webhook_secret, first.webhook_secret);
    assert!(rotated.previous_webhook_secret_valid_until.is_some());
    // Not shown again.
    let again = app
        .api()
        .update_recipient_preferences(pb::UpdateRecipientPreferencesRequest {
            territory_id: territory.clone(),
            email: "k@x.fr".into(),
            reminders: Some(false),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.webhook_secret.is_empty());

    let m = MeetingSpec::new(&territory, "Europe/Paris", later(6, 3));
    app.meeting_event("scheduled", &m).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let signed = loop {
        let got = hits.lock().unwrap().clone();
        if let Some((_, headers, body)) = got.iter().find(|(p, ..)| p == "/ok") {
            break (headers.clone(), body.clone());
        }
        assert!(tokio::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (headers, body) = signed;
    let timestamp: i64 = headers["x-tde-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let signatures: Vec<String> = headers["x-tde-signature"]
        .to_str()
        .unwrap()
        .split(", ")
        .map(str::to_string)
        .collect();
    assert_eq!(
        signatures,
        [
            webhook_signature(&rotated.webhook_secret, timestamp, &body),
            webhook_signature(&first.webhook_secret, timestamp, &body),
        ],
        "the new signature, then the previous one during the overlap"
    );

    // The redirect and the failure: given up or retried, the log says the class only.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let deliveries = app
            .api()
            .list_deliveries(pb::ListDeliveriesRequest {
                territory_id: territory.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        let errors: Vec<&str> = deliveries.iter().map(|d| d.error.as_str()).collect();
        if errors.iter().any(|e| e.contains("redirection"))
            && errors.iter().any(|e| e.contains("5xx"))
        {
            assert!(
                errors
                    .iter()
                    .all(|e| !e.contains("hunter2") && !e.contains("500") && !e.contains("302")),
                "{errors:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{errors:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let redirect = app
        .notifications(&m.id)
        .await
        .into_iter()
        .find(|n| n.recipient == "r@x.fr")
        .unwrap();
    assert_eq!(redirect.status, pb::NotificationStatus::Dead as i32);
    assert!(
        hits.lock().unwrap().iter().all(|(p, ..)| p != "/internal"),
        "the redirect was not followed"
    );
}

/// A name answering a public address to the check and the loopback address to the
/// connection (DNS rebinding): the HTTP client resolves through the same check, so it
/// never connects to the loopback listener.
struct Rebinding {
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl Resolver for Rebinding {
    async fn resolve(&self, _host: &str) -> std::io::Result<Vec<IpAddr>> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(vec![if n.is_multiple_of(2) {
            "203.0.113.10".parse().unwrap()
        } else {
            "127.0.0.1".parse().unwrap()
        }])
    }
}

#[tokio::test]
async fn dns_rebinding_between_check_and_connect_never_reaches_the_loopback() {
    let smtp = SmtpServer::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut env = TestEnv::new(Topology::Sqlite, &["notifications"]).await;
    configure(&mut env, Some(&smtp));
    env.settings
        .services
        .update(|n: &mut NotificationSettings| {
            n.reminder_days = vec![];
            n.max_attempts = 2;
        });
    let platform = env
        .start(vec![Arc::new(NotificationsModule::with_resolver(
            Arc::new(Rebinding {
                calls: Default::default(),
            }),
        ))])
        .await
        .expect("server starts");
    let channel = tde_runtime::testing::channel(platform.local_addr).await;
    let app = App {
        env,
        platform,
        channel,
    };
    let territory = uuid::Uuid::now_v7().to_string();
    roster(&app, &territory, &[("A", "a@x.fr")]).await;
    set_webhook(
        &app,
        &territory,
        "a@x.fr",
        &format!("https://rebind.example.test:{port}/hook"),
    )
    .await
    .unwrap();
    let m = MeetingSpec::new(&territory, "Europe/Paris", later(9, 7));
    app.meeting_event("scheduled", &m).await;
    let dead = all_dead(&app, &m.id, 1).await;
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no connection to the loopback listener"
    );
}
