//! Small helpers shared by every service's gRPC handlers: the caller's identity, request ids,
//! pagination and timestamps.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// Metadata naming the caller until authentication (issue "Security") replaces it with the
/// token's subject.
pub const ACTOR_HEADER: &str = "x-tde-actor";
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Who is calling, for history and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub actor: String,
}

impl Caller {
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        let actor = request
            .metadata()
            .get(ACTOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 200)
            .unwrap_or("anonymous")
            .to_string();
        Self { actor }
    }
}

/// Page size: `default` when 0, at most `max`; negative is invalid.
pub fn page_size(requested: i32, default: u64, max: u64) -> Result<u64, ApiError> {
    match requested {
        n if n < 0 => Err(ApiError::invalid("page_size", "must not be negative")),
        0 => Ok(default),
        n => Ok((n as u64).min(max)),
    }
}

/// An opaque page token holding the sort key of the last item returned.
pub fn encode_page_token(last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{last_key}"))
}

pub fn decode_page_token(token: &str) -> Result<Option<String>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || ApiError::invalid("page_token", "is not a token returned by this API");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    text.strip_prefix("v1:")
        .map(|k| Some(k.to_string()))
        .ok_or_else(bad)
}

/// Parses a resource id, naming the field when it is not one.
pub fn parse_id(field: &'static str, value: &str) -> Result<uuid::Uuid, ApiError> {
    if value.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    uuid::Uuid::parse_str(value).map_err(|_| ApiError::invalid(field, "is not a valid id"))
}

/// The current time at the precision storage keeps (microseconds, as PostgreSQL), so that what
/// a write returns equals what a later read returns.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    Utc::now().trunc_subsecs(6)
}

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, t.nanos.try_into().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let t = encode_page_token("0192-abc");
        assert_eq!(decode_page_token(&t).unwrap().as_deref(), Some("0192-abc"));
        assert_eq!(decode_page_token("").unwrap(), None);
        assert!(decode_page_token("!!!").is_err());
        assert!(decode_page_token(&URL_SAFE_NO_PAD.encode("v2:x")).is_err());
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(9999, 50, 500).unwrap(), 500);
        assert!(page_size(-1, 50, 500).is_err());
    }
}
