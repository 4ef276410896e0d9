//! The transactional outbox. A service writes its change and the events describing it in one
//! database transaction (`enqueue`); the relay publishes pending events in order, marks them
//! published only after the bus acknowledged them, and retries with back-off while the bus is
//! down. A relay that dies between publishing and marking republishes on restart: the bus
//! drops the duplicate by event id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::bus::{BusError, Envelope, EventBus, Namespace, StreamSpec};
use crate::config::OutboxSettings;
use crate::telemetry::{TraceContext, metric};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub seq: i64,
        #[sea_orm(unique)]
        pub event_id: String,
        pub aggregate_type: String,
        pub aggregate_id: String,
        /// Subject without the namespace, e.g. `tde.territories.territory.registered`.
        pub subject: String,
        pub event_type: String,
        pub payload: Vec<u8>,
        pub traceparent: Option<String>,
        pub created_at: DateTimeUtc,
        pub published_at: Option<DateTimeUtc>,
        /// Set when the bus refused the event for good: it waits for an operator.
        pub parked_at: Option<DateTimeUtc>,
        pub park_reason: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{ActiveModel, Column, Entity};

/// An event to publish once the transaction that wrote it commits.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub subject: String,
    pub event_type: &'static str,
    pub payload: Vec<u8>,
}

impl NewEvent {
    /// An event of `service` on subject `tde.<service>.<suffix>`, typed by its protobuf name.
    pub fn new(
        service: &str,
        aggregate_type: &'static str,
        aggregate_id: impl Into<String>,
        suffix: &str,
        event_type: &'static str,
        message: &impl prost::Message,
    ) -> Self {
        Self {
            aggregate_type,
            aggregate_id: aggregate_id.into(),
            subject: format!("tde.{service}.{suffix}"),
            event_type,
            payload: message.encode_to_vec(),
        }
    }
}

/// Writes events in the caller's transaction; returns their ids.
pub async fn enqueue(
    db: &impl ConnectionTrait,
    events: Vec<NewEvent>,
) -> Result<Vec<String>, DbErr> {
    // The call's audit record commits with its change.
    crate::audit::record_in(db).await?;
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let traceparent = TraceContext::current().map(|c| c.to_header());
    let now = Utc::now();
    let mut ids = Vec::with_capacity(events.len());
    let rows: Vec<ActiveModel> = events
        .into_iter()
        .map(|e| {
            let id = uuid::Uuid::now_v7().to_string();
            ids.push(id.clone());
            ActiveModel {
                event_id: Set(id),
                aggregate_type: Set(e.aggregate_type.to_string()),
                aggregate_id: Set(e.aggregate_id),
                subject: Set(e.subject),
                event_type: Set(e.event_type.to_string()),
                payload: Set(e.payload),
                traceparent: Set(traceparent.clone()),
                created_at: Set(now),
                published_at: Set(None),
                parked_at: Set(None),
                park_reason: Set(None),
                ..Default::default()
            }
        })
        .collect();
    Entity::insert_many(rows).exec_without_returning(db).await?;
    Ok(ids)
}

/// Wakes the relay right after a commit, so events leave without waiting for the next poll.
#[derive(Clone, Default)]
pub struct OutboxWaker(Arc<Notify>);

impl OutboxWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// Unpublished events and the age of the oldest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    pub events: u64,
    pub oldest_age: Duration,
}

pub async fn backlog(db: &DatabaseConnection) -> Result<Backlog, DbErr> {
    let events = Entity::find()
        .filter(Column::PublishedAt.is_null())
        .filter(Column::ParkedAt.is_null())
        .count(db)
        .await?;
    let oldest = Entity::find()
        .filter(Column::PublishedAt.is_null())
        .filter(Column::ParkedAt.is_null())
        .order_by_asc(Column::Seq)
        .one(db)
        .await?;
    let oldest_age = oldest
        .map(|m| (Utc::now() - m.created_at).to_std().unwrap_or_default())
        .unwrap_or_default();
    Ok(Backlog { events, oldest_age })
}

/// Events the bus refused for good, waiting for an operator (oldest first).
pub async fn parked(
    db: &impl ConnectionTrait,
    after_seq: Option<i64>,
    limit: u64,
) -> Result<Vec<entity::Model>, DbErr> {
    let mut query = Entity::find()
        .filter(Column::PublishedAt.is_null())
        .filter(Column::ParkedAt.is_not_null());
    if let Some(after) = after_seq {
        query = query.filter(Column::Seq.gt(after));
    }
    query.order_by_asc(Column::Seq).limit(limit).all(db).await
}

