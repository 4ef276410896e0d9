//! Dead letters: events a consumer can never process (an unreadable payload, a handler that
//! keeps refusing it), parked whole with their error instead of being dropped. They are
//! counted in a metric, listed, and replayed through the same handler by an operator once the
//! cause is fixed (`tde dead-letter …`, `tde.operations.v1.OperationsService`).
//!
//! An event is never parked because the consumer's own database is unreachable: the
//! consumer waits for it (see `inbox`).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::bus::Envelope;
use crate::inbox::{EventHandler, HandlerError};

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub consumer: String,
        pub event_id: String,
        pub subject: String,
        pub event_type: String,
        pub source: String,
        pub event_time: DateTimeUtc,
        pub aggregate_id: String,
        pub payload: Vec<u8>,
        pub traceparent: Option<String>,
        pub error: String,
        pub deliveries: i64,
        pub parked_at: DateTimeUtc,
        pub replayed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use entity::{ActiveModel, Column, Entity, Model};

/// Longest error text kept with a dead letter.
const MAX_ERROR_CHARS: usize = 2_000;

/// Parks `event` for `consumer` with `error` (once: parking it again changes nothing).
pub async fn park(
    db: &impl ConnectionTrait,
    consumer: &str,
    event: &Envelope,
    error: &str,
    deliveries: u64,
) -> Result<(), DbErr> {
    let row = ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        consumer: Set(consumer.to_string()),
        event_id: Set(event.id.clone()),
        subject: Set(event.subject.clone()),
        event_type: Set(event.event_type.clone()),
        source: Set(event.source.clone()),
        event_time: Set(event.time),
        aggregate_id: Set(event.aggregate_id.clone()),
        payload: Set(event.payload.to_vec()),
        traceparent: Set(event.traceparent.clone()),
        error: Set(error.chars().take(MAX_ERROR_CHARS).collect()),
        deliveries: Set(i64::try_from(deliveries).unwrap_or(i64::MAX)),
        parked_at: Set(Utc::now()),
        replayed_at: Set(None),
    };
    Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::Consumer, Column::EventId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Dead letters not replayed yet.
pub async fn waiting(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    Entity::find()
        .filter(Column::ReplayedAt.is_null())
        .count(db)
        .await
}

/// A page of dead letters (oldest first), of `consumer` if given, after the id `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    consumer: Option<&str>,
    include_replayed: bool,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Model>, DbErr> {
    let mut query = Entity::find();
    if let Some(c) = consumer {
        query = query.filter(Column::Consumer.eq(c));
    }
    if !include_replayed {
        query = query.filter(Column::ReplayedAt.is_null());
    }
    if let Some(after) = after {
        query = query.filter(Column::Id.gt(after));
    }
    query.order_by_asc(Column::Id).limit(limit).all(db).await
}

/// The event a dead letter holds, as it was delivered.
pub fn envelope(m: &Model) -> Envelope {
    Envelope {
        id: m.event_id.clone(),
        subject: m.subject.clone(),
        event_type: m.event_type.clone(),
        source: m.source.clone(),
        time: m.event_time,
        aggregate_id: m.aggregate_id.clone(),
        payload: m.payload.clone().into(),
        traceparent: m.traceparent.clone(),
    }
}

/// What replaying one dead letter did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// Processed now (or found processed already): marked replayed.
    Done,
    /// Still refused: kept, with the new error.
    Refused(String),
}

/// Replays `letter` through `handler` (exactly once, through the inbox) and marks it
/// replayed when it went through.
pub async fn replay(
    db: &DatabaseConnection,
    handler: &dyn EventHandler,
    letter: &Model,
    now: DateTime<Utc>,
) -> Result<Replayed, DbErr> {
    let event = envelope(letter);
    match crate::inbox::process(db, &letter.consumer, handler, &event).await {
        Ok(_) => {
            Entity::update_many()
                .col_expr(Column::ReplayedAt, Expr::value(now))
                .filter(Column::Id.eq(letter.id.clone()))
                .exec(db)
                .await?;
            Ok(Replayed::Done)
        }
        Err(HandlerError::Unavailable(e)) => Err(DbErr::Custom(format!("{e:#}"))),
        Err(HandlerError::Transient(e) | HandlerError::Permanent(e)) => {
            let error = format!("{e:#}");
            Entity::update_many()
                .col_expr(
                    Column::Error,
                    Expr::value(error.chars().take(MAX_ERROR_CHARS).collect::<String>()),
                )
                .filter(Column::Id.eq(letter.id.clone()))
                .exec(db)
                .await?;
            Ok(Replayed::Refused(error))
        }
    }
}
