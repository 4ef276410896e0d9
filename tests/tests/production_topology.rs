//! `tde serve territories` and `tde serve plans` as on Kubernetes: the shipped configuration
//! files, overridden by `TDE_` variables, PostgreSQL and NATS JetStream — through the same
//! start-up as the binary.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use futures_lite::next_event;
use tde::platform::{self, Role};
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::bus::{ConsumerSpec, EventBus, JetStreamBus, Namespace};
use tde_runtime::testing::{
    KeySetServer, TestDatabase, channel, nats_url, test_issuer, unique_name,
};

fn config_file() -> PathBuf {
    shipped("territories")
}

fn role_of(service: &str) -> Role {
    <Role as clap::ValueEnum>::from_str(service, true).expect("a service of tde")
}

fn shipped(service: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/config/{service}.toml"))
}

/// What Kubernetes would set for one service's pod.
fn pod_env(idp: &KeySetServer, db: &TestDatabase, namespace: &str) -> HashMap<String, String> {
    [
        ("TDE_AUTH__JWKS_URL", idp.url.as_str()),
        ("TDE_AUTH__ISSUER", tde_runtime::auth::DEV_ISSUER),
        ("TDE_AUTH__AUDIENCE", tde_runtime::auth::DEV_AUDIENCE),
        ("TDE_DATABASE__URL", db.url.as_str()),
        ("TDE_BUS__NATS_URL", nats_url()),
        ("TDE_BUS__NAMESPACE", namespace),
        ("TDE_SERVER__LISTEN", "127.0.0.1:0"),
        ("TDE_SERVER__SHUTDOWN_DRAIN_MS", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test]
async fn serve_plans_beside_territories_from_the_shipped_configuration() {
    let (territories_db, plans_db) = (TestDatabase::create().await, TestDatabase::create().await);
    let namespace = unique_name("e");
    let idp = KeySetServer::start(test_issuer().jwks_json()).await;
    let load = |service: &str, db: &TestDatabase| {
        platform::load_settings(
            Some(&shipped(service)),
            &pod_env(&idp, db, &namespace),
            &[role_of(service)],
        )
        .expect("the shipped file loads")
    };
    let territories = platform::start(load("territories", &territories_db), &[Role::Territories])
        .await
        .unwrap();
    let plans = platform::start(load("plans", &plans_db), &[Role::Plans])
        .await
        .unwrap();
    let t = common::quickstart(channel(territories.local_addr).await).await;
    let mut client = tde_proto::plans::v1::plan_service_client::PlanServiceClient::new(
        channel(plans.local_addr).await,
    );
    // The territory reaches the plans service through JetStream; then it gets a plan.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let plan = loop {
        match client
            .create_plan(tde_proto::plans::v1::CreatePlanRequest {
                territory_id: t.id.clone(),
                title: "Plan d'engagement".into(),
                start_date: "2030-01-01".into(),
                request_id: "k8s".into(),
            })
            .await
        {
            Ok(r) => break r.into_inner().plan.expect("plan"),
            Err(s) if s.code() == tonic::Code::NotFound => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "territory never arrived"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    assert_eq!(plan.territory_name, "Saint-Étienne");
    plans.shutdown().await.unwrap();
    territories.shutdown().await.unwrap();
}

#[tokio::test]
async fn serve_territories_from_the_shipped_configuration() {
    let db = TestDatabase::create().await;
    let namespace = unique_name("e");
    let metrics = format!("127.0.0.1:{}", tde_runtime::testing::free_port());
    // The identity provider's key set endpoint.
    let idp = KeySetServer::start(test_issuer().jwks_json()).await;
    let mut env = pod_env(&idp, &db, &namespace);
    env.insert("TDE_TELEMETRY__METRICS_LISTEN".into(), metrics);
    let settings = platform::load_settings(Some(&config_file()), &env, &[Role::Territories])
        .expect("the shipped file loads");
    assert!(
        !settings.server.reflection,
        "reflection is off outside tde dev"
    );
    let running = platform::start(settings, &[Role::Territories])
        .await
        .unwrap();

    // A consumer of another service, as plans and notifications will be.
    let bus = JetStreamBus::connect(nats_url(), Duration::from_secs(5))
        .await
        .unwrap();
    let ns = Namespace::new(namespace.clone());
    let stream = ns.stream("territories");
    bus.ensure_stream(&stream).await.unwrap();
    let mut sub = bus
        .subscribe(&ConsumerSpec {
            stream: stream.name,
            durable_name: ns.durable("e2e"),
            filter_subjects: vec![ns.subject("territories", "territory.>")],
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
        })
        .await
        .unwrap();

    let ch = channel(running.local_addr).await;
    let t = common::quickstart(ch.clone()).await;

    let mut kinds = Vec::new();
    for _ in 0..3 {
        let d = next_event(&mut sub).await;
        kinds.push(d.envelope.subject.rsplit('.').next().unwrap().to_string());
        assert_eq!(d.envelope.aggregate_id, t.id);
        d.ack().await.unwrap();
    }
    assert_eq!(
        kinds,
        ["registered", "steering_body_changed", "stage_changed"]
    );

    // W3C trace context goes from the gRPC call into the event's NATS headers.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(pb::WithdrawTerritoryRequest {
        id: t.id.clone(),
        reason: "test".into(),
        etag: String::new(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    TerritoryServiceClient::new(ch)
        .withdraw_territory(request)
        .await
        .unwrap();
    for _ in 0..2 {
        let d = next_event(&mut sub).await;
        let tp = d.envelope.traceparent.clone().expect("traceparent header");
        assert!(tp.contains(trace_id), "{tp}");
        d.ack().await.unwrap();
    }
    running.shutdown().await.unwrap();
}

mod futures_lite {
    use std::time::Duration;

    use tde_runtime::bus::{Delivery, Subscription};

    pub async fn next_event(sub: &mut Box<dyn Subscription>) -> Delivery {
        tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .expect("an event in time")
            .expect("open")
            .expect("no bus error")
    }
}
