//! The transactional outbox and the inbox on real PostgreSQL (with JetStream) and on SQLite
//! (with the in-process bus).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{
    DatabaseConnection, DatabaseTransaction, EntityTrait, PaginatorTrait, TransactionTrait,
};
use sea_orm_migration::prelude::*;
use tde_runtime::bus::{ConsumerSpec, Envelope, EventBus, Namespace, Subscription};
use tde_runtime::config::OutboxSettings;
use tde_runtime::inbox::{self, EventHandler, HandlerError};
use tde_runtime::outbox::{self, NewEvent, OutboxRelay, OutboxWaker};
use tde_runtime::testing::{TestEnv, Topology, unique_name};
use tokio_util::sync::CancellationToken;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(tde_runtime::migration::CreateOutboxAndInbox)]
    }
}

struct Setup {
    env: TestEnv,
    db: DatabaseConnection,
    ns: Namespace,
}

async fn setup(topology: Topology) -> Setup {
    let env = TestEnv::new(topology, &["outbox"]).await;
    let db = tde_runtime::db::connect(&env.settings.database, "outbox")
        .await
        .unwrap();
    Migrator::up(&db, None).await.unwrap();
    let ns = Namespace::new(env.settings.bus.namespace.clone());
    Setup { env, db, ns }
}

fn event(aggregate: &str, n: u32) -> NewEvent {
    NewEvent::new(
        "outbox",
        "thing",
        aggregate,
        "thing.changed",
        "tde.test.v1.ThingChanged",
        &n.to_string(),
    )
}

fn relay(s: &Setup) -> OutboxRelay {
    OutboxRelay::new(
        "outbox",
        s.db.clone(),
        s.env.bus.clone(),
        s.ns.clone(),
        OutboxSettings {
            poll_interval_ms: 10,
            batch_size: 50,
            publish_timeout_ms: 2000,
            max_backoff_ms: 100,
        },
        OutboxWaker::default(),
    )
}

async fn subscribe(s: &Setup) -> Box<dyn Subscription> {
    let stream = s.ns.stream("outbox");
    s.env.bus.ensure_stream(&stream).await.unwrap();
    s.env
        .bus
        .subscribe(&ConsumerSpec {
            stream: stream.name,
            durable_name: s.ns.durable(&unique_name("c")),
            filter_subjects: vec![],
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
        })
        .await
        .unwrap()
}

async fn receive(sub: &mut Box<dyn Subscription>, count: usize) -> Vec<Envelope> {
    let mut out = Vec::new();
    while out.len() < count {
        let d = tokio::time::timeout(Duration::from_secs(20), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} events", out.len()))
            .unwrap()
            .unwrap();
        out.push(d.envelope.clone());
        d.ack().await.unwrap();
    }
    out
}

async fn a_rolled_back_change_publishes_nothing(topology: Topology) {
    let s = setup(topology).await;
    let txn = s.db.begin().await.unwrap();
    outbox::enqueue(&txn, vec![event("a", 1)]).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(outbox::backlog(&s.db).await.unwrap().events, 0);
    let txn = s.db.begin().await.unwrap();
    outbox::enqueue(&txn, vec![event("a", 2)]).await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(outbox::backlog(&s.db).await.unwrap().events, 1);
}

/// Two relays on one database (two replicas) publish every event once, in commit order.
async fn relays_publish_in_order_and_mark_after_ack(topology: Topology) {
    let s = setup(topology).await;
    let mut sub = subscribe(&s).await;
    let stop = CancellationToken::new();
    let relays = [
        tokio::spawn(relay(&s).run(stop.clone())),
        tokio::spawn(relay(&s).run(stop.clone())),
    ];
    for n in 0..120u32 {
        let txn = s.db.begin().await.unwrap();
        outbox::enqueue(
            &txn,
            vec![event(if n % 2 == 0 { "even" } else { "odd" }, n)],
        )
        .await
        .unwrap();
        txn.commit().await.unwrap();
    }
    let events = receive(&mut sub, 120).await;
    for aggregate in ["even", "odd"] {
        let seq: Vec<u32> = events
            .iter()
            .filter(|e| e.aggregate_id == aggregate)
            .map(|e| {
                let s: String = prost::Message::decode(e.payload.clone()).unwrap();
                s.parse().unwrap()
            })
            .collect();
        let mut sorted = seq.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(seq, sorted, "{aggregate}: in order, each once");
        assert_eq!(seq.len(), 60);
    }
    stop.cancel();
    for r in relays {
        r.await.unwrap();
    }
    assert_eq!(outbox::backlog(&s.db).await.unwrap().events, 0);
}

struct CountingHandler(Arc<AtomicUsize>);

