//! The rules of the matching service, without I/O: SIRET numbers (`siret`), trusted
//! providers (`provider`), needs (`need`), the explained ranking (`ranking`), the optimal
//! assignment of many needs (`assignment`) and proposals (`proposal`).

pub mod assignment;
pub mod need;
pub mod proposal;
pub mod provider;
pub mod ranking;
pub mod siret;

use tde_runtime::FieldViolation;
pub use tde_runtime::Violations;

/// What the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{}", tde_runtime::error::describe(.0))]
    Invalid(Vec<FieldViolation>),
    /// The thing is in a state where the action is not possible (FAILED_PRECONDITION).
    #[error("the {what} is {current}: cannot {action}")]
    WrongState {
        what: &'static str,
        current: String,
        action: &'static str,
    },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

tde_runtime::field_violations_of!(DomainError);

/// Prefixes the fields of an `Invalid` error, e.g. `provider.` + `siret`.
pub fn nest(prefix: &str, e: DomainError) -> DomainError {
    match e {
        DomainError::Invalid(v) => {
            DomainError::Invalid(tde_runtime::InvalidFields(v).nest(prefix).0)
        }
        other => other,
    }
}
