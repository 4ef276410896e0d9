//! Small helpers shared by every service's gRPC handlers: the caller's identity, request ids,
//! pagination and timestamps.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};

use std::sync::Arc;

use crate::audit::AuditNote;
use crate::auth::Principal;
use crate::auth::layer::RequestId;
use crate::error::ApiError;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Who is calling, as the auth layer established it, for access checks, history and audit.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Arc<Principal>,
    /// What histories record as the author of a change: the token's subject.
    pub actor: String,
    pub request_id: String,
    audit: Option<AuditNote>,
}

impl Caller {
    /// The caller of `request`. A request that did not pass the auth layer has no right.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        let extensions = request.extensions();
        let principal = extensions
            .get::<Arc<Principal>>()
            .cloned()
            .unwrap_or_else(|| Arc::new(Principal::nobody()));
        Self {
            actor: principal.subject.clone(),
            principal,
            request_id: extensions
                .get::<RequestId>()
                .map(|r| r.0.clone())
                .unwrap_or_default(),
            audit: extensions.get::<AuditNote>().cloned(),
        }
    }

    /// Names the resource the call concerns, for the audit trail (e.g. `territories/0192…`).
    pub fn concerns(&self, resource: impl Into<String>) {
        if let Some(note) = &self.audit {
            note.set_resource(resource.into());
        }
    }

    /// Records that the call returns personal data: it goes on the audit trail.
    pub fn reads_personal_data(&self) {
        if let Some(note) = &self.audit {
            note.mark_personal_data_read();
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.principal.has_scope(scope)
    }

    pub fn may_see(&self, territory_id: &str, region_code: &str) -> bool {
        self.principal.may_see(territory_id, region_code)
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

/// One page of a List call (keyset paging): how many items, and the sort key of the last
/// item of the previous page, from its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u64,
    after: Option<String>,
}

impl PageRequest {
    /// From a request's `page_size` (`default` when 0, at most `max`) and `page_token`.
    pub fn parse(
        page_size: i32,
        page_token: &str,
        default: u64,
        max: u64,
    ) -> Result<Self, ApiError> {
        Ok(Self {
            size: self::page_size(page_size, default, max)?,
            after: decode_page_token(page_token)?,
        })
    }

    /// The sort key after which this page starts.
    pub fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// How many rows to fetch: one more than the page, which tells whether another follows.
    pub fn fetch(&self) -> u64 {
        self.size + 1
    }

    /// The page among `rows` (fetched with `fetch()`, in key order) and the token of the
    /// next page (empty on the last one); `key` gives an item's sort key.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, String) {
        if rows.len() as u64 <= self.size {
            return (rows, String::new());
        }
        rows.truncate(self.size as usize);
        let token = rows
            .last()
            .map(|t| encode_page_token(&key(t)))
            .unwrap_or_default();
        (rows, token)
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
    fn pages_end_where_the_rows_do() {
        let first = PageRequest::parse(2, "", 50, 500).unwrap();
        assert_eq!(first.fetch(), 3);
        let (items, token) = first.page(vec![1, 2, 3], |n| n.to_string());
        assert_eq!(items, vec![1, 2]);
        let next = PageRequest::parse(2, &token, 50, 500).unwrap();
        assert_eq!(next.after(), Some("2"));
        let (items, token) = next.page(vec![3], |n| n.to_string());
        assert_eq!((items, token), (vec![3], String::new()));
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 50, 500).unwrap(), 50);
        assert_eq!(page_size(9999, 50, 500).unwrap(), 500);
        assert!(page_size(-1, 50, 500).is_err());
    }
}
