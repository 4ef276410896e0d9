//! gRPC handlers: map requests to domain calls and storage, and errors to `ApiError` (which
//! the runtime turns into a `Status`, in one place).

pub mod convert;
pub mod needs;
pub mod personal_data;
pub mod policy;
pub mod proposals;
pub mod providers;

use tde_runtime::api::Caller;
use tde_runtime::auth::Role;
use tde_runtime::{ApiError, ServiceContext};

use crate::domain::DomainError;
use crate::settings::MatchingSettings;
use crate::storage::VisibleTo;

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

/// How the audit trail names providers, needs, proposals.
pub fn provider_resource(id: &str) -> String {
    format!("providers/{id}")
}

pub fn need_resource(id: &str) -> String {
    format!("needs/{id}")
}

pub fn proposal_resource(id: &str) -> String {
    format!("proposals/{id}")
}

pub(crate) fn not_found(
    resource_type: &'static str,
    id: &str,
    field: Option<&'static str>,
) -> ApiError {
    ApiError::NotFound {
        resource_type,
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

/// The territories a caller sees, as list filters take them.
pub(crate) fn visible_to(caller: &Caller) -> VisibleTo {
    caller.principal.visibility().filter()
}

/// The provider a provider's token speaks for; `None` for other roles. A provider token
/// without one speaks for no provider and sees nothing.
pub(crate) fn speaking_provider(caller: &Caller) -> Option<Option<&str>> {
    (caller.principal.role == Role::Provider).then(|| caller.principal.provider_id.as_deref())
}

/// The handlers of the three gRPC services of matching, sharing the service's context.
#[derive(Clone)]
pub struct MatchingApi {
    pub(crate) ctx: ServiceContext,
    pub(crate) settings: MatchingSettings,
}

impl MatchingApi {
    pub fn new(ctx: ServiceContext) -> Self {
        let settings = crate::settings_of(&ctx);
        Self { ctx, settings }
    }
}
