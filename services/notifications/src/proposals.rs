//! Proposals to trusted providers: when the matching service proposes an action to a provider
//! (`proposal.sent`), its contact gets a short French e-mail — the action, the territory, the
//! period, the budget and the deadline to answer.
//!
//! The notice is rendered once, when the event is consumed, into `proposal_notices` (no
//! person's data: the greeting names nobody), and sent through the same `notifications` rows
//! as every other e-mail — kind `proposal`, keyed by the notice's id in `meeting_id`, the
//! contact's address as recipient — so that leases, retries, dead letters, exactly-once
//! sending and the erasure of a person's rows apply unchanged.

use async_trait::async_trait;
use chrono::{NaiveDate, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use prost::Message as _;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr, Statement};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

use tde_proto::matching::v1 as pb;
use tde_runtime::api::from_timestamp;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};

use crate::delivery::SendError;
use crate::delivery::dispatcher::Dispatcher;
use crate::domain::{Channel, Status, fingerprint};
use crate::events::Planner;
use crate::storage::{self, Notification};

/// The kind of the `notifications` rows of proposals.
pub const KIND: &str = "proposal";

/// A proposal's e-mail, the greeting apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    pub text: String,
}

const MONTHS: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

fn french_date(d: NaiveDate) -> String {
    use chrono::Datelike as _;
    format!("{} {} {}", d.day(), MONTHS[d.month0() as usize], d.year())
}

fn date(raw: &str) -> String {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(french_date)
        .unwrap_or_else(|_| raw.to_string())
}

const FOOTER: &str = "Ce message est envoyé automatiquement par la plateforme Territoires d'engagement (ANCT) : merci de ne pas y répondre. Répondez à la proposition sur la plateforme (API ou « tde match accept / decline »), avec le jeton de votre organisme.";

/// The e-mail of a proposal, in French.
pub fn notice(e: &pb::ProposalSent) -> Notice {
    let deadline = e
        .deadline
        .as_ref()
        .and_then(from_timestamp)
        .map(|t| {
            // The programme works in metropolitan France's time.
            let local = t.with_timezone(&chrono_tz::Europe::Paris);
            format!(
                "{} à {}",
                french_date(local.date_naive()),
                local.format("%H:%M")
            )
        })
        .unwrap_or_else(|| "la date indiquée sur la plateforme".into());
    let budget = if e.budget_cents > 0 {
        format!(
            "\nBudget prévu : {}.",
            crate::funding::euros(e.budget_cents)
        )
    } else {
        String::new()
    };
    Notice {
        subject: format!(
            "Proposition d'intervention : {} ({})",
            e.action_title, e.territory_name
        ),
        text: format!(
            "L'ANCT propose à {} d'intervenir auprès de {} pour l'action « {} », du {} au {}.{budget}\n\nMerci d'accepter ou de décliner cette proposition avant le {deadline} (référence {}). Sans réponse, elle sera proposée à un autre prestataire.",
            e.provider_name,
            e.territory_name,
            e.action_title,
            date(&e.planned_start),
            date(&e.planned_end),
            e.proposal_id,
        ),
    }
}

/// The consumer of the matching events (stream `TDE_MATCHING`), through the inbox.
pub struct ProposalEvents(pub Planner);

#[async_trait]
impl EventHandler for ProposalEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        if event.event_type != "tde.matching.v1.ProposalSent" {
            return Ok(());
        }
        let e = pb::ProposalSent::decode(event.payload.clone())?;
        let address = tde_runtime::personal_data::normalize_email(&e.contact_email);
        if address.is_empty() {
            tracing::info!(proposal_id = %e.proposal_id, "proposal without a contact to tell");
            return Ok(());
        }
        let notice_id = format!("proposal-{}", e.proposal_id);
        insert_notice(txn, &notice_id, &e.territory_id, &notice(&e)).await?;
        insert_notification(txn, &notice_id, &e.territory_id, &address, &self.0.domain).await?;
        Ok(())
    }

    async fn committed(&self, _event: &Envelope) {
        self.0.waker.wake();
    }
}

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

