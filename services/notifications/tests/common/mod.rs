//! Shared set-up of the notifications tests: the service started through the runtime's
//! start-up path, a real SMTP server, and the territory and plans events the other services
//! would publish.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use tde_notifications::NotificationsModule;
use tde_notifications::testing::{SmtpServer, configure};
use tde_proto::notifications::v1 as pb;
use tde_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use tde_proto::plans::v1 as plans_pb;
use tde_proto::territories::v1 as tpb;
use tde_runtime::api::timestamp;
use tde_runtime::auth::AuthChannel as Channel;
use tde_runtime::bus::Envelope;
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, Topology, channel};

pub struct App {
    pub env: TestEnv,
    pub platform: RunningPlatform,
    pub channel: Channel,
}

/// A received e-mail, parsed.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub subject: String,
    pub message_id: String,
    pub text: String,
    pub html: String,
    /// The text/calendar part.
    pub calendar: String,
    pub method: String,
}

pub fn parse(raw: &[u8]) -> Received {
    let mail = mailparse::parse_mail(raw).expect("a MIME message");
    let header = |name: &str| {
        mail.headers
            .iter()
            .find(|h| h.get_key().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
            .unwrap_or_default()
    };
    let mut received = Received {
        to: header("To"),
        subject: header("Subject"),
        message_id: header("Message-ID"),
        text: String::new(),
        html: String::new(),
        calendar: String::new(),
        method: String::new(),
    };
    fn walk(part: &mailparse::ParsedMail<'_>, r: &mut Received) {
        let mime = part.ctype.mimetype.to_ascii_lowercase();
        let disposition = part.get_content_disposition().disposition;
        if part.subparts.is_empty() {
            let body = part.get_body().unwrap_or_default();
            match mime.as_str() {
                "text/plain" => r.text = body,
                "text/html" => r.html = body,
                "text/calendar" if disposition == mailparse::DispositionType::Inline => {
                    r.method = part.ctype.params.get("method").cloned().unwrap_or_default();
                    r.calendar = body;
                }
                _ => {}
            }
        }
        for sub in &part.subparts {
            walk(sub, r);
        }
    }
    walk(&mail, &mut received);
    received
}

impl App {
    pub async fn start(topology: Topology, smtp: &SmtpServer) -> Self {
        let mut env = TestEnv::new(topology, &["notifications"]).await;
        configure(&mut env, Some(smtp));
        Self::start_in(env).await
    }

    pub async fn start_in(env: TestEnv) -> Self {
        let platform = env
            .start(vec![Arc::new(NotificationsModule::default())])
            .await
            .expect("server starts");
        let channel = channel(platform.local_addr).await;
        Self {
            env,
            platform,
            channel,
        }
    }

    pub fn ctx(&self) -> &tde_runtime::ServiceContext {
        self.platform
            .service("notifications")
            .expect("notifications runs")
    }

    pub fn api(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.channel.clone())
    }

    async fn publish(
        &self,
        service: &str,
        suffix: &str,
        event_type: &str,
        aggregate: &str,
        message: &impl prost::Message,
    ) {
        let envelope = self.envelope(service, suffix, event_type, aggregate, message);
        self.publish_envelope(service, envelope).await;
    }

    /// An event as `service` publishes it (its own id: publishing it twice is a redelivery).
    pub fn envelope(
        &self,
        service: &str,
        suffix: &str,
        event_type: &str,
        aggregate: &str,
        message: &impl prost::Message,
    ) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject: self.ctx().namespace.subject(service, suffix),
            event_type: event_type.into(),
            source: format!("/tde/{service}"),
            time: Utc::now(),
            aggregate_id: aggregate.into(),
            payload: prost::Message::encode_to_vec(message).into(),
            traceparent: None,
        }
    }

    /// Publishes `envelope` on `service`'s stream.
    pub async fn publish_envelope(&self, service: &str, envelope: Envelope) {
        self.env
            .bus
            .ensure_stream(&self.ctx().namespace.stream(service))
            .await
            .expect("stream");
        self.env.bus.publish(&[envelope]).await.expect("published");
    }

    /// The territory's roster, as the territories service publishes it.
    pub async fn roster(
        &self,
        territory_id: &str,
        name: &str,
        zone: &str,
        members: &[(&str, &str)],
    ) {
        self.publish(
            "territories",
            "territory.steering_body_changed",
            "tde.territories.v1.SteeringBodyChanged",
            territory_id,
            &tpb::SteeringBodyChanged {
                territory_id: territory_id.into(),
                territory_name: name.into(),
                time_zone: zone.into(),
                steering_body: Some(tpb::SteeringBody {
                    name: format!("Comité de pilotage {name}"),
                    relies_on_existing_body: false,
                    members: members
                        .iter()
                        .map(|(n, e)| tpb::Person {
                            name: n.to_string(),
                            email: e.to_string(),
                            phone: String::new(),
                            role: "élu".into(),
                        })
                        .collect(),
                }),
                privileged_contact: None,
                operational_team: vec![],
            },
        )
        .await;
    }

    /// A meeting event as the plans service publishes it.
    pub async fn meeting_event(&self, kind: &str, m: &MeetingSpec) {
        let facts = Some(m.facts());
        let (suffix, event_type) = match kind {
            "scheduled" => ("meeting.scheduled", "tde.plans.v1.SteeringMeetingScheduled"),
            "rescheduled" => (
                "meeting.rescheduled",
                "tde.plans.v1.SteeringMeetingRescheduled",
            ),
            "cancelled" => ("meeting.cancelled", "tde.plans.v1.SteeringMeetingCancelled"),
            _ => ("meeting.held", "tde.plans.v1.SteeringMeetingHeld"),
        };
        match kind {
            "scheduled" => {
                self.publish(
                    "plans",
                    suffix,
                    event_type,
                    &m.id,
                    &plans_pb::SteeringMeetingScheduled { meeting: facts },
                )
                .await
            }
            "rescheduled" => {
                self.publish(
                    "plans",
                    suffix,
                    event_type,
                    &m.id,
                    &plans_pb::SteeringMeetingRescheduled {
                        meeting: facts,
                        previous_start_time: None,
                    },
                )
                .await
            }
            "cancelled" => {
                self.publish(
                    "plans",
                    suffix,
                    event_type,
                    &m.id,
                    &plans_pb::SteeringMeetingCancelled {
                        meeting: facts,
                        reason: "Préfète indisponible".into(),
                    },
                )
                .await
            }
            _ => {
                self.publish(
                    "plans",
                    suffix,
                    event_type,
                    &m.id,
                    &plans_pb::SteeringMeetingHeld {
                        meeting: facts,
                        decisions: vec![],
                    },
                )
                .await
            }
        }
    }

    pub async fn notifications(&self, meeting_id: &str) -> Vec<pb::Notification> {
        self.api()
            .list_notifications(pb::ListNotificationsRequest {
                meeting_id: meeting_id.into(),
                page_size: 500,
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .notifications
    }

    /// Makes the pending notifications of `meeting_id` due now (the tests' time travel).
    pub async fn make_due(&self, meeting_id: &str, kind: &str) {
        use sea_orm::{ConnectionTrait as _, Statement};
        let db = &self.ctx().db;
        let sql = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => {
                "UPDATE notifications SET next_attempt_at = $1, due_at = $1 WHERE meeting_id = $2 AND kind = $3 AND status = 'pending'"
            }
            _ => {
                "UPDATE notifications SET next_attempt_at = ?, due_at = ? WHERE meeting_id = ? AND kind = ? AND status = 'pending'"
            }
        };
        let now = Utc::now();
        let values: Vec<sea_orm::Value> = match db.get_database_backend() {
            sea_orm::DbBackend::Postgres => vec![now.into(), meeting_id.into(), kind.into()],
            _ => vec![now.into(), now.into(), meeting_id.into(), kind.into()],
        };
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await
        .expect("time travel");
    }
}

