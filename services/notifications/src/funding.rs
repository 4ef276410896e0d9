//! Funding notices: the territory's privileged contact (interlocuteur privilégié) hears of its
//! subsidy's decision (`subsidy.decided`) and of each payment (`payment.paid`) by a short
//! French e-mail — the decision, the amount, what comes next.
//!
//! A notice is rendered once, when its event is consumed, and kept in `funding_notices` (no
//! person's data: the greeting is added at sending time from the recipient). It is sent
//! through the same `notifications` rows as meeting e-mails — kind `notice`, keyed by the
//! notice's id in `meeting_id` — so that the dispatcher's leases, retries, dead letters and
//! exactly-once sending apply unchanged.

use async_trait::async_trait;
use chrono::NaiveDate;
use prost::Message as _;
use sea_orm::DatabaseTransaction;

use tde_proto::subsidies::v1 as pb;
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};

use crate::delivery::SendError;
use crate::delivery::dispatcher::Dispatcher;
use crate::domain::Channel;
use crate::domain::message::french_day as french_date;
use crate::events::Planner;
use crate::notices::{
    Attempt, CreateNotices, Notice, find_notice, insert_notice, insert_notification, message, send,
    storage_error,
};
use crate::storage::{self, Notification};
use tde_runtime::format::euros;

/// The kind of the `notifications` rows of notices.
pub const KIND: &str = "notice";

const FOOTER: &str = "Ce message est envoyé automatiquement par la plateforme Territoires d'engagement (ANCT) : merci de ne pas y répondre. Votre chef de projet ANCT reste votre interlocuteur pour toute question.";

fn year_label(s: &pb::SubsidyFacts) -> String {
    if s.amendment_number > 0 {
        format!(
            "de l'année {} (avenant {})",
            s.plan_year, s.amendment_number
        )
    } else {
        format!("de l'année {}", s.plan_year)
    }
}

/// The notice of a decision.
pub fn decided(e: &pb::SubsidyDecided) -> Option<Notice> {
    let s = e.subsidy.as_ref()?;
    let granted = s.status == pb::SubsidyStatus::Granted as i32
        || s.status == pb::SubsidyStatus::PartiallyGranted as i32;
    let year = year_label(s);
    Some(if granted {
        let partly = if s.granted_cents < s.requested_cents {
            format!(
                " sur {} demandés (attribution partielle)",
                euros(s.requested_cents)
            )
        } else {
            String::new()
        };
        let act = if e.legal_act_reference.is_empty() {
            String::new()
        } else {
            format!("\nActe attributif : {}.", e.legal_act_reference)
        };
        let next = if e.advance_cents > 0 && e.advance_cents < s.granted_cents {
            format!(
                "La suite : une avance de {} va vous être versée ; le solde, {}, le sera après l'enregistrement du bilan {year}.",
                euros(e.advance_cents),
                euros(s.granted_cents - e.advance_cents)
            )
        } else if e.advance_cents > 0 {
            format!(
                "La suite : la subvention va vous être versée en une fois ({}).",
                euros(e.advance_cents)
            )
        } else {
            format!("La suite : la subvention sera versée après l'enregistrement du bilan {year}.")
        };
        Notice {
            subject: format!(
                "Subvention {year} accordée : {} ({})",
                euros(s.granted_cents),
                s.territory_name
            ),
            text: format!(
                "L'ANCT a accordé la subvention {year} du plan d'accompagnement de {} : {}{partly}.{act}\n\n{next}",
                s.territory_name,
                euros(s.granted_cents),
            ),
        }
    } else {
        let reason = if e.refusal_reason.trim().is_empty() {
            String::new()
        } else {
            format!("\nMotif : {}", e.refusal_reason.trim())
        };
        Notice {
            subject: format!("Subvention {year} non accordée ({})", s.territory_name),
            text: format!(
                "L'ANCT n'a pas accordé la subvention {year} demandée pour le plan d'accompagnement de {} ({}).{reason}\n\nLa suite : votre chef de projet ANCT reviendra vers vous ; un programme révisé peut être soumis à nouveau.",
                s.territory_name,
                euros(s.requested_cents),
            ),
        }
    })
}

