//! One conformance suite for every event bus: the in-process bus of `tde dev` and NATS
//! JetStream (a real server; see the harness) must behave the same.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tde_runtime::bus::{
    ConsumerSpec, Envelope, EventBus, JetStreamBus, MemoryBus, Namespace, StreamSpec, Subscription,
};
use tde_runtime::testing::{nats_url, unique_name};
use tokio::time::timeout;

fn memory() -> Arc<dyn EventBus> {
    Arc::new(MemoryBus::new())
}

async fn jetstream() -> Arc<dyn EventBus> {
    Arc::new(
        JetStreamBus::connect(nats_url(), Duration::from_secs(5))
            .await
            .expect("NATS"),
    )
}

struct Fixture {
    bus: Arc<dyn EventBus>,
    ns: Namespace,
    stream: StreamSpec,
}

impl Fixture {
    async fn new(bus: Arc<dyn EventBus>) -> Self {
        let ns = Namespace::new(unique_name("c"));
        let stream = ns.stream("conformance");
        bus.ensure_stream(&stream).await.expect("stream");
        Self { bus, ns, stream }
    }

    fn event(&self, suffix: &str, id: &str, aggregate: &str) -> Envelope {
        Envelope {
            id: id.to_string(),
            subject: self.ns.subject("conformance", suffix),
            event_type: "tde.test.v1.Thing".into(),
            source: "/tde/conformance".into(),
            time: chrono::Utc::now(),
            aggregate_id: aggregate.into(),
            payload: Bytes::from(format!("payload-{id}")),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        }
    }

    fn consumer(&self, name: &str, filters: &[&str], max_deliver: i64) -> ConsumerSpec {
        ConsumerSpec {
            stream: self.stream.name.clone(),
            durable_name: self.ns.durable(name),
            filter_subjects: filters
                .iter()
                .map(|f| self.ns.subject("conformance", f))
                .collect(),
            max_deliver,
            ack_wait: Duration::from_secs(1),
        }
    }
}

async fn next(sub: &mut Box<dyn Subscription>) -> tde_runtime::bus::Delivery {
    timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("an event within 10 s")
        .expect("subscription open")
        .expect("no bus error")
}

async fn nothing_within(sub: &mut Box<dyn Subscription>, wait: Duration) {
    if let Ok(Some(Ok(d))) = timeout(wait, sub.next()).await {
        panic!("unexpected delivery of {}", d.envelope.id);
    }
}

async fn delivers_in_order_with_all_attributes(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    let events: Vec<Envelope> = (0..20)
        .map(|i| f.event("thing.happened", &format!("e{i}"), "a1"))
        .collect();
    f.bus.publish(&events).await.expect("publish");
    let mut sub = f
        .bus
        .subscribe(&f.consumer("order", &[], 5))
        .await
        .expect("subscribe");
    for expected in &events {
        let d = next(&mut sub).await;
        assert_eq!(d.delivery_count, 1);
        let mut got = d.envelope.clone();
        // Times travel as RFC 3339: compare them at that precision.
        assert_eq!(
            got.time.timestamp_micros(),
            expected.time.timestamp_micros()
        );
        got.time = expected.time;
        assert_eq!(&got, expected);
        d.ack().await.expect("ack");
    }
    nothing_within(&mut sub, Duration::from_millis(300)).await;
}

async fn drops_duplicate_ids(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    let e = f.event("thing.happened", "same-id", "a1");
    f.bus
        .publish(std::slice::from_ref(&e))
        .await
        .expect("publish");
    f.bus
        .publish(std::slice::from_ref(&e))
        .await
        .expect("a duplicate is acknowledged");
    let mut sub = f
        .bus
        .subscribe(&f.consumer("dedup", &[], 5))
        .await
        .expect("subscribe");
    next(&mut sub).await.ack().await.expect("ack");
    nothing_within(&mut sub, Duration::from_millis(500)).await;
}

