//! tde.territories.v1.PersonalDataService: the right of access and the right to erasure for
//! the contacts the territories hold (RGPD articles 15 and 17).

use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status};

use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::personal_data_service_server::PersonalDataService;
use tde_runtime::api::{Caller, timestamp};
use tde_runtime::outbox;
use tde_runtime::{ApiError, ServiceContext};

use super::convert;
use super::territories::TerritoryCache;
use crate::domain::contact::EmailAddress;
use crate::events;
use crate::storage;

pub struct PersonalDataApi {
    ctx: ServiceContext,
    cache: TerritoryCache,
}

impl PersonalDataApi {
    pub fn new(ctx: ServiceContext, cache: TerritoryCache) -> Self {
        Self { ctx, cache }
    }
}

fn email_of(raw: &str) -> Result<EmailAddress, ApiError> {
    EmailAddress::parse("email", raw).map_err(ApiError::from)
}

#[tonic::async_trait]
impl PersonalDataService for PersonalDataApi {
    async fn export_personal_data(
        &self,
        request: Request<pb::ExportPersonalDataRequest>,
    ) -> Result<Response<pb::ExportPersonalDataResponse>, Status> {
        let caller = Caller::of(&request);
        let email = email_of(&request.get_ref().email)?;
        // The trail names the person by fingerprint: the address stays out of it.
        caller.concerns(format!("people/{}", email.fingerprint()));
        let territories = storage::find_mentioning(&self.ctx.db, email.as_str(), false)
            .await
            .map_err(ApiError::from)?;
        let mut records = Vec::new();
        for t in territories
            .iter()
            .filter(|t| caller.may_see(&t.id, &t.region_code))
        {
            for (capacity, person) in t.appearances(&email) {
                records.push(pb::PersonalDataRecord {
                    territory_id: t.id.clone(),
                    territory_name: t.name.clone(),
                    capacity: capacity.to_string(),
                    person: Some(convert::person_to_pb(person)),
                });
            }
        }
        if !records.is_empty() {
            caller.reads_personal_data();
        }
        tracing::info!(records = records.len(), "personal data exported");
        Ok(Response::new(pb::ExportPersonalDataResponse {
            records,
            export_time: Some(timestamp(tde_runtime::api::now())),
        }))
    }

    async fn erase_personal_data(
        &self,
        request: Request<pb::ErasePersonalDataRequest>,
    ) -> Result<Response<pb::ErasePersonalDataResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let email = email_of(&r.email)?;
        caller.concerns(format!("people/{}", email.fingerprint()));
        let now = tde_runtime::api::now();
        let txn = self.ctx.db.begin().await.map_err(ApiError::from)?;
        let territories = storage::find_mentioning(&txn, email.as_str(), true)
            .await
            .map_err(ApiError::from)?;
        let mut erased = 0;
        let mut territory_ids = Vec::new();
        let mut changes = Vec::new();
        let mut evictions = Vec::new();
        for mut t in territories
            .into_iter()
            .filter(|t| caller.may_see(&t.id, &t.region_code))
        {
            let expected = t.version;
            let removed = t.erase_person(&email, now);
            if removed == 0 {
                continue;
            }
            if !storage::update(&txn, &t, expected)
                .await
                .map_err(ApiError::from)?
            {
                return Err(ApiError::Aborted {
                    resource_type: "territory",
                    name: t.id.clone(),
                }
                .into());
            }
            erased += removed;
            territory_ids.push(t.id.clone());
            evictions.push(self.cache.evict_on_drop(&t.id));
            // The new roster, for the services that keep recipients.
            changes.push(events::steering_body_changed(&t));
        }
        // Published whatever this service held: the person may be known elsewhere only (a
        // charter signatory, a notification recipient).
        changes.push(events::personal_data_erased(
            email.fingerprint(),
            territory_ids.clone(),
            now,
        ));
        outbox::enqueue(&txn, changes)
            .await
            .map_err(ApiError::from)?;
        // Rosters published before carry the address: they are not kept for replays.
        outbox::forget_published_mentioning(&txn, email.as_str().as_bytes())
            .await
            .map_err(ApiError::from)?;
        txn.commit().await.map_err(ApiError::from)?;
        drop(evictions);
        self.ctx.outbox.wake();
        tracing::info!(
            records = erased,
            territories = territory_ids.len(),
            "personal data erased"
        );
        Ok(Response::new(pb::ErasePersonalDataResponse {
            erased_records: erased as i32,
            territory_ids,
        }))
    }
}
