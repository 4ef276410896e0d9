//! The in-process bus of `tde dev`: the same semantics as the JetStream bus (streams,
//! de-duplication by event id, durable consumers with acknowledgement, redelivery and a bound
//! on deliveries), held in memory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    Acker, BusError, ConsumerSpec, Delivery, Envelope, EventBus, PublishError, StreamSpec,
    Subscription, subject_matches,
};

/// NATS's default maximum payload: the in-process bus refuses what JetStream would.
const MAX_PAYLOAD: usize = 1024 * 1024;

#[derive(Default)]
struct State {
    streams: HashMap<String, Stream>,
}

#[derive(Default)]
struct Stream {
    subjects: Vec<String>,
    messages: Vec<Envelope>,
    /// Indexes of erased messages: never delivered again.
    erased: HashSet<usize>,
    ids: HashSet<String>,
    consumers: HashMap<String, ConsumerState>,
}

struct ConsumerState {
    filters: Vec<String>,
    max_deliver: i64,
    ack_wait: Duration,
    /// Next message index never delivered.
    cursor: usize,
    /// Delivered, not yet acknowledged: index → (deliveries, when to redeliver).
    unacked: BTreeMap<usize, (u64, Instant)>,
}

impl ConsumerState {
    fn wants(&self, subject: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| subject_matches(f, subject))
    }
}