async fn durable_consumers_resume(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    let spec = f.consumer("durable", &[], 10);
    f.bus
        .publish(&[
            f.event("thing.happened", "r1", "a"),
            f.event("thing.happened", "r2", "a"),
        ])
        .await
        .expect("publish");
    {
        let mut sub = f.bus.subscribe(&spec).await.expect("subscribe");
        let d = next(&mut sub).await;
        assert_eq!(d.envelope.id, "r1");
        d.ack().await.expect("ack");
    }
    f.bus
        .publish(&[f.event("thing.happened", "r3", "a")])
        .await
        .expect("publish");
    let mut sub = f.bus.subscribe(&spec).await.expect("resubscribe");
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let d = next(&mut sub).await;
        assert_ne!(
            d.envelope.id, "r1",
            "an acknowledged event is not delivered again"
        );
        if !seen.contains(&d.envelope.id) {
            seen.push(d.envelope.id.clone());
        }
        d.ack().await.expect("ack");
    }
    // r2 may have been in flight to the dropped subscription: it then comes back after the
    // ack wait, behind r3. Nothing is lost either way.
    seen.sort();
    assert_eq!(seen, vec!["r2".to_string(), "r3".to_string()]);
}

async fn refused_events_are_redelivered(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    f.bus
        .publish(&[f.event("thing.happened", "n1", "a")])
        .await
        .expect("publish");
    let mut sub = f
        .bus
        .subscribe(&f.consumer("nak", &[], 5))
        .await
        .expect("subscribe");
    let d = next(&mut sub).await;
    assert_eq!(d.delivery_count, 1);
    d.nak(Duration::from_millis(100)).await.expect("nak");
    let d = next(&mut sub).await;
    assert_eq!(d.envelope.id, "n1");
    assert_eq!(d.delivery_count, 2);
    d.ack().await.expect("ack");
}

async fn unacknowledged_events_come_back_after_ack_wait(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    f.bus
        .publish(&[f.event("thing.happened", "u1", "a")])
        .await
        .expect("publish");
    let mut sub = f
        .bus
        .subscribe(&f.consumer("ackwait", &[], 5))
        .await
        .expect("subscribe");
    let first = next(&mut sub).await;
    let again = next(&mut sub).await;
    assert_eq!(again.envelope.id, "u1");
    assert_eq!(again.delivery_count, 2);
    again.ack().await.expect("ack");
    drop(first);
}

async fn deliveries_are_bounded(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    f.bus
        .publish(&[f.event("thing.happened", "b1", "a")])
        .await
        .expect("publish");
    let mut sub = f
        .bus
        .subscribe(&f.consumer("bounded", &[], 2))
        .await
        .expect("subscribe");
    for _ in 0..2 {
        next(&mut sub)
            .await
            .nak(Duration::from_millis(50))
            .await
            .expect("nak");
    }
    nothing_within(&mut sub, Duration::from_millis(1500)).await;
}

async fn filters_select_subjects(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    f.bus
        .publish(&[
            f.event("thing.created", "f1", "a"),
            f.event("other.created", "f2", "a"),
            f.event("thing.deleted", "f3", "a"),
        ])
        .await
        .expect("publish");
    let mut sub = f
        .bus
        .subscribe(&f.consumer("filtered", &["thing.*"], 5))
        .await
        .expect("subscribe");
    for id in ["f1", "f3"] {
        let d = next(&mut sub).await;
        assert_eq!(d.envelope.id, id);
        d.ack().await.expect("ack");
    }
    nothing_within(&mut sub, Duration::from_millis(300)).await;
}

async fn streams_are_apart(bus: Arc<dyn EventBus>) {
    let a = Fixture::new(bus.clone()).await;
    let b = Fixture::new(bus).await;
    a.bus
        .publish(&[a.event("thing.happened", "only-a", "x")])
        .await
        .expect("publish");
    let mut sub = b
        .bus
        .subscribe(&b.consumer("apart", &[], 5))
        .await
        .expect("subscribe");
    nothing_within(&mut sub, Duration::from_millis(300)).await;
}