/// The notice of a payment.
pub fn paid(e: &pb::PaymentPaid, territory_name: &str) -> Option<Notice> {
    let p = e.payment.as_ref()?;
    let balance = p.kind == pb::PaymentKind::Balance as i32;
    let what = if balance { "le solde" } else { "l'avance" };
    let on = NaiveDate::parse_from_str(&e.paid_on, "%Y-%m-%d")
        .map(|d| format!(" le {}", french_date(d)))
        .unwrap_or_default();
    let reference = if p.reference.is_empty() {
        String::new()
    } else {
        format!(" (référence {})", p.reference)
    };
    let next = if e.remaining_cents <= 0 {
        format!(
            "La subvention de l'année {} est désormais entièrement versée.",
            p.plan_year
        )
    } else if balance {
        format!("Reste à verser : {}.", euros(e.remaining_cents))
    } else {
        format!(
            "La suite : le solde, {}, sera versé après l'enregistrement du bilan de l'année {}.",
            euros(e.remaining_cents),
            p.plan_year
        )
    };
    Some(Notice {
        subject: format!(
            "Versement de {} : {what} de la subvention de l'année {} ({territory_name})",
            euros(p.amount_cents),
            p.plan_year
        ),
        text: format!(
            "L'ANCT a versé{on} {} au titre de {what} de la subvention de l'année {} du plan d'accompagnement de {territory_name}{reference}.\n\n{next}",
            euros(p.amount_cents),
            p.plan_year,
        ),
    })
}

/// The consumer of the subsidies events (stream `TDE_SUBSIDIES`), through the inbox.
pub struct SubsidyEvents(pub Planner);

#[async_trait]
impl EventHandler for SubsidyEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let (territory_id, notice) = match event.event_type.as_str() {
            "tde.subsidies.v1.SubsidyDecided" => {
                let e = pb::SubsidyDecided::decode(event.payload.clone())?;
                let territory = e
                    .subsidy
                    .as_ref()
                    .map(|s| s.territory_id.clone())
                    .unwrap_or_default();
                (territory, decided(&e))
            }
            "tde.subsidies.v1.PaymentPaid" => {
                let e = pb::PaymentPaid::decode(event.payload.clone())?;
                let territory = e
                    .payment
                    .as_ref()
                    .map(|p| p.territory_id.clone())
                    .unwrap_or_default();
                let name = storage::find_territory(txn, &territory)
                    .await?
                    .map(|t| t.name)
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "votre territoire".into());
                (territory, paid(&e, &name))
            }
            _ => return Ok(()),
        };
        let Some(notice) = notice else {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "{} without its subsidy or payment",
                event.event_type
            )));
        };
        let contacts: Vec<_> = storage::recipients_of(txn, &territory_id)
            .await?
            .into_iter()
            .filter(|r| r.role == "privileged_contact" && r.channel == Channel::Email)
            .collect();
        if contacts.is_empty() {
            tracing::info!(territory_id = %territory_id, event_type = %event.event_type, "no privileged contact to tell");
            return Ok(());
        }
        let notice_id = format!("notice-{}", event.id);
        insert_notice(txn, TABLE, &notice_id, &territory_id, &notice).await?;
        for to in contacts {
            insert_notification(
                txn,
                KIND,
                &notice_id,
                &territory_id,
                &to.email,
                &self.0.domain,
            )
            .await?;
        }
        Ok(())
    }

    async fn committed(&self, _event: &Envelope) {
        self.0.waker.wake();
    }
}