/// Puts parked events back in line (all of them when `event_ids` is empty): the relay
/// publishes them again, in order, with the later events of their aggregates behind them.
/// Returns how many.
pub async fn republish(db: &impl ConnectionTrait, event_ids: &[String]) -> Result<u64, DbErr> {
    let mut update = Entity::update_many()
        .col_expr(
            Column::ParkedAt,
            Expr::value(Option::<chrono::DateTime<Utc>>::None),
        )
        .col_expr(Column::ParkReason, Expr::value(Option::<String>::None))
        .filter(Column::PublishedAt.is_null())
        .filter(Column::ParkedAt.is_not_null());
    if !event_ids.is_empty() {
        update = update.filter(Column::EventId.is_in(event_ids.iter().cloned()));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// Forgets the published events whose payload holds `needle` (an erased person's address):
/// they were delivered long ago, and no later replay may hand the person's data out again.
/// Returns how many.
pub async fn forget_published_mentioning(
    db: &impl ConnectionTrait,
    needle: &[u8],
) -> Result<u64, DbErr> {
    if needle.is_empty() {
        return Ok(0);
    }
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        "DELETE FROM outbox_events WHERE published_at IS NOT NULL AND position($1::bytea in payload) > 0"
    } else {
        "DELETE FROM outbox_events WHERE published_at IS NOT NULL AND instr(payload, ?) > 0"
    };
    let result = db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            sql,
            [needle.to_vec().into()],
        ))
        .await?;
    Ok(result.rows_affected())
}

/// Forgets the published events of `event_type` whose payload `names` selects (a decoder
/// comparing an erased person's fingerprint, when only the fingerprint is known). Returns
/// how many.
pub async fn forget_published_naming(
    db: &impl ConnectionTrait,
    event_type: &str,
    names: &(dyn for<'p> Fn(&'p [u8]) -> bool + Send + Sync),
) -> Result<u64, DbErr> {
    let mut forgotten = 0;
    let mut after = 0i64;
    loop {
        let rows = Entity::find()
            .filter(Column::PublishedAt.is_not_null())
            .filter(Column::EventType.eq(event_type))
            .filter(Column::Seq.gt(after))
            .order_by_asc(Column::Seq)
            .limit(500)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(forgotten);
        };
        after = last.seq;
        let naming: Vec<i64> = rows
            .iter()
            .filter(|r| names(&r.payload))
            .map(|r| r.seq)
            .collect();
        if !naming.is_empty() {
            forgotten += Entity::delete_many()
                .filter(Column::Seq.is_in(naming))
                .exec(db)
                .await?
                .rows_affected;
        }
    }
}

