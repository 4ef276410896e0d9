//! tde.subsidies.v1.EnvelopeService.

use sea_orm::TransactionTrait as _;
use tonic::{Request, Response, Status};

use tde_proto::subsidies::v1 as pb;
use tde_proto::subsidies::v1::envelope_service_server::EnvelopeService;
use tde_runtime::ApiError;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::idempotency::IdempotencyKey;

use super::convert::envelope_to_pb;
use super::{
    DEFAULT_PAGE, MAX_PAGE, SubsidiesApi, envelope_resource, filter_region, not_found,
    refuse_invalid, stale,
};
use crate::domain::envelope::{Envelope, check_amount_change};
use crate::storage::{self, EnvelopeFilter};

impl SubsidiesApi {
    async fn create_envelope_(
        &self,
        caller: &Caller,
        r: pb::CreateEnvelopeRequest,
    ) -> Result<Envelope, ApiError> {
        let key = IdempotencyKey::of(caller, "envelope", &r.request_id, &r);
        let advance = match r.advance_percent {
            0 => Ok(self.settings.default_advance_percent),
            p => u8::try_from(p).ok().filter(|p| *p <= 100).ok_or_else(|| {
                ApiError::invalid("advance_percent", "must be a percentage, 0 to 100")
            }),
        };
        let region = r.region_code.trim().to_string();
        let now = tde_runtime::api::now();
        let id = uuid::Uuid::now_v7().to_string();
        let envelope = Envelope::new(
            id.clone(),
            r.budget_year,
            &region,
            None,
            r.amount_cents,
            // A bad percentage is the `advance` check's violation, not the envelope's.
            advance.as_ref().map_or(0, |p| *p),
            &r.reason,
            &r.act_reference,
            &caller.actor,
            now,
        );
        refuse_invalid(&[&key, &advance, &envelope])?;
        let (key, mut envelope) = (key?, envelope?);
        let db = &self.ctx.db;
        let txn = db.begin().await?;
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &txn, &id).await? {
            drop(txn);
            caller.concerns(envelope_resource(&existing));
            return storage::find_envelope(db, &existing, false)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("replayed envelope {existing} is gone"))
                });
        }
        // A région's sub-envelope is carved out of the year's national envelope: what the
        // national one has not given to other régions.
        let parent = if region.is_empty() {
            None
        } else {
            let parent = storage::find_envelope_of(&txn, r.budget_year, "", true)
                .await?
                .ok_or_else(|| ApiError::FailedPrecondition {
                    kind: "NO_NATIONAL_ENVELOPE",
                    subject: r.budget_year.to_string(),
                    description: format!(
                        "open the national envelope of {} before the régions' sub-envelopes",
                        r.budget_year
                    ),
                })?;
            let given = storage::sub_envelopes_total(&txn, &parent.id, None).await?;
            let left = parent.amount_cents - given;
            if r.amount_cents > left {
                return Err(ApiError::FailedPrecondition {
                    kind: "BEYOND_NATIONAL",
                    subject: parent.id.clone(),
                    description: format!(
                        "the national envelope of {} has {} not given to régions: a sub-envelope cannot be larger",
                        r.budget_year,
                        tde_runtime::format::euros(left)
                    ),
                });
            }
            Some(parent.id)
        };
        envelope.parent_id = parent;
        caller.concerns(envelope_resource(&envelope.id));
        if let Err(e) = storage::insert_envelope(&txn, &envelope).await {
            drop(txn);
            if storage::is_unique_violation(&e) {
                return Err(ApiError::AlreadyExists {
                    resource_type: "envelope",
                    name: if region.is_empty() {
                        format!("{}", r.budget_year)
                    } else {
                        format!("{} région {region}", r.budget_year)
                    },
                });
            }
            return Err(e.into());
        }
        tde_runtime::audit::record_in(&txn).await?;
        txn.commit().await?;
        tracing::info!(envelope_id = %envelope.id, budget_year = envelope.budget_year, region = %envelope.region_code, "envelope opened");
        Ok(envelope)
    }

    async fn change_envelope(
        &self,
        caller: &Caller,
        r: pb::ChangeEnvelopeAmountRequest,
    ) -> Result<Envelope, ApiError> {
        let id = parse_id("id", &r.id);
        let change = check_amount_change(r.amount_cents, &r.reason, &r.act_reference);
        refuse_invalid(&[&id, &change])?;
        let id = id?.to_string();
        change?;
        caller.concerns(envelope_resource(&id));
        let txn = self.ctx.db.begin().await?;
        // Lock order: the national envelope, then the sub-envelope (as commitments do).
        let peek = storage::find_envelope(&txn, &id, false)
            .await?
            .ok_or_else(|| not_found("envelope", &id))?;
        let ceiling = match &peek.parent_id {
            Some(parent_id) => {
                let parent = storage::find_envelope(&txn, parent_id, true)
                    .await?
                    .ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("national envelope {parent_id} is gone"))
                    })?;
                Some(
                    parent.amount_cents
                        - storage::sub_envelopes_total(&txn, parent_id, Some(&id)).await?,
                )
            }
            None => None,
        };
        let mut envelope = storage::find_envelope(&txn, &id, true)
            .await?
            .ok_or_else(|| not_found("envelope", &id))?;
        if !r.etag.is_empty() && r.etag != envelope.etag() {
            return Err(stale("envelope", &id));
        }
        let floor = if envelope.is_national() {
            storage::sub_envelopes_total(&txn, &id, None).await?
        } else {
            0
        };
        let expected = envelope.version;
        let now = tde_runtime::api::now();
        envelope.change_amount(
            r.amount_cents,
            floor,
            ceiling,
            &r.reason,
            &r.act_reference,
            &caller.actor,
            now,
        )?;
        if !storage::update_envelope_amount(&txn, &envelope, expected).await? {
            return Err(stale("envelope", &id));
        }
        tde_runtime::audit::record_in(&txn).await?;
        txn.commit().await?;
        Ok(envelope)
    }
}