/// Sends the notice of notification `n`, unless its recipient left or its lease was lost.
pub async fn attempt(d: &Dispatcher, n: &Notification, token: &str) -> Result<Attempt, SendError> {
    let Some(notice) = find_notice(&d.db, TABLE, &n.meeting_id)
        .await
        .map_err(storage_error)?
    else {
        return Ok(Attempt::NoLongerDue("notice unknown".into()));
    };
    let Some(to) = storage::find_recipient(&d.db, &n.territory_id, &n.recipient)
        .await
        .map_err(storage_error)?
    else {
        return Ok(Attempt::NoLongerDue("no longer a recipient".into()));
    };
    let message = message(&notice, &to.name, &to.email, d, &n.message_id, FOOTER)?;
    send(d, n, token, message).await
}

/// The table of rendered funding notices, and its migration.
pub const TABLE: &str = "funding_notices";
pub const CREATE_TABLE: CreateNotices = CreateNotices {
    migration: "m20261204_000300_funding_notices",
    table: TABLE,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(status: pb::SubsidyStatus, requested: i64, granted: i64) -> pb::SubsidyFacts {
        pb::SubsidyFacts {
            subsidy_id: "s".into(),
            territory_id: "t".into(),
            territory_name: "Saint-Étienne".into(),
            plan_year: 1,
            requested_cents: requested,
            granted_cents: granted,
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn a_partial_grant_says_the_amount_the_advance_and_what_comes_next() {
        let n = decided(&pb::SubsidyDecided {
            subsidy: Some(facts(
                pb::SubsidyStatus::PartiallyGranted,
                2_000_000,
                1_500_001,
            )),
            advance_cents: 750_001,
            legal_act_reference: "CONV-2027-042".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            n.subject,
            "Subvention de l'année 1 accordée : 15\u{202f}000,01\u{a0}€ (Saint-Étienne)"
        );
        assert!(
            n.text
                .contains("sur 20\u{202f}000,00\u{a0}€ demandés (attribution partielle)"),
            "{}",
            n.text
        );
        assert!(n.text.contains("Acte attributif : CONV-2027-042."));
        assert!(
            n.text.contains("une avance de 7\u{202f}500,01\u{a0}€"),
            "{}",
            n.text
        );
        assert!(n.text.contains("le solde, 7\u{202f}500,00\u{a0}€, le sera après l'enregistrement du bilan de l'année 1"), "{}", n.text);
    }

    #[test]
    fn a_refusal_gives_its_reason() {
        let n = decided(&pb::SubsidyDecided {
            subsidy: Some(facts(pb::SubsidyStatus::Refused, 900_000, 0)),
            refusal_reason: "programme hors du champ".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(
            n.subject
                .starts_with("Subvention de l'année 1 non accordée")
        );
        assert!(n.text.contains("Motif : programme hors du champ"));
    }

    #[test]
    fn a_payment_says_what_is_left() {
        let advance = pb::PaymentPaid {
            payment: Some(pb::PaymentFacts {
                plan_year: 2,
                kind: pb::PaymentKind::Advance as i32,
                amount_cents: 500_000,
                reference: "VIR-1".into(),
                ..Default::default()
            }),
            paid_on: "2027-03-01".into(),
            remaining_cents: 500_000,
            ..Default::default()
        };
        let n = paid(&advance, "Roanne").unwrap();
        assert_eq!(
            n.subject,
            "Versement de 5\u{202f}000,00\u{a0}€ : l'avance de la subvention de l'année 2 (Roanne)"
        );
        assert!(
            n.text.contains("L'ANCT a versé le 1 mars 2027"),
            "{}",
            n.text
        );
        assert!(n.text.contains("(référence VIR-1)"));
        assert!(
            n.text
                .contains("après l'enregistrement du bilan de l'année 2")
        );
        let last = pb::PaymentPaid {
            remaining_cents: 0,
            ..advance
        };
        assert!(
            paid(&last, "Roanne")
                .unwrap()
                .text
                .contains("entièrement versée")
        );
    }
}
