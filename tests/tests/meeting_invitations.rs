//! From RegisterTerritory and a scheduled steering meeting, through territories, plans and
//! notifications, to an SMTP server: the steering body's member receives a French
//! invitation with its iCalendar part, then the cancellation. Two topologies: every service
//! in one process (as `tde dev`), and each service its own process on PostgreSQL and
//! JetStream (as on Kubernetes).

mod common;

use std::time::Duration;

use chrono::Datelike as _;
use tde::platform::{self, Role};
use tde_notifications::testing::{SmtpServer, configure};
use tde_proto::plans::v1 as plans_pb;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::plans::v1::steering_meeting_service_client::SteeringMeetingServiceClient;
use tde_runtime::auth::AuthChannel;
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, channel};

/// Every part of a message decoded, with its content type: what a reader sees.
fn decoded(raw: &[u8]) -> String {
    fn walk(part: &mailparse::ParsedMail<'_>, out: &mut String) {
        out.push_str(&format!("{:?}\n", part.ctype));
        if part.subparts.is_empty() {
            out.push_str(&part.get_body().unwrap_or_default());
        }
        for sub in &part.subparts {
            walk(sub, out);
        }
    }
    let mut out = String::new();
    walk(&mailparse::parse_mail(raw).expect("MIME"), &mut out);
    out
}

struct Deployment {
    _env: TestEnv,
    platforms: Vec<RunningPlatform>,
    territories: AuthChannel,
    plans: AuthChannel,
}

async fn one_process(smtp: &SmtpServer) -> Deployment {
    let mut env = TestEnv::sqlite().await;
    configure(&mut env, Some(smtp));
    let running = env
        .start(platform::modules(Role::ALL))
        .await
        .expect("starts");
    let ch = channel(running.local_addr).await;
    Deployment {
        territories: ch.clone(),
        plans: ch,
        platforms: vec![running],
        _env: env,
    }
}

async fn three_processes(smtp: &SmtpServer) -> Deployment {
    let mut env = TestEnv::postgres(&["territories", "plans", "notifications"]).await;
    configure(&mut env, Some(smtp));
    let mut platforms = Vec::new();
    for role in [Role::Territories, Role::Plans, Role::Notifications] {
        platforms.push(env.start(platform::modules(&[role])).await.expect("starts"));
    }
    Deployment {
        territories: channel(platforms[0].local_addr).await,
        plans: channel(platforms[1].local_addr).await,
        platforms,
        _env: env,
    }
}

async fn a_scheduled_meeting_reaches_the_steering_body(d: Deployment, smtp: &SmtpServer) {
    let territory = common::quickstart(d.territories.clone()).await;
    let mut plans = PlanServiceClient::new(d.plans.clone());
    let start = format!("{}-01-01", chrono::Utc::now().year() + 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let plan = loop {
        match plans
            .create_plan(plans_pb::CreatePlanRequest {
                territory_id: territory.id.clone(),
                title: "Plan".into(),
                start_date: start.clone(),
                request_id: "e2e".into(),
            })
            .await
        {
            Ok(r) => break r.into_inner().plan.unwrap(),
            Err(s) if s.code() == tonic::Code::NotFound => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "territory never reached plans"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    let mut meetings = SteeringMeetingServiceClient::new(d.plans.clone());
    let year = chrono::Utc::now().year() + 1;
    let meeting = meetings
        .schedule_steering_meeting(plans_pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: format!("{year}-03-30T10:00"),
            end_local: format!("{year}-03-30T12:00"),
            place: "Hôtel de ville de Saint-Étienne".into(),
            video_link: String::new(),
            agenda: "Lancement du plan d'engagement".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();

    let wait_for = |count: usize| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = smtp.messages();
            if got.len() >= count {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} e-mails not received"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let got = wait_for(1).await;
    let mail = mailparse::parse_mail(&got[0]).unwrap();
    let subject = mail
        .headers
        .iter()
        .find(|h| h.get_key() == "Subject")
        .unwrap()
        .get_value();
    let to = mail
        .headers
        .iter()
        .find(|h| h.get_key() == "To")
        .unwrap()
        .get_value();
    assert!(to.contains(common::EMAIL), "{to}");
    assert!(
        subject.starts_with("Invitation : comité de pilotage de Saint-Étienne"),
        "{subject}"
    );
    let body = decoded(&got[0]);
    assert!(body.contains("METHOD:REQUEST"), "{body}");
    assert!(body.contains(&format!("UID:{}@", meeting.id)));
    assert!(body.contains("DTSTART;TZID=Europe/Paris:"));

    meetings
        .cancel_steering_meeting(plans_pb::CancelSteeringMeetingRequest {
            id: meeting.id.clone(),
            etag: meeting.etag.clone(),
            reason: "Report des élections".into(),
        })
        .await
        .unwrap();
    let got = wait_for(2).await;
    let cancellation = got
        .iter()
        .map(|m| decoded(m))
        .find(|m| m.contains("METHOD:CANCEL"))
        .expect("a cancellation");
    assert!(cancellation.contains(&format!("UID:{}@", meeting.id)));
    assert!(cancellation.contains("SEQUENCE:1"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2, "each once");
    for p in d.platforms {
        p.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn in_one_process_as_tde_dev() {
    let smtp = SmtpServer::start();
    a_scheduled_meeting_reaches_the_steering_body(one_process(&smtp).await, &smtp).await;
}

#[tokio::test]
async fn as_three_services_on_postgres_and_jetstream() {
    let smtp = SmtpServer::start();
    a_scheduled_meeting_reaches_the_steering_body(three_processes(&smtp).await, &smtp).await;
}