/// Publishes again, in order, every event this outbox already published: how the in-process
/// bus of `tde dev`, which lives as long as the process, gets back at start what its
/// consumers may not have processed before the last stop. Consumers' inboxes make what they
/// had processed a no-op; the outbox is the bus's durable log in development.
pub async fn replay_published(
    db: &DatabaseConnection,
    bus: &dyn EventBus,
    namespace: &Namespace,
    service: &str,
) -> Result<u64, RelayError> {
    bus.ensure_stream(&namespace.stream(service)).await?;
    let source = format!("/tde/{service}");
    let mut after = 0i64;
    let mut replayed = 0u64;
    loop {
        let rows = Entity::find()
            .filter(Column::PublishedAt.is_not_null())
            .filter(Column::Seq.gt(after))
            .order_by_asc(Column::Seq)
            .limit(1_000)
            .all(db)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(replayed);
        };
        after = last.seq;
        let envelopes: Vec<Envelope> = rows
            .iter()
            .map(|r| Envelope {
                id: r.event_id.clone(),
                subject: namespace.prefixed(&r.subject),
                event_type: r.event_type.clone(),
                source: source.clone(),
                time: r.created_at,
                aggregate_id: r.aggregate_id.clone(),
                payload: r.payload.clone().into(),
                traceparent: r.traceparent.clone(),
            })
            .collect();
        bus.publish(&envelopes).await.map_err(|e| e.source)?;
        replayed += envelopes.len() as u64;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Publishes one service's outbox.
pub struct OutboxRelay {
    pub service: &'static str,
    pub db: DatabaseConnection,
    pub bus: Arc<dyn EventBus>,
    pub namespace: Namespace,
    pub settings: OutboxSettings,
    pub waker: OutboxWaker,
    stream_ready: AtomicBool,
}

impl OutboxRelay {
    pub fn new(
        service: &'static str,
        db: DatabaseConnection,
        bus: Arc<dyn EventBus>,
        namespace: Namespace,
        settings: OutboxSettings,
        waker: OutboxWaker,
    ) -> Self {
        Self {
            service,
            db,
            bus,
            namespace,
            settings,
            waker,
            stream_ready: AtomicBool::new(false),
        }
    }

    fn stream(&self) -> StreamSpec {
        self.namespace.stream(self.service)
    }

    /// Publishes until `shutdown`, then flushes what is pending (bounded by the publish
    /// timeout).
    pub async fn run(self, shutdown: CancellationToken) {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let max_backoff = Duration::from_millis(self.settings.max_backoff_ms);
        let mut backoff = Duration::from_millis(50);
        let mut last_gauge: Option<Instant> = None;
        loop {
            let wait = match self.publish_batch().await {
                Ok(n) if n as u64 >= self.settings.batch_size => Duration::ZERO,
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    poll
                }
                Err(e) => {
                    tracing::warn!(service = self.service, error = %e, retry_in = ?backoff, "outbox relay cannot publish");
                    let wait = backoff;
                    backoff = (backoff * 2).min(max_backoff);
                    wait
                }
            };
            if last_gauge.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                last_gauge = Some(Instant::now());
                if let Ok(b) = backlog(&self.db).await {
                    metrics::gauge!(metric::OUTBOX_BACKLOG, "service" => self.service)
                        .set(b.events as f64);
                    metrics::gauge!(metric::OUTBOX_OLDEST_AGE, "service" => self.service)
                        .set(b.oldest_age.as_secs_f64());
                }
                if let Ok(n) = Entity::find()
                    .filter(Column::PublishedAt.is_null())
                    .filter(Column::ParkedAt.is_not_null())
                    .count(&self.db)
                    .await
                {
                    metrics::gauge!(metric::OUTBOX_PARKED, "service" => self.service).set(n as f64);
                }
                if let Ok(n) = crate::dead_letter::waiting(&self.db).await {
                    metrics::gauge!(metric::DEAD_LETTERS, "service" => self.service).set(n as f64);
                }
            }
            if wait.is_zero() {
                if shutdown.is_cancelled() {
                    break;
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.waker.0.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.flush().await;
    }

    /// Publishes everything pending, giving up when the bus does not answer in time.
    pub async fn flush(&self) {
        let deadline = Instant::now() + Duration::from_millis(self.settings.publish_timeout_ms);
        while Instant::now() < deadline {
            match self.publish_batch().await {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(service = self.service, error = %e, "outbox not flushed at shutdown; it will be published at the next start");
                    return;
                }
            }
        }
    }

    /// Publishes the oldest pending events, in order; returns how many were published.
    pub async fn publish_batch(&self) -> Result<usize, RelayError> {
        if !self.stream_ready.load(Ordering::Acquire) {
            self.bus.ensure_stream(&self.stream()).await?;
            self.stream_ready.store(true, Ordering::Release);
        }
        if crate::db::is_postgres(&self.db) {
            // Rows stay locked until marked: the relays of several replicas take turns, so
            // no event overtakes an earlier one.
            let txn = self.db.begin().await?;
            let result = self.publish_from(&txn, true).await;
            txn.commit().await?;
            result
        } else {
            // SQLite has one process and one relay per file; no lock is needed.
            self.publish_from(&self.db, false).await
        }
    }

    async fn publish_from(
        &self,
        db: &impl ConnectionTrait,
        lock: bool,
    ) -> Result<usize, RelayError> {
        // An aggregate with a parked event waits behind it: its order is kept.
        let blocked = sea_orm::sea_query::Query::select()
            .column(Column::AggregateId)
            .from(Entity)
            .and_where(Column::PublishedAt.is_null())
            .and_where(Column::ParkedAt.is_not_null())
            .to_owned();
        let mut query = Entity::find()
            .filter(Column::PublishedAt.is_null())
            .filter(Column::ParkedAt.is_null())
            .filter(Column::AggregateId.not_in_subquery(blocked))
            .order_by_asc(Column::Seq)
            .limit(self.settings.batch_size);
        if lock {
            query = query.lock_exclusive();
        }
        let rows = query.all(db).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let source = format!("/tde/{}", self.service);
        let envelopes: Vec<Envelope> = rows
            .iter()
            .map(|r| Envelope {
                id: r.event_id.clone(),
                subject: self.namespace.prefixed(&r.subject),
                event_type: r.event_type.clone(),
                source: source.clone(),
                time: r.created_at,
                aggregate_id: r.aggregate_id.clone(),
                payload: r.payload.clone().into(),
                traceparent: r.traceparent.clone(),
            })
            .collect();
        let (published, error) = match self.bus.publish(&envelopes).await {
            Ok(()) => (rows.len(), None),
            Err(e) => (e.acked, Some(e.source)),
        };
        if published > 0 {
            let seqs: Vec<i64> = rows[..published].iter().map(|r| r.seq).collect();
            Entity::update_many()
                .col_expr(Column::PublishedAt, Expr::value(Utc::now()))
                .filter(Column::Seq.is_in(seqs))
                .exec(db)
                .await?;
            metrics::counter!(metric::OUTBOX_PUBLISHED, "service" => self.service)
                .increment(published as u64);
        }
        match error {
            None => Ok(published),
            Some(BusError::Refused(reason)) => {
                // That one event, never the relay: parked, and the others go on.
                let row = &rows[published];
                Entity::update_many()
                    .col_expr(Column::ParkedAt, Expr::value(Utc::now()))
                    .col_expr(Column::ParkReason, Expr::value(reason.clone()))
                    .filter(Column::Seq.eq(row.seq))
                    .exec(db)
                    .await?;
                tracing::error!(service = self.service, event_id = %row.event_id, event_type = %row.event_type, aggregate_id = %row.aggregate_id, reason, "event refused by the bus: parked");
                Ok(published + 1)
            }
            Some(error) => {
                // The stream may have been lost (NATS restarted without storage, stream
                // deleted): ensure it again before the next attempt.
                self.stream_ready.store(false, Ordering::Release);
                Err(error.into())
            }
        }
    }
}
