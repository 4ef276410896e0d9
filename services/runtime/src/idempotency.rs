//! Idempotent creation: a client retrying a create with the same `request_id` gets the
//! resource the first call created, never a second one. Keys are scoped to the caller (its
//! client and subject): two tenants may use the same id without meeting, and a refused key
//! says nothing of anyone else's activity.
//!
//! The key is claimed inside the creating transaction (`IdempotencyKey::claim`), before the
//! resource is written: a concurrent call with the same key waits on the key's row and then
//! finds it taken, so exactly one of them creates.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbErr, Statement};
use sha2::Digest as _;

use crate::api::Caller;
use crate::error::ApiError;
use crate::input;

/// Longest `request_id` accepted.
pub const MAX_REQUEST_ID: usize = 128;

/// The request id of one create call, scoped to its caller and to the kind of resource.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    caller: String,
    resource_type: &'static str,
    request_id: String,
    /// What the request asked for: a key reused for another request is refused.
    digest: String,
}

impl IdempotencyKey {
    /// The key of a create request: none when `request_id` is empty. `request` is what the
    /// caller asked for (its encoding is compared when the key comes again).
    pub fn of(
        caller: &Caller,
        resource_type: &'static str,
        request_id: &str,
        request: &impl prost::Message,
    ) -> Result<Option<Self>, ApiError> {
        if request_id.is_empty() {
            return Ok(None);
        }
        input::text("request_id", request_id, MAX_REQUEST_ID)?;
        let principal = &caller.principal;
        Ok(Some(Self {
            caller: format!(
                "{}\u{1f}{}",
                principal.client_id.as_deref().unwrap_or(""),
                principal.subject
            ),
            resource_type,
            request_id: request_id.to_string(),
            digest: crate::personal_data::hex(&sha2::Sha256::digest(request.encode_to_vec())),
        }))
    }

    /// Claims the key for `resource_id` in the creating transaction. `Ok(None)`: the caller
    /// may create. `Ok(Some(id))`: an earlier call with this key created `id` (its
    /// transaction committed); the caller answers with that resource and writes nothing.
    /// A key used before for another request is refused.
    pub async fn claim(
        key: Option<&Self>,
        txn: &impl ConnectionTrait,
        resource_id: &str,
    ) -> Result<Option<String>, ApiError> {
        let Some(key) = key else { return Ok(None) };
        let backend = txn.get_database_backend();
        let insert = Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "INSERT INTO idempotency_keys (caller, resource_type, request_id, request_digest, resource_id, created_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ),
            [
                key.caller.clone().into(),
                key.resource_type.into(),
                key.request_id.clone().into(),
                key.digest.clone().into(),
                resource_id.into(),
                Utc::now().into(),
            ],
        );
        if txn.execute_raw(insert).await?.rows_affected() == 1 {
            return Ok(None);
        }
        let select = Statement::from_sql_and_values(
            backend,
            placeholders(
                backend,
                "SELECT request_digest, resource_id FROM idempotency_keys \
                 WHERE caller = ? AND resource_type = ? AND request_id = ?",
            ),
            [
                key.caller.clone().into(),
                key.resource_type.into(),
                key.request_id.clone().into(),
            ],
        );
        let row = txn
            .query_one_raw(select)
            .await?
            .ok_or_else(|| DbErr::Custom("idempotency key neither inserted nor found".into()))?;
        let digest: String = row.try_get("", "request_digest")?;
        if digest != key.digest {
            return Err(ApiError::invalid(
                "request_id",
                format!(
                    "was already used by you for another {}: use a new request id",
                    key.resource_type
                ),
            ));
        }
        Ok(Some(row.try_get("", "resource_id")?))
    }
}

/// `?` placeholders as the backend writes them.
fn placeholders(backend: sea_orm::DbBackend, sql: &str) -> String {
    if backend != sea_orm::DbBackend::Postgres {
        return sql.to_string();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_by_backend() {
        assert_eq!(
            placeholders(sea_orm::DbBackend::Postgres, "a = ? AND b = ?"),
            "a = $1 AND b = $2"
        );
        assert_eq!(placeholders(sea_orm::DbBackend::Sqlite, "a = ?"), "a = ?");
    }
}
