//! The inbox of a consumer: the ids of events already processed, written in the same
//! transaction as the event's effect, so that a redelivered event has no second effect.
//! `run_consumer` drives a durable consumer through it, and never gives an event up:
//!
//! - the consumer's own database unreachable ("I cannot process now"): it waits with the
//!   event in hand, telling the bus it is still working on it, and retries until the
//!   database is back — no delivery is spent, nothing is parked;
//! - the handler refusing the event for good, or again and again: the event is parked as a
//!   dead letter (`dead_letter`), visible and replayable, and the consumer goes on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, Statement, TransactionTrait,
};
use tokio_util::sync::CancellationToken;

use crate::bus::{ConsumerSpec, Delivery, Envelope, EventBus, StreamSpec};
use crate::dead_letter;
use crate::server::ServiceContext;
use crate::telemetry::{TraceContext, metric};

/// Records that `consumer` processed `event_id`; false when it already had.
pub async fn claim(
    txn: &DatabaseTransaction,
    consumer: &str,
    event_id: &str,
) -> Result<bool, DbErr> {
    let backend = txn.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "INSERT INTO inbox_events (consumer, event_id, processed_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        }
        _ => {
            "INSERT INTO inbox_events (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
        }
    };
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [consumer.into(), event_id.into(), Utc::now().into()],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The consumer's own storage cannot be reached: not the event's fault; wait and retry,
    /// however long it takes.
    #[error("storage unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// Worth retrying a few times (an event that came before its prerequisite…); parked as a
    /// dead letter after `ConsumerTask::attempts`.
    #[error("transient: {0}")]
    Transient(#[source] anyhow::Error),
    /// Will never succeed (undecodable payload…): parked as a dead letter at once.
    #[error("permanent: {0}")]
    Permanent(#[source] anyhow::Error),
}

impl From<DbErr> for HandlerError {
    fn from(e: DbErr) -> Self {
        if crate::db::is_unavailable(&e) {
            Self::Unavailable(e.into())
        } else {
            Self::Transient(e.into())
        }
    }
}

impl From<prost::DecodeError> for HandlerError {
    fn from(e: prost::DecodeError) -> Self {
        Self::Permanent(e.into())
    }
}

/// What a service does with one event; writes go through `txn`.
#[async_trait]
pub trait EventHandler: Send + Sync + 'static {
    async fn handle(&self, txn: &DatabaseTransaction, event: &Envelope)
    -> Result<(), HandlerError>;

    /// Runs once the effect of `event` committed (e.g. to evict a read cache).
    async fn committed(&self, _event: &Envelope) {}
}

/// A durable consumer of a service.
#[derive(Clone)]
pub struct ConsumerTask {
    pub spec: ConsumerSpec,
    pub handler: Arc<dyn EventHandler>,
    pub retry_backoff: Duration,
    /// Deliveries of an event its handler keeps refusing (not storage outages) before it is
    /// parked as a dead letter.
    pub attempts: u64,
    /// The stream to create if it does not exist yet, so that a consumer starting before the
    /// producer's first event subscribes at once.
    pub source: Option<StreamSpec>,
}

impl ConsumerTask {
    /// The durable consumer `name` of `ctx`'s service on the whole stream of service
    /// `source`, with the configured delivery settings.
    pub fn following(
        ctx: &ServiceContext,
        source: &str,
        name: &str,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        let stream = ctx.namespace.stream(source);
        let bus = &ctx.settings.bus;
        Self {
            spec: ConsumerSpec {
                stream: stream.name.clone(),
                durable_name: ctx.namespace.durable(&format!("{}_{name}", ctx.service)),
                filter_subjects: Vec::new(),
                // The bus never gives an event up: the consumer parks what it cannot process.
                max_deliver: -1,
                ack_wait: Duration::from_millis(bus.ack_wait_ms),
            },
            handler,
            retry_backoff: Duration::from_millis(bus.retry_backoff_ms),
            attempts: u64::try_from(bus.max_deliver).unwrap_or(1).max(1),
            source: Some(stream),
        }
    }
}

impl ConsumerTask {
    /// The same consumer, receiving only the events on `subjects` (full subjects, e.g.
    /// `ctx.namespace.subject("territories", "personal_data.erased")`): the stream's other
    /// events never reach its handler nor its inbox.
    pub fn only(mut self, subjects: impl IntoIterator<Item = String>) -> Self {
        self.spec.filter_subjects = subjects.into_iter().collect();
        self
    }
}

/// Processes one delivery exactly once through the inbox; returns whether it had an effect.
pub async fn process(
    db: &DatabaseConnection,
    consumer: &str,
    handler: &dyn EventHandler,
    event: &Envelope,
) -> Result<bool, HandlerError> {
    use futures::FutureExt as _;
    let txn = db.begin().await?;
    if !claim(&txn, consumer, &event.id).await? {
        txn.commit().await?;
        return Ok(false);
    }
    // A panicking handler must not take the connection with it (SQLite has one): roll back,
    // then let the panic reach the supervisor, which restarts the consumer.
    let handled = std::panic::AssertUnwindSafe(handler.handle(&txn, event))
        .catch_unwind()
        .await;
    let handled = match handled {
        Ok(result) => result,
        Err(panic) => {
            let _ = txn.rollback().await;
            std::panic::resume_unwind(panic);
        }
    };
    handled?;
    txn.commit().await?;
    handler.committed(event).await;
    Ok(true)
}

