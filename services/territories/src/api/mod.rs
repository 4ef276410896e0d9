//! gRPC handlers: map requests to domain calls and storage, and errors to `ApiError` (which
//! the runtime turns into a `Status`, in one place).

pub mod convert;
pub mod geography;
pub mod personal_data;
pub mod policy;
pub mod recoding;
pub mod territories;

use tde_runtime::ApiError;

use crate::domain::DomainError;

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(v) => ApiError::InvalidArgument(v),
            DomainError::IllegalTransition { current, target } => ApiError::FailedPrecondition {
                kind: "STAGE",
                subject: current.as_str().to_string(),
                description: if current == target {
                    format!(
                        "the territory is {current}: its path is over and it can no longer change"
                    )
                } else {
                    format!("the territory is at stage {current}: it cannot move to {target}")
                },
            },
            DomainError::Precondition {
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
