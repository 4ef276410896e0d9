//! tde.plans.v1.PlanService.

use tonic::{Request, Response, Status};

use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::plan_service_server::PlanService;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::{ApiError, Violations};

use super::convert::{self, PlanItems};
use super::{Locked, PlansApi, plan_not_found, plan_resource};
use crate::domain::plan::{Plan, PlanStatus, Signed};
use crate::domain::review::ReviewScope;
use crate::events;
use crate::storage::{self, PlanFilter, VisibleTo};

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 500;

/// What the caller's token lets them see, as storage filters it.
pub fn visible_to(caller: &Caller) -> VisibleTo {
    caller.principal.visibility().filter()
}

impl PlansApi {
    /// Renders plans with their actions and meetings, read in two queries.
    pub(crate) async fn render(
        &self,
        caller: &Caller,
        plans: &[Plan],
    ) -> Result<Vec<pb::Plan>, ApiError> {
        let ids: Vec<String> = plans.iter().map(|p| p.id.clone()).collect();
        let actions = storage::actions_of_plans(&self.ctx.db, ids.clone()).await?;
        let meetings = storage::meetings_of_plans(&self.ctx.db, ids).await?;
        Ok(plans
            .iter()
            .map(|p| {
                let items = PlanItems {
                    actions: actions
                        .iter()
                        .filter(|a| a.plan_id == p.id)
                        .map(|a| &a.action)
                        .collect(),
                    meetings: meetings
                        .iter()
                        .filter(|m| m.meeting.plan_id == p.id)
                        .map(|m| &m.meeting)
                        .collect(),
                };
                convert::plan_to_pb(p, &items, caller)
            })
            .collect())
    }

    async fn render_one(&self, caller: &Caller, plan: &Plan) -> Result<pb::Plan, ApiError> {
        self.render(caller, std::slice::from_ref(plan))
            .await?
            .pop()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("plan rendering lost the plan")))
    }

    async fn create(&self, caller: &Caller, r: pb::CreatePlanRequest) -> Result<Plan, ApiError> {
        let mut v = Violations::default();
        let territory_id = v.check(parse_id("territory_id", &r.territory_id).map_err(|_| {
            tde_runtime::InvalidFields(vec![tde_runtime::FieldViolation::new(
                "territory_id",
                "is required: the id of a registered territory",
            )])
        }));
        let start = v.check(convert::date_from_pb("start_date", &r.start_date));
        v.into_result()?;
        let key = IdempotencyKey::of(caller, "plan", &r.request_id, &r)?;
        let (Some(territory_id), Some(start)) = (territory_id, start) else {
            return Err(ApiError::invalid("territory_id", "is required"));
        };
        let territory_id = territory_id.to_string();
        let db = &self.ctx.db;
        let plan_id = uuid::Uuid::now_v7().to_string();
        use sea_orm::TransactionTrait as _;
        let txn = db.begin().await?;
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &txn, &plan_id).await? {
            drop(txn);
            caller.concerns(plan_resource(&existing));
            return storage::find_plan(db, &existing).await?.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("replayed plan {existing} is gone"))
            });
        }
        let territory = storage::find_territory(&txn, &territory_id)
            .await?
            .filter(|t| caller.may_see(&t.id, &t.region_code))
            .ok_or_else(|| ApiError::NotFound {
                resource_type: "territory",
                name: territory_id.clone(),
                field: Some("territory_id"),
            })?;
        if territory.is_withdrawn() {
            return Err(ApiError::FailedPrecondition {
                kind: "TERRITORY_WITHDRAWN",
                subject: territory.id,
                description: "the territory was withdrawn from the programme: it gets no plan"
                    .into(),
            });
        }
        let now = tde_runtime::api::now();
        let plan = Plan::new(
            plan_id,
            territory.id.clone(),
            territory.name.clone(),
            territory.region_code.clone(),
            &r.title,
            start,
            now,
        )?;
        caller.concerns(plan_resource(&plan.id));
        if let Err(e) = storage::insert_plan(&txn, &plan).await {
            drop(txn);
            if storage::is_unique_violation(&e) {
                return Err(ApiError::AlreadyExists {
                    resource_type: "plan",
                    name: format!("territory {}", territory.id),
                });
            }
            return Err(e.into());
        }
        // A write without events: its audit record commits with it.
        tde_runtime::audit::record_in(&txn).await?;
        txn.commit().await?;
        tracing::info!(plan_id = %plan.id, territory_id = %plan.territory_id, "plan created");
        Ok(plan)
    }

    async fn locked(&self, caller: &Caller, id: &str, etag: &str) -> Result<Locked, ApiError> {
        let id = parse_id("id", id)?.to_string();
        caller.concerns(plan_resource(&id));
        self.lock_plan(caller, &id, etag, None).await
    }

    async fn list(
        &self,
        caller: &Caller,
        r: pb::ListPlansRequest,
    ) -> Result<pb::ListPlansResponse, ApiError> {
        let status = convert::plan_status_from_pb("status", r.status)?;
        tde_runtime::input::text("region_code", &r.region_code, 3)?;
        tde_runtime::input::text("territory_id", &r.territory_id, 64)?;
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let non_empty = |s: String| {
            let s = s.trim().to_string();
            (!s.is_empty()).then_some(s)
        };
        let filter = PlanFilter {
            status,
            region_code: non_empty(r.region_code),
            territory_id: non_empty(r.territory_id),
            visible_to: visible_to(caller),
        };
        caller.concerns("plans");
        let rows =
            storage::list_plans(&self.ctx.db, &filter, request.after(), request.fetch()).await?;
        let (page, next_page_token) = request.page(rows, |p| p.id.clone());
        Ok(pb::ListPlansResponse {
            plans: self.render(caller, &page).await?,
            next_page_token,
        })
    }

    async fn update(&self, caller: &Caller, r: pb::UpdatePlanRequest) -> Result<Plan, ApiError> {
        let input = r
            .plan
            .ok_or_else(|| ApiError::invalid("plan", "is required"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                "name the fields to change: title, start_date",
            ));
        }
        let mut v = Violations::default();
        let mut start = None;
        let mut title = None;
        for path in &paths {
            match path.as_str() {
                "title" => title = Some(input.title.clone()),
                "start_date" => {
                    start = v.check(convert::date_from_pb("plan.start_date", &input.start_date))
                }
                other => v.add(
                    "update_mask",
                    format!(
                        "{} cannot be updated: title, start_date",
                        tde_runtime::input::quote(other)
                    ),
                ),
            }
        }
        v.into_result()?;
        let id = parse_id("plan.id", &input.id)?.to_string();
        caller.concerns(plan_resource(&id));
        let mut locked = self.lock_plan(caller, &id, &input.etag, None).await?;
        let now = tde_runtime::api::now();
        if let Some(title) = title {
            locked
                .plan
                .retitle(&title, now)
                .map_err(|e| crate::domain::nest("plan.", e))?;
        }
        if let Some(start) = start {
            let dated = storage::plan_has_dated_items(&locked.txn, &id).await?;
            locked.plan.restart(start, dated, now)?;
        }
        self.commit(locked, Vec::new()).await
    }
}

