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

/// Collects every violation of a request before refusing it, so callers fix all at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Runs a check, recording its error under `prefix`.
    pub fn check<T>(&mut self, result: Result<T, DomainError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(DomainError::Invalid(v)) => {
                self.0.extend(v);
                None
            }
            Err(other) => {
                self.0.push(FieldViolation::new("", other.to_string()));
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self.0))
        }
    }
}

/// Prefixes the field of every violation, e.g. `members[2].` + `email`.
pub fn nest(prefix: &str, error: DomainError) -> DomainError {
    match error {
        DomainError::Invalid(v) => DomainError::Invalid(
            v.into_iter()
                .map(|f| FieldViolation::new(format!("{prefix}{}", f.field), f.description))
                .collect(),
        ),
        other => other,
    }
}
