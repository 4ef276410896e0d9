//! Shared set-up of the plans tests: the service started through the runtime's start-up path
//! on a fresh database, and the territory events the territories service would publish.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tde_plans::PlansModule;
use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::action_service_client::ActionServiceClient;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::plans::v1::steering_meeting_service_client::SteeringMeetingServiceClient;
use tde_proto::territories::v1 as tpb;
use tde_runtime::auth::AuthChannel as Channel;
use tde_runtime::auth::TokenSpec;
use tde_runtime::bus::{Envelope, Subscription};
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, Topology, channel, channel_as};

pub struct App {
    pub env: TestEnv,
    pub platform: RunningPlatform,
    pub channel: Channel,
}

impl App {
    pub async fn start(topology: Topology) -> Self {
        let env = TestEnv::new(topology, &["plans"]).await;
        let platform = env
            .start(vec![Arc::new(PlansModule)])
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
        self.platform.service("plans").expect("plans runs")
    }

    pub fn plans(&self) -> PlanServiceClient<Channel> {
        PlanServiceClient::new(self.channel.clone())
    }

    pub fn actions(&self) -> ActionServiceClient<Channel> {
        ActionServiceClient::new(self.channel.clone())
    }

    pub fn meetings(&self) -> SteeringMeetingServiceClient<Channel> {
        SteeringMeetingServiceClient::new(self.channel.clone())
    }

    pub async fn plans_as(&self, spec: &TokenSpec) -> PlanServiceClient<Channel> {
        PlanServiceClient::new(channel_as(self.platform.local_addr, spec).await)
    }

    pub async fn meetings_as(&self, spec: &TokenSpec) -> SteeringMeetingServiceClient<Channel> {
        SteeringMeetingServiceClient::new(channel_as(self.platform.local_addr, spec).await)
    }

    /// Publishes a territory event as the territories service would.
    pub async fn publish_territory_event(&self, envelope: Envelope) {
        let ns = &self.ctx().namespace;
        self.env
            .bus
            .ensure_stream(&ns.stream("territories"))
            .await
            .expect("stream");
        self.env.bus.publish(&[envelope]).await.expect("published");
    }

    pub fn territory_event(
        &self,
        aggregate_id: &str,
        suffix: &str,
        event_type: &str,
        message: &impl prost::Message,
    ) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject: self.ctx().namespace.subject("territories", suffix),
            event_type: event_type.into(),
            source: "/tde/territories".into(),
            time: Utc::now(),
            aggregate_id: aggregate_id.into(),
            payload: prost::Message::encode_to_vec(message).into(),
            traceparent: None,
        }
    }

    /// Registers a territory of région `region` in zone `time_zone` on the bus, and waits
    /// until the plans service knows it.
    pub async fn territory(&self, name: &str, region: &str, time_zone: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let event = self.territory_event(
            &id,
            "territory.registered",
            "tde.territories.v1.TerritoryRegistered",
            &tpb::TerritoryRegistered {
                territory: Some(tpb::Territory {
                    id: id.clone(),
                    kind: tpb::AuthorityKind::Commune as i32,
                    official_code: "42218".into(),
                    name: name.into(),
                    region_code: region.into(),
                    time_zone: time_zone.into(),
                    stage: tpb::Stage::Diagnostic as i32,
                    ..Default::default()
                }),
            },
        );
        self.publish_territory_event(event).await;
        self.wait_for_territory(&id).await;
        id
    }

    pub async fn wait_for_territory(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tde_plans::storage::find_territory(&self.ctx().db, id)
                .await
                .expect("read")
                .is_some()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "territory {id} never reached the plans service"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn create_plan(&self, territory_id: &str, start: &str) -> pb::Plan {
        self.plans()
            .create_plan(pb::CreatePlanRequest {
                territory_id: territory_id.into(),
                title: "Plan d'engagement".into(),
                start_date: start.into(),
                request_id: String::new(),
            })
            .await
            .expect("plan created")
            .into_inner()
            .plan
            .expect("plan")
    }

    /// A plan whose charter is fully signed (active).
    pub async fn active_plan(&self, territory_id: &str, start: &str) -> pb::Plan {
        let plan = self.create_plan(territory_id, start).await;
        let plan = self
            .plans()
            .add_charter_version(pb::AddCharterVersionRequest {
                plan_id: plan.id.clone(),
                etag: plan.etag.clone(),
                document_ref: "ged://chartes/1".into(),
                content_sha256: "ab".repeat(32),
                change_summary: "première version".into(),
                signatories: vec![pb::Signatory {
                    name: "Gaël Perdriau".into(),
                    role: "maire".into(),
                    email: "maire@saint-etienne.fr".into(),
                    signed_on: String::new(),
                }],
            })
            .await
            .expect("charter version")
            .into_inner()
            .plan
            .expect("plan");
        self.plans()
            .sign_charter(pb::SignCharterRequest {
                plan_id: plan.id.clone(),
                etag: plan.etag.clone(),
                version_number: 1,
                signatory_index: 0,
                signed_on: Utc::now().date_naive().to_string(),
            })
            .await
            .expect("signed")
            .into_inner()
            .plan
            .expect("plan")
    }

    /// A new durable consumer of the plans stream.
    pub async fn subscribe(&self) -> Box<dyn Subscription> {
        tde_runtime::testing::subscribe_to(self.env.bus.as_ref(), &self.ctx().namespace, "plans")
            .await
    }
}

pub use tde_runtime::testing::next_event;

/// The events of the stream until none arrives for a moment.
pub async fn drain(sub: &mut Box<dyn Subscription>) -> Vec<Envelope> {
    let mut events = Vec::new();
    while let Some(d) = next_event(sub, Duration::from_millis(1500)).await {
        events.push(d.envelope.clone());
        d.ack().await.expect("ack");
    }
    events
}

/// The bad fields of an INVALID_ARGUMENT status.
pub fn bad_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}
