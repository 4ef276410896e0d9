//! The NATS JetStream bus: one stream per service, CloudEvents headers, `Nats-Msg-Id` =
//! event id (JetStream drops a duplicate within its window), durable pull consumers with
//! explicit acknowledgement and a bounded number of deliveries.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use async_trait::async_trait;
use futures::StreamExt as _;

use super::{
    Acker, BusError, ConsumerSpec, Delivery, Envelope, EventBus, PublishError, StreamSpec,
    Subscription, headers,
};
use crate::telemetry::TRACEPARENT;

/// Room kept for the headers of an event in the server's maximum payload.
const HEADROOM: usize = 4 * 1024;

/// JetStream's de-duplication header.
const NATS_MSG_ID: &str = "Nats-Msg-Id";

#[derive(Clone)]
pub struct JetStreamBus {
    context: jetstream::Context,
    publish_timeout: Duration,
}

impl JetStreamBus {
    /// Connects to NATS; when the server is not up yet, keeps trying in the background, so
    /// that a service starts (and accepts writes into its outbox) while NATS is down.
    pub async fn connect(url: &str, publish_timeout: Duration) -> Result<Self, BusError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .name("tde")
            .connect(url)
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let mut context = jetstream::new(client);
        context.set_timeout(publish_timeout);
        Ok(Self {
            context,
            publish_timeout,
        })
    }

    pub fn context(&self) -> &jetstream::Context {
        &self.context
    }
}

fn unavailable(e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(e.to_string())
}

fn headers_of(event: &Envelope) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(NATS_MSG_ID, event.id.as_str());
    h.insert(headers::SPEC_VERSION, "1.0");
    h.insert(headers::ID, event.id.as_str());
    h.insert(headers::TYPE, event.event_type.as_str());
    h.insert(headers::SOURCE, event.source.as_str());
    h.insert(headers::TIME, event.time.to_rfc3339().as_str());
    h.insert(headers::SUBJECT, event.aggregate_id.as_str());
    h.insert(headers::CONTENT_TYPE, headers::PROTOBUF);
    if let Some(tp) = &event.traceparent {
        h.insert(TRACEPARENT, tp.as_str());
    }
    h
}

fn envelope_of(message: &async_nats::Message) -> Result<Envelope, BusError> {
    let h = message
        .headers
        .as_ref()
        .ok_or_else(|| BusError::Other("event without headers".into()))?;
    let get = |name: &str| h.get(name).map(|v| v.as_str().to_string());
    let required =
        |name: &str| get(name).ok_or_else(|| BusError::Other(format!("event without {name}")));
    let time = required(headers::TIME)?;
    Ok(Envelope {
        id: required(headers::ID)?,
        subject: message.subject.to_string(),
        event_type: required(headers::TYPE)?,
        source: required(headers::SOURCE)?,
        time: chrono::DateTime::parse_from_rfc3339(&time)
            .map_err(|e| BusError::Other(format!("bad ce-time {time}: {e}")))?
            .to_utc(),
        aggregate_id: get(headers::SUBJECT).unwrap_or_default(),
        payload: message.payload.clone(),
        traceparent: get(TRACEPARENT),
    })
}

impl JetStreamBus {
    /// Waits for acknowledgements in order; returns how many events are acknowledged in all.
    async fn await_acks(
        &self,
        mut acked: usize,
        pending: Vec<jetstream::context::PublishAckFuture>,
    ) -> Result<usize, PublishError> {
        for ack in pending {
            let source = match tokio::time::timeout(self.publish_timeout, ack).await {
                Ok(Ok(_)) => {
                    acked += 1;
                    continue;
                }
                Ok(Err(e)) => unavailable(e),
                Err(_) => BusError::Unavailable("acknowledgement timed out".into()),
            };
            return Err(PublishError { acked, source });
        }
        Ok(acked)
    }
}

