//! The one mapping from service errors to `tonic::Status`, with rich details (tonic-types):
//! field violations for bad input, resource info for missing or conflicting resources,
//! precondition failures for wrong states, retry info for overload. Internal errors are
//! logged here, once, and reach the caller only as an opaque message.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Bad fields of a request, all of them (so that callers fix them at once).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", describe(.0))]
pub struct InvalidFields(pub Vec<FieldViolation>);

impl InvalidFields {
    /// Prefixes every field, e.g. `members[2].` + `email`.
    pub fn nest(self, prefix: &str) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|f| FieldViolation::new(format!("{prefix}{}", f.field), f.description))
                .collect(),
        )
    }
}

/// A service's domain error, as field violations (its own for bad input, one without field
/// otherwise).
pub trait IntoFieldViolations {
    fn into_field_violations(self) -> Vec<FieldViolation>;
}

impl IntoFieldViolations for InvalidFields {
    fn into_field_violations(self) -> Vec<FieldViolation> {
        self.0
    }
}

/// Connects a service's domain error to `Violations`: its `Invalid(Vec<FieldViolation>)`
/// variant carries field violations both ways, any other variant becomes one without field.
#[macro_export]
macro_rules! field_violations_of {
    ($error:ty) => {
        impl $crate::IntoFieldViolations for $error {
            fn into_field_violations(self) -> Vec<$crate::FieldViolation> {
                match self {
                    Self::Invalid(v) => v,
                    other => vec![$crate::FieldViolation::new("", other.to_string())],
                }
            }
        }

        impl From<$crate::InvalidFields> for $error {
            fn from(e: $crate::InvalidFields) -> Self {
                Self::Invalid(e.0)
            }
        }
    };
}

/// Collects every violation of a request before refusing it.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Runs a check, keeping its violations.
    pub fn check<T, E: IntoFieldViolations>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.into_field_violations());
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), InvalidFields> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidFields(self.0))
        }
    }
}

impl From<InvalidFields> for ApiError {
    fn from(e: InvalidFields) -> Self {
        ApiError::InvalidArgument(e.0)
    }
}

/// What a request can fail with, as a service says it; converted to a Status only here.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{resource_type} {name:?} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
        /// The request field that named it, if any.
        field: Option<&'static str>,
    },
    #[error("{resource_type} {name:?} already exists")]
    AlreadyExists {
        resource_type: &'static str,
        name: String,
    },
    #[error("{description}")]
    FailedPrecondition {
        /// Machine-readable kind, e.g. "STAGE".
        kind: &'static str,
        subject: String,
        description: String,
    },
    #[error("{resource_type} {name:?} was changed by someone else: read it again")]
    Aborted {
        resource_type: &'static str,
        name: String,
    },
    #[error("{message}")]
    ResourceExhausted {
        message: String,
        retry_after: Duration,
    },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
    },
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("{0}")]
    PermissionDenied(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// `field: description; …`, for messages and logs.
pub fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(error: impl Into<anyhow::Error>) -> Self {
        Self::Internal(error.into())
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound { .. } => Code::NotFound,
            Self::AlreadyExists { .. } => Code::AlreadyExists,
            Self::FailedPrecondition { .. } => Code::FailedPrecondition,
            Self::Aborted { .. } => Code::Aborted,
            Self::ResourceExhausted { .. } => Code::ResourceExhausted,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::Unauthenticated => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        let code = error.code();
        let mut details = ErrorDetails::new();
        match &error {
            ApiError::InvalidArgument(violations) => {
                for v in violations {
                    details.add_bad_request_violation(v.field.clone(), v.description.clone());
                }
            }
            ApiError::NotFound {
                resource_type,
                name,
                field,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "not found");
                if let Some(field) = field {
                    details
                        .add_bad_request_violation(*field, format!("no {resource_type} {name:?}"));
                }
            }
            ApiError::AlreadyExists {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "already exists");
            }
            ApiError::FailedPrecondition {
                kind,
                subject,
                description,
            } => {
                details.add_precondition_failure_violation(
                    *kind,
                    subject.clone(),
                    description.clone(),
                );
            }
            ApiError::Aborted {
                resource_type,
                name,
            } => {
                details.set_resource_info(*resource_type, name.clone(), "", "stale etag");
            }
            ApiError::ResourceExhausted { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => {
                details.set_retry_info(Some(*retry_after));
            }
            ApiError::Internal(source) => {
                // Logged once here; the caller gets no SQL, no stack trace.
                tracing::error!(error = format!("{source:#}"), "internal error");
            }
            ApiError::Unauthenticated | ApiError::PermissionDenied(_) => {}
        }
        Status::with_error_details(code, error.to_string(), details)
    }
}

/// Storage failures: an unreachable database (even lost mid-query) is worth retrying, anything
/// else is internal.
impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        if crate::db::is_refused_input(&error) {
            // A safety net: handlers bound and clean their text, but what the database
            // refuses of a caller's text is still the caller's, not an internal error.
            return ApiError::invalid(
                "",
                "a text holds characters or a length the storage refuses (NUL, too long)",
            );
        }
        if crate::db::is_unavailable(&error) {
            tracing::warn!(error = %error, "database unavailable");
            return ApiError::Unavailable {
                message: "storage temporarily unavailable".into(),
                retry_after: Duration::from_secs(1),
            };
        }
        ApiError::Internal(error.into())
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(error: sea_orm::TransactionError<ApiError>) -> Self {
        match error {
            sea_orm::TransactionError::Connection(e) => e.into(),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_field_violations() {
        let status: Status = ApiError::InvalidArgument(vec![
            FieldViolation::new("official_code", "must be 5 characters"),
            FieldViolation::new("kind", "required"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().unwrap();
        assert_eq!(bad.field_violations.len(), 2);
        assert_eq!(bad.field_violations[0].field, "official_code");
    }

    #[test]
    fn internal_errors_do_not_leak() {
        let status: Status =
            ApiError::internal(anyhow::anyhow!("relation \"territories\" does not exist")).into();
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn overload_carries_retry_info() {
        let status: Status = ApiError::ResourceExhausted {
            message: "slow down".into(),
            retry_after: Duration::from_secs(2),
        }
        .into();
        let details = status.get_error_details();
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn not_found_names_the_field() {
        let status: Status = ApiError::NotFound {
            resource_type: "commune",
            name: "99999".into(),
            field: Some("official_code"),
        }
        .into();
        assert_eq!(status.code(), Code::NotFound);
        let details = status.get_error_details();
        assert_eq!(
            details.bad_request().unwrap().field_violations[0].field,
            "official_code"
        );
        assert_eq!(details.resource_info().unwrap().resource_name, "99999");
    }
}
