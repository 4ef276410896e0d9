//! tde.territories.v1.TerritoryService.

use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status};

use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_server::TerritoryService;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::cache::ReadCache;
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::{ApiError, ServiceContext};

use super::convert;
use crate::domain::territory::{Stage, Territory, TerritoryChanges, UpdatableField, validate_team};
use crate::domain::{Violations, names};
use crate::events;
use crate::storage::{self, TerritoryFilter, geography};

const RESOURCE: &str = "territory";
pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 500;
const MAX_REASON: usize = 2_000;

/// How the audit trail names a territory.
pub fn resource_name(id: &str) -> String {
    format!("territories/{id}")
}

/// Territories by id, as returned by GetTerritory (see `tde_runtime::cache`).
pub type TerritoryCache = ReadCache<pb::Territory>;

pub struct Territories {
    ctx: ServiceContext,
    cache: TerritoryCache,
}

impl Territories {
    pub fn new(ctx: ServiceContext, cache: TerritoryCache) -> Self {
        Self { ctx, cache }
    }

    fn not_found(id: &str) -> ApiError {
        ApiError::NotFound {
            resource_type: RESOURCE,
            name: id.to_string(),
            field: None,
        }
    }

    /// Registers a territory; see the proto for the rules.
    async fn register(
        &self,
        caller: Caller,
        r: pb::RegisterTerritoryRequest,
    ) -> Result<Territory, ApiError> {
        let mut v = Violations::default();
        let kind = v.check(convert::kind_from_pb("kind", r.kind));
        let code = r.official_code.trim().to_ascii_uppercase();
        if let Some(kind) = kind {
            v.check(kind.validate_code(&code));
        }
        v.into_result()?;
        let Some(kind) = kind else {
            return Err(ApiError::invalid("kind", "is required"));
        };
        let key = IdempotencyKey::of(&caller, RESOURCE, &r.request_id, &r)?;
        caller.concerns(format!("{}/{code}", kind.as_str()));
        let db = &self.ctx.db;
        let id = uuid::Uuid::now_v7().to_string();
        // The key first: a retry of a registration that succeeded gets it back, whatever
        // changed since.
        let txn = db.begin().await?;
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &txn, &id).await? {
            drop(txn);
            caller.concerns(resource_name(&existing));
            return storage::find(db, &existing).await?.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("replayed territory {existing} is gone"))
            });
        }
        let Some(facts) = geography::authority_facts(&txn, kind, &code).await? else {
            // Unknown code, or no geography at all: say which.
            if geography::current_vintage(&txn).await?.is_none() {
                return Err(ApiError::FailedPrecondition {
                    kind: "GEOGRAPHY",
                    subject: "geography".into(),
                    description: "no reference geography is loaded: import one first".into(),
                });
            }
            return Err(ApiError::NotFound {
                resource_type: kind.as_str(),
                name: code,
                field: Some("official_code"),
            });
        };
        // Territories merging into this commune after a new vintage wait for a decision of the
        // programme team: a new registration would be one more territory for it.
        let merging = storage::recoding::merging_into(&txn, kind, &code).await?;
        if let Some(first) = merging.first() {
            return Err(ApiError::FailedPrecondition {
                kind: "GEOGRAPHY_ISSUE",
                subject: first.clone(),
                description: format!(
                    "territories {} are merging into {} {code}: resolve their geography issue first",
                    merging.join(", "),
                    kind.as_str()
                ),
            });
        }
        // A second territory for the same authority is refused by the unique index below.
        let already = || ApiError::AlreadyExists {
            resource_type: RESOURCE,
            name: format!("{} {code}", kind.as_str()),
        };

        let now = tde_runtime::api::now();
        let territory = Territory::register(id, kind, code.clone(), facts, &caller.actor, now);
        caller.concerns(resource_name(&territory.id));
        if let Err(e) = storage::insert(&txn, &territory).await {
            drop(txn);
            if storage::is_unique_violation(&e) {
                // A concurrent registration of the same authority.
                return Err(already());
            }
            return Err(e.into());
        }
        outbox::enqueue(&txn, vec![events::registered(&territory)]).await?;
        txn.commit().await?;
        self.ctx.outbox.wake();
        tracing::info!(territory_id = %territory.id, kind = kind.as_str(), code = %territory.official_code, "territory registered");
        Ok(territory)
    }

    /// Loads a territory for change (row locked on PostgreSQL), checks that the caller may
    /// see it and its etag, applies `change`, and writes it with the events `change` returns,
    /// in one transaction. A territory the caller may not see does not exist for them.
    async fn mutate<F>(
        &self,
        caller: &Caller,
        id: &str,
        etag: &str,
        change: F,
    ) -> Result<Territory, ApiError>
    where
        F: FnOnce(&mut Territory) -> Result<Vec<NewEvent>, ApiError>,
    {
        caller.concerns(resource_name(id));
        let txn = self.ctx.db.begin().await?;
        let Some(mut territory) = storage::find_for_update(&txn, id)
            .await?
            .filter(|t| caller.may_see(&t.id, &t.region_code))
        else {
            return Err(Self::not_found(id));
        };
        if !etag.is_empty() && etag != territory.etag() {
            return Err(ApiError::Aborted {
                resource_type: RESOURCE,
                name: id.to_string(),
            });
        }
        let expected = territory.version;
        let events = change(&mut territory)?;
        if territory.version == expected {
            // Nothing changed: nothing to write or publish.
            return Ok(territory);
        }
        if !storage::update(&txn, &territory, expected).await? {
            return Err(ApiError::Aborted {
                resource_type: RESOURCE,
                name: id.to_string(),
            });
        }
        outbox::enqueue(&txn, events).await?;
        let _evict = self.cache.evict_on_drop(id);
        txn.commit().await?;
        self.ctx.outbox.wake();
        Ok(territory)
    }

    async fn update(
        &self,
        caller: &Caller,
        r: pb::UpdateTerritoryRequest,
    ) -> Result<Territory, ApiError> {
        let input = r
            .territory
            .ok_or_else(|| ApiError::invalid("territory", "is required"))?;
        let id = parse_id("territory.id", &input.id)?.to_string();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let fields = UpdatableField::parse_mask(&paths)?;

        let mut v = Violations::default();
        let mut changes = TerritoryChanges::default();
        for field in fields {
            match field {
                UpdatableField::Diagnostic => {
                    changes.diagnostic =
                        v.check(convert::diagnostic_from_pb(input.diagnostic.as_ref()));
                }
                UpdatableField::PrivilegedContact => {
                    changes.privileged_contact = v.check(
                        input
                            .privileged_contact
                            .as_ref()
                            .map(|p| convert::person_from_pb("territory.privileged_contact.", p))
                            .transpose(),
                    );
                }
                UpdatableField::OperationalTeam => {
                    let team = input
                        .operational_team
                        .iter()
                        .map(|p| convert::person_from_pb("", p))
                        .collect();
                    changes.operational_team = v.check(
                        validate_team(team).map_err(|e| crate::domain::nest("territory.", e)),
                    );
                }
                UpdatableField::SteeringBody => {
                    changes.steering_body =
                        v.check(convert::steering_body_from_pb(input.steering_body.as_ref()));
                }
            }
        }
        v.into_result()?;

        let territory = self
            .mutate(caller, &id, &input.etag, |t| {
                let changed = t.apply(changes, tde_runtime::api::now())?;
                let mut events = Vec::new();
                if changed.diagnostic {
                    events.push(events::diagnostic_recorded(t));
                }
                if changed.roster {
                    events.push(events::steering_body_changed(t));
                }
                Ok(events)
            })
            .await?;
        tracing::info!(territory_id = %territory.id, "territory updated");
        Ok(territory)
    }

    async fn change_stage(
        &self,
        caller: Caller,
        id: &str,
        etag: &str,
        target: Stage,
        reason: &str,
    ) -> Result<Territory, ApiError> {
        if reason.chars().count() > MAX_REASON {
            return Err(ApiError::invalid(
                "reason",
                format!("at most {MAX_REASON} characters"),
            ));
        }
        let territory = self
            .mutate(&caller, id, etag, |t| {
                let from = t.move_to(target, &caller.actor, reason, tde_runtime::api::now())?;
                let mut events = vec![events::stage_changed(t, from)];
                if target == Stage::Withdrawn {
                    events.push(events::withdrawn(t, from));
                }
                Ok(events)
            })
            .await?;
        tracing::info!(territory_id = %territory.id, stage = %territory.stage, "territory stage changed");
        Ok(territory)
    }

    async fn list(
        &self,
        caller: &Caller,
        r: pb::ListTerritoriesRequest,
    ) -> Result<pb::ListTerritoriesResponse, ApiError> {
        let mut v = Violations::default();
        let stage = v.check(convert::stage_from_pb("stage", r.stage)).flatten();
        let issue_kind = v
            .check(convert::issue_kind_from_pb(
                "geography_issue_kind",
                r.geography_issue_kind,
            ))
            .flatten();
        let kind = if r.kind == 0 {
            None
        } else {
            v.check(convert::kind_from_pb("kind", r.kind))
        };
        // Filters are bounded before they reach the database (LIKE patterns especially).
        for (field, value) in [
            ("name_query", &r.name_query),
            ("region_code", &r.region_code),
            ("departement_code", &r.departement_code),
        ] {
            if let Some(why) = tde_runtime::input::problem(value, 200, false) {
                v.add(field, why);
            }
        }
        v.into_result()?;
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let non_empty = |s: String| {
            let s = s.trim().to_string();
            (!s.is_empty()).then_some(s)
        };
        let filter = TerritoryFilter {
            stage,
            kind,
            region_code: non_empty(r.region_code),
            departement_code: non_empty(r.departement_code),
            name_query: non_empty(names::normalize(&r.name_query)),
            visible_to: caller.principal.visibility().filter(),
            geography_issue: match (issue_kind, r.has_geography_issue) {
                (Some(k), _) => Some(storage::recoding::IssueFilter::Kind(k)),
                (None, true) => Some(storage::recoding::IssueFilter::Any),
                (None, false) => None,
            },
        };
        caller.concerns("territories");
        let rows = storage::list(&self.ctx.db, &filter, request.after(), request.fetch()).await?;
        let (page, next_page_token) = request.page(rows, |t| t.id.clone());
        Ok(pb::ListTerritoriesResponse {
            territories: page
                .iter()
                .map(|t| convert::for_caller(convert::territory_to_pb(t), caller))
                .collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl TerritoryService for Territories {
    async fn register_territory(
        &self,
        request: Request<pb::RegisterTerritoryRequest>,
    ) -> Result<Response<pb::RegisterTerritoryResponse>, Status> {
        let caller = Caller::of(&request);
        let territory = self.register(caller.clone(), request.into_inner()).await?;
        Ok(Response::new(pb::RegisterTerritoryResponse {
            territory: Some(convert::for_caller(
                convert::territory_to_pb(&territory),
                &caller,
            )),
        }))
    }

    async fn get_territory(
        &self,
        request: Request<pb::GetTerritoryRequest>,
    ) -> Result<Response<pb::GetTerritoryResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(resource_name(&id));
        let visible = |t: &pb::Territory| caller.may_see(&t.id, &t.region_code);
        if let Some(cached) = self.cache.get(&id) {
            if !visible(&cached) {
                return Err(Self::not_found(&id).into());
            }
            return Ok(Response::new(pb::GetTerritoryResponse {
                territory: Some(convert::for_caller((*cached).clone(), &caller)),
            }));
        }
        let read_started = self.cache.generation();
        let territory = storage::find(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| Self::not_found(&id))?;
        let territory = convert::territory_to_pb(&territory);
        self.cache
            .insert(&id, std::sync::Arc::new(territory.clone()), read_started);
        if !visible(&territory) {
            return Err(Self::not_found(&id).into());
        }
        Ok(Response::new(pb::GetTerritoryResponse {
            territory: Some(convert::for_caller(territory, &caller)),
        }))
    }

    async fn list_territories(
        &self,
        request: Request<pb::ListTerritoriesRequest>,
    ) -> Result<Response<pb::ListTerritoriesResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.list(&caller, request.into_inner()).await?,
        ))
    }

    async fn update_territory(
        &self,
        request: Request<pb::UpdateTerritoryRequest>,
    ) -> Result<Response<pb::UpdateTerritoryResponse>, Status> {
        let caller = Caller::of(&request);
        let territory = self.update(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::UpdateTerritoryResponse {
            territory: Some(convert::for_caller(
                convert::territory_to_pb(&territory),
                &caller,
            )),
        }))
    }

    async fn advance_territory_stage(
        &self,
        request: Request<pb::AdvanceTerritoryStageRequest>,
    ) -> Result<Response<pb::AdvanceTerritoryStageResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let id = parse_id("id", &r.id)?.to_string();
        let target = match convert::stage_from_pb("stage", r.stage).map_err(ApiError::from)? {
            None => {
                return Err(ApiError::invalid("stage", "is required: the stage to move to").into());
            }
            Some(Stage::Withdrawn) => {
                return Err(ApiError::invalid(
                    "stage",
                    "use WithdrawTerritory to withdraw a territory",
                )
                .into());
            }
            Some(s) => s,
        };
        let territory = self
            .change_stage(caller.clone(), &id, &r.etag, target, &r.reason)
            .await?;
        Ok(Response::new(pb::AdvanceTerritoryStageResponse {
            territory: Some(convert::for_caller(
                convert::territory_to_pb(&territory),
                &caller,
            )),
        }))
    }

    async fn resolve_geography_conflict(
        &self,
        request: Request<pb::ResolveGeographyConflictRequest>,
    ) -> Result<Response<pb::ResolveGeographyConflictResponse>, Status> {
        let caller = Caller::of(&request);
        let (survivor, others) =
            super::recoding::resolve(&self.ctx, &self.cache, &caller, request.into_inner()).await?;
        Ok(Response::new(super::recoding::response(
            &caller, &survivor, &others,
        )))
    }

    async fn withdraw_territory(
        &self,
        request: Request<pb::WithdrawTerritoryRequest>,
    ) -> Result<Response<pb::WithdrawTerritoryResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let id = parse_id("id", &r.id)?.to_string();
        let territory = self
            .change_stage(caller.clone(), &id, &r.etag, Stage::Withdrawn, &r.reason)
            .await?;
        Ok(Response::new(pb::WithdrawTerritoryResponse {
            territory: Some(convert::for_caller(
                convert::territory_to_pb(&territory),
                &caller,
            )),
        }))
    }
}
