//! The rules of the subsidies service, without I/O: SIRET numbers (`siret`), money and
//! tranches (`money`), envelopes (`envelope`), subsidies and their decision (`subsidy`),
//! payments (`payment`).

pub mod envelope;
pub mod money;
pub mod payment;
pub mod siret;
pub mod subsidy;

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
    /// A rule of the programme refuses it (FAILED_PRECONDITION): four eyes, amounts beyond
    /// what is left, a balance before its review… `kind` is machine-readable.
    #[error("{description}")]
    Refused {
        kind: &'static str,
        subject: String,
        description: String,
    },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    pub fn refused(
        kind: &'static str,
        subject: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        Self::Refused {
            kind,
            subject: subject.into(),
            description: description.into(),
        }
    }
}

tde_runtime::field_violations_of!(DomainError);

/// The etag of a version of an envelope, subsidy or payment: `"3"`, one format for all.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// A one-line text of at most `max` characters, without control characters (see
/// `tde_runtime::input`).
pub fn text(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    match tde_runtime::input::problem(value, max, false) {
        None => Ok(()),
        Some(why) => Err(DomainError::invalid(field, why)),
    }
}

/// A text of several lines, at most `max` characters.
pub fn multiline(field: &str, value: &str, max: usize) -> Result<(), DomainError> {
    match tde_runtime::input::problem(value, max, true) {
        None => Ok(()),
        Some(why) => Err(DomainError::invalid(field, why)),
    }
}