/// Runs a consumer until `shutdown`, resubscribing after bus failures.
pub async fn run_consumer(
    db: DatabaseConnection,
    bus: Arc<dyn EventBus>,
    task: ConsumerTask,
    shutdown: CancellationToken,
) {
    let name = task.spec.durable_name.clone();
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        let ensured = match &task.source {
            Some(stream) => bus.ensure_stream(stream).await,
            None => Ok(()),
        };
        let subscribed = match ensured {
            Ok(()) => bus.subscribe(&task.spec).await,
            Err(e) => Err(e),
        };
        let mut subscription = match subscribed {
            Ok(s) => {
                backoff = Duration::from_millis(200);
                s
            }
            Err(e) => {
                tracing::warn!(consumer = %name, error = %e, "cannot subscribe; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = subscription.next() => next,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    tracing::warn!(consumer = %name, error = %e, "consumer interrupted");
                    break;
                }
                Some(Ok(delivery)) => handle_delivery(&db, &task, delivery, &shutdown).await,
            }
        }
    }
}

/// Longest wait between two attempts while the consumer's database is unreachable.
const MAX_UNAVAILABLE_WAIT: Duration = Duration::from_secs(10);

/// Processes one delivery until it is done, parked, or the consumer stops.
async fn handle_delivery(
    db: &DatabaseConnection,
    task: &ConsumerTask,
    delivery: Delivery,
    shutdown: &CancellationToken,
) {
    let name = task.spec.durable_name.as_str();
    if let Some(pending) = delivery.pending {
        metrics::gauge!(metric::CONSUMER_LAG, "consumer" => name.to_string()).set(pending as f64);
    }
    let trace = TraceContext::continue_from(delivery.envelope.traceparent.as_deref());
    let event_id = delivery.envelope.id.clone();
    let mut wait = task.retry_backoff.max(Duration::from_millis(50));
    let mut parked_for: Option<String> = None;
    loop {
        let outcome = match &parked_for {
            // Parking is itself a write: it waits for the database like processing does.
            Some(error) => {
                dead_letter::park(db, name, &delivery.envelope, error, delivery.delivery_count)
                    .await
                    .map(|()| false)
                    .map_err(HandlerError::from)
            }
            None => {
                trace
                    .scope(process(db, name, task.handler.as_ref(), &delivery.envelope))
                    .await
            }
        };
        let result = match outcome {
            Ok(_) if parked_for.is_some() => {
                metrics::counter!(metric::DEAD_LETTERED, "consumer" => name.to_string())
                    .increment(1);
                tracing::error!(consumer = name, event_id, "event parked as a dead letter");
                delivery.ack().await
            }
            Ok(_) => {
                metrics::counter!(metric::CONSUMER_PROCESSED, "consumer" => name.to_string())
                    .increment(1);
                delivery.ack().await
            }
            Err(HandlerError::Unavailable(e)) => {
                // Not the event's fault: keep it, say so to the bus, and try again.
                metrics::gauge!(metric::CONSUMER_WAITING, "consumer" => name.to_string()).set(1.0);
                tracing::warn!(consumer = name, event_id, error = format!("{e:#}"), retry_in = ?wait, "storage unavailable; the event waits");
                let _ = delivery.in_progress().await;
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(MAX_UNAVAILABLE_WAIT);
                continue;
            }
            Err(e) if parked_for.is_some() => {
                // The dead letter itself could not be written (not an outage): never loop on
                // it; the bus delivers the event again later.
                tracing::error!(
                    consumer = name,
                    event_id,
                    error = format!("{e:#}"),
                    "the dead letter could not be written"
                );
                delivery.nak(task.retry_backoff.saturating_mul(20)).await
            }
            Err(HandlerError::Permanent(e)) => {
                parked_for = Some(format!("{e:#}"));
                continue;
            }
            Err(HandlerError::Transient(e)) if delivery.delivery_count >= task.attempts => {
                parked_for = Some(format!(
                    "refused at each of {} deliveries; last: {e:#}",
                    delivery.delivery_count
                ));
                continue;
            }
            Err(HandlerError::Transient(e)) => {
                let attempt = delivery.delivery_count.clamp(1, 6) as u32;
                let delay = task.retry_backoff.saturating_mul(2u32.pow(attempt - 1));
                tracing::warn!(consumer = name, event_id, error = format!("{e:#}"), retry_in = ?delay, "event processing failed");
                delivery.nak(delay).await
            }
        };
        metrics::gauge!(metric::CONSUMER_WAITING, "consumer" => name.to_string()).set(0.0);
        if let Err(e) = result {
            tracing::warn!(consumer = name, error = %e, "acknowledgement failed; the event will be redelivered");
        }
        return;
    }
}
