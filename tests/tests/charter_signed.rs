//! The first flow across two services: a plan's charter signed in the plans service moves
//! the territory to charter_signed in the territories service, once, however often the event
//! is delivered. Run as two processes on PostgreSQL and JetStream (as on Kubernetes), and as
//! one process with the in-process bus (as `tde dev`).

mod common;

use std::time::Duration;

use chrono::Datelike as _;
use tde::platform::{self, Role};
use tde_proto::plans::v1 as plans_pb;
use tde_proto::plans::v1::plan_service_client::PlanServiceClient;
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::AuthChannel;
use tde_runtime::bus::{ConsumerSpec, Envelope};
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, channel, unique_name};

struct Topology {
    env: TestEnv,
    platforms: Vec<RunningPlatform>,
    territories: AuthChannel,
    plans: AuthChannel,
}

/// `tde serve territories` and `tde serve plans`: two processes, one database each.
async fn two_processes() -> Topology {
    let env = TestEnv::postgres(&["territories", "plans"]).await;
    let territories = env
        .start(platform::modules(&[Role::Territories]))
        .await
        .expect("territories starts");
    let plans = env
        .start(platform::modules(&[Role::Plans]))
        .await
        .expect("plans starts");
    Topology {
        territories: channel(territories.local_addr).await,
        plans: channel(plans.local_addr).await,
        platforms: vec![territories, plans],
        env,
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
        plans: ch,
        platforms: vec![running],
        env,
    }
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

async fn the_signed_charter_moves_the_territory(topology: Topology) {
    let territory = common::quickstart(topology.territories.clone()).await;
    assert_eq!(territory.stage, pb::Stage::Diagnostic as i32);
    let mut territories = TerritoryServiceClient::new(topology.territories.clone());
    let mut plans = PlanServiceClient::new(topology.plans.clone());

    // The plans service learns of the territory from its events.
    let plan = create_plan_once_known(
        &plans,
        &territory.id,
        "Plan d'engagement de Saint-Étienne",
        "e2e-plan",
    )
    .await;
    assert_eq!(plan.territory_name, "Saint-Étienne");

    sign_the_charter(&mut plans, &plan).await;

    let moved = eventually("the territory reaches charter_signed", || {
        let mut territories = territories.clone();
        let id = territory.id.clone();
        async move {
            let t = territories
                .get_territory(pb::GetTerritoryRequest { id })
                .await
                .unwrap()
                .into_inner()
                .territory
                .unwrap();
            (t.stage == pb::Stage::CharterSigned as i32).then_some(t)
        }
    })
    .await;
    let last = moved.stage_history.last().unwrap();
    assert_eq!(last.actor, tde_territories::events::PLANS_ACTOR);
    assert!(last.reason.contains("charte"), "{}", last.reason);

    // The same CharterSigned delivered again, to the territories consumer's own inbox and to
    // a fresh one: no second move.
    let event = charter_signed_event(&topology).await;
    let ctx = topology
        .platforms
        .iter()
        .find_map(|p| p.service("territories"))
        .expect("territories runs");
    let handler = tde_territories::events::PlanEvents::new(
        tde_territories::api::territories::TerritoryCache::new(10),
    );
    let durable = ctx.namespace.durable("territories_plans");
    for consumer in [durable.as_str(), "another_inbox"] {
        tde_runtime::inbox::process(&ctx.db, consumer, &handler, &event)
            .await
            .expect("processed");
    }
    let after = territories
        .get_territory(pb::GetTerritoryRequest {
            id: territory.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(after.stage, pb::Stage::CharterSigned as i32);
    assert_eq!(after.etag, moved.etag, "unchanged");
    assert_eq!(after.stage_history.len(), moved.stage_history.len());

    for p in topology.platforms {
        p.shutdown().await.unwrap();
    }
}

/// Creates the plan of `territory_id` as soon as the plans service knows the territory from
/// its events.
async fn create_plan_once_known(
    plans: &PlanServiceClient<AuthChannel>,
    territory_id: &str,
    title: &str,
    request_id: &str,
) -> plans_pb::Plan {
    let start = format!("{}-01-01", chrono::Utc::now().year() + 1);
    eventually("the plans service knows the territory", || {
        let mut plans = plans.clone();
        let request = plans_pb::CreatePlanRequest {
            territory_id: territory_id.to_string(),
            title: title.into(),
            start_date: start.clone(),
            request_id: request_id.into(),
        };
        async move {
            match plans.create_plan(request).await {
                Ok(r) => r.into_inner().plan,
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => panic!("{s:?}"),
            }
        }
    })
    .await
}

/// A charter with one signatory, signed: the plan is active and CharterSigned published.
async fn sign_the_charter(plans: &mut PlanServiceClient<AuthChannel>, plan: &plans_pb::Plan) {
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
    let signed = plans
        .sign_charter(plans_pb::SignCharterRequest {
            plan_id: plan.id.clone(),
            etag: plan.etag.clone(),
            version_number: 1,
            signatory_index: 0,
            signed_on: chrono::Utc::now().date_naive().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(signed.fully_signed);
}

/// The CharterSigned event as it travels on the plans stream.
async fn charter_signed_event(topology: &Topology) -> Envelope {
    let ns = &topology
        .platforms
        .iter()
        .find_map(|p| p.service("plans"))
        .expect("plans runs")
        .namespace;
    let stream = ns.stream("plans");
    let mut sub = topology
        .env
        .bus
        .subscribe(&ConsumerSpec {
            stream: stream.name,
            durable_name: ns.durable(&unique_name("e2e")),
            filter_subjects: vec![ns.subject("plans", "plan.charter_signed")],
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
        })
        .await
        .expect("subscribe");
    let delivery = tokio::time::timeout(Duration::from_secs(20), sub.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("no bus error");
    let envelope = delivery.envelope.clone();
    delivery.ack().await.expect("ack");
    envelope
}

#[tokio::test]
async fn across_two_processes_on_postgres_and_jetstream() {
    the_signed_charter_moves_the_territory(two_processes().await).await;
}

#[tokio::test]
async fn in_one_process_as_tde_dev() {
    the_signed_charter_moves_the_territory(one_process().await).await;
}

/// `tde dev` stopped right after a charter is signed and started again: the territory still
/// reaches charter_signed. The in-process bus dies with the process; the event comes back
/// from the plans outbox at the next start. (The signature is made while only plans runs, so
/// that nothing can have consumed it before the stop.)
#[tokio::test]
async fn tde_dev_restarted_after_a_signature_still_moves_the_territory() {
    let env = TestEnv::sqlite().await;
    let start_with = |roles: &'static [Role]| {
        let mut settings = env.settings.clone();
        settings.bus.kind = tde_runtime::config::BusKind::Memory;
        async move {
            // A fresh in-process bus each time: a new process.
            let bus: std::sync::Arc<dyn tde_runtime::bus::EventBus> =
                std::sync::Arc::new(tde_runtime::bus::MemoryBus::new());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tde_runtime::server::start(
                settings,
                platform::modules(roles),
                Some(bus),
                Some(listener),
            )
            .await
            .expect("starts")
        }
    };
    let first = start_with(Role::ALL).await;
    let ch = channel(first.local_addr).await;
    let territory = common::quickstart(ch.clone()).await;
    let mut plans = PlanServiceClient::new(ch.clone());
    let plan = create_plan_once_known(&plans, &territory.id, "Plan", "").await;
    first.shutdown().await.unwrap();

    // Only plans: the signature's event has no consumer before the stop.
    let plans_only = start_with(&[Role::Plans]).await;
    plans = PlanServiceClient::new(channel(plans_only.local_addr).await);
    sign_the_charter(&mut plans, &plan).await;
    plans_only.shutdown().await.unwrap();

    let again = start_with(Role::ALL).await;
    let territories = TerritoryServiceClient::new(channel(again.local_addr).await);
    eventually(
        "the territory reaches charter_signed after the restart",
        || {
            let mut territories = territories.clone();
            let id = territory.id.clone();
            async move {
                let t = territories
                    .get_territory(pb::GetTerritoryRequest { id })
                    .await
                    .unwrap()
                    .into_inner()
                    .territory
                    .unwrap();
                (t.stage == pb::Stage::CharterSigned as i32).then_some(())
            }
        },
    )
    .await;
    again.shutdown().await.unwrap();
}

/// Erasure reaches every copy: a person who is only a charter signatory (no contact of any
/// territory) is erased from the plan, and a contact's address leaves the outbox rows that
/// carried it, so that no replay hands it out again.
#[tokio::test]
async fn erasure_reaches_a_signatory_and_the_published_rosters() {
    use sea_orm::ConnectionTrait as _;
    use tde_proto::territories::v1::personal_data_service_client::PersonalDataServiceClient;
    let topology = one_process().await;
    let territory = common::quickstart(topology.territories.clone()).await;
    let mut plans = PlanServiceClient::new(topology.plans.clone());
    let plan = create_plan_once_known(&plans, &territory.id, "Plan", "").await;
    let signatory = "prefete@loire.gouv.fr";
    plans
        .add_charter_version(plans_pb::AddCharterVersionRequest {
            plan_id: plan.id.clone(),
            etag: plan.etag.clone(),
            document_ref: "ged://chartes/42218/v1".into(),
            content_sha256: "5e".repeat(32),
            change_summary: String::new(),
            signatories: vec![plans_pb::Signatory {
                name: "Préfète de la Loire".into(),
                role: "préfète".into(),
                email: signatory.into(),
                signed_on: String::new(),
            }],
        })
        .await
        .unwrap();
    let mut rgpd = PersonalDataServiceClient::new(topology.territories.clone());
    for email in [signatory, common::EMAIL] {
        rgpd.erase_personal_data(pb::ErasePersonalDataRequest {
            email: email.into(),
        })
        .await
        .unwrap();
    }
    eventually("the signatory is erased from the plan", || {
        let mut plans = plans.clone();
        let id = plan.id.clone();
        async move {
            let p = plans
                .get_plan(plans_pb::GetPlanRequest { id })
                .await
                .unwrap()
                .into_inner()
                .plan
                .unwrap();
            let versions = p.charter.unwrap().versions;
            (!versions[0].signatories[0].email.contains("loire")).then_some(())
        }
    })
    .await;
    let ctx = topology.platforms[0].service("territories").unwrap();
    let rows = ctx
        .db
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            ctx.db.get_database_backend(),
            "SELECT event_id FROM outbox_events WHERE published_at IS NOT NULL AND instr(payload, ?) > 0",
            [common::EMAIL.as_bytes().to_vec().into()],
        ))
        .await
        .unwrap();
    assert!(rows.is_empty(), "published rosters still carry the address");
    for p in topology.platforms {
        p.shutdown().await.unwrap();
    }
}
