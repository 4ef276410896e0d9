//! Each territory's calendar feed over HTTP: `GET /calendars/<territory>/<secret>.ics`, the
//! coming meetings (and those of the last 30 days) as an iCalendar `PUBLISH` object that
//! calendar applications subscribe to. The secret in the link is the only credential: it is
//! compared in constant time, and a wrong one looks like an unknown territory.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::domain::message::{Organizer, feed};
use crate::storage;

/// The path of a territory's feed.
pub fn path(territory_id: &str, secret: &str) -> String {
    format!("/calendars/{territory_id}/{secret}.ics")
}

#[derive(Clone)]
pub struct FeedState {
    pub db: DatabaseConnection,
    pub organizer: Arc<Organizer>,
    pub domain: String,
}

async fn calendar(
    State(state): State<FeedState>,
    Path((territory_id, file)): Path<(String, String)>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "calendrier inconnu").into_response();
    let Some(secret) = file.strip_suffix(".ics") else {
        return not_found();
    };
    let territory = match storage::find_territory(&state.db, &territory_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "calendar feed: storage unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "indisponible").into_response();
        }
    };
    let Some(expected) = territory.feed_secret.as_deref() else {
        return not_found();
    };
    if !same_secret(expected, secret) {
        return not_found();
    }
    let since = Utc::now() - chrono::Duration::days(30);
    let meetings = match storage::meetings_of_territory(&state.db, &territory_id, since, true).await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "calendar feed: storage unavailable");
            return (StatusCode::SERVICE_UNAVAILABLE, "indisponible").into_response();
        }
    };
    let meetings: Vec<_> = meetings.into_iter().map(|m| m.meeting).collect();
    let body = feed(&meetings, &territory.name, &state.organizer, &state.domain);
    (
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Compares the digests of both secrets without stopping at the first difference: the time
/// taken tells nothing of the secret.
fn same_secret(expected: &str, given: &str) -> bool {
    use sha2::Digest as _;
    let (a, b) = (sha2::Sha256::digest(expected), sha2::Sha256::digest(given));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Serves the feeds on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: FeedState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route(
            "/calendars/{territory}/{file}",
            axum::routing::get(calendar),
        )
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// Binds the feed listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
