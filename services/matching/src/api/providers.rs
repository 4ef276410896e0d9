//! tde.matching.v1.ProviderService: the registry of trusted providers.

use std::collections::BTreeSet;

use sea_orm::TransactionTrait as _;
use tonic::{Request, Response, Status};

use tde_proto::matching::v1 as pb;
use tde_proto::matching::v1::provider_service_server::ProviderService;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::auth::scope::CONTACTS_READ;
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::{ApiError, Violations};

use super::convert;
use super::{MatchingApi, not_found, provider_resource, stale};
use crate::domain::provider::{Contact, Provider, ProviderStatus};
use crate::domain::ranking::ProviderStats;
use crate::domain::siret::Siret;
use crate::storage::{self, ProviderFilter, ProviderRecord};

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;

const UPDATABLE: &str = "name, naf_code, qualiopi_expiry_date, skills, areas, capacity, day_rate_cents, conflict_territory_ids, contact";

fn contact_of(c: Option<&pb::ProviderContact>) -> Contact {
    c.map(|c| Contact {
        name: c.name.trim().to_string(),
        email: tde_runtime::personal_data::normalize_email(&c.email),
    })
    .unwrap_or_default()
}

fn expiry_of(s: &str, v: &mut Violations) -> Option<chrono::NaiveDate> {
    if s.is_empty() {
        None
    } else {
        convert::date_from_pb("provider.qualiopi_expiry_date", s, v)
    }
}

/// Territory ids in their one canonical form (lowercase, hyphenated), as needs carry them:
/// an id written otherwise must still trigger the conflict rule. Unparsable ones are kept
/// for validation to refuse.
fn conflicts_of(raw: &[String]) -> BTreeSet<String> {
    raw.iter()
        .map(|t| {
            let t = t.trim();
            uuid::Uuid::parse_str(t).map_or_else(|_| t.to_string(), |u| u.to_string())
        })
        .collect()
}

/// A new provider from the request (server-owned fields ignored).
fn provider_from_pb(id: String, input: &pb::Provider) -> Result<Provider, ApiError> {
    let mut v = Violations::default();
    let siret = match Siret::parse(&input.siret) {
        Ok(s) => Some(s),
        Err(e) => {
            v.add("provider.siret", e.to_string());
            None
        }
    };
    let skills = convert::skills_from_pb("provider.skills", &input.skills, &mut v);
    let areas = convert::areas_from_pb("provider.areas", &input.areas, &mut v);
    let qualiopi_expiry = expiry_of(&input.qualiopi_expiry_date, &mut v);
    let capacity = u32::try_from(input.capacity).unwrap_or(0);
    v.into_result()?;
    let Some(siret) = siret else {
        return Err(ApiError::invalid("provider.siret", "is required"));
    };
    let p = Provider {
        id,
        siret,
        name: input.name.trim().to_string(),
        naf_code: input.naf_code.trim().to_ascii_uppercase(),
        qualiopi_expiry,
        skills,
        areas,
        capacity,
        day_rate_cents: input.day_rate_cents,
        status: ProviderStatus::Active,
        status_reason: String::new(),
        conflict_territory_ids: conflicts_of(&input.conflict_territory_ids),
        contact: contact_of(input.contact.as_ref()),
    };
    p.validate()
        .map_err(|e| ApiError::from(crate::domain::nest("provider.", e)))?;
    Ok(p)
}

impl MatchingApi {
    pub(crate) fn provider_reply(
        &self,
        caller: &Caller,
        r: &ProviderRecord,
        stats: &ProviderStats,
    ) -> pb::Provider {
        let with_contact = caller.has_scope(CONTACTS_READ);
        if with_contact {
            caller.reads_personal_data();
        }
        convert::provider_to_pb(r, stats, with_contact)
    }

    async fn stats_of(&self, id: &str) -> Result<ProviderStats, ApiError> {
        Ok(storage::provider_stats_of(&self.ctx.db, id, None, tde_runtime::api::now()).await?)
    }

