//! Background tasks under supervision: a consumer whose handler panics is restarted, health
//! reports the service NOT_SERVING meanwhile, and the event is processed after the restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait as _};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use tde_runtime::auth::MethodPolicy;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{ConsumerTask, EventHandler, HandlerError};
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::testing::{TestEnv, Topology, raw_channel};
use tde_runtime::{ServiceContext, ServiceModule};
use tonic::service::RoutesBuilder;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

struct Migrator;

#[async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut m: Vec<Box<dyn MigrationTrait>> = vec![
            Box::new(tde_runtime::migration::CreateOutboxAndInbox),
            Box::new(tde_runtime::migration::CreateAuditTrail),
        ];
        m.extend(tde_runtime::migration::later_shared_tables());
        m
    }
}

/// Panics on the first event it sees, then processes.
struct PanicsOnce {
    panicked: Arc<AtomicBool>,
    processed: Arc<AtomicUsize>,
}

#[async_trait]
impl EventHandler for PanicsOnce {
    async fn handle(&self, _: &DatabaseTransaction, _: &Envelope) -> Result<(), HandlerError> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("a bug in a handler");
        }
        self.processed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[derive(Clone)]
struct Supervised {
    panicked: Arc<AtomicBool>,
    processed: Arc<AtomicUsize>,
}

#[async_trait]
impl ServiceModule for Supervised {
    fn name(&self) -> &'static str {
        "supervised"
    }

    fn grpc_services(&self) -> &'static [&'static str] {
        &["tde.supervised.v1.Nothing"]
    }

    fn policies(&self) -> &'static [MethodPolicy] {
        &[]
    }

    async fn migrate(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        Migrator::up(db, None).await
    }

    fn add_routes(&self, _: &ServiceContext, _: &mut RoutesBuilder) {}

    fn consumers(&self, ctx: &ServiceContext) -> Vec<ConsumerTask> {
        vec![ConsumerTask::following(
            ctx,
            "supervised",
            "itself",
            Arc::new(PanicsOnce {
                panicked: self.panicked.clone(),
                processed: self.processed.clone(),
            }),
        )]
    }
}

async fn a_panicking_consumer_is_restarted_and_health_says_so(topology: Topology) {
    let mut env = TestEnv::new(topology, &["supervised"]).await;
    env.settings.bus.ack_wait_ms = 1_000;
    let module = Supervised {
        panicked: Arc::new(AtomicBool::new(false)),
        processed: Arc::new(AtomicUsize::new(0)),
    };
    let running = env.start(vec![Arc::new(module.clone())]).await.unwrap();
    let mut health = HealthClient::new(raw_channel(running.local_addr).await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "tde.supervised.v1.Nothing".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = statuses.clone();
    tokio::spawn(async move {
        while let Ok(Some(r)) = watch.message().await {
            seen.lock().unwrap().push(r.status());
        }
    });
    let ctx = running.service("supervised").unwrap();
    let txn = ctx.db.begin().await.unwrap();
    outbox::enqueue(
        &txn,
        vec![NewEvent::new(
            "supervised",
            "thing",
            "a",
            "thing.happened",
            "tde.test.v1.Thing",
            &"1".to_string(),
        )],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    ctx.outbox.wake();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while module.processed.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event is processed after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(module.panicked.load(Ordering::SeqCst));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let statuses = statuses.lock().unwrap().clone();
    let outage = statuses
        .iter()
        .position(|s| *s == ServingStatus::NotServing);
    assert!(
        outage.is_some_and(|at| statuses[at..].contains(&ServingStatus::Serving)),
        "health went NOT_SERVING, then SERVING again: {statuses:?}"
    );
    assert_eq!(module.processed.load(Ordering::SeqCst), 1, "processed once");
    running.shutdown().await.unwrap();
}

tde_runtime::on_both_topologies!(a_panicking_consumer_is_restarted_and_health_says_so);