/// A meeting of the tests.
#[derive(Debug, Clone)]
pub struct MeetingSpec {
    pub id: String,
    pub sequence: i32,
    pub territory_id: String,
    pub territory_name: String,
    pub zone: String,
    pub start_local: NaiveDateTime,
    pub minutes: i64,
    pub place: String,
}

impl MeetingSpec {
    pub fn new(territory_id: &str, zone: &str, start_local: NaiveDateTime) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            sequence: 0,
            territory_id: territory_id.into(),
            territory_name: "Saint-Étienne".into(),
            zone: zone.into(),
            start_local,
            minutes: 120,
            place: "Hôtel de ville".into(),
        }
    }

    pub fn start(&self) -> DateTime<Utc> {
        let tz: chrono_tz::Tz = self.zone.parse().expect("zone");
        tz.from_local_datetime(&self.start_local)
            .single()
            .expect("a local time that exists")
            .with_timezone(&Utc)
    }

    fn facts(&self) -> plans_pb::MeetingFacts {
        let end_local = self.start_local + chrono::Duration::minutes(self.minutes);
        plans_pb::MeetingFacts {
            meeting_id: self.id.clone(),
            sequence: self.sequence,
            plan_id: "plan".into(),
            territory_id: self.territory_id.clone(),
            territory_name: self.territory_name.clone(),
            time_zone: self.zone.clone(),
            start_local: self.start_local.format("%Y-%m-%dT%H:%M").to_string(),
            end_local: end_local.format("%Y-%m-%dT%H:%M").to_string(),
            start_time: Some(timestamp(self.start())),
            end_time: Some(timestamp(
                self.start() + chrono::Duration::minutes(self.minutes),
            )),
            place: self.place.clone(),
            video_link: String::new(),
            agenda: "1. Lancement\n2. Programme".into(),
        }
    }
}

/// Waits until `check` holds on what the SMTP server received.
pub async fn wait_for_mail(
    smtp: &SmtpServer,
    what: &str,
    check: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Received> = smtp.messages().iter().map(|m| parse(m)).collect();
        if check(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time; received {:?}",
            got.iter().map(|r| (&r.to, &r.subject)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
