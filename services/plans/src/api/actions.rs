//! tde.plans.v1.ActionService.

use tonic::{Request, Response, Status};

use tde_proto::plans::v1 as pb;
use tde_proto::plans::v1::action_service_server::ActionService;
use tde_runtime::api::{Caller, PageRequest, parse_id};
use tde_runtime::idempotency::IdempotencyKey;
use tde_runtime::outbox::NewEvent;
use tde_runtime::{ApiError, Violations};

use super::convert;
use super::plans::visible_to;
use super::{Locked, PlansApi, action_resource, stale};
use crate::domain::action::{Action, ActionStatus};
use crate::domain::plan::Plan;
use crate::events;
use crate::storage::{self, ActionFilter, ActionRecord};

pub const DEFAULT_PAGE: u64 = 100;
pub const MAX_PAGE: u64 = 500;

fn action_not_found(id: &str) -> ApiError {
    ApiError::NotFound {
        resource_type: "action",
        name: id.to_string(),
        field: None,
    }
}

fn wrong_status(current: ActionStatus, action: &str) -> ApiError {
    ApiError::FailedPrecondition {
        kind: "STATE",
        subject: current.as_str().to_string(),
        description: format!("the action is {}: cannot {action}", current.as_str()),
    }
}

/// A new action of the locked plan, checked against it (also used by meeting decisions).
pub(crate) async fn new_record(
    locked: &Locked,
    action: Action,
    field_prefix: &str,
) -> Result<ActionRecord, ApiError> {
    locked
        .plan
        .ensure_open("add actions")
        .map_err(ApiError::from)?;
    convert::check_period(&locked.plan, &action, field_prefix)?;
    // The plan row is locked: the count cannot change before this action is inserted.
    let existing =
        storage::count_actions_of_year(&locked.txn, &locked.plan.id, action.year).await?;
    crate::domain::action::ensure_room_in_year(action.year, existing)?;
    let now = tde_runtime::api::now();
    Ok(ActionRecord {
        action,
        plan_id: locked.plan.id.clone(),
        territory_id: locked.plan.territory_id.clone(),
        region_code: locked.plan.region_code.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
    })
}

/// Moves an action of the locked plan to `target` (also used by meeting decisions).
pub(crate) fn change_status(
    plan: &Plan,
    record: &mut ActionRecord,
    target: ActionStatus,
) -> Result<(), ApiError> {
    plan.ensure_open("change its actions")
        .map_err(ApiError::from)?;
    if !record.action.status.can_move_to(target) {
        return Err(wrong_status(
            record.action.status,
            &format!("move to {}", target.as_str()),
        ));
    }
    record.action.status = target;
    record.touch(tde_runtime::api::now());
    Ok(())
}

impl PlansApi {
    /// Locks an action's plan, then reads the action: changes of a plan's actions queue
    /// behind the plan's own changes. An action the caller may not see does not exist.
    pub(crate) async fn lock_action(
        &self,
        caller: &Caller,
        id: &str,
        etag: &str,
    ) -> Result<(Locked, ActionRecord), ApiError> {
        caller.concerns(action_resource(id));
        let record = storage::find_action(&self.ctx.db, id)
            .await?
            .filter(|a| caller.may_see(&a.territory_id, &a.region_code))
            .ok_or_else(|| action_not_found(id))?;
        let locked = self
            .lock_plan(caller, &record.plan_id, "", None)
            .await
            .map_err(|_| action_not_found(id))?;
        let record = storage::find_action(&locked.txn, id)
            .await?
            .ok_or_else(|| action_not_found(id))?;
        if !etag.is_empty() && etag != record.etag() {
            return Err(stale("action", id));
        }
        Ok((locked, record))
    }

    /// Writes a changed action with its event (`event` builds it from the action's facts)
    /// and commits. An unchanged action publishes nothing.
    async fn save_action(
        &self,
        locked: Locked,
        record: ActionRecord,
        expected: i64,
        event: impl FnOnce(tde_proto::plans::v1::ActionFacts) -> NewEvent,
    ) -> Result<ActionRecord, ApiError> {
        let mut published = Vec::new();
        if record.version != expected {
            if !storage::update_action(&locked.txn, &record, expected).await? {
                return Err(stale("action", &record.action.id));
            }
            let facts = events::action_facts(&locked.txn, &locked.plan, &record).await?;
            published.push(event(facts));
        }
        self.commit(locked, published).await?;
        Ok(record)
    }

