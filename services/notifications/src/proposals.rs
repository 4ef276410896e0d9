//! Proposals to trusted providers: when the matching service proposes an action to a provider
//! (`proposal.sent`), its contact gets a short French e-mail — the action, the territory, the
//! period, the budget and the deadline to answer. When an acceptance does not stand because
//! the project lead set the action's provider by hand (`proposal.superseded`), the same
//! address is told, so that the provider does not plan work that is no longer theirs: the
//! event carries no address, the one the proposal went to is read back from its row.
//!
//! The notice is rendered once, when the event is consumed, into `proposal_notices` (no
//! person's data: the greeting names nobody), and sent through the same `notifications` rows
//! as every other e-mail — kind `proposal`, keyed by the notice's id in `meeting_id`, the
//! contact's address as recipient — so that leases, retries, dead letters, exactly-once
//! sending and the erasure of a person's rows apply unchanged.

use async_trait::async_trait;
use chrono::NaiveDate;
use prost::Message as _;
use sea_orm::DatabaseTransaction;

use tde_proto::matching::v1 as pb;
use tde_runtime::api::from_timestamp;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};

use crate::delivery::SendError;
use crate::delivery::dispatcher::Dispatcher;
use crate::domain::message::french_day as french_date;
use crate::events::Planner;
use crate::notices::{
    Attempt, CreateNotices, Notice, find_notice, insert_notice, insert_notification, message,
    notice_recipients, send, storage_error,
};
use crate::storage::Notification;

/// The kind of the `notifications` rows of proposals.
pub const KIND: &str = "proposal";

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
            tde_runtime::format::euros(e.budget_cents)
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
        match event.event_type.as_str() {
            "tde.matching.v1.ProposalSent" => {}
            "tde.matching.v1.ProposalSuperseded" => {
                let e = pb::ProposalSuperseded::decode(event.payload.clone())?;
                return self.superseded(txn, &e).await;
            }
            _ => return Ok(()),
        }
        let e = pb::ProposalSent::decode(event.payload.clone())?;
        let address = tde_runtime::personal_data::normalize_email(&e.contact_email);
        if address.is_empty() {
            tracing::info!(proposal_id = %e.proposal_id, "proposal without a contact to tell");
            return Ok(());
        }
        let notice_id = format!("proposal-{}", e.proposal_id);
        insert_notice(txn, TABLE, &notice_id, &e.territory_id, &notice(&e)).await?;
        insert_notification(
            txn,
            KIND,
            &notice_id,
            &e.territory_id,
            &address,
            &self.0.domain,
        )
        .await?;
        Ok(())
    }

    async fn committed(&self, _event: &Envelope) {
        self.0.waker.wake();
    }
}

impl ProposalEvents {
    /// Tells the address the proposal went to that the acceptance does not stand. Nothing
    /// when the proposal was never e-mailed or its recipient has been erased since.
    async fn superseded(
        &self,
        txn: &DatabaseTransaction,
        e: &pb::ProposalSuperseded,
    ) -> Result<(), HandlerError> {
        let proposal_notice = format!("proposal-{}", e.proposal_id);
        let Some(proposal) = find_notice(txn, TABLE, &proposal_notice).await? else {
            tracing::info!(proposal_id = %e.proposal_id, "superseded proposal never e-mailed");
            return Ok(());
        };
        let notice_id = format!("proposal-superseded-{}", e.proposal_id);
        let recipients = notice_recipients(txn, KIND, &proposal_notice).await?;
        if recipients.is_empty() {
            tracing::info!(proposal_id = %e.proposal_id, "superseded proposal without a recipient left");
            return Ok(());
        }
        insert_notice(
            txn,
            TABLE,
            &notice_id,
            &recipients[0].1,
            &superseded_notice(&e.proposal_id, &proposal, e.action_provider_id.is_empty()),
        )
        .await?;
        for (address, territory_id) in &recipients {
            insert_notification(txn, KIND, &notice_id, territory_id, address, &self.0.domain)
                .await?;
        }
        Ok(())
    }
}

/// The e-mail telling a provider its acceptance does not stand, in French; `proposal` is the
/// notice of the proposal it accepted (its subject names the action and the territory);
/// `removed` when the lead took the provider off the action rather than naming another.
pub fn superseded_notice(proposal_id: &str, proposal: &Notice, removed: bool) -> Notice {
    let about = proposal
        .subject
        .strip_prefix("Proposition d'intervention : ")
        .unwrap_or(&proposal.subject);
    let decision = if removed {
        "retiré cette action des interventions prévues"
    } else {
        "désigné elle-même le prestataire de cette action"
    };
    Notice {
        subject: format!("Intervention non confirmée : {about}"),
        text: format!(
            "Vous aviez accepté la proposition d'intervention « {about} » (référence {proposal_id}). L'équipe projet du territoire a entre-temps {decision} : votre acceptation ne peut pas être confirmée et cette intervention ne vous est pas attribuée.\n\nVotre capacité est libérée pour d'autres propositions. Nous vous prions de nous excuser pour ce contretemps."
        ),
    }
}

/// Sends the proposal of notification `n`, unless its notice is gone or its lease was lost.
pub async fn attempt(d: &Dispatcher, n: &Notification, token: &str) -> Result<Attempt, SendError> {
    let Some(notice) = find_notice(&d.db, TABLE, &n.meeting_id)
        .await
        .map_err(storage_error)?
    else {
        return Ok(Attempt::NoLongerDue("notice unknown".into()));
    };
    // The contact is greeted without a name: the notice's row names nobody.
    let message = message(&notice, "", &n.recipient, d, &n.message_id, FOOTER)?;
    send(d, n, token, message).await
}

/// The table of rendered proposal notices, and its migration.
pub const TABLE: &str = "proposal_notices";
pub const CREATE_TABLE: CreateNotices = CreateNotices {
    migration: "m20261204_000400_proposal_notices",
    table: TABLE,
};

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

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

    #[test]
    fn a_superseded_acceptance_names_the_action_and_the_reference() {
        let proposal = notice(&pb::ProposalSent {
            proposal_id: "p-2".into(),
            territory_name: "Saint-Étienne".into(),
            action_title: "Budget participatif".into(),
            ..Default::default()
        });
        let n = superseded_notice("p-2", &proposal, false);
        assert_eq!(
            n.subject,
            "Intervention non confirmée : Budget participatif (Saint-Étienne)"
        );
        assert!(n.text.contains("« Budget participatif (Saint-Étienne) »"));
        assert!(n.text.contains("référence p-2"));
        assert!(n.text.contains("ne vous est pas attribuée"));
        assert!(
            n.text
                .contains("a entre-temps désigné elle-même le prestataire")
        );
        let removed = superseded_notice("p-2", &proposal, true);
        assert!(
            removed
                .text
                .contains("a entre-temps retiré cette action des interventions prévues"),
            "{}",
            removed.text
        );
    }
}
