//! The right to erasure when the request did not reach matching directly (the service was
//! unreachable, or not among the territories service's peers): on the territories'
//! `personal_data.erased`, the providers' contacts with that fingerprint are emptied, and the
//! `proposal.sent` events that carried the address are erased from the outbox and the stream.

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::subjects;
use tde_proto::territories::v1::facts::{self, TerritoryEvent};
use tde_runtime::bus::Envelope;
use tde_runtime::inbox::{EventHandler, HandlerError};
use tde_runtime::personal_data::{fingerprint, is_fingerprint};
use tde_runtime::{ServiceContext, holdings};

use crate::storage;

/// Empties the contact of every provider whose contact has fingerprint `sha256`: the
/// provider stays (its history, its proposals), and no proposal reaches the person until the
/// programme sets a new contact. Returns how many providers changed.
pub async fn erase_contacts(db: &impl ConnectionTrait, sha256: &str) -> Result<u64, DbErr> {
    let mut changed = 0;
    for mut r in storage::providers_with_contact(db, sha256).await? {
        let expected = r.version;
        r.provider.contact = Default::default();
        r.touch(tde_runtime::api::now());
        // A provider changed meanwhile must not keep the contact: the whole erasure fails
        // and is retried (the consumer redelivers, an RGPD request answers with the error).
        if !storage::update_provider(db, &r, expected).await? {
            return Err(DbErr::Custom(format!(
                "provider {} changed during the erasure of its contact",
                r.provider.id
            )));
        }
        changed += 1;
        tracing::info!(provider_id = %r.provider.id, "provider's contact erased");
    }
    Ok(changed)
}

/// Whether a `proposal.sent` payload was addressed to the person with fingerprint `sha256`.
fn proposal_names(payload: &[u8], sha256: &str) -> bool {
    <pb::ProposalSent as prost::Message>::decode(payload)
        .is_ok_and(|p| !p.contact_email.is_empty() && fingerprint(&p.contact_email) == sha256)
}

/// Consumes the territories' erasure events.
pub struct ErasureEvents {
    ctx: ServiceContext,
}

impl ErasureEvents {
    pub fn new(ctx: &ServiceContext) -> Self {
        Self { ctx: ctx.clone() }
    }
}

#[async_trait]
impl EventHandler for ErasureEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: &Envelope,
    ) -> Result<(), HandlerError> {
        let read = facts::read(&event.event_type, &event.payload);
        let TerritoryEvent::PersonalDataErased { email_sha256 } =
            read.map_err(|e| HandlerError::Permanent(e.into()))?
        else {
            return Ok(());
        };
        if !is_fingerprint(&email_sha256) {
            return Err(HandlerError::Permanent(anyhow::anyhow!(
                "erasure event without a valid fingerprint"
            )));
        }
        erase_contacts(txn, &email_sha256).await?;
        let names = move |payload: &[u8]| proposal_names(payload, &email_sha256);
        holdings::erase_published(
            &self.ctx,
            txn,
            subjects::PROPOSAL_SENT,
            "tde.matching.v1.ProposalSent",
            &names,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proposal_names_its_contact_only() {
        let sent = pb::ProposalSent {
            contact_email: "sam@formateurs.example.org".into(),
            ..Default::default()
        };
        let payload = prost::Message::encode_to_vec(&sent);
        assert!(proposal_names(
            &payload,
            &fingerprint(" Sam@Formateurs.example.org")
        ));
        assert!(!proposal_names(&payload, &fingerprint("autre@example.org")));
        assert!(!proposal_names(
            b"\xff\xff not protobuf",
            &fingerprint("x@y.fr")
        ));
        let unaddressed = prost::Message::encode_to_vec(&pb::ProposalSent::default());
        assert!(!proposal_names(&unaddressed, &fingerprint("")));
    }
}