    async fn register(
        &self,
        caller: &Caller,
        r: pb::RegisterProviderRequest,
    ) -> Result<ProviderRecord, ApiError> {
        let input = r
            .provider
            .ok_or_else(|| ApiError::invalid("provider", "is required"))?;
        let id = uuid::Uuid::now_v7().to_string();
        let provider = provider_from_pb(id.clone(), &input)?;
        let key = IdempotencyKey::of(caller, "provider", &r.request_id, &input)?;
        caller.concerns(provider_resource(&id));
        let txn = self.ctx.db.begin().await?;
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &txn, &id).await? {
            drop(txn);
            caller.concerns(provider_resource(&existing));
            return storage::find_provider(&self.ctx.db, &existing)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("replayed provider {existing} is gone"))
                });
        }
        let now = tde_runtime::api::now();
        let record = ProviderRecord {
            provider,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        if !storage::insert_provider(&txn, &record).await? {
            return Err(ApiError::AlreadyExists {
                resource_type: "provider",
                name: record.provider.siret.to_string(),
            });
        }
        txn.commit().await?;
        Ok(record)
    }

    async fn update(
        &self,
        caller: &Caller,
        r: pb::UpdateProviderRequest,
    ) -> Result<ProviderRecord, ApiError> {
        let input = r
            .provider
            .ok_or_else(|| ApiError::invalid("provider", "is required"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                format!("name the fields to change: {UPDATABLE}"),
            ));
        }
        let id = parse_id("provider.id", &input.id)?.to_string();
        caller.concerns(provider_resource(&id));
        let txn = self.ctx.db.begin().await?;
        let mut record = storage::find_provider(&txn, &id)
            .await?
            .ok_or_else(|| not_found("provider", &id, Some("provider.id")))?;
        if !input.etag.is_empty() && input.etag != record.etag() {
            return Err(stale("provider", &id));
        }
        let expected = record.version;
        let mut v = Violations::default();
        let p = &mut record.provider;
        for path in &paths {
            match path.as_str() {
                "name" => p.name = input.name.trim().to_string(),
                "naf_code" => p.naf_code = input.naf_code.trim().to_ascii_uppercase(),
                "qualiopi_expiry_date" => {
                    p.qualiopi_expiry = expiry_of(&input.qualiopi_expiry_date, &mut v)
                }
                "skills" => {
                    p.skills = convert::skills_from_pb("provider.skills", &input.skills, &mut v)
                }
                "areas" => p.areas = convert::areas_from_pb("provider.areas", &input.areas, &mut v),
                "capacity" => p.capacity = u32::try_from(input.capacity).unwrap_or(0),
                "day_rate_cents" => p.day_rate_cents = input.day_rate_cents,
                "conflict_territory_ids" => {
                    p.conflict_territory_ids = conflicts_of(&input.conflict_territory_ids)
                }
                "contact" => p.contact = contact_of(input.contact.as_ref()),
                other => v.add(
                    "update_mask",
                    format!(
                        "{} cannot be updated: {UPDATABLE}",
                        tde_runtime::input::quote(other)
                    ),
                ),
            }
        }
        v.into_result()?;
        p.validate()
            .map_err(|e| ApiError::from(crate::domain::nest("provider.", e)))?;
        record.touch(tde_runtime::api::now());
        if !storage::update_provider(&txn, &record, expected).await? {
            return Err(stale("provider", &id));
        }
        txn.commit().await?;
        Ok(record)
    }

    async fn change_status(
        &self,
        caller: &Caller,
        r: pb::ChangeProviderStatusRequest,
    ) -> Result<ProviderRecord, ApiError> {
        let id = parse_id("id", &r.id)?.to_string();
        let status = convert::provider_status_from_pb(r.status).ok_or_else(|| {
            ApiError::invalid("status", "is required: active, suspended or deactivated")
        })?;
        tde_runtime::input::text("reason", &r.reason, 500)?;
        if status != ProviderStatus::Active && r.reason.trim().is_empty() {
            return Err(ApiError::invalid(
                "reason",
                "is required to suspend or deactivate a provider",
            ));
        }
        caller.concerns(provider_resource(&id));
        let txn = self.ctx.db.begin().await?;
        let mut record = storage::find_provider(&txn, &id)
            .await?
            .ok_or_else(|| not_found("provider", &id, None))?;
        if !r.etag.is_empty() && r.etag != record.etag() {
            return Err(stale("provider", &id));
        }
        if record.provider.status == ProviderStatus::Deactivated {
            return Err(ApiError::FailedPrecondition {
                kind: "STATE",
                subject: "deactivated".into(),
                description: "a deactivated provider stays deactivated: register it again".into(),
            });
        }
        let expected = record.version;
        if record.provider.status != status || record.provider.status_reason != r.reason.trim() {
            record.provider.status = status;
            record.provider.status_reason = r.reason.trim().to_string();
            record.touch(tde_runtime::api::now());
            if !storage::update_provider(&txn, &record, expected).await? {
                return Err(stale("provider", &id));
            }
        }
        txn.commit().await?;
        Ok(record)
    }

    async fn rate(
        &self,
        caller: &Caller,
        r: pb::RateAssignmentRequest,
    ) -> Result<pb::Assignment, ApiError> {
        let id = parse_id("action_id", &r.action_id)?.to_string();
        if !(1..=5).contains(&r.rating) {
            return Err(ApiError::invalid("rating", "from 1 to 5"));
        }
        tde_runtime::input::multiline("comment", &r.comment, 2_000)?;
        caller.concerns(format!("assignments/{id}"));
        let txn = self.ctx.db.begin().await?;
        let mut a = storage::find_assignment(&txn, &id)
            .await?
            .filter(|a| caller.may_see(&a.territory_id, &a.region_code))
            .ok_or_else(|| not_found("assignment", &id, Some("action_id")))?;
        if !a.finished {
            return Err(ApiError::FailedPrecondition {
                kind: "STATE",
                subject: "unfinished".into(),
                description: "an action is rated once it is done".into(),
            });
        }
        a.rating = u8::try_from(r.rating).ok();
        a.rating_comment = r.comment.trim().to_string();
        a.rated_by = Some(caller.actor.clone());
        storage::save_assignment(&txn, &a).await?;
        txn.commit().await?;
        Ok(convert::assignment_to_pb(&a))
    }
}

