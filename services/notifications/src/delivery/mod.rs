//! Sending: the transports (SMTP or .eml files for e-mail, signed HTTP POSTs for webhooks)
//! and the dispatcher that claims due notifications, sends them, and records each attempt.

pub mod dispatcher;
pub mod email;
pub mod webhook;

/// Why an attempt failed: permanent failures (a refused address) are dead-lettered at once,
/// the others retried with back-off.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }
}