async fn insert_notice(
    db: &impl ConnectionTrait,
    id: &str,
    territory_id: &str,
    notice: &Notice,
) -> Result<(), DbErr> {
    db.execute_raw(statement(
        db,
        "INSERT INTO proposal_notices (id, territory_id, subject, text, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
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

/// The `notifications` row of a proposal, due now; the table's unique key ignores a second.
async fn insert_notification(
    db: &impl ConnectionTrait,
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
            KIND.into(),
            Channel::Email.as_str().into(),
            Status::Pending.as_str().into(),
            now.into(),
            now.into(),
            format!("<{KIND}.{notice_id}.{who}@{domain}>").into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

async fn find_notice(db: &impl ConnectionTrait, id: &str) -> Result<Option<Notice>, DbErr> {
    let row = db
        .query_one_raw(statement(
            db,
            "SELECT subject, text FROM proposal_notices WHERE id = ?",
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

/// The e-mail of a notice to `address`: plain French text.
pub fn message(
    notice: &Notice,
    address: &str,
    d: &Dispatcher,
    message_id: &str,
) -> Result<Message, SendError> {
    if address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(SendError::permanent(
            "destinataire invalide : caractères de contrôle dans l'adresse",
        ));
    }
    let from = Mailbox::new(
        Some(d.organizer.name.clone()),
        d.organizer
            .email
            .parse()
            .map_err(|e| SendError::permanent(format!("sender address: {e}")))?,
    );
    let to = Mailbox::new(
        None,
        address
            .parse()
            .map_err(|e| SendError::permanent(format!("recipient address: {e}")))?,
    );
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
        .body(format!("Bonjour,\n\n{}\n\n{FOOTER}\n", notice.text))
        .map_err(|e| SendError::permanent(format!("building the message: {e}")))
}

/// Sends the proposal of notification `n`, unless its notice is gone or its lease was lost.
pub async fn attempt(
    d: &Dispatcher,
    n: &Notification,
    token: &str,
) -> Result<crate::funding::Attempt, SendError> {
    use crate::funding::Attempt;
    let transient = |e: DbErr| SendError::transient(format!("storage: {e}"));
    let Some(notice) = find_notice(&d.db, &n.meeting_id).await.map_err(transient)? else {
        return Ok(Attempt::NoLongerDue("notice unknown".into()));
    };
    let message = message(&notice, &n.recipient, d, &n.message_id)?;
    if !storage::holds_lease(&d.db, &n.id, token)
        .await
        .map_err(transient)?
    {
        return Ok(Attempt::LeaseLost);
    }
    d.mailer.send(message).await?;
    Ok(Attempt::Sent)
}

/// The table of rendered proposal notices.
pub struct CreateProposalNotices;

impl MigrationName for CreateProposalNotices {
    fn name(&self) -> &str {
        "m20261204_000400_proposal_notices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateProposalNotices {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use tde_runtime::migration::ident;
        m.create_table(
            Table::create()
                .table(ident("proposal_notices"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_proposal_says_what_where_when_and_until_when() {
        let deadline = chrono::DateTime::parse_from_rfc3339("2027-03-08T16:30:00Z")
            .expect("date")
            .with_timezone(&Utc);
        let n = notice(&pb::ProposalSent {
            proposal_id: "p-1".into(),
            provider_name: "Démocratie ouverte Loire".into(),
            territory_name: "Saint-Étienne".into(),
            action_title: "Budget participatif".into(),
            planned_start: "2027-04-01".into(),
            planned_end: "2027-04-30".into(),
            deadline: Some(tde_runtime::api::timestamp(deadline)),
            budget_cents: 2_500_000,
            ..Default::default()
        });
        assert_eq!(
            n.subject,
            "Proposition d'intervention : Budget participatif (Saint-Étienne)"
        );
        assert!(
            n.text.contains("du 1 avril 2027 au 30 avril 2027"),
            "{}",
            n.text
        );
        // 16:30 UTC is 17:30 in Paris in March (winter time).
        assert!(
            n.text.contains("avant le 8 mars 2027 à 17:30"),
            "{}",
            n.text
        );
        assert!(n.text.contains("25\u{202f}000,00\u{a0}€"), "{}", n.text);
        assert!(n.text.contains("référence p-1"));
    }
}
