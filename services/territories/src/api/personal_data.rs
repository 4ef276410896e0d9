//! tde.territories.v1.PersonalDataService: the right of access and the right to erasure for
//! the contacts the territories hold (RGPD articles 15 and 17).

use std::sync::Arc;

use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status};

use tde_proto::personal_data::v1 as hpb;
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::personal_data_service_server::PersonalDataService;
use tde_runtime::api::{Caller, timestamp};
use tde_runtime::holdings::{self, PersonalDataHolder};
use tde_runtime::outbox;
use tde_runtime::{ApiError, ServiceContext};

use super::convert;
use super::territories::TerritoryCache;
use crate::domain::contact::EmailAddress;
use crate::settings::TerritoriesSettings;
use crate::{SERVICE, events, storage};

/// What the territories hold about people: the contacts of each territory.
pub struct TerritoriesHolder {
    ctx: ServiceContext,
    cache: TerritoryCache,
}

impl TerritoriesHolder {
    pub fn new(ctx: ServiceContext, cache: TerritoryCache) -> Self {
        Self { ctx, cache }
    }

    /// Where the person appears, in the territories `caller` may see.
    async fn records(
        &self,
        caller: &Caller,
        email: &EmailAddress,
    ) -> Result<Vec<pb::PersonalDataRecord>, ApiError> {
        let territories = storage::find_mentioning(&self.ctx.db, email.as_str(), false).await?;
        let mut records = Vec::new();
        for t in territories
            .iter()
            .filter(|t| caller.may_see(&t.id, &t.region_code))
        {
            for (capacity, person) in t.appearances(email) {
                records.push(pb::PersonalDataRecord {
                    territory_id: t.id.clone(),
                    territory_name: t.name.clone(),
                    capacity: capacity.to_string(),
                    person: Some(convert::person_to_pb(person)),
                });
            }
        }
        Ok(records)
    }

    /// Removes the person from every territory `caller` may see and publishes
    /// `personal_data.erased` in any case (other services may hold the person without any
    /// territory doing so). Returns how many appearances went, and where.
    async fn erase_here(
        &self,
        caller: &Caller,
        email: &EmailAddress,
    ) -> Result<(usize, Vec<String>), ApiError> {
        let now = tde_runtime::api::now();
        let txn = self.ctx.db.begin().await?;
        let territories = storage::find_mentioning(&txn, email.as_str(), true).await?;
        let mut erased = 0;
        let mut territory_ids = Vec::new();
        let mut changes = Vec::new();
        let mut evictions = Vec::new();
        for mut t in territories
            .into_iter()
            .filter(|t| caller.may_see(&t.id, &t.region_code))
        {
            let expected = t.version;
            let removed = t.erase_person(email, now);
            if removed == 0 {
                continue;
            }
            if !storage::update(&txn, &t, expected).await? {
                return Err(ApiError::Aborted {
                    resource_type: "territory",
                    name: t.id.clone(),
                });
            }
            erased += removed;
            territory_ids.push(t.id.clone());
            evictions.push(self.cache.evict_on_drop(&t.id));
            // The new roster, for the services that keep recipients.
            changes.push(events::steering_body_changed(&t));
        }
        changes.push(events::personal_data_erased(
            email.fingerprint(),
            territory_ids.clone(),
            now,
        ));
        outbox::enqueue(&txn, changes).await?;
        // Rosters published before carry the address: they are not kept for replays.
        outbox::forget_published_mentioning(&txn, email.as_str().as_bytes()).await?;
        txn.commit().await?;
        drop(evictions);
        self.ctx.outbox.wake();
        tracing::info!(
            records = erased,
            territories = territory_ids.len(),
            "personal data erased"
        );
        Ok((erased, territory_ids))
    }
}

