//! The rules of the territories service, without I/O: official codes, the path's state
//! machine, contacts and their validation, name normalisation, time zones, the reference
//! geography's file format, and what a new vintage does to the territories.

pub mod contact;
pub mod geography;
pub mod names;
pub mod recoding;
pub mod territory;

use tde_runtime::FieldViolation;

/// What the rules refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{}", tde_runtime::error::describe(.0))]
    Invalid(Vec<FieldViolation>),
    #[error("a territory at stage {current} cannot move to {target}")]
    IllegalTransition {
        current: territory::Stage,
        target: territory::Stage,
    },
    /// The state of things does not allow it (FAILED_PRECONDITION), e.g. a geography issue
    /// that is not there.
    #[error("{description}")]
    Precondition {
        kind: &'static str,
        subject: String,
        description: String,
    },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

pub use tde_runtime::Violations;

tde_runtime::field_violations_of!(DomainError);

/// Prefixes the field of every violation, e.g. `members[2].` + `email`.
pub fn nest(prefix: &str, error: DomainError) -> DomainError {
    match error {
        DomainError::Invalid(v) => {
            DomainError::Invalid(tde_runtime::InvalidFields(v).nest(prefix).0)
        }
        other => other,
    }
}
