//! Shared set-up of the subsidies tests: the service started through the runtime's start-up
//! path on a fresh database, the territory and plans events the other services would
//! publish, and clients calling as two different people of the national team (four eyes).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tde_proto::plans::v1 as plans_pb;
use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::envelope_service_client::EnvelopeServiceClient;
use tde_proto::subsidies::v1::ledger_service_client::LedgerServiceClient;
use tde_proto::subsidies::v1::payment_service_client::PaymentServiceClient;
use tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient;
use tde_proto::territories::v1 as tpb;
use tde_runtime::auth::AuthChannel as Channel;
use tde_runtime::auth::{Role, TokenSpec};
use tde_runtime::bus::{Envelope, Subscription};
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, Topology, channel_as};
use tde_subsidies::SubsidiesModule;

/// A beneficiary SIRET that passes the Luhn check (Ville de Paris).
pub const SIRET: &str = "21750001600019";

pub struct App {
    pub env: TestEnv,
    pub platform: RunningPlatform,
    /// The national team member who proposes.
    pub proposer: Channel,
    /// Another one, who approves.
    pub approver: Channel,
}

pub fn national(subject: &str) -> TokenSpec {
    TokenSpec::new(Role::National, subject).client("tde-tests")
}

impl App {
    pub async fn start(topology: Topology) -> Self {
        let env = TestEnv::new(topology, &["subsidies"]).await;
        let platform = env
            .start(vec![Arc::new(SubsidiesModule)])
            .await
            .expect("server starts");
        let proposer = channel_as(platform.local_addr, &national("alice")).await;
        let approver = channel_as(platform.local_addr, &national("bob")).await;
        Self {
            env,
            platform,
            proposer,
            approver,
        }
    }

    pub fn ctx(&self) -> &tde_runtime::ServiceContext {
        self.platform.service("subsidies").expect("subsidies runs")
    }

    pub fn envelopes(&self) -> EnvelopeServiceClient<Channel> {
        EnvelopeServiceClient::new(self.approver.clone())
    }

    pub fn subsidies(&self) -> SubsidyServiceClient<Channel> {
        SubsidyServiceClient::new(self.proposer.clone())
    }

    pub fn approvals(&self) -> SubsidyServiceClient<Channel> {
        SubsidyServiceClient::new(self.approver.clone())
    }

