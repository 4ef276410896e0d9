//! A plan year funded end to end, across plans and subsidies: the submitted year becomes a
//! request, a decision proposed and approved by two people commits it and schedules the
//! advance, the balance waits for the year's review recorded in the plans service, and then
//! pays the grant exactly. Run as separate processes on PostgreSQL and JetStream (as on
//! Kubernetes), and as one process with the in-process bus (as `tde dev`).

mod common;

use std::time::Duration;

use chrono::Datelike as _;
use tde::platform::{self, Role};
use tde_proto::plans::v1 as plans_pb;
use tde_proto::plans::v1::action_service_client::ActionServiceClient;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::envelope_service_client::EnvelopeServiceClient;
use tde_proto::subsidies::v1::ledger_service_client::LedgerServiceClient;
use tde_proto::subsidies::v1::payment_service_client::PaymentServiceClient;
use tde_proto::subsidies::v1::subsidy_service_client::SubsidyServiceClient;
use tde_runtime::auth::{AuthChannel, Role as CallerRole, TokenSpec};
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, channel, channel_as};

struct Topology {
    _env: TestEnv,
    platforms: Vec<RunningPlatform>,
    territories: AuthChannel,
    plans: AuthChannel,
    /// Subsidies, as the national team member who proposes…
    proposer: AuthChannel,
    /// …and as another one, who approves.
    approver: AuthChannel,
}

/// `tde serve territories`, `tde serve plans` and `tde serve subsidies`.
async fn separate_processes() -> Topology {
    let env = TestEnv::postgres(&["territories", "plans", "subsidies"]).await;
    let mut platforms = Vec::new();
    for role in [Role::Territories, Role::Plans, Role::Subsidies] {
        platforms.push(env.start(platform::modules(&[role])).await.expect("starts"));
    }
    let subsidies = platforms[2].local_addr;
    Topology {
        territories: channel(platforms[0].local_addr).await,
        plans: channel(platforms[1].local_addr).await,
        proposer: channel(subsidies).await,
        approver: channel_as(subsidies, &TokenSpec::new(CallerRole::National, "approver")).await,
        platforms,
        _env: env,
    }
}

/// `tde dev`: every service in one process.
async fn one_process() -> Topology {
    let env = TestEnv::sqlite().await;
    let running = env
        .start(platform::modules(Role::ALL))
        .await
        .expect("platform starts");
    let ch = channel(running.local_addr).await;
    Topology {
        territories: ch.clone(),
        plans: ch.clone(),
        proposer: ch,
        approver: channel_as(
            running.local_addr,
            &TokenSpec::new(CallerRole::National, "approver"),
        )
        .await,
        platforms: vec![running],
        _env: env,
    }
}

#[tokio::test]
async fn a_plan_year_is_funded_end_to_end_in_separate_processes() {
    a_plan_year_is_funded_end_to_end(separate_processes().await).await
}

#[tokio::test]
async fn a_plan_year_is_funded_end_to_end_in_one_process() {
    a_plan_year_is_funded_end_to_end(one_process().await).await
}