impl MatchingApi {
    async fn assignments_page(
        &self,
        caller: &Caller,
        r: pb::ListAssignmentsRequest,
    ) -> Result<pb::ListAssignmentsResponse, ApiError> {
        let asked = if r.provider_id.is_empty() {
            None
        } else {
            Some(parse_id("provider_id", &r.provider_id)?.to_string())
        };
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        caller.concerns("assignments");
        // A provider's token sees its own history, whatever it asks; without a provider id
        // it speaks for nobody and sees nothing.
        let (provider, visible) = match super::speaking_provider(caller) {
            Some(None) => return Ok(pb::ListAssignmentsResponse::default()),
            Some(Some(me)) => {
                if asked.as_deref().is_some_and(|a| a != me) {
                    return Ok(pb::ListAssignmentsResponse::default());
                }
                (Some(me.to_string()), None)
            }
            None => (asked, super::visible_to(caller)),
        };
        let rows = storage::list_assignments(
            &self.ctx.db,
            provider.as_deref(),
            &visible,
            page.after(),
            page.fetch(),
        )
        .await?;
        let (rows, next_page_token) = page.page(rows, |a| a.action_id.clone());
        Ok(pb::ListAssignmentsResponse {
            assignments: rows.iter().map(convert::assignment_to_pb).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl ProviderService for MatchingApi {
    async fn list_assignments(
        &self,
        request: Request<pb::ListAssignmentsRequest>,
    ) -> Result<Response<pb::ListAssignmentsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.assignments_page(&caller, request.into_inner()).await?,
        ))
    }

    async fn register_provider(
        &self,
        request: Request<pb::RegisterProviderRequest>,
    ) -> Result<Response<pb::RegisterProviderResponse>, Status> {
        let caller = Caller::of(&request);
        let record = self.register(&caller, request.into_inner()).await?;
        let stats = self.stats_of(&record.provider.id).await?;
        Ok(Response::new(pb::RegisterProviderResponse {
            provider: Some(self.provider_reply(&caller, &record, &stats)),
        }))
    }

    async fn get_provider(
        &self,
        request: Request<pb::GetProviderRequest>,
    ) -> Result<Response<pb::GetProviderResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(provider_resource(&id));
        let record = storage::find_provider(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| not_found("provider", &id, None))?;
        let stats = self.stats_of(&id).await?;
        Ok(Response::new(pb::GetProviderResponse {
            provider: Some(self.provider_reply(&caller, &record, &stats)),
        }))
    }

