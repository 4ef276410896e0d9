//! The event bus: publish facts on a service's stream, consume them with durable consumers.
//! Two implementations behind one trait — NATS JetStream in production, an in-process bus for
//! `tde dev` — held to the same behaviour by one conformance suite (`tests/bus_conformance.rs`).

mod jetstream;
mod memory;

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use jetstream::JetStreamBus;
pub use memory::MemoryBus;

/// The largest event payload a service may produce: half of NATS's default maximum payload
/// (1 MiB), leaving room for headers and for a server configured lower. Producers bound their
/// inputs (a plan year's actions, a roster) so that their largest possible event stays below
/// it, and test that worst case; the relay parks whatever the server still refuses.
pub const MAX_EVENT_PAYLOAD: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("event bus unavailable: {0}")]
    Unavailable(String),
    /// The bus will never accept this event as it is (too large…).
    #[error("event refused by the bus: {0}")]
    Refused(String),
    #[error("event bus: {0}")]
    Other(String),
}

/// An event as it travels: CloudEvents attributes plus a protobuf payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `ce-id`, and `Nats-Msg-Id` for de-duplication.
    pub id: String,
    /// Full subject, namespace included.
    pub subject: String,
    /// `ce-type`: the protobuf message name, e.g. `tde.territories.v1.TerritoryRegistered`.
    pub event_type: String,
    /// `ce-source`, e.g. `/tde/territories`.
    pub source: String,
    /// `ce-time`.
    pub time: DateTime<Utc>,
    /// `ce-subject`: the aggregate the event is about.
    pub aggregate_id: String,
    pub payload: Bytes,
    /// W3C `traceparent` of the change that caused the event.
    pub traceparent: Option<String>,
}

/// CloudEvents header names (binary content mode).
pub mod headers {
    pub const SPEC_VERSION: &str = "ce-specversion";
    pub const ID: &str = "ce-id";
    pub const TYPE: &str = "ce-type";
    pub const SOURCE: &str = "ce-source";
    pub const TIME: &str = "ce-time";
    pub const SUBJECT: &str = "ce-subject";
    pub const CONTENT_TYPE: &str = "content-type";
    pub const PROTOBUF: &str = "application/protobuf";
}

/// Names of streams and subjects, with the namespace that keeps tests apart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self(prefix.into())
    }

    /// `tde.<service>.<suffix>`, prefixed by the namespace when there is one.
    pub fn subject(&self, service: &str, suffix: &str) -> String {
        self.prefixed(&format!("tde.{service}.{suffix}"))
    }

    /// The stream of one service: `TDE_<SERVICE>` (prefixed), subjects `tde.<service>.>`.
    pub fn stream(&self, service: &str) -> StreamSpec {
        let base = format!("TDE_{}", service.to_ascii_uppercase());
        StreamSpec {
            name: if self.0.is_empty() {
                base
            } else {
                format!("{}_{base}", self.0.to_ascii_uppercase())
            },
            subjects: vec![self.prefixed(&format!("tde.{service}.>"))],
        }
    }

    /// Adds the namespace to a subject written without it.
    pub fn prefixed(&self, subject: &str) -> String {
        if self.0.is_empty() {
            subject.to_string()
        } else {
            format!("{}.{subject}", self.0)
        }
    }

    /// A durable consumer name unique within the namespace.
    pub fn durable(&self, name: &str) -> String {
        if self.0.is_empty() {
            name.to_string()
        } else {
            format!("{}_{name}", self.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub subjects: Vec<String>,
}

/// A durable consumer of one stream.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable_name: String,
    /// Subjects to receive; empty means the whole stream.
    pub filter_subjects: Vec<String>,
    /// Deliveries of one event before it is given up (and logged).
    pub max_deliver: i64,
    /// Redelivery of an event neither acknowledged nor refused within this time.
    pub ack_wait: Duration,
}

/// An event handed to a consumer; it must be acknowledged, refused (redelivered after a
/// delay) or terminated.
pub struct Delivery {
    pub envelope: Envelope,
    /// 1 on first delivery.
    pub delivery_count: u64,
    /// Events still waiting for this consumer after this one, when known.
    pub pending: Option<u64>,
    acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("delivery_count", &self.delivery_count)
            .finish()
    }
}