fn holding(record: &pb::PersonalDataRecord) -> hpb::Holding {
    let person = record.person.clone().unwrap_or_default();
    hpb::Holding {
        kind: record.capacity.clone(),
        object_id: record.territory_id.clone(),
        territory_id: record.territory_id.clone(),
        fields: [
            ("name", person.name),
            ("email", person.email),
            ("phone", person.phone),
            ("role", person.role),
            ("territory_name", record.territory_name.clone()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    }
}

fn erasure_steps(erased: usize) -> Vec<hpb::ErasureStep> {
    holdings::step("territory_contact", erased as u64, "deleted")
        .into_iter()
        .collect()
}

#[tonic::async_trait]
impl PersonalDataHolder for TerritoriesHolder {
    async fn export(&self, caller: &Caller, email: &str) -> Result<Vec<hpb::Holding>, ApiError> {
        let email = email_of(email)?;
        Ok(self
            .records(caller, &email)
            .await?
            .iter()
            .map(holding)
            .collect())
    }

    async fn erase(&self, caller: &Caller, email: &str) -> Result<Vec<hpb::ErasureStep>, ApiError> {
        let email = email_of(email)?;
        let (erased, _) = self.erase_here(caller, &email).await?;
        Ok(erasure_steps(erased))
    }
}

/// `tde.territories.v1.PersonalDataService`: the platform's answer to RGPD requests. The
/// territories service answers for its contacts and asks every other service for its own
/// data (in this process, and in the configured peers).
pub struct PersonalDataApi {
    ctx: ServiceContext,
    holder: Arc<TerritoriesHolder>,
}

impl PersonalDataApi {
    pub fn new(ctx: ServiceContext, holder: Arc<TerritoriesHolder>) -> Self {
        Self { ctx, holder }
    }

    fn peers(&self) -> holdings::Peers {
        self.ctx.settings.section::<TerritoriesSettings>().peers()
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
        let credentials = holdings::forwarded_credentials(request.metadata());
        let email = email_of(&request.get_ref().email)?;
        // The trail names the person by fingerprint: the address stays out of it.
        caller.concerns(format!("people/{}", email.fingerprint()));
        let records = self.holder.records(&caller, &email).await?;
        if !records.is_empty() {
            caller.reads_personal_data();
        }
        let mut services = vec![hpb::ServiceHoldings {
            service: SERVICE.to_string(),
            status: hpb::AnswerStatus::Answered as i32,
            problem: String::new(),
            holdings: records.iter().map(holding).collect(),
        }];
        services.extend(
            holdings::gather_export(
                &self.ctx.holders,
                &self.peers(),
                &caller,
                &credentials,
                email.as_str(),
                SERVICE,
            )
            .await,
        );
        tracing::info!(records = records.len(), "personal data exported");
        Ok(Response::new(pb::ExportPersonalDataResponse {
            records,
            export_time: Some(timestamp(tde_runtime::api::now())),
            services,
        }))
    }

    async fn erase_personal_data(
        &self,
        request: Request<pb::ErasePersonalDataRequest>,
    ) -> Result<Response<pb::ErasePersonalDataResponse>, Status> {
        let caller = Caller::of(&request);
        let credentials = holdings::forwarded_credentials(request.metadata());
        let email = email_of(&request.get_ref().email)?;
        caller.concerns(format!("people/{}", email.fingerprint()));
        // The other services first, so that the answer says what each did; then this one,
        // whose `personal_data.erased` event reaches every service in any case (one that
        // could not be asked now erases when it receives it).
        let others = holdings::gather_erasure(
            &self.ctx.holders,
            &self.peers(),
            &caller,
            &credentials,
            email.as_str(),
            SERVICE,
        )
        .await;
        let (erased, territory_ids) = self.holder.erase_here(&caller, &email).await?;
        let mut services = vec![hpb::ServiceErasure {
            service: SERVICE.to_string(),
            status: hpb::AnswerStatus::Answered as i32,
            problem: String::new(),
            steps: erasure_steps(erased),
        }];
        services.extend(others);
        Ok(Response::new(pb::ErasePersonalDataResponse {
            erased_records: erased as i32,
            territory_ids,
            services,
        }))
    }
}