#[tonic::async_trait]
impl PlanService for PlansApi {
    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> Result<Response<pb::CreatePlanResponse>, Status> {
        let caller = Caller::of(&request);
        let plan = self.create(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::CreatePlanResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> Result<Response<pb::GetPlanResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(plan_resource(&id));
        let plan = storage::find_plan(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .filter(|p| caller.may_see(&p.territory_id, &p.region_code))
            .ok_or_else(|| plan_not_found(&id, None))?;
        Ok(Response::new(pb::GetPlanResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> Result<Response<pb::ListPlansResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.list(&caller, request.into_inner()).await?,
        ))
    }

    async fn update_plan(
        &self,
        request: Request<pb::UpdatePlanRequest>,
    ) -> Result<Response<pb::UpdatePlanResponse>, Status> {
        let caller = Caller::of(&request);
        let plan = self.update(&caller, request.into_inner()).await?;
        Ok(Response::new(pb::UpdatePlanResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn stop_plan(
        &self,
        request: Request<pb::StopPlanRequest>,
    ) -> Result<Response<pb::StopPlanResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let mut locked = self.locked(&caller, &r.id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let events =
            events::stop_plan(&locked.txn, &mut locked.plan, &r.reason, &caller.actor, now)
                .await
                .map_err(ApiError::from)?;
        let plan = self.commit(locked, events).await?;
        tracing::info!(plan_id = %plan.id, "plan stopped");
        Ok(Response::new(pb::StopPlanResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn complete_plan(
        &self,
        request: Request<pb::CompletePlanRequest>,
    ) -> Result<Response<pb::CompletePlanResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let mut locked = self.locked(&caller, &r.id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let from = locked.plan.complete(now).map_err(ApiError::from)?;
        let event = events::status_changed(&locked.plan, from, &caller.actor, now);
        let plan = self.commit(locked, vec![event]).await?;
        Ok(Response::new(pb::CompletePlanResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn add_charter_version(
        &self,
        request: Request<pb::AddCharterVersionRequest>,
    ) -> Result<Response<pb::AddCharterVersionResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let version = convert::charter_version_from_pb(&r);
        // Bad input is reported before the plan is looked up or locked.
        version.validate().map_err(ApiError::from)?;
        let mut locked = self.locked(&caller, &r.plan_id, &r.etag).await?;
        locked
            .plan
            .add_charter_version(version, tde_runtime::api::now())
            .map_err(ApiError::from)?;
        let plan = self.commit(locked, Vec::new()).await?;
        Ok(Response::new(pb::AddCharterVersionResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn sign_charter(
        &self,
        request: Request<pb::SignCharterRequest>,
    ) -> Result<Response<pb::SignCharterResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let mut v = Violations::default();
        let on = v.check(convert::date_from_pb("signed_on", &r.signed_on));
        let number = u32::try_from(r.version_number).ok().filter(|n| *n > 0);
        if number.is_none() {
            v.add("version_number", "is required: the version signed");
        }
        let index = usize::try_from(r.signatory_index).ok();
        if index.is_none() {
            v.add("signatory_index", "must not be negative");
        }
        v.into_result().map_err(ApiError::from)?;
        let (Some(on), Some(number), Some(index)) = (on, number, index) else {
            return Err(ApiError::invalid("signed_on", "is required").into());
        };
        let mut locked = self.locked(&caller, &r.plan_id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let signed = locked
            .plan
            .sign_charter(number, index, on, now)
            .map_err(ApiError::from)?;
        let events = if signed == Signed::Fully {
            vec![
                events::charter_signed(&locked.plan, &caller.actor, now),
                events::status_changed(&locked.plan, PlanStatus::Draft, &caller.actor, now),
            ]
        } else {
            Vec::new()
        };
        let plan = self.commit(locked, events).await?;
        if signed == Signed::Fully {
            tracing::info!(plan_id = %plan.id, territory_id = %plan.territory_id, "charter signed: plan active");
        }
        Ok(Response::new(pb::SignCharterResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
            fully_signed: signed == Signed::Fully,
        }))
    }

    async fn submit_plan_year(
        &self,
        request: Request<pb::SubmitPlanYearRequest>,
    ) -> Result<Response<pb::SubmitPlanYearResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let year = u8::try_from(r.year)
            .ok()
            .filter(|y| (1..=3).contains(y))
            .ok_or_else(|| ApiError::invalid("year", "must be 1, 2 or 3"))?;
        let mut locked = self.locked(&caller, &r.plan_id, &r.etag).await?;
        let now = tde_runtime::api::now();
        let actions = storage::actions_of_year(&locked.txn, &locked.plan.id, year)
            .await
            .map_err(ApiError::from)?;
        let actions: Vec<_> = actions.into_iter().map(|a| a.action).collect();
        let submission = locked
            .plan
            .submit_year(year, actions.iter(), &caller.actor, now)
            .map_err(ApiError::from)?;
        let event = events::year_submitted(
            &locked.plan,
            year,
            &submission,
            actions.iter(),
            &caller.actor,
            now,
        );
        let plan = self.commit(locked, vec![event]).await?;
        tracing::info!(plan_id = %plan.id, year, submission = submission.number, budget_cents = submission.budget_cents, "plan year submitted");
        Ok(Response::new(pb::SubmitPlanYearResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
            amendment: submission.number > 1,
            submission: Some(pb::Submission {
                number: submission.number as i32,
                budget_cents: submission.budget_cents,
                fingerprint: submission.fingerprint,
                submit_time: Some(tde_runtime::api::timestamp(now)),
                actor: caller.actor.clone(),
            }),
        }))
    }

    async fn record_review(
        &self,
        request: Request<pb::RecordReviewRequest>,
    ) -> Result<Response<pb::RecordReviewResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let review = convert::review_from_pb(&r).map_err(ApiError::from)?;
        review.validate().map_err(ApiError::from)?;
        let scope = review.scope;
        let mut locked = self.locked(&caller, &r.plan_id, &r.etag).await?;
        let now = tde_runtime::api::now();
        if let ReviewScope::Year(y) = scope {
            locked.plan.year(y).map_err(ApiError::from)?;
        }
        locked
            .plan
            .record_review(review, &caller.actor, now)
            .map_err(ApiError::from)?;
        let event = events::review_recorded(&locked.plan, scope, now);
        let plan = self.commit(locked, vec![event]).await?;
        Ok(Response::new(pb::RecordReviewResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }

    async fn add_celebration(
        &self,
        request: Request<pb::AddCelebrationRequest>,
    ) -> Result<Response<pb::AddCelebrationResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let celebration =
            convert::celebration_from_pb(r.celebration.as_ref()).map_err(ApiError::from)?;
        celebration
            .validate()
            .map_err(|e| ApiError::from(crate::domain::nest("celebration.", e)))?;
        let mut locked = self.locked(&caller, &r.plan_id, &r.etag).await?;
        locked
            .plan
            .add_celebration(celebration, tde_runtime::api::now())
            .map_err(ApiError::from)?;
        let plan = self.commit(locked, Vec::new()).await?;
        Ok(Response::new(pb::AddCelebrationResponse {
            plan: Some(self.render_one(&caller, &plan).await?),
        }))
    }
}
