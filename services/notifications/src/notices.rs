//! Notices: short French e-mails told once about a fact of another service — a subsidy
//! decided or paid (`funding`), a proposal to a provider (`proposals`). Each kind renders its
//! notice when the event is consumed into a table of its own (no person's data: the greeting
//! is added at send time) and sends it through the `notifications` rows, keyed by the
//! notice's id in `meeting_id`, so that leases, retries, dead letters, exactly-once sending
//! and the erasure of a person's rows apply unchanged. What they share is here.

use chrono::Utc;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use sea_orm::{ConnectionTrait, DbErr, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use crate::delivery::SendError;
use crate::delivery::dispatcher::Dispatcher;
use crate::domain::{Channel, Status, fingerprint};
use crate::storage::{self, Notification};

/// A notice's e-mail, the greeting apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub text: String,
}

/// What came of sending one notice.
pub enum Attempt {
    Sent,
    NoLongerDue(String),
    LeaseLost,
}

/// `sql` with `?` placeholders, numbered for PostgreSQL.
fn statement(db: &impl ConnectionTrait, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DbBackend::Postgres {
        let mut out = String::new();
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                out.push_str(&format!("${n}"));
            } else {
                out.push(c);
            }
        }
        out
    } else {
        sql.to_string()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Keeps the rendered notice `id` in `table` (once: a second is ignored).
pub async fn insert_notice(
    db: &impl ConnectionTrait,
    table: &str,
    id: &str,
    territory_id: &str,
    notice: &Notice,
) -> Result<(), DbErr> {
    db.execute_raw(statement(
        db,
        &format!(
            "INSERT INTO {table} (id, territory_id, subject, text, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
        ),
        vec![
            id.into(),
            territory_id.into(),
            notice.subject.clone().into(),
            notice.text.clone().into(),
            Utc::now().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The notice `id` of `table`, if it is still there.
pub async fn find_notice(
    db: &impl ConnectionTrait,
    table: &str,
    id: &str,
) -> Result<Option<Notice>, DbErr> {
    let row = db
        .query_one_raw(statement(
            db,
            &format!("SELECT subject, text FROM {table} WHERE id = ?"),
            vec![id.into()],
        ))
        .await?;
    row.map(|r| {
        Ok(Notice {
            subject: r.try_get("", "subject")?,
            text: r.try_get("", "text")?,
        })
    })
    .transpose()
}

/// One `notifications` row of kind `kind` for notice `notice_id` to `recipient`, due now; a
/// second one for the same notice and recipient is ignored (the table's unique key).
pub async fn insert_notification(
    db: &impl ConnectionTrait,
    kind: &str,
    notice_id: &str,
    territory_id: &str,
    recipient: &str,
    domain: &str,
) -> Result<(), DbErr> {
    let now = Utc::now();
    let who = &fingerprint(recipient)[..16];
    db.execute_raw(statement(
        db,
        "INSERT INTO notifications (id, meeting_id, sequence, territory_id, recipient, recipient_sha256, kind, channel, status, \
         due_at, next_attempt_at, attempts, message_id, created_at) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT DO NOTHING",
        vec![
            uuid::Uuid::now_v7().to_string().into(),
            notice_id.into(),
            territory_id.into(),
            recipient.into(),
            fingerprint(recipient).into(),
            kind.into(),
            Channel::Email.as_str().into(),
            Status::Pending.as_str().into(),
            now.into(),
            now.into(),
            format!("<{kind}.{notice_id}.{who}@{domain}>").into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The addresses (with their territory) notice `notice_id` of `kind` went or goes to: not
/// those dropped, nor those erased since (their fingerprint is emptied with the address).
pub async fn notice_recipients(
    db: &impl ConnectionTrait,
    kind: &str,
    notice_id: &str,
) -> Result<Vec<(String, String)>, DbErr> {
    let rows = db
        .query_all_raw(statement(
            db,
            "SELECT recipient, territory_id FROM notifications WHERE kind = ? AND meeting_id = ? \
             AND recipient_sha256 <> '' AND status <> ? ORDER BY recipient",
            vec![
                kind.into(),
                notice_id.into(),
                Status::Dropped.as_str().into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "recipient")?, r.try_get("", "territory_id")?)))
        .collect()
}

/// The e-mail of a notice to `name` (if known) <`address`>: plain French text, greeting,
/// notice, then `footer`.
pub fn message(
    notice: &Notice,
    name: &str,
    address: &str,
    d: &Dispatcher,
    message_id: &str,
    footer: &str,
) -> Result<Message, SendError> {
    if name.chars().any(char::is_control)
        || address.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(SendError::permanent(
            "destinataire invalide : caractères de contrôle dans le nom ou l'adresse",
        ));
    }
    let from = Mailbox::new(
        Some(d.organizer.name.clone()),
        d.organizer
            .email
            .parse()
            .map_err(|e| SendError::permanent(format!("sender address: {e}")))?,
    );
    let name = name.trim();
    let to = Mailbox::new(
        (!name.is_empty()).then(|| name.to_string()),
        address
            .parse()
            .map_err(|e| SendError::permanent(format!("recipient address: {e}")))?,
    );
    let greeting = if name.is_empty() {
        "Bonjour,".to_string()
    } else {
        format!("Bonjour {name},")
    };
    Message::builder()
        .from(from)
        .to(to)
        .subject(notice.subject.clone())
        .message_id(Some(message_id.to_string()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            "fr".into(),
        ))
        .header(ContentType::TEXT_PLAIN)
        .body(format!("{greeting}\n\n{}\n\n{footer}\n", notice.text))
        .map_err(|e| SendError::permanent(format!("building the message: {e}")))
}

/// Sends `message` for notification `n`, unless the lease `token` was lost meanwhile.
pub async fn send(
    d: &Dispatcher,
    n: &Notification,
    token: &str,
    message: Message,
) -> Result<Attempt, SendError> {
    if !storage::holds_lease(&d.db, &n.id, token)
        .await
        .map_err(storage_error)?
    {
        return Ok(Attempt::LeaseLost);
    }
    d.mailer.send(message).await?;
    Ok(Attempt::Sent)
}

/// A storage failure while sending: worth retrying.
pub fn storage_error(e: DbErr) -> SendError {
    SendError::transient(format!("storage: {e}"))
}

/// Creates a table of rendered notices.
pub struct CreateNotices {
    pub migration: &'static str,
    pub table: &'static str,
}

impl MigrationName for CreateNotices {
    fn name(&self) -> &str {
        self.migration
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNotices {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use tde_runtime::migration::ident;
        m.create_table(
            Table::create()
                .table(ident(self.table))
                .if_not_exists()
                .col(string(ident("id")).primary_key())
                .col(string(ident("territory_id")))
                .col(text(ident("subject")))
                .col(text(ident("text")))
                .col(timestamp_with_time_zone(ident("created_at")))
                .to_owned(),
        )
        .await
    }
}