    async fn list_providers(
        &self,
        request: Request<pb::ListProvidersRequest>,
    ) -> Result<Response<pb::ListProvidersResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let mut v = Violations::default();
        let status = match r.status {
            0 => None,
            s => {
                let st = convert::provider_status_from_pb(s);
                if st.is_none() {
                    v.add("status", "is not a provider status");
                }
                st
            }
        };
        let skill = match r.skill {
            0 => None,
            s => {
                let name = convert::skill_name(s);
                if name.is_none() {
                    v.add("skill", "is not a skill of the list");
                }
                name
            }
        };
        let departement_code = (!r.departement_code.is_empty())
            .then(|| r.departement_code.trim().to_ascii_uppercase());
        if departement_code.as_deref().is_some_and(|d| {
            !(2..=3).contains(&d.len()) || !d.chars().all(|c| c.is_ascii_alphanumeric())
        }) {
            v.add("departement_code", "is not a département code");
        }
        v.into_result().map_err(ApiError::from)?;
        let page = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        caller.concerns("providers");
        let filter = ProviderFilter {
            status,
            skill,
            departement_code,
        };
        let rows = storage::list_providers(&self.ctx.db, &filter, page.after(), page.fetch())
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = page.page(rows, |p| p.provider.id.clone());
        let ids: Vec<String> = rows.iter().map(|p| p.provider.id.clone()).collect();
        let stats =
            storage::provider_stats_among(&self.ctx.db, &ids, None, tde_runtime::api::now())
                .await
                .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListProvidersResponse {
            providers: rows
                .iter()
                .map(|p| {
                    let s = stats.get(&p.provider.id).copied().unwrap_or_default();
                    self.provider_reply(&caller, p, &s)
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn update_provider(
        &self,
        request: Request<pb::UpdateProviderRequest>,
    ) -> Result<Response<pb::UpdateProviderResponse>, Status> {
        let caller = Caller::of(&request);
        let record = self.update(&caller, request.into_inner()).await?;
        let stats = self.stats_of(&record.provider.id).await?;
        Ok(Response::new(pb::UpdateProviderResponse {
            provider: Some(self.provider_reply(&caller, &record, &stats)),
        }))
    }

    async fn change_provider_status(
        &self,
        request: Request<pb::ChangeProviderStatusRequest>,
    ) -> Result<Response<pb::ChangeProviderStatusResponse>, Status> {
        let caller = Caller::of(&request);
        let record = self.change_status(&caller, request.into_inner()).await?;
        let stats = self.stats_of(&record.provider.id).await?;
        Ok(Response::new(pb::ChangeProviderStatusResponse {
            provider: Some(self.provider_reply(&caller, &record, &stats)),
        }))
    }

    async fn rate_assignment(
        &self,
        request: Request<pb::RateAssignmentRequest>,
    ) -> Result<Response<pb::RateAssignmentResponse>, Status> {
        let caller = Caller::of(&request);
        let assignment = self.rate(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::RateAssignmentResponse {
            assignment: Some(assignment),
        }))
    }
}

#[cfg(test)]
mod conflict_tests {
    use super::*;

    #[test]
    fn conflicts_name_territories_as_needs_do() {
        let id = uuid::Uuid::now_v7();
        let written = [
            id.to_string().to_uppercase(),
            format!("{{{id}}}"),
            id.simple().to_string(),
            format!(" urn:uuid:{id} "),
        ];
        assert_eq!(
            conflicts_of(&written),
            BTreeSet::from([id.to_string()]),
            "one canonical id"
        );
        assert!(conflicts_of(&["pas-un-id".into()]).contains("pas-un-id"));
    }
}