#[tonic::async_trait]
impl EnvelopeService for SubsidiesApi {
    async fn create_envelope(
        &self,
        request: Request<pb::CreateEnvelopeRequest>,
    ) -> Result<Response<pb::CreateEnvelopeResponse>, Status> {
        let caller = Caller::of(&request);
        let e = self.create_envelope_(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::CreateEnvelopeResponse {
            envelope: Some(envelope_to_pb(&e)),
        }))
    }

    async fn get_envelope(
        &self,
        request: Request<pb::GetEnvelopeRequest>,
    ) -> Result<Response<pb::GetEnvelopeResponse>, Status> {
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        let e = storage::find_envelope(&self.ctx.db, &id, false)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found("envelope", &id))?;
        Ok(Response::new(pb::GetEnvelopeResponse {
            envelope: Some(envelope_to_pb(&e)),
        }))
    }

    async fn list_envelopes(
        &self,
        request: Request<pb::ListEnvelopesRequest>,
    ) -> Result<Response<pb::ListEnvelopesResponse>, Status> {
        let r = request.into_inner();
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let filter = EnvelopeFilter {
            budget_year: (r.budget_year != 0).then_some(r.budget_year),
            region_code: filter_region("region_code", &r.region_code)?,
        };
        let rows = storage::list_envelopes(&self.ctx.db, &filter, page.after(), page.fetch())
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |e| e.id.clone());
        Ok(Response::new(pb::ListEnvelopesResponse {
            envelopes: rows.iter().map(envelope_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn change_envelope_amount(
        &self,
        request: Request<pb::ChangeEnvelopeAmountRequest>,
    ) -> Result<Response<pb::ChangeEnvelopeAmountResponse>, Status> {
        let caller = Caller::of(&request);
        let e = self.change_envelope(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::ChangeEnvelopeAmountResponse {
            envelope: Some(envelope_to_pb(&e)),
        }))
    }
}