#[async_trait]
impl EventHandler for CountingHandler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        // The effect: an event of our own, in the same transaction as the inbox record.
        outbox::enqueue(txn, vec![event_from(event)]).await?;
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn event_from(e: &Envelope) -> NewEvent {
    NewEvent::new(
        "outbox",
        "reaction",
        e.id.clone(),
        "reaction.done",
        "tde.test.v1.Reaction",
        &e.id,
    )
}

async fn a_redelivered_event_has_no_second_effect(topology: Topology) {
    let s = setup(topology).await;
    let count = Arc::new(AtomicUsize::new(0));
    let handler = CountingHandler(count.clone());
    let e = Envelope {
        id: "evt-1".into(),
        subject: "tde.other.thing.changed".into(),
        event_type: "tde.test.v1.ThingChanged".into(),
        source: "/tde/other".into(),
        time: chrono::Utc::now(),
        aggregate_id: "a".into(),
        payload: Default::default(),
        traceparent: None,
    };
    assert!(
        inbox::process(&s.db, "reactor", &handler, &e)
            .await
            .unwrap()
    );
    assert!(
        !inbox::process(&s.db, "reactor", &handler, &e)
            .await
            .unwrap()
    );
    assert!(
        inbox::process(&s.db, "another-consumer", &handler, &e)
            .await
            .unwrap(),
        "inboxes are per consumer"
    );
    assert_eq!(count.load(Ordering::SeqCst), 2);
    assert_eq!(
        outbox::entity::Entity::find().count(&s.db).await.unwrap(),
        2
    );
}

struct FailingHandler;

#[async_trait]
impl EventHandler for FailingHandler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        outbox::enqueue(txn, vec![event_from(event)]).await?;
        Err(HandlerError::Transient(anyhow::anyhow!("storage hiccup")))
    }
}

/// A failed effect leaves no inbox record and no partial write: the event is retried.
async fn a_failed_effect_leaves_nothing_behind(topology: Topology) {
    let s = setup(topology).await;
    let e = Envelope {
        id: "evt-2".into(),
        subject: "tde.other.thing.changed".into(),
        event_type: "t".into(),
        source: "/tde/other".into(),
        time: chrono::Utc::now(),
        aggregate_id: "a".into(),
        payload: Default::default(),
        traceparent: None,
    };
    assert!(
        inbox::process(&s.db, "reactor", &FailingHandler, &e)
            .await
            .is_err()
    );
    assert_eq!(
        outbox::entity::Entity::find().count(&s.db).await.unwrap(),
        0
    );
    let count = Arc::new(AtomicUsize::new(0));
    assert!(
        inbox::process(&s.db, "reactor", &CountingHandler(count.clone()), &e)
            .await
            .unwrap()
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn sqlite() {
                    super::$case(tde_runtime::testing::Topology::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$case(tde_runtime::testing::Topology::Postgres).await
                }
            }
        )*
    };
}

on_both!(
    a_rolled_back_change_publishes_nothing,
    relays_publish_in_order_and_mark_after_ack,
    a_redelivered_event_has_no_second_effect,
    a_failed_effect_leaves_nothing_behind,
);

#[allow(dead_code)]
fn assert_bus_is_object_safe(_: &dyn EventBus) {}

/// Fails its first attempt, then succeeds: the consumer retries, and the effect happens once.
struct FlakyHandler(Arc<AtomicUsize>, Arc<AtomicUsize>);

#[async_trait]
impl EventHandler for FlakyHandler {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "first attempt fails"
            )));
        }
        outbox::enqueue(txn, vec![event_from(event)]).await?;
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn a_consumer_retries_failures_and_applies_each_event_once(topology: Topology) {
    let s = setup(topology).await;
    let stream = s.ns.stream("outbox");
    s.env.bus.ensure_stream(&stream).await.unwrap();
    let (attempts, effects) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let task = inbox::ConsumerTask {
        spec: ConsumerSpec {
            stream: stream.name.clone(),
            durable_name: s.ns.durable("flaky"),
            filter_subjects: vec![s.ns.subject("outbox", "thing.>")],
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
        },
        handler: Arc::new(FlakyHandler(attempts.clone(), effects.clone())),
        retry_backoff: Duration::from_millis(20),
        source: None,
    };
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(inbox::run_consumer(
        s.db.clone(),
        s.env.bus.clone(),
        task,
        stop.clone(),
    ));
    let txn = s.db.begin().await.unwrap();
    outbox::enqueue(&txn, vec![event("a", 1), event("a", 2)])
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(relay(&s).run(relay_stop.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while effects.load(Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both events applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(effects.load(Ordering::SeqCst), 2, "each once");
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "one failure, retried");
    stop.cancel();
    relay_stop.cancel();
    consumer.await.unwrap();
    relay.await.unwrap();
}

on_both!(a_consumer_retries_failures_and_applies_each_event_once);