impl Delivery {
    pub fn new(
        envelope: Envelope,
        delivery_count: u64,
        pending: Option<u64>,
        acker: Box<dyn Acker>,
    ) -> Self {
        Self {
            envelope,
            delivery_count,
            pending,
            acker,
        }
    }

    pub async fn ack(self) -> Result<(), BusError> {
        self.acker.ack().await
    }

    /// Asks for redelivery after `delay`.
    pub async fn nak(self, delay: Duration) -> Result<(), BusError> {
        self.acker.nak(delay).await
    }

    /// Never deliver this event again.
    pub async fn term(self) -> Result<(), BusError> {
        self.acker.term().await
    }

    /// Still working on it: do not redeliver it yet (restarts the acknowledgement wait).
    pub async fn in_progress(&self) -> Result<(), BusError> {
        self.acker.in_progress().await
    }
}

#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> Result<(), BusError>;
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
    async fn term(&self) -> Result<(), BusError>;
    async fn in_progress(&self) -> Result<(), BusError>;
}

#[async_trait]
pub trait Subscription: Send {
    /// The next event; None when the subscription ended.
    async fn next(&mut self) -> Option<Result<Delivery, BusError>>;
}

/// Publication failed after the first `acked` events of a batch were acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("published {acked} events, then: {source}")]
pub struct PublishError {
    pub acked: usize,
    #[source]
    pub source: BusError,
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Creates the stream when it does not exist; an existing stream's settings are never
    /// changed (operators own replicas, retention and limits).
    async fn ensure_stream(&self, stream: &StreamSpec) -> Result<(), BusError>;

    /// Publishes in order and waits for every acknowledgement. An event whose id was already
    /// published is acknowledged without being stored twice.
    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError>;

    /// Binds to a durable consumer, created when missing; it resumes where it left off.
    async fn subscribe(&self, consumer: &ConsumerSpec) -> Result<Box<dyn Subscription>, BusError>;

    /// Erases from `stream` the stored events on `subject` (a filter) whose payload `names`
    /// selects: what the right to erasure asks of a stream that keeps a person's data.
    /// Consumers skip them from then on. Returns how many went; a missing stream has none.
    async fn erase_events(
        &self,
        stream: &str,
        subject: &str,
        names: &(dyn for<'p> Fn(&'p [u8]) -> bool + Send + Sync),
    ) -> Result<u64, BusError>;
}

/// NATS subject matching with `*` (one token) and `>` (the rest).
pub fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut subject = subject.split('.');
    loop {
        match (pattern.next(), subject.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(p), Some(s)) if p == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_like_nats() {
        assert!(subject_matches(
            "tde.territories.>",
            "tde.territories.territory.registered"
        ));
        assert!(!subject_matches("tde.territories.>", "tde.territories"));
        assert!(subject_matches(
            "tde.*.territory.registered",
            "tde.territories.territory.registered"
        ));
        assert!(!subject_matches(
            "tde.plans.>",
            "tde.territories.territory.registered"
        ));
        assert!(subject_matches("a.b", "a.b"));
        assert!(!subject_matches("a.b", "a.b.c"));
    }

    #[test]
    fn namespaces_prefix_streams_and_subjects() {
        let ns = Namespace::new("t42");
        assert_eq!(
            ns.subject("territories", "territory.registered"),
            "t42.tde.territories.territory.registered"
        );
        let s = ns.stream("territories");
        assert_eq!(s.name, "T42_TDE_TERRITORIES");
        assert_eq!(s.subjects, vec!["t42.tde.territories.>".to_string()]);
        assert_eq!(Namespace::default().stream("plans").name, "TDE_PLANS");
    }
}
