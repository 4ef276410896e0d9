//! The rules of the territories service, without I/O: official codes, the path's state
//! machine, contacts and their validation, name normalisation, time zones, and the reference
//! geography's file format.

pub mod contact;
pub mod geography;
pub mod names;
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
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

pub use tde_runtime::Violations;

impl tde_runtime::IntoFieldViolations for DomainError {
    fn into_field_violations(self) -> Vec<FieldViolation> {
        match self {
            DomainError::Invalid(v) => v,
            other => vec![FieldViolation::new("", other.to_string())],
        }
    }
}

impl From<tde_runtime::InvalidFields> for DomainError {
    fn from(e: tde_runtime::InvalidFields) -> Self {
        DomainError::Invalid(e.0)
    }
}

/// Prefixes the field of every violation, e.g. `members[2].` + `email`.
pub fn nest(prefix: &str, error: DomainError) -> DomainError {
    match error {
        DomainError::Invalid(v) => {
            DomainError::Invalid(tde_runtime::InvalidFields(v).nest(prefix).0)
        }
        other => other,
    }
}
