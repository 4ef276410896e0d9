//! Database connections: PostgreSQL or SQLite chosen by URL, migrations at start-up unless
//! disabled.

use std::time::Duration;

use sea_orm::{
    ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DbBackend, DbErr,
};

use crate::config::DatabaseSettings;

/// The territories a caller sees, as storage filters them: territory ids and régions, or
/// every territory (`None`). From `Principal::visibility().filter()`.
pub type VisibleTo = Option<(Vec<String>, Vec<String>)>;

/// The condition keeping the rows of the territories `to` sees, by their territory and
/// région columns; none when every territory is seen.
pub fn visible<C: ColumnTrait>(territory: C, region: C, to: &VisibleTo) -> Option<Condition> {
    to.as_ref().map(|(ids, regions)| {
        Condition::any()
            .add(territory.is_in(ids.clone()))
            .add(region.is_in(regions.clone()))
    })
}

/// A caller who sees no territory at all: lists answer empty without a query.
pub fn sees_no_territory(to: &VisibleTo) -> bool {
    matches!(to, Some((ids, regions)) if ids.is_empty() && regions.is_empty())
}

/// Connects to one service's database; creates the SQLite file and its folder when missing.
pub async fn connect(
    settings: &DatabaseSettings,
    service: &str,
) -> Result<DatabaseConnection, DbErr> {
    let mut url = settings.url_for(service);
    let sqlite = url.starts_with("sqlite:");
    if sqlite {
        if let Some(path) = sqlite_path(&url)
            && let Some(parent) = std::path::Path::new(&path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| DbErr::Custom(format!("creating {}: {e}", parent.display())))?;
        }
        if !url.contains("mode=") {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("mode=rwc");
        }
    }
    let mut options = ConnectOptions::new(url);
    options
        // One connection serialises SQLite access: a deferred transaction that reads and then
        // writes could otherwise fail at once (SQLITE_BUSY) when another connection wrote in
        // between. The embedded mode trades concurrency for that simplicity.
        .max_connections(if sqlite { 1 } else { settings.max_connections })
        .min_connections(1)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .acquire_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .sqlx_logging(false);
    let db = Database::connect(options).await?;
    if sqlite {
        // WAL lets readers run beside the one writer; the setting persists in the file.
        db.execute_unprepared("PRAGMA journal_mode=WAL").await?;
        db.execute_unprepared("PRAGMA synchronous=NORMAL").await?;
    }
    Ok(db)
}

/// The file path of a `sqlite://path?…` URL.
pub fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

pub fn is_postgres(db: &impl ConnectionTrait) -> bool {
    db.get_database_backend() == DbBackend::Postgres
}

/// A stored value that cannot be read back: names the table's kind of data and what is
/// wrong.
pub fn corrupt(what: &str, e: impl std::fmt::Display) -> DbErr {
    DbErr::Custom(format!("stored data has an unreadable {what}: {e}"))
}

/// A JSON document of a row.
pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, DbErr> {
    serde_json::to_string(value).map_err(|e| DbErr::Custom(format!("encoding: {e}")))
}

/// Reads a JSON document of a row. The error names the position only: the text may hold
/// personal data.
pub fn from_json<T: serde::de::DeserializeOwned>(what: &str, raw: &str) -> Result<T, DbErr> {
    serde_json::from_str(raw).map_err(|e| {
        corrupt(
            what,
            format!(
                "{:?} at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ),
        )
    })
}

/// `query` locking the rows it reads until the transaction ends, on PostgreSQL (SQLite has
/// one writer: no lock is needed), so that concurrent changes of a row queue instead of
/// failing.
pub fn for_update<Q: sea_orm::QuerySelect>(db: &impl ConnectionTrait, query: Q) -> Q {
    if is_postgres(db) {
        query.lock_exclusive()
    } else {
        query
    }
}

/// Whether the database cannot be reached now (no connection, the connection lost mid-query,
/// the server shutting down or refusing connections): worth retrying later, unlike an error
/// in what was asked.
pub fn is_unavailable(e: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    let runtime = match e {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(r) | DbErr::Exec(r) | DbErr::Query(r) => r,
        _ => return false,
    };
    match runtime {
        RuntimeErr::SqlxError(error) => match error.as_ref() {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            // PostgreSQL shutting down or starting (57P01, 57P03), too many connections
            // (53300), or the connection failing (08xxx).
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
            }),
            _ => false,
        },
        _ => matches!(e, DbErr::Conn(_)),
    }
}

/// Whether the database refused a value for what it is, not for the state of the data: a NUL
/// or an invalid character in a text (22021, 22P05), a string too long for its column
/// (22001), a value too large to index (54000).
pub fn is_refused_input(e: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) =
        e
    else {
        return false;
    };
    match error.as_ref() {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| matches!(code.as_ref(), "22021" | "22P05" | "22001" | "54000")),
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

/// Whether a unique constraint refused the write.
pub fn is_unique_violation(e: &DbErr) -> bool {
    matches!(
        e.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths() {
        assert_eq!(
            sqlite_path("sqlite://./data/t.db?mode=rwc").as_deref(),
            Some("./data/t.db")
        );
        assert_eq!(
            sqlite_path("sqlite:/tmp/x.db").as_deref(),
            Some("/tmp/x.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
