//! Verification of bearer tokens: signature with an allowed algorithm and a key of the
//! configured set, then `iss`, `aud`, `exp` and `nbf` (with a small leeway), then the tde
//! claims. A rejected token gets one answer, UNAUTHENTICATED, whatever the reason; the reason
//! is logged, never sent.
//!
//! Clients reuse a token until it expires: a verified token is remembered (by its whole text)
//! until its `exp`, so that the signature is checked once, not on every call.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;

use super::keys::{ALLOWED_ALGORITHMS, KeySet, KeySetError, KeySource};
use super::{Principal, Role};
use crate::config::AuthSettings;

/// Longest token accepted (bytes): larger headers are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Why a token was refused (logged, never sent to the caller).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("no bearer token")]
    Missing,
    #[error("the token is too large")]
    TooLarge,
    #[error("the token header is unreadable: {0}")]
    Header(String),
    #[error("algorithm {0} is not allowed")]
    Algorithm(String),
    #[error("the token names no key id")]
    NoKeyId,
    #[error("unknown key id {0:?}")]
    UnknownKey(String),
    #[error("the token does not verify: {0}")]
    Invalid(String),
    #[error("the token's claims are unusable: {0}")]
    Claims(String),
}

/// The claims tde reads from an access token (RFC 9068: `scope`, `client_id`; tde's own are
/// prefixed `tde_`).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    client_id: Option<String>,
    tde_role: String,
    /// Space-separated, as OAuth2 has it.
    #[serde(default)]
    scope: String,
    #[serde(default)]
    tde_territories: Vec<String>,
    #[serde(default)]
    tde_regions: Vec<String>,
}

struct Remembered {
    principal: Arc<Principal>,
    not_before: i64,
    expires: i64,
    key_generation: u64,
}

/// Verifies tokens against the configured key set.
pub struct Verifier {
    keys: KeySet,
    issuer: String,
    audience: String,
    leeway: u64,
    remembered: RwLock<HashMap<Box<str>, Remembered>>,
    capacity: usize,
}

impl Verifier {
    pub async fn new(settings: &AuthSettings) -> Result<Self, KeySetError> {
        let source = match (&settings.jwks_url, &settings.jwks_file) {
            (Some(url), _) => KeySource::Url(url.clone()),
            (None, Some(path)) => KeySource::File(path.clone()),
            (None, None) => {
                return Err(KeySetError::Parse("no key set is configured".into()));
            }
        };
        let keys = KeySet::load(
            source,
            Duration::from_millis(settings.jwks_refresh_min_interval_ms),
        )
        .await?;
        Ok(Self {
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway_s,
            remembered: RwLock::new(HashMap::new()),
            capacity: settings.token_cache_entries,
        })
    }

    /// Verifies the value of an `authorization` header.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Arc<Principal>, Rejection> {
        let token = bearer(authorization)?;
        let now = chrono::Utc::now().timestamp();
        let leeway = self.leeway as i64;
        if let Some(hit) = self
            .remembered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .filter(|r| r.key_generation == self.keys.generation())
        {
            if now > hit.expires + leeway {
                return Err(Rejection::Invalid("ExpiredSignature".into()));
            }
            if now + leeway < hit.not_before {
                return Err(Rejection::Invalid("ImmatureSignature".into()));
            }
            return Ok(hit.principal.clone());
        }

        let generation = self.keys.generation();
        let header = decode_header(token).map_err(|e| Rejection::Header(format!("{e:?}")))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(Rejection::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(Rejection::NoKeyId)?;
        let key = match self.keys.get(&kid) {
            Some(key) => key,
            None => self
                .keys
                .refresh_for(&kid)
                .await
                .ok_or_else(|| Rejection::UnknownKey(kid.clone()))?,
        };
        // The key decides the algorithm: a token cannot pick another one for this key.
        if key.algorithm != header.alg {
            return Err(Rejection::Algorithm(format!(
                "{:?} with a {:?} key",
                header.alg, key.algorithm
            )));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| Rejection::Invalid(format!("{:?}", e.kind())))?
            .claims;
        let not_before = claims.nbf.unwrap_or(i64::MIN);
        let expires = claims.exp;
        let principal = Arc::new(principal_of(claims)?);

        let mut remembered = self.remembered.write().unwrap_or_else(|p| p.into_inner());
        if remembered.len() >= self.capacity {
            // Expired entries first; if that is not enough, start over.
            remembered.retain(|_, r| r.expires + leeway >= now);
            if remembered.len() >= self.capacity {
                remembered.clear();
            }
        }
        if self.capacity > 0 {
            remembered.insert(
                token.into(),
                Remembered {
                    principal: principal.clone(),
                    not_before,
                    expires,
                    key_generation: generation,
                },
            );
        }
        Ok(principal)
    }
}

fn bearer(authorization: Option<&str>) -> Result<&str, Rejection> {
    let value = authorization.ok_or(Rejection::Missing)?;
    if value.len() > MAX_TOKEN_BYTES + 7 {
        return Err(Rejection::TooLarge);
    }
    let (scheme, token) = value.split_once(' ').ok_or(Rejection::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Rejection::Missing);
    }
    Ok(token.trim())
}

fn principal_of(claims: Claims) -> Result<Principal, Rejection> {
    let role = Role::parse(&claims.tde_role)
        .ok_or_else(|| Rejection::Claims(format!("unknown role {:?}", claims.tde_role)))?;
    if claims.sub.is_empty() || claims.sub.len() > 256 {
        return Err(Rejection::Claims("sub is empty or too long".into()));
    }
    match role {
        Role::TerritoryMember if claims.tde_territories.len() != 1 => {
            return Err(Rejection::Claims(
                "a territory member has exactly one territory".into(),
            ));
        }
        Role::ProjectLead if claims.tde_territories.is_empty() && claims.tde_regions.is_empty() => {
            return Err(Rejection::Claims(
                "a project lead has territories or régions".into(),
            ));
        }
        _ => {}
    }
    Ok(Principal::new(
        claims.sub,
        claims.client_id.filter(|c| !c.is_empty()),
        role,
        claims.scope.split_whitespace().map(str::to_string),
        claims.tde_territories,
        claims.tde_regions,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_forms() {
        assert!(matches!(bearer(None), Err(Rejection::Missing)));
        assert!(matches!(bearer(Some("Basic abc")), Err(Rejection::Missing)));
        assert!(matches!(bearer(Some("Bearer ")), Err(Rejection::Missing)));
        assert_eq!(bearer(Some("bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        let huge = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 10));
        assert!(matches!(bearer(Some(&huge)), Err(Rejection::TooLarge)));
    }
}
