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
use tde_runtime::dead_letter;
use tde_runtime::inbox::{self, EventHandler, HandlerError};
use tde_runtime::outbox::{self, NewEvent, OutboxRelay, OutboxWaker};
use tde_runtime::testing::{TestEnv, Topology, unique_name};
use tokio_util::sync::CancellationToken;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut migrations: Vec<Box<dyn MigrationTrait>> =
            vec![Box::new(tde_runtime::migration::CreateOutboxAndInbox)];
        migrations.extend(tde_runtime::migration::later_shared_tables());
        migrations
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
        attempts: 5,
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

/// Refuses events whose payload is "poison" (Permanent) or, while `down` is set, answers as
/// a handler whose database is unreachable; applies the others.
struct PickyHandler {
    down: Arc<std::sync::atomic::AtomicBool>,
    poison_fixed: Arc<std::sync::atomic::AtomicBool>,
    applied: Arc<std::sync::Mutex<Vec<String>>>,
}

#[async_trait]
impl EventHandler for PickyHandler {
    async fn handle(
        &self,
        _txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(HandlerError::Unavailable(anyhow::anyhow!(
                "connection refused"
            )));
        }
        let body = <String as prost::Message>::decode(event.payload.clone())?;
        if body.contains("poison") && !self.poison_fixed.load(Ordering::SeqCst) {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "cannot read {body}"
            )));
        }
        self.applied.lock().unwrap().push(body);
        Ok(())
    }
}