#[async_trait]
impl EventBus for JetStreamBus {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<(), BusError> {
        let config = stream::Config {
            name: spec.name.clone(),
            subjects: spec.subjects.clone(),
            storage: stream::StorageType::File,
            // Wide enough to absorb a relay's republication after a crash.
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        };
        // Created when missing, never updated: replicas, retention and limits that operators
        // set (or declared as NACK resources) stay as they are.
        self.context
            .get_or_create_stream(config)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn erase_events(
        &self,
        stream: &str,
        subject: &str,
        names: &(dyn for<'p> Fn(&'p [u8]) -> bool + Send + Sync),
    ) -> Result<u64, BusError> {
        use async_nats::jetstream::context::GetStreamErrorKind;
        use async_nats::jetstream::stream::RawMessageErrorKind;
        let stream = match self.context.get_stream(stream).await {
            Ok(s) => s,
            Err(e) => {
                if let GetStreamErrorKind::JetStream(js) = e.kind()
                    && js.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                {
                    return Ok(0);
                }
                return Err(unavailable(e));
            }
        };
        // Walks the subject's messages in sequence order; the server erases each one selected
        // (its stored bytes overwritten, as a deletion without `no_erase` does).
        let mut sequence = 1;
        let mut erased = 0;
        loop {
            let message = match stream
                .raw_message_builder()
                .sequence(sequence)
                .next_by_subject(subject)
                .send()
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(unavailable(e)),
            };
            if names(&message.payload) {
                stream
                    .delete_message(message.sequence)
                    .await
                    .map_err(unavailable)?;
                erased += 1;
            }
            sequence = message.sequence + 1;
        }
        Ok(erased)
    }

    async fn publish(&self, events: &[Envelope]) -> Result<(), PublishError> {
        // What the server will never take (too large) is refused before anything is sent,
        // so that the events before it still go out.
        let max_payload = self.context.client().server_info().max_payload;
        if let Some(at) = events
            .iter()
            .position(|e| max_payload > 0 && e.payload.len() + HEADROOM > max_payload)
        {
            let acked = if at == 0 {
                0
            } else {
                Box::pin(self.publish(&events[..at])).await?;
                at
            };
            return Err(PublishError {
                acked,
                source: BusError::Refused(format!(
                    "{} bytes, above the server's maximum payload of {max_payload} bytes",
                    events[at].payload.len()
                )),
            });
        }
        // Events of different aggregates go out back to back and their acknowledgements are
        // collected together: one round trip for many events. A second event of the same
        // aggregate waits until the first is acknowledged, so that a message lost in a
        // reconnection can never be overtaken by a later event of its aggregate.
        let mut acked = 0;
        let mut pending = Vec::new();
        let mut in_flight: HashSet<&str> = HashSet::new();
        for event in events {
            if !in_flight.insert(event.aggregate_id.as_str()) {
                acked = self.await_acks(acked, std::mem::take(&mut pending)).await?;
                in_flight.clear();
                in_flight.insert(event.aggregate_id.as_str());
            }
            match self
                .context
                .publish_with_headers(
                    event.subject.clone(),
                    headers_of(event),
                    event.payload.clone(),
                )
                .await
            {
                Ok(ack) => pending.push(ack),
                Err(e) => {
                    let acked = self.await_acks(acked, pending).await?;
                    return Err(PublishError {
                        acked,
                        source: unavailable(e),
                    });
                }
            }
        }
        self.await_acks(acked, pending).await?;
        Ok(())
    }

    async fn subscribe(&self, spec: &ConsumerSpec) -> Result<Box<dyn Subscription>, BusError> {
        let stream = self
            .context
            .get_stream(&spec.stream)
            .await
            .map_err(unavailable)?;
        // One filter goes in `filter_subject`, which NATS 2.9 (Debian 12) understands;
        // several need `filter_subjects`, from NATS 2.10 on.
        let (filter_subject, filter_subjects) = match spec.filter_subjects.as_slice() {
            [one] => (one.clone(), Vec::new()),
            many => (String::new(), many.to_vec()),
        };
        let config = consumer::pull::Config {
            durable_name: Some(spec.durable_name.clone()),
            filter_subject,
            filter_subjects,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: spec.ack_wait,
            max_deliver: spec.max_deliver,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        };
        let mut consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&spec.durable_name, config.clone())
            .await
            .map_err(unavailable)?;
        // A consumer created by an earlier release bounded its deliveries: it must not give
        // events up any more (the consumer parks what it cannot process).
        if consumer.cached_info().config.max_deliver != spec.max_deliver {
            match stream.update_consumer(config).await {
                Ok(updated) => consumer = updated,
                Err(e) => {
                    tracing::warn!(consumer = %spec.durable_name, error = %e, "cannot update the consumer's delivery bound")
                }
            }
        }
        let messages = consumer.messages().await.map_err(unavailable)?;
        Ok(Box::new(JetStreamSubscription { messages }))
    }
}

struct JetStreamSubscription {
    messages: consumer::pull::Stream,
}

#[async_trait]
impl Subscription for JetStreamSubscription {
    async fn next(&mut self) -> Option<Result<Delivery, BusError>> {
        let message = match self.messages.next().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(unavailable(e))),
        };
        let (delivered, pending) = match message.info() {
            Ok(info) => (info.delivered.max(1) as u64, Some(info.pending)),
            Err(_) => (1, None),
        };
        let (message, acker) = message.split();
        let acker = Box::new(JetStreamAcker(acker));
        match envelope_of(&message) {
            Ok(envelope) => Some(Ok(Delivery::new(envelope, delivered, pending, acker))),
            Err(e) => {
                // Not one of ours: never deliver it again, and say so.
                tracing::warn!(subject = %message.subject, error = %e, "dropping malformed event");
                let _ = acker.term().await;
                Some(Err(e))
            }
        }
    }
}

struct JetStreamAcker(jetstream::message::Acker);

#[async_trait]
impl Acker for JetStreamAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.0.ack().await.map_err(unavailable)
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(unavailable)
    }

    async fn term(&self) -> Result<(), BusError> {
        self.0.ack_with(AckKind::Term).await.map_err(unavailable)
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.0
            .ack_with(AckKind::Progress)
            .await
            .map_err(unavailable)
    }
}
