//! Read models: a service's own copy of facts another service owns (the territories that
//! plans, notifications, subsidies and matching keep), fed by that service's events. Events
//! can arrive late (a redelivery after a failure lets a later event through first), so the
//! copy keeps one rule: **an older event never overwrites a newer state**.
//!
//! Each part of a copy that an event sets as a whole (a territory's stage, its roster, its
//! name and zone) has a position: the time and id of the newest event applied to it.
//! `advance` moves the position and says whether the event is newer; a handler applies an
//! event's part only when it is.

use sea_orm::{ConnectionTrait, DbErr, Statement};

use crate::bus::Envelope;

/// Moves the position of `part` of `model` to `event` if the event is newer than the last one
/// applied there (by event time, then id), in the caller's transaction. Returns whether it
/// is: false means a newer state is already applied and the event's part must be skipped.
pub async fn advance(
    txn: &impl ConnectionTrait,
    model: &str,
    part: &str,
    event: &Envelope,
) -> Result<bool, DbErr> {
    let backend = txn.get_database_backend();
    let postgres = backend == sea_orm::DbBackend::Postgres;
    let sql = if postgres {
        "INSERT INTO read_model_positions (model, key, event_micros, event_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (model, key) DO UPDATE SET event_micros = excluded.event_micros, event_id = excluded.event_id \
         WHERE (read_model_positions.event_micros, read_model_positions.event_id) < (excluded.event_micros, excluded.event_id)"
    } else {
        "INSERT INTO read_model_positions (model, key, event_micros, event_id) VALUES (?, ?, ?, ?) \
         ON CONFLICT (model, key) DO UPDATE SET event_micros = excluded.event_micros, event_id = excluded.event_id \
         WHERE read_model_positions.event_micros < excluded.event_micros \
            OR (read_model_positions.event_micros = excluded.event_micros AND read_model_positions.event_id < excluded.event_id)"
    };
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [
                model.into(),
                part.into(),
                event.time.timestamp_micros().into(),
                event.id.clone().into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Of the `parts` of `key` that `event` sets, those it is newer for (their positions moved
/// to it): what the handler applies.
pub async fn newer_parts<'a>(
    txn: &impl ConnectionTrait,
    model: &str,
    key: &str,
    parts: &[&'a str],
    event: &Envelope,
) -> Result<Vec<&'a str>, DbErr> {
    let mut newer = Vec::with_capacity(parts.len());
    for part in parts {
        if advance(txn, model, &format!("{key}/{part}"), event).await? {
            newer.push(*part);
        }
    }
    Ok(newer)
}