fn consumer_task(
    s: &Setup,
    name: &str,
    handler: Arc<dyn EventHandler>,
    attempts: u64,
) -> inbox::ConsumerTask {
    let stream = s.ns.stream("outbox");
    inbox::ConsumerTask {
        spec: ConsumerSpec {
            stream: stream.name.clone(),
            durable_name: s.ns.durable(name),
            filter_subjects: vec![],
            max_deliver: -1,
            ack_wait: Duration::from_secs(2),
        },
        handler,
        retry_backoff: Duration::from_millis(20),
        attempts,
        source: Some(stream),
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A consumer never gives an event up: while its database is unreachable it waits with the
/// event in hand (however many times that takes; nothing parked), and an event it can never
/// process is parked as a dead letter, the events after it processed, and replayed once the
/// handler is fixed.
async fn consumers_wait_for_their_database_and_park_poison(topology: Topology) {
    let s = setup(topology).await;
    let down = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let fixed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let applied = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handler = Arc::new(PickyHandler {
        down: down.clone(),
        poison_fixed: fixed.clone(),
        applied: applied.clone(),
    });
    // One attempt before parking: waiting for the database must not spend it.
    let task = consumer_task(&s, "picky", handler.clone(), 1);
    let name = task.spec.durable_name.clone();
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(inbox::run_consumer(
        s.db.clone(),
        s.env.bus.clone(),
        task,
        stop.clone(),
    ));
    let txn = s.db.begin().await.unwrap();
    let events = vec![
        NewEvent::new(
            "outbox",
            "thing",
            "a",
            "thing.changed",
            "tde.test.v1.ThingChanged",
            &"one".to_string(),
        ),
        NewEvent::new(
            "outbox",
            "thing",
            "b",
            "thing.changed",
            "tde.test.v1.ThingChanged",
            &"poison".to_string(),
        ),
        NewEvent::new(
            "outbox",
            "thing",
            "c",
            "thing.changed",
            "tde.test.v1.ThingChanged",
            &"three".to_string(),
        ),
    ];
    outbox::enqueue(&txn, events).await.unwrap();
    txn.commit().await.unwrap();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(relay(&s).run(relay_stop.clone()));

    // "Down" for longer than the acknowledgement wait: the event waits, nothing is parked.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(applied.lock().unwrap().is_empty());
    assert_eq!(
        dead_letter::waiting(&s.db).await.unwrap(),
        0,
        "nothing parked while down"
    );
    down.store(false, Ordering::SeqCst);
    wait_until("the readable events applied", || {
        applied.lock().unwrap().len() == 2
    })
    .await;
    assert_eq!(
        *applied.lock().unwrap(),
        vec!["one".to_string(), "three".to_string()]
    );
    let letters = dead_letter::list(&s.db, Some(&name), false, None, 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1, "the poison event is parked");
    assert!(
        letters[0].error.contains("cannot read poison"),
        "{}",
        letters[0].error
    );

    // Replayed while still broken: kept; once fixed: processed once, marked replayed.
    assert!(matches!(
        dead_letter::replay(&s.db, handler.as_ref(), &letters[0], chrono::Utc::now())
            .await
            .unwrap(),
        dead_letter::Replayed::Refused(_)
    ));
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(
        dead_letter::replay(&s.db, handler.as_ref(), &letters[0], chrono::Utc::now())
            .await
            .unwrap(),
        dead_letter::Replayed::Done
    );
    assert_eq!(applied.lock().unwrap().len(), 3);
    assert_eq!(dead_letter::waiting(&s.db).await.unwrap(), 0);
    stop.cancel();
    relay_stop.cancel();
    consumer.await.unwrap();
    relay.await.unwrap();
}

/// An event the bus refuses for good (above its maximum payload) is parked: the relay goes
/// on with other aggregates, the same aggregate's later events wait behind it, and an
/// operator puts it back in line.
async fn an_oversized_event_is_parked_and_the_rest_goes_on(topology: Topology) {
    let s = setup(topology).await;
    let mut sub = subscribe(&s).await;
    let txn = s.db.begin().await.unwrap();
    outbox::enqueue(
        &txn,
        vec![
            event("a", 1),
            NewEvent::new(
                "outbox",
                "thing",
                "big",
                "thing.changed",
                "tde.test.v1.ThingChanged",
                &"x".repeat(2 << 20),
            ),
            event("big", 2),
            event("b", 3),
        ],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let relay_stop = CancellationToken::new();
    let relay = tokio::spawn(relay(&s).run(relay_stop.clone()));
    let got = receive(&mut sub, 2).await;
    assert_eq!(
        got.iter()
            .map(|e| e.aggregate_id.as_str())
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    let parked = outbox::parked(&s.db, None, 10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert!(
        parked[0]
            .park_reason
            .as_deref()
            .unwrap_or_default()
            .contains("maximum payload")
    );
    // The same aggregate's next event waits behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sub.next())
            .await
            .is_err()
    );
    // Back in line: refused again (it is still too large), parked again; nothing is lost.
    assert_eq!(outbox::republish(&s.db, &[]).await.unwrap(), 1);
    wait_until_parked(&s).await;
    relay_stop.cancel();
    relay.await.unwrap();
}

async fn wait_until_parked(s: &Setup) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while outbox::parked(&s.db, None, 10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "parked again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

on_both!(
    consumers_wait_for_their_database_and_park_poison,
    an_oversized_event_is_parked_and_the_rest_goes_on,
);

/// An erased person known by fingerprint only: the published events naming them are
/// forgotten by decoding each, those waiting to be published and the others stay.
async fn published_events_naming_a_person_are_forgotten(topology: Topology) {
    let s = setup(topology).await;
    let mut sub = subscribe(&s).await;
    let stop = CancellationToken::new();
    let relaying = tokio::spawn(relay(&s).run(stop.clone()));
    let txn = s.db.begin().await.unwrap();
    // Payloads "1".."600": more than one page of the scan.
    outbox::enqueue(&txn, (1..=600).map(|n| event("a", n)).collect())
        .await
        .unwrap();
    txn.commit().await.unwrap();
    receive(&mut sub, 600).await;
    stop.cancel();
    relaying.await.unwrap();
    let txn = s.db.begin().await.unwrap();
    outbox::enqueue(&txn, vec![event("b", 7)]).await.unwrap();
    txn.commit().await.unwrap();
    let names = |payload: &[u8]| payload.ends_with(b"7");
    let forgotten = outbox::forget_published_naming(&s.db, "tde.test.v1.ThingChanged", &names)
        .await
        .unwrap();
    assert_eq!(forgotten, 60, "7, 17 … 597: every tenth, published");
    let other_type = outbox::forget_published_naming(&s.db, "tde.test.v1.Other", &|_| true)
        .await
        .unwrap();
    assert_eq!(other_type, 0);
    assert_eq!(
        outbox::backlog(&s.db).await.unwrap().events,
        1,
        "the unpublished one waits"
    );
}

on_both!(published_events_naming_a_person_are_forgotten);