/// An in-process event bus; clones share the same streams.
#[derive(Clone, Default)]
pub struct MemoryBus {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data: continue with it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventBus for MemoryBus {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        let mut state = self.lock();
        state
            .streams
            .entry(spec.name.clone())
            .or_insert_with(|| Stream {
                subjects: spec.subjects.clone(),
                ..Default::default()
            });
        Ok(())
    }

    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError> {
        let mut state = self.lock();
        for (acked, event) in events.iter().enumerate() {
            if event.payload.len() > MAX_PAYLOAD {
                return Err(PublishError {
                    acked,
                    source: BusError::Refused(format!(
                        "{} bytes, above the maximum payload of {MAX_PAYLOAD} bytes",
                        event.payload.len()
                    )),
                });
            }
            let Some(stream) = state.streams.values_mut().find(|s| {
                s.subjects
                    .iter()
                    .any(|p| subject_matches(p, &event.subject))
            }) else {
                return Err(PublishError {
                    acked,
                    source: BusError::Other(format!("no stream for subject {}", event.subject)),
                });
            };
            if stream.ids.insert(event.id.clone()) {
                stream.messages.push(event.clone());
            }
        }
        drop(state);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn subscribe(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>, BusError> {
        let mut state = self.lock();
        let stream = state
            .streams
            .get_mut(&spec.stream)
            .ok_or_else(|| BusError::Other(format!("no stream {}", spec.stream)))?;
        stream
            .consumers
            .entry(spec.durable_name.clone())
            .or_insert_with(|| ConsumerState {
                filters: spec.filter_subjects.clone(),
                max_deliver: spec.max_deliver,
                ack_wait: spec.ack_wait,
                cursor: 0,
                unacked: BTreeMap::new(),
            });
        Ok(Box::new(MemorySubscription {
            bus: self.clone(),
            stream: spec.stream.clone(),
            consumer: spec.durable_name.clone(),
        }))
    }

    async fn erase_events(
        &self,
        stream: &str,
        subject: &str,
        names: &(dyn for<'p> Fn(&'p [u8]) -> bool + Send + Sync),
    ) -> Result<u64, BusError> {
        let mut state = self.lock();
        let Some(stream) = state.streams.get_mut(stream) else {
            return Ok(0);
        };
        let mut erased = 0;
        for (index, message) in stream.messages.iter_mut().enumerate() {
            if !stream.erased.contains(&index)
                && subject_matches(subject, &message.subject)
                && names(&message.payload)
            {
                // The id stays known (de-duplication), the content goes.
                message.payload = bytes::Bytes::new();
                stream.erased.insert(index);
                erased += 1;
            }
        }
        Ok(erased)
    }
}

struct MemorySubscription {
    bus: MemoryBus,
    stream: String,
    consumer: String,
}

enum Next {
    Deliver(Envelope, usize, u64, u64),
    WaitUntil(Option<Instant>),
    Gone,
}

impl MemorySubscription {
    fn poll_once(&self) -> Next {
        let mut state = self.bus.lock();
        let Some(stream) = state.streams.get_mut(&self.stream) else {
            return Next::Gone;
        };
        let Stream {
            messages,
            erased,
            consumers,
            ..
        } = stream;
        let Some(consumer) = consumers.get_mut(&self.consumer) else {
            return Next::Gone;
        };
        let now = Instant::now();
        // Redeliveries first, oldest message first.
        let due = consumer
            .unacked
            .iter()
            .find(|(_, (_, at))| *at <= now)
            .map(|(i, (n, _))| (*i, *n));
        if let Some((index, deliveries)) = due {
            if erased.contains(&index) {
                consumer.unacked.remove(&index);
                return Next::WaitUntil(Some(now));
            }
            // -1 (or 0): no bound, as in JetStream.
            if consumer.max_deliver > 0 && deliveries as i64 >= consumer.max_deliver {
                consumer.unacked.remove(&index);
                tracing::warn!(consumer = %self.consumer, event_id = %messages[index].id, "event given up after maximum deliveries");
                return Next::WaitUntil(Some(now));
            }
            let ack_wait = consumer.ack_wait;
            consumer
                .unacked
                .insert(index, (deliveries + 1, now + ack_wait));
            let pending = pending(messages, erased, consumer);
            return Next::Deliver(messages[index].clone(), index, deliveries + 1, pending);
        }
        while consumer.cursor < messages.len() {
            let index = consumer.cursor;
            consumer.cursor += 1;
            if !erased.contains(&index) && consumer.wants(&messages[index].subject) {
                let ack_wait = consumer.ack_wait;
                consumer.unacked.insert(index, (1, now + ack_wait));
                let pending = pending(messages, erased, consumer);
                return Next::Deliver(messages[index].clone(), index, 1, pending);
            }
        }
        Next::WaitUntil(consumer.unacked.values().map(|(_, at)| *at).min())
    }
}

fn pending(messages: &[Envelope], erased: &HashSet<usize>, consumer: &ConsumerState) -> u64 {
    messages
        .iter()
        .enumerate()
        .skip(consumer.cursor)
        .filter(|(i, m)| !erased.contains(i) && consumer.wants(&m.subject))
        .count() as u64
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        loop {
            let notified = self.bus.notify.notified();
            match self.poll_once() {
                Next::Deliver(envelope, index, count, pending) => {
                    let acker = MemoryAcker {
                        bus: self.bus.clone(),
                        stream: self.stream.clone(),
                        consumer: self.consumer.clone(),
                        index,
                    };
                    return Some(Ok(Delivery::new(
                        envelope,
                        count,
                        Some(pending),
                        Box::new(acker),
                    )));
                }
                Next::Gone => return None,
                Next::WaitUntil(Some(at)) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                Next::WaitUntil(None) => notified.await,
            }
        }
    }
}

struct MemoryAcker {
    bus: MemoryBus,
    stream: String,
    consumer: String,
    index: usize,
}

impl MemoryAcker {
    fn update(&self, f: impl FnOnce(&mut ConsumerState, usize)) {
        let mut state = self.bus.lock();
        if let Some(c) = state
            .streams
            .get_mut(&self.stream)
            .and_then(|s| s.consumers.get_mut(&self.consumer))
        {
            f(c, self.index);
        }
        drop(state);
        self.bus.notify.notify_waiters();
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.update(|c, i| {
            c.unacked.remove(&i);
        });
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.update(|c, i| {
            if let Some(entry) = c.unacked.get_mut(&i) {
                entry.1 = Instant::now() + delay;
            }
        });
        Ok(())
    }

    async fn term(&self) -> Result<(), BusError> {
        self.ack().await
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.update(|c, i| {
            let ack_wait = c.ack_wait;
            if let Some(entry) = c.unacked.get_mut(&i) {
                entry.1 = Instant::now() + ack_wait;
            }
        });
        Ok(())
    }
}