    pub fn payments(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.approver.clone())
    }

    pub fn ledger(&self) -> LedgerServiceClient<Channel> {
        LedgerServiceClient::new(self.approver.clone())
    }

    pub async fn channel_as(&self, spec: &TokenSpec) -> Channel {
        channel_as(self.platform.local_addr, spec).await
    }

    /// Publishes an event of `service` as that service would.
    pub async fn publish(&self, envelope: Envelope) {
        let service = envelope.source.trim_start_matches("/tde/").to_string();
        let ns = &self.ctx().namespace;
        self.env
            .bus
            .ensure_stream(&ns.stream(&service))
            .await
            .expect("stream");
        self.env.bus.publish(&[envelope]).await.expect("published");
    }

    pub fn event(
        &self,
        service: &str,
        aggregate_id: &str,
        suffix: &str,
        event_type: &str,
        message: &impl prost::Message,
    ) -> Envelope {
        Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject: self.ctx().namespace.subject(service, suffix),
            event_type: event_type.into(),
            source: format!("/tde/{service}"),
            time: Utc::now(),
            aggregate_id: aggregate_id.into(),
            payload: prost::Message::encode_to_vec(message).into(),
            traceparent: None,
        }
    }

    /// Registers a territory of région `region` on the bus, and waits until subsidies knows
    /// it.
    pub async fn territory(&self, name: &str, region: &str) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        let event = self.event(
            "territories",
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
                    time_zone: "Europe/Paris".into(),
                    stage: tpb::Stage::CharterSigned as i32,
                    ..Default::default()
                }),
            },
        );
        self.publish(event).await;
        let db = self.ctx().db.clone();
        let found = id.clone();
        wait_for("the territory", move || {
            let db = db.clone();
            let id = found.clone();
            async move {
                tde_subsidies::storage::find_territory(&db, &id)
                    .await
                    .expect("read")
                    .is_some()
            }
        })
        .await;
        id
    }

    /// The `plan.year_submitted` event of year `year` of `plan_id`, for 2027.
    pub fn year_submitted(
        &self,
        plan_id: &str,
        territory_id: &str,
        year: i32,
        submission: i32,
        budget_cents: i64,
    ) -> Envelope {
        self.event(
            "plans",
            plan_id,
            "plan.year_submitted",
            "tde.plans.v1.PlanYearSubmitted",
            &plans_pb::PlanYearSubmitted {
                plan_id: plan_id.into(),
                territory_id: territory_id.into(),
                year,
                year_start_date: format!("{}-01-01", 2026 + year),
                year_end_date: format!("{}-01-01", 2027 + year),
                submission_number: submission,
                amendment: submission > 1,
                budget_cents,
                actions: Vec::new(),
                fingerprint: "ab".repeat(32),
                submit_time: Some(tde_runtime::api::timestamp(Utc::now())),
                actor: "lead".into(),
            },
        )
    }

    pub fn review_recorded(&self, plan_id: &str, territory_id: &str, year: i32) -> Envelope {
        self.event(
            "plans",
            plan_id,
            "plan.review_recorded",
            "tde.plans.v1.ReviewRecorded",
            &plans_pb::ReviewRecorded {
                plan_id: plan_id.into(),
                territory_id: territory_id.into(),
                year,
                r#final: false,
                indicators: 2,
                record_time: Some(tde_runtime::api::timestamp(Utc::now())),
            },
        )
    }

    pub fn plan_stopped(&self, plan_id: &str, territory_id: &str) -> Envelope {
        self.event(
            "plans",
            plan_id,
            "plan.status_changed",
            "tde.plans.v1.PlanStatusChanged",
            &plans_pb::PlanStatusChanged {
                plan_id: plan_id.into(),
                territory_id: territory_id.into(),
                from_status: plans_pb::PlanStatus::Active as i32,
                to_status: plans_pb::PlanStatus::Stopped as i32,
                reason: "retrait de la commune".into(),
                change_time: Some(tde_runtime::api::timestamp(Utc::now())),
                actor: "national".into(),
            },
        )
    }

    /// The subsidies of `plan_id`, as the API lists them.
    pub async fn subsidies_of(&self, plan_id: &str) -> Vec<pb::Subsidy> {
        self.subsidies()
            .list_subsidies(pb::ListSubsidiesRequest {
                plan_id: plan_id.into(),
                ..Default::default()
            })
            .await
            .expect("listed")
            .into_inner()
            .subsidies
    }

    /// Waits until `plan_id` has a subsidy that `ready` accepts, and returns it.
    pub async fn wait_for_subsidy(
        &self,
        plan_id: &str,
        ready: impl Fn(&pb::Subsidy) -> bool,
    ) -> pb::Subsidy {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self
                .subsidies_of(plan_id)
                .await
                .into_iter()
                .find(|s| ready(s))
            {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "plan {plan_id} never had the expected subsidy: {:?}",
                self.subsidies_of(plan_id).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens the national envelope of 2027 with `amount_cents`.
    pub async fn envelope(&self, amount_cents: i64) -> pb::Envelope {
        self.envelopes()
            .create_envelope(pb::CreateEnvelopeRequest {
                budget_year: 2027,
                region_code: String::new(),
                amount_cents,
                advance_percent: 0,
                reason: "loi de finances initiale".into(),
                act_reference: "LFI 2027, programme 112".into(),
                request_id: String::new(),
            })
            .await
            .expect("envelope opened")
            .into_inner()
            .envelope
            .expect("envelope")
    }

    pub fn proposal(s: &pb::Subsidy, amount_cents: i64) -> pb::ProposeDecisionRequest {
        pb::ProposeDecisionRequest {
            id: s.id.clone(),
            etag: String::new(),
            amount_cents,
            legal_act: Some(pb::LegalAct {
                kind: pb::LegalActKind::Convention as i32,
                reference: "CONV-2027-042".into(),
                date: "2027-02-01".into(),
            }),
            beneficiary_siret: SIRET.into(),
            budget_year: 2027,
            commitment_number: String::new(),
            comment: String::new(),
        }
    }

    /// A new durable consumer of the subsidies stream.
    pub async fn subscribe(&self) -> Box<dyn Subscription> {
        tde_runtime::testing::subscribe_to(
            self.env.bus.as_ref(),
            &self.ctx().namespace,
            "subsidies",
        )
        .await
    }
}

/// Waits (20 s at most) until `check` holds.
pub async fn wait_for<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what} never came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The events published until none comes for a second.
pub async fn drain(sub: &mut Box<dyn Subscription>) -> Vec<Envelope> {
    let mut out = Vec::new();
    while let Some(d) = tde_runtime::testing::next_event(sub, Duration::from_secs(1)).await {
        out.push(d.envelope.clone());
        d.ack().await.expect("ack");
    }
    out
}

/// The description of a FAILED_PRECONDITION's precondition failure, and its kind.
pub fn precondition(status: &tonic::Status) -> (String, String) {
    use tonic_types::StatusExt as _;
    let details = status.get_error_details();
    let failure = details
        .precondition_failure()
        .and_then(|p| p.violations.first().cloned())
        .expect("a precondition failure");
    (failure.r#type, failure.description)
}

/// The fields an INVALID_ARGUMENT names, in order.
pub fn fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}