    async fn create_action_record(
        &self,
        caller: &Caller,
        r: pb::CreateActionRequest,
    ) -> Result<ActionRecord, ApiError> {
        let input = r
            .action
            .ok_or_else(|| ApiError::invalid("action", "is required"))?;
        let mut v = Violations::default();
        let plan_id = v.check(parse_id("action.plan_id", &input.plan_id).map_err(|_| {
            tde_runtime::InvalidFields(vec![tde_runtime::FieldViolation::new(
                "action.plan_id",
                "is required: the id of a plan",
            )])
        }));
        let action = v.check(convert::action_from_pb("action.", &input));
        v.into_result()?;
        let key = IdempotencyKey::of(caller, "action", &r.request_id, &input)?;
        let (Some(plan_id), Some(action)) = (plan_id, action) else {
            return Err(ApiError::invalid("action", "is required"));
        };
        let plan_id = plan_id.to_string();
        caller.concerns(action_resource(&action.id));
        let locked = self
            .lock_plan(caller, &plan_id, "", Some("action.plan_id"))
            .await?;
        if let Some(existing) = IdempotencyKey::claim(key.as_ref(), &locked.txn, &action.id).await?
        {
            drop(locked);
            caller.concerns(action_resource(&existing));
            return storage::find_action(&self.ctx.db, &existing)
                .await?
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("replayed action {existing} is gone"))
                });
        }
        let record = new_record(&locked, action, "action.").await?;
        storage::insert_action(&locked.txn, &record).await?;
        let facts = events::action_facts(&locked.txn, &locked.plan, &record).await?;
        let event = events::action_created(facts, &caller.actor, record.created_at);
        self.commit(locked, vec![event]).await?;
        Ok(record)
    }

    async fn update_action_record(
        &self,
        caller: &Caller,
        r: pb::UpdateActionRequest,
    ) -> Result<ActionRecord, ApiError> {
        let input = r
            .action
            .ok_or_else(|| ApiError::invalid("action", "is required"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        const FIELDS: &str =
            "kind, title, description, audiences, skills, planned_start, planned_end, budget_cents";
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                format!("name the fields to change: {FIELDS}"),
            ));
        }
        let id = parse_id("action.id", &input.id)?.to_string();
        let (locked, mut record) = self.lock_action(caller, &id, &input.etag).await?;
        let expected = record.version;
        let mut v = Violations::default();
        let a = &mut record.action;
        for path in &paths {
            match path.as_str() {
                "kind" => {
                    if let Some(k) = v.check(convert::kind_from_pb("action.kind", input.kind)) {
                        a.kind = k;
                    }
                }
                "title" => a.title = input.title.trim().to_string(),
                "description" => a.description = input.description.trim().to_string(),
                "audiences" => {
                    if let Some(x) = v.check(convert::audiences_from_pb(
                        "action.audiences",
                        &input.audiences,
                    )) {
                        a.audiences = x;
                    }
                }
                "skills" => {
                    if let Some(x) =
                        v.check(convert::skills_from_pb("action.skills", &input.skills))
                    {
                        a.skills = x;
                    }
                }
                "planned_start" => {
                    if let Some(d) = v.check(convert::date_from_pb(
                        "action.planned_start",
                        &input.planned_start,
                    )) {
                        a.planned_start = d;
                    }
                }
                "planned_end" => {
                    if let Some(d) = v.check(convert::date_from_pb(
                        "action.planned_end",
                        &input.planned_end,
                    )) {
                        a.planned_end = d;
                    }
                }
                "budget_cents" => a.budget_cents = input.budget_cents,
                other => v.add(
                    "update_mask",
                    format!(
                        "{} cannot be updated: {FIELDS}",
                        tde_runtime::input::quote(other)
                    ),
                ),
            }
        }
        v.into_result()?;
        a.validate()
            .map_err(|e| crate::domain::nest("action.", e))?;
        locked
            .plan
            .ensure_open("change its actions")
            .map_err(ApiError::from)?;
        if matches!(a.status, ActionStatus::Done | ActionStatus::Cancelled) {
            return Err(wrong_status(a.status, "change it"));
        }
        convert::check_period(&locked.plan, a, "action.")?;
        let now = tde_runtime::api::now();
        record.touch(now);
        self.save_action(locked, record, expected, |facts| {
            events::action_updated(facts, &caller.actor, now)
        })
        .await
    }

    async fn list_actions_page(
        &self,
        caller: &Caller,
        r: pb::ListActionsRequest,
    ) -> Result<pb::ListActionsResponse, ApiError> {
        let mut v = Violations::default();
        let plan_id = if r.plan_id.is_empty() {
            None
        } else {
            v.check(
                parse_id("plan_id", &r.plan_id)
                    .map(|id| id.to_string())
                    .map_err(|_| {
                        tde_runtime::InvalidFields(vec![tde_runtime::FieldViolation::new(
                            "plan_id",
                            "is not a valid id",
                        )])
                    }),
            )
        };
        let year = match r.year {
            0 => None,
            y => {
                let y = u8::try_from(y).ok().filter(|y| (1..=3).contains(y));
                if y.is_none() {
                    v.add("year", "must be 1, 2 or 3 (0: every year)");
                }
                y
            }
        };
        let skill = if r.skill == 0 {
            None
        } else {
            let s = convert::skill_name(r.skill);
            if s.is_none() {
                v.add("skill", "is not a skill of the list");
            }
            s
        };
        let status = v
            .check(convert::action_status_from_pb("status", r.status))
            .flatten();
        v.into_result()?;
        let request = PageRequest::parse(r.page_size, &r.page_token, DEFAULT_PAGE, MAX_PAGE)?;
        let filter = ActionFilter {
            plan_id,
            year,
            skill,
            unassigned_only: r.unassigned_only,
            status,
            visible_to: visible_to(caller),
        };
        caller.concerns("actions");
        let rows =
            storage::list_actions(&self.ctx.db, &filter, request.after(), request.fetch()).await?;
        let (page, next_page_token) = request.page(rows, |a| a.action.id.clone());
        Ok(pb::ListActionsResponse {
            actions: page.iter().map(convert::action_to_pb).collect(),
            next_page_token,
        })
    }
}