async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not in time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The year-1 subsidy of `plan_id` once `ready` holds for it.
async fn subsidy_when(
    client: &SubsidyServiceClient<AuthChannel>,
    plan_id: &str,
    what: &str,
    ready: impl Fn(&pb::Subsidy) -> bool,
) -> pb::Subsidy {
    eventually(what, || {
        let mut client = client.clone();
        let plan_id = plan_id.to_string();
        let ready = &ready;
        async move {
            client
                .list_subsidies(pb::ListSubsidiesRequest {
                    plan_id,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .subsidies
                .into_iter()
                .find(|s| ready(s))
        }
    })
    .await
}

async fn a_plan_year_is_funded_end_to_end(topology: Topology) {
    let territory = common::quickstart(topology.territories.clone()).await;
    let mut plans = PlanServiceClient::new(topology.plans.clone());
    let y = chrono::Utc::now().year() + 1;
    let plan = eventually("the plans service knows the territory", || {
        let mut plans = plans.clone();
        let request = plans_pb::CreatePlanRequest {
            territory_id: territory.id.clone(),
            title: "Plan d'engagement".into(),
            start_date: format!("{y}-01-01"),
            request_id: "e2e-subsidy-plan".into(),
        };
        async move {
            match plans.create_plan(request).await {
                Ok(r) => r.into_inner().plan,
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await;
    let plan = plans
        .add_charter_version(plans_pb::AddCharterVersionRequest {
            plan_id: plan.id.clone(),
            etag: plan.etag.clone(),
            document_ref: "ged://chartes/42218/v1".into(),
            content_sha256: "5e".repeat(32),
            change_summary: String::new(),
            signatories: vec![plans_pb::Signatory {
                name: "Maire de Saint-Étienne".into(),
                role: "maire".into(),
                email: String::new(),
                signed_on: String::new(),
            }],
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    plans
        .sign_charter(plans_pb::SignCharterRequest {
            plan_id: plan.id.clone(),
            etag: plan.etag.clone(),
            version_number: 1,
            signatory_index: 0,
            signed_on: chrono::Utc::now().date_naive().to_string(),
        })
        .await
        .unwrap();
    let mut actions = ActionServiceClient::new(topology.plans.clone());
    for (title, budget) in [
        ("Formation des élus", 1_250_050),
        ("Atelier citoyen", 800_001),
    ] {
        actions
            .create_action(plans_pb::CreateActionRequest {
                action: Some(plans_pb::Action {
                    plan_id: plan.id.clone(),
                    year: 1,
                    kind: plans_pb::ActionKind::Training as i32,
                    title: title.into(),
                    audiences: vec![plans_pb::Audience::ElectedOfficials as i32],
                    planned_start: format!("{y}-02-01"),
                    planned_end: format!("{y}-03-31"),
                    budget_cents: budget,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();
    }
    plans
        .submit_plan_year(plans_pb::SubmitPlanYearRequest {
            plan_id: plan.id.clone(),
            etag: String::new(),
            year: 1,
        })
        .await
        .unwrap();

    // The submitted year becomes a request for its frozen budget.
    let proposer = SubsidyServiceClient::new(topology.proposer.clone());
    let requested = subsidy_when(&proposer, &plan.id, "the request", |_| true).await;
    assert_eq!(requested.requested_cents, 2_050_051);
    assert_eq!(requested.territory_name, "Saint-Étienne");
    assert_eq!(requested.status, pb::SubsidyStatus::Requested as i32);

    EnvelopeServiceClient::new(topology.approver.clone())
        .create_envelope(pb::CreateEnvelopeRequest {
            budget_year: y,
            region_code: String::new(),
            amount_cents: 100_000_000,
            advance_percent: 0,
            reason: "loi de finances initiale".into(),
            act_reference: format!("LFI {y}"),
            request_id: String::new(),
        })
        .await
        .unwrap();
    proposer
        .clone()
        .propose_decision(pb::ProposeDecisionRequest {
            id: requested.id.clone(),
            etag: requested.etag.clone(),
            amount_cents: requested.requested_cents,
            legal_act: Some(pb::LegalAct {
                kind: pb::LegalActKind::Convention as i32,
                reference: format!("CONV-{y}-42218"),
                date: format!("{y}-01-15"),
            }),
            beneficiary_siret: "21750001600019".into(),
            budget_year: y,
            commitment_number: String::new(),
            comment: String::new(),
        })
        .await
        .unwrap();
    let approved = SubsidyServiceClient::new(topology.approver.clone())
        .approve_decision(pb::ApproveDecisionRequest {
            id: requested.id.clone(),
            etag: String::new(),
            commitment_number: "EJ-2100099999".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let advance = approved.advance.unwrap();
    assert_eq!(advance.amount_cents, 1_025_026, "50 %, rounded half up");

    let mut payments = PaymentServiceClient::new(topology.approver.clone());
    let paying = payments.clone();
    let pay = |id: String| {
        let mut payments = paying.clone();
        async move {
            payments
                .authorise_payment(pb::AuthorisePaymentRequest {
                    id: id.clone(),
                    etag: String::new(),
                })
                .await
                .unwrap();
            payments
                .record_payment(pb::RecordPaymentRequest {
                    id,
                    outcome: pb::PaymentOutcome::Paid as i32,
                    reference: "VIR".into(),
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    };
    pay(advance.id.clone()).await;
    let balance = pb::SchedulePaymentRequest {
        subsidy_id: requested.id.clone(),
        kind: pb::PaymentKind::Balance as i32,
        request_id: String::new(),
    };
    let refused = payments
        .schedule_payment(balance.clone())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("review (bilan)"),
        "{}",
        refused.message()
    );

    // The year's review, recorded in the plans service, lets the balance be paid.
    plans
        .record_review(plans_pb::RecordReviewRequest {
            plan_id: plan.id.clone(),
            etag: String::new(),
            year: 1,
            indicators: vec![plans_pb::Indicator {
                name: "élus formés".into(),
                value: 12.0,
                unit: "personnes".into(),
                baseline: None,
            }],
            narrative: "Une première année riche.".into(),
        })
        .await
        .unwrap();
    subsidy_when(&proposer, &plan.id, "the review", |s| s.reviewed).await;
    let balance = payments
        .schedule_payment(balance)
        .await
        .unwrap()
        .into_inner()
        .payment
        .unwrap();
    assert_eq!(balance.amount_cents, 2_050_051 - 1_025_026);
    pay(balance.id).await;
    let paid = subsidy_when(&proposer, &plan.id, "the balance paid", |s| {
        s.remaining_cents == 0
    })
    .await;
    assert_eq!(paid.paid_cents, 2_050_051);
    let report = LedgerServiceClient::new(topology.approver.clone())
        .reconcile(pb::ReconcileRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(report.entries_read, 3);
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );

    for p in topology.platforms {
        p.shutdown().await.unwrap();
    }
}
