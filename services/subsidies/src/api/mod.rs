//! gRPC handlers: map requests to domain calls and storage, and errors to `ApiError` (which
//! the runtime turns into a `Status`, in one place).

pub mod convert;
pub mod envelopes;
pub mod ledger;
pub mod payments;
pub mod policy;
pub mod subsidies;

use chrono::NaiveDate;
use sea_orm::{DatabaseTransaction, TransactionTrait as _};
use tde_runtime::api::Caller;
use tde_runtime::outbox::{self, NewEvent};
use tde_runtime::{ApiError, FieldViolation, ServiceContext};

use crate::domain::DomainError;
use crate::domain::subsidy::Subsidy;
use crate::settings::SubsidySettings;
use crate::storage::{self, VisibleTo};

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => ApiError::InvalidArgument(v),
            DomainError::WrongState { ref current, .. } => ApiError::FailedPrecondition {
                kind: "STATE",
                subject: current.clone(),
                description: e.to_string(),
            },
            DomainError::Refused {
                kind,
                subject,
                description,
            } => ApiError::FailedPrecondition {
                kind,
                subject,
                description,
            },
        }
    }
}

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 500;

pub fn subsidy_resource(id: &str) -> String {
    format!("subsidies/{id}")
}

pub fn envelope_resource(id: &str) -> String {
    format!("envelopes/{id}")
}

pub fn payment_resource(id: &str) -> String {
    format!("payments/{id}")
}

pub(crate) fn not_found(resource_type: &'static str, id: &str) -> ApiError {
    ApiError::NotFound {
        resource_type,
        name: id.to_string(),
        field: None,
    }
}

pub(crate) fn stale(resource_type: &'static str, id: &str) -> ApiError {
    ApiError::Aborted {
        resource_type,
        name: id.to_string(),
    }
}

/// What the caller's token lets them see, as storage filters it.
pub fn visible_to(caller: &Caller) -> VisibleTo {
    caller.principal.visibility().filter()
}

/// A région filter: none when empty, a région's code otherwise (a malformed one is refused,
/// not answered with an empty list).
pub(crate) fn filter_region(field: &'static str, value: &str) -> Result<Option<String>, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    crate::domain::envelope::check_region(field, value)?;
    Ok(Some(value.to_string()))
}

/// An id filter: none when empty, a valid id otherwise.
pub(crate) fn filter_id(field: &'static str, value: &str) -> Result<Option<String>, ApiError> {
    if value.is_empty() {
        return Ok(None);
    }
    Ok(Some(tde_runtime::api::parse_id(field, value)?.to_string()))
}

/// A check of a request's input, as `refuse_invalid` reads it: the field violations it
/// found, if it refused the input.
pub(crate) trait Checked {
    fn violations(&self) -> &[FieldViolation];
}

impl<T> Checked for Result<T, ApiError> {
    fn violations(&self) -> &[FieldViolation] {
        match self {
            Err(ApiError::InvalidArgument(v)) => v,
            _ => &[],
        }
    }
}

impl<T> Checked for Result<T, DomainError> {
    fn violations(&self) -> &[FieldViolation] {
        match self {
            Err(DomainError::Invalid(v)) => v,
            _ => &[],
        }
    }
}

/// Refuses a request with the violations of all its checks at once, before anything is
/// read: bad input is never answered with the state of the data (not found, wrong state…).
/// When none refused the input, each check's own result is used next, with `?`.
pub(crate) fn refuse_invalid(checks: &[&dyn Checked]) -> Result<(), ApiError> {
    let all: Vec<FieldViolation> = checks
        .iter()
        .flat_map(|c| c.violations().iter().cloned())
        .collect();
    if all.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(all))
    }
}

/// The handlers of the four gRPC services of subsidies, sharing the service's context.
#[derive(Clone)]
pub struct SubsidiesApi {
    pub(crate) ctx: ServiceContext,
    pub(crate) settings: SubsidySettings,
}

/// A subsidy read for change: its row stays locked (PostgreSQL) until `commit`.
pub(crate) struct LockedSubsidy {
    pub txn: DatabaseTransaction,
    pub subsidy: Subsidy,
    pub expected: i64,
}

impl SubsidiesApi {
    pub fn new(ctx: ServiceContext) -> Self {
        let settings = ctx.settings.section::<SubsidySettings>();
        Self { ctx, settings }
    }

    /// When the review of `s`'s plan year is due.
    pub(crate) fn review_due(&self, s: &Subsidy) -> NaiveDate {
        s.year_end + chrono::Days::new(u64::from(self.settings.review_due_days))
    }

    pub(crate) fn render(&self, s: &Subsidy) -> tde_proto::subsidies::v1::Subsidy {
        convert::subsidy_to_pb(s, self.review_due(s))
    }

    /// Locks subsidy `id` for the caller: one of a territory they may not see does not exist
    /// for them. `etag`, when given, must be the subsidy's.
    pub(crate) async fn lock_subsidy(
        &self,
        caller: &Caller,
        id: &str,
        etag: &str,
    ) -> Result<LockedSubsidy, ApiError> {
        let id = tde_runtime::api::parse_id("id", id)?.to_string();
        caller.concerns(subsidy_resource(&id));
        let txn = self.ctx.db.begin().await?;
        let Some(subsidy) = storage::find_subsidy(&txn, &id, true)
            .await?
            .filter(|s| caller.may_see(&s.territory_id, &s.region_code))
        else {
            return Err(not_found("subsidy", &id));
        };
        if !etag.is_empty() && etag != subsidy.etag() {
            return Err(stale("subsidy", &id));
        }
        Ok(LockedSubsidy {
            expected: subsidy.version,
            txn,
            subsidy,
        })
    }

    /// Writes the locked subsidy, the events, and commits.
    pub(crate) async fn commit(
        &self,
        locked: LockedSubsidy,
        events: Vec<NewEvent>,
    ) -> Result<Subsidy, ApiError> {
        let LockedSubsidy {
            txn,
            subsidy,
            expected,
        } = locked;
        if subsidy.version != expected && !storage::update_subsidy(&txn, &subsidy, expected).await?
        {
            return Err(stale("subsidy", &subsidy.id));
        }
        outbox::enqueue(&txn, events).await?;
        txn.commit().await?;
        self.ctx.outbox.wake();
        Ok(subsidy)
    }
}
