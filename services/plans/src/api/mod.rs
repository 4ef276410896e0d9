//! gRPC handlers: map requests to domain calls and storage, and errors to `ApiError` (which
//! the runtime turns into a `Status`, in one place).

pub mod actions;
pub mod convert;
pub mod meetings;
pub mod personal_data;
pub mod plans;
pub mod policy;

use sea_orm::DatabaseTransaction;
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::{ApiError, ServiceContext};

use crate::domain::DomainError;
use crate::domain::plan::Plan;
use crate::storage;

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => ApiError::InvalidArgument(v),
            DomainError::WrongState { ref current, .. } => ApiError::FailedPrecondition {
                kind: "STATE",
                subject: current.clone(),
                description: e.to_string(),
            },
        }
    }
}

/// How the audit trail names a plan, an action, a meeting.
pub fn plan_resource(id: &str) -> String {
    format!("plans/{id}")
}

pub fn action_resource(id: &str) -> String {
    format!("actions/{id}")
}

pub fn meeting_resource(id: &str) -> String {
    format!("steering_meetings/{id}")
}

/// The handlers of the three gRPC services of plans, sharing the service's context.
#[derive(Clone)]
pub struct PlansApi {
    pub(crate) ctx: ServiceContext,
}

/// A plan read for change: its row stays locked (PostgreSQL) until `commit`, so that changes
/// of one plan, its actions and its meetings queue instead of failing.
pub(crate) struct Locked {
    pub txn: DatabaseTransaction,
    pub plan: Plan,
    pub expected: i64,
}

pub(crate) fn plan_not_found(id: &str, field: Option<&'static str>) -> ApiError {
    ApiError::NotFound {
        resource_type: "plan",
        name: id.to_string(),
        field,
    }
}

pub(crate) fn stale(resource_type: &'static str, id: &str) -> ApiError {
    ApiError::Aborted {
        resource_type,
        name: id.to_string(),
    }
}

impl PlansApi {
    pub fn new(ctx: ServiceContext) -> Self {
        Self { ctx }
    }

    /// Locks plan `id` for the caller: a plan of a territory they may not see does not exist
    /// for them. `etag`, when given, must be the plan's.
    pub(crate) async fn lock_plan(
        &self,
        caller: &tde_runtime::api::Caller,
        id: &str,
        etag: &str,
        field: Option<&'static str>,
    ) -> Result<Locked, ApiError> {
        use sea_orm::TransactionTrait as _;
        let txn = self.ctx.db.begin().await?;
        let Some(plan) = storage::find_plan_for_update(&txn, id)
            .await?
            .filter(|p| caller.may_see(&p.territory_id, &p.region_code))
        else {
            return Err(plan_not_found(id, field));
        };
        if !etag.is_empty() && etag != plan.etag() {
            return Err(stale("plan", id));
        }
        Ok(Locked {
            expected: plan.version,
            txn,
            plan,
        })
    }

    /// Writes the locked plan if it changed, the events, and commits.
    pub(crate) async fn commit(
        &self,
        locked: Locked,
        events: Vec<NewEvent>,
    ) -> Result<Plan, ApiError> {
        let Locked {
            txn,
            plan,
            expected,
        } = locked;
        if plan.version != expected && !storage::update_plan(&txn, &plan, expected).await? {
            return Err(stale("plan", &plan.id));
        }
        outbox::enqueue(&txn, events).await?;
        txn.commit().await?;
        self.ctx.outbox.wake();
        Ok(plan)
    }
}