#[tonic::async_trait]
impl ActionService for PlansApi {
    async fn create_action(
        &self,
        request: Request<pb::CreateActionRequest>,
    ) -> Result<Response<pb::CreateActionResponse>, Status> {
        let caller = Caller::of(&request);
        let record = self
            .create_action_record(&caller, request.into_inner())
            .await?;
        Ok(Response::new(pb::CreateActionResponse {
            action: Some(convert::action_to_pb(&record)),
        }))
    }

    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::GetActionResponse>, Status> {
        let caller = Caller::of(&request);
        let id = parse_id("id", &request.get_ref().id)?.to_string();
        caller.concerns(action_resource(&id));
        let record = storage::find_action(&self.ctx.db, &id)
            .await
            .map_err(ApiError::from)?
            .filter(|a| caller.may_see(&a.territory_id, &a.region_code))
            .ok_or_else(|| action_not_found(&id))?;
        Ok(Response::new(pb::GetActionResponse {
            action: Some(convert::action_to_pb(&record)),
        }))
    }

    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let caller = Caller::of(&request);
        Ok(Response::new(
            self.list_actions_page(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn update_action(
        &self,
        request: Request<pb::UpdateActionRequest>,
    ) -> Result<Response<pb::UpdateActionResponse>, Status> {
        let caller = Caller::of(&request);
        let record = self
            .update_action_record(&caller, request.into_inner())
            .await?;
        Ok(Response::new(pb::UpdateActionResponse {
            action: Some(convert::action_to_pb(&record)),
        }))
    }

    async fn change_action_status(
        &self,
        request: Request<pb::ChangeActionStatusRequest>,
    ) -> Result<Response<pb::ChangeActionStatusResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let id = parse_id("id", &r.id)?.to_string();
        let target = convert::action_status_from_pb("status", r.status)
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::invalid("status", "is required: the status to move to"))?;
        let (locked, mut record) = self.lock_action(&caller, &id, &r.etag).await?;
        let expected = record.version;
        let from = record.action.status;
        change_status(&locked.plan, &mut record, target)?;
        let now = record.updated_at;
        let record = self
            .save_action(locked, record, expected, |facts| {
                events::action_status_changed(facts, from, &caller.actor, now)
            })
            .await?;
        Ok(Response::new(pb::ChangeActionStatusResponse {
            action: Some(convert::action_to_pb(&record)),
        }))
    }

    async fn assign_provider(
        &self,
        request: Request<pb::AssignProviderRequest>,
    ) -> Result<Response<pb::AssignProviderResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let id = parse_id("id", &r.id)?.to_string();
        let provider = r.provider_id.trim().to_string();
        if provider.len() > 128 {
            return Err(ApiError::invalid("provider_id", "at most 128 characters").into());
        }
        let (locked, mut record) = self.lock_action(&caller, &id, &r.etag).await?;
        let expected = record.version;
        locked
            .plan
            .ensure_open("assign providers")
            .map_err(ApiError::from)?;
        if !matches!(
            record.action.status,
            ActionStatus::Planned | ActionStatus::InProgress
        ) {
            return Err(wrong_status(record.action.status, "assign a provider").into());
        }
        let provider = (!provider.is_empty()).then_some(provider);
        let previous = record.action.provider_id.clone();
        if record.action.provider_id != provider {
            record.action.provider_id = provider;
            record.touch(tde_runtime::api::now());
        }
        let now = record.updated_at;
        let record = self
            .save_action(locked, record, expected, |facts| {
                events::provider_assigned(facts, previous.as_deref(), &caller.actor, now)
            })
            .await?;
        Ok(Response::new(pb::AssignProviderResponse {
            action: Some(convert::action_to_pb(&record)),
        }))
    }
}
