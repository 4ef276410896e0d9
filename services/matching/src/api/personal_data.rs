//! What the matching service holds about people — the contacts of providers, named by their
//! address — for the platform's RGPD export and erasure (`tde_runtime::holdings`).

use sea_orm::TransactionTrait as _;

use tde_proto::personal_data::v1 as pb;
use tde_runtime::api::Caller;
use tde_runtime::holdings::{self, PersonalDataHolder};
use tde_runtime::personal_data::fingerprint;
use tde_runtime::{ApiError, ServiceContext};

use crate::storage;

pub struct MatchingHolder {
    ctx: ServiceContext,
}

impl MatchingHolder {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }
}

#[tonic::async_trait]
impl PersonalDataHolder for MatchingHolder {
    /// Providers belong to no territory: the export names every provider whose contact is
    /// the person.
    async fn export(&self, _caller: &Caller, email: &str) -> Result<Vec<pb::Holding>, ApiError> {
        let fp = fingerprint(email);
        Ok(storage::providers_with_contact(&self.ctx.db, &fp)
            .await?
            .into_iter()
            .map(|r| pb::Holding {
                kind: "provider_contact".into(),
                object_id: r.provider.id.clone(),
                territory_id: String::new(),
                fields: [
                    ("name", r.provider.contact.name.clone()),
                    ("email", r.provider.contact.email.clone()),
                    ("provider", r.provider.name.clone()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            })
            .collect())
    }

    /// The provider stays (its history, its proposals); its contact is emptied, so that no
    /// proposal reaches the person: the programme sets a new one.
    async fn erase(&self, _caller: &Caller, email: &str) -> Result<Vec<pb::ErasureStep>, ApiError> {
        let fp = fingerprint(email);
        let txn = self.ctx.db.begin().await?;
        let changed = crate::erasure::erase_contacts(&txn, &fp).await?;
        // The proposals e-mailed to the person carried the address: no replay hands it out.
        let forgotten =
            tde_runtime::outbox::forget_published_mentioning(&txn, email.as_bytes()).await?;
        txn.commit().await?;
        Ok(holdings::step("provider_contact", changed, "redacted")
            .into_iter()
            .chain(holdings::step("published_event", forgotten, "deleted"))
            .collect())
    }
}