/// Erasure: the selected events of a subject are never delivered again (a consumer bound
/// before may hold one in flight); the others stay, in order.
async fn erased_events_are_never_delivered_again(bus: Arc<dyn EventBus>) {
    let f = Fixture::new(bus).await;
    let mut early = f
        .bus
        .subscribe(&f.consumer("early", &[], 5))
        .await
        .expect("subscribe");
    f.bus
        .publish(&[
            f.event("roster.changed", "e1", "a"),
            f.event("roster.changed", "e2-secret", "b"),
            f.event("other.changed", "e3-secret", "c"),
            f.event("roster.changed", "e4", "a"),
        ])
        .await
        .expect("publish");
    let first = next(&mut early).await;
    assert_eq!(first.envelope.id, "e1");
    first.ack().await.expect("ack");
    let names = |payload: &[u8]| String::from_utf8_lossy(payload).contains("secret");
    let erased = f
        .bus
        .erase_events(
            &f.stream.name,
            &f.ns.subject("conformance", "roster.*"),
            &names,
        )
        .await
        .expect("erased");
    assert_eq!(erased, 1, "only the roster event naming the secret");
    // A consumer bound before may hold it in flight already (JetStream hands out batches):
    // what it gets next is the rest, in order.
    let mut rest = Vec::new();
    while rest.last().map(String::as_str) != Some("e4") {
        let d = next(&mut early).await;
        rest.push(d.envelope.id.clone());
        d.ack().await.expect("ack");
    }
    rest.retain(|id| id != "e2-secret");
    assert_eq!(rest, ["e3-secret", "e4"]);
    let mut late = f
        .bus
        .subscribe(&f.consumer("late", &[], 5))
        .await
        .expect("subscribe");
    for id in ["e1", "e3-secret", "e4"] {
        let d = next(&mut late).await;
        assert_eq!(d.envelope.id, id);
        d.ack().await.expect("ack");
    }
    nothing_within(&mut late, Duration::from_millis(300)).await;
    let again = f
        .bus
        .erase_events(
            &f.stream.name,
            &f.ns.subject("conformance", "roster.*"),
            &names,
        )
        .await
        .expect("erased");
    assert_eq!(again, 0, "nothing left to erase");
    assert_eq!(
        f.bus
            .erase_events("NO_SUCH_STREAM", "no.such.>", &names)
            .await
            .expect("a missing stream holds nothing"),
        0
    );
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn memory() {
                    super::$case(super::memory()).await
                }

                #[tokio::test]
                async fn jetstream() {
                    super::$case(super::jetstream().await).await
                }
            }
        )*
    };
}

conformance!(
    delivers_in_order_with_all_attributes,
    drops_duplicate_ids,
    durable_consumers_resume,
    refused_events_are_redelivered,
    unacknowledged_events_come_back_after_ack_wait,
    deliveries_are_bounded,
    filters_select_subjects,
    streams_are_apart,
    erased_events_are_never_delivered_again,
);

/// On JetStream, the stored message carries the CloudEvents headers and `Nats-Msg-Id`.
#[tokio::test]
async fn jetstream_messages_carry_cloudevents_headers() {
    let bus = JetStreamBus::connect(nats_url(), Duration::from_secs(5))
        .await
        .expect("NATS");
    let f = Fixture::new(Arc::new(bus.clone())).await;
    f.bus
        .publish(&[f.event("thing.happened", "h1", "agg-7")])
        .await
        .expect("publish");
    let stream = bus
        .context()
        .get_stream(&f.stream.name)
        .await
        .expect("stream");
    let message = stream.get_raw_message(1).await.expect("stored message");
    let h = &message.headers;
    let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
    assert_eq!(get("Nats-Msg-Id").as_deref(), Some("h1"));
    assert_eq!(get("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(get("ce-id").as_deref(), Some("h1"));
    assert_eq!(get("ce-type").as_deref(), Some("tde.test.v1.Thing"));
    assert_eq!(get("ce-source").as_deref(), Some("/tde/conformance"));
    assert_eq!(get("ce-subject").as_deref(), Some("agg-7"));
    assert!(get("ce-time").is_some());
    assert!(get("traceparent").is_some());
}

/// A stream an operator created with settings of their own (retention, limits, replicas)
/// keeps them whoever starts afterwards: `ensure_stream` creates, never updates.
#[tokio::test]
async fn existing_streams_keep_the_operators_settings() {
    use async_nats::jetstream::stream;
    let ns = Namespace::new(unique_name("o"));
    let spec = ns.stream("operated");
    let _cleanup = tde_runtime::testing::NamespacedStreams {
        nats_url: nats_url().to_string(),
        namespace: ns_name(&spec),
    };
    let js = async_nats::jetstream::new(async_nats::connect(nats_url()).await.unwrap());
    js.create_stream(stream::Config {
        name: spec.name.clone(),
        subjects: spec.subjects.clone(),
        max_age: Duration::from_secs(90 * 86_400),
        max_messages: 123_456,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let bus = jetstream().await;
    for _ in 0..3 {
        bus.ensure_stream(&spec).await.unwrap();
    }
    let info = js
        .get_stream(&spec.name)
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.max_age, Duration::from_secs(90 * 86_400));
    assert_eq!(info.config.max_messages, 123_456);
}

/// The namespace part of a namespaced stream name (`O…_TDE_OPERATED` → `o…`).
fn ns_name(spec: &StreamSpec) -> String {
    spec.name
        .split('_')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}
