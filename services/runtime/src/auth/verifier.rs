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

use super::keys::{ALLOWED_ALGORITHMS, KeySet, KeySetError, KeySource, VerificationKey};
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
    /// OIDC: the person's address, trusted only when `email_verified` is true.
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
    /// The provider a provider's token speaks for (matching's provider id).
    #[serde(default)]
    tde_provider: Option<String>,
}

/// Verified tokens a worker thread saw last, by verifier: checked before the shared cache,
/// so that the common case (a client reusing its token) writes to no memory shared between
/// threads.
const RECENT_PER_THREAD: usize = 32;

/// (verifier id, token hash, token, what it verified to).
type RecentEntry = (u64, u64, Box<str>, Verified);

thread_local! {
    static RECENT: std::cell::RefCell<Vec<RecentEntry>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

static NEXT_VERIFIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A verified token's caller and validity.
#[derive(Debug, Clone)]
pub struct Verified {
    pub principal: Arc<Principal>,
    not_before: i64,
    expires: i64,
    /// The key that verified it: valid while the set still holds this very key.
    kid: Arc<str>,
    key: Arc<VerificationKey>,
}

/// Verifies tokens against the configured key set.
pub struct Verifier {
    /// Tells this verifier's entries apart in the per-thread cache.
    id: u64,
    hasher: foldhash::fast::RandomState,
    keys: KeySet,
    issuer: String,
    audience: String,
    leeway: u64,
    /// Keyed by the whole token; foldhash is seeded per process, so callers cannot aim
    /// collisions.
    remembered: RwLock<HashMap<Box<str>, Verified, foldhash::fast::RandomState>>,
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
            id: NEXT_VERIFIER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hasher: foldhash::fast::RandomState::default(),
            keys,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway_s,
            remembered: RwLock::new(HashMap::default()),
            capacity: settings.token_cache_entries,
        })
    }

    /// Verifies the value of an `authorization` header.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<Arc<Principal>, Rejection> {
        Ok(self.verify_token(bearer(authorization)?).await?.principal)
    }

    /// Whether a token verified before is still valid at `now` (unix seconds): within its
    /// times, and its key still in the set.
    pub fn still_valid(&self, verified: &Verified, now: i64) -> Result<(), Rejection> {
        let leeway = self.leeway as i64;
        if !self.keys.still_holds(&verified.kid, &verified.key) {
            return Err(Rejection::Invalid("its key left the key set".into()));
        }
        if now > verified.expires + leeway {
            return Err(Rejection::Invalid("ExpiredSignature".into()));
        }
        if now + leeway < verified.not_before {
            return Err(Rejection::Invalid("ImmatureSignature".into()));
        }
        Ok(())
    }

    /// Verifies a bearer token (the part after `Bearer `).
    pub async fn verify_token(&self, token: &str) -> Result<Verified, Rejection> {
        let now = chrono::Utc::now().timestamp();
        let leeway = self.leeway as i64;
        let hash = std::hash::BuildHasher::hash_one(&self.hasher, token);
        let recent = RECENT.with_borrow(|recent| {
            recent
                .iter()
                .find(|(id, h, t, _)| *id == self.id && *h == hash && &**t == token)
                .map(|(.., v)| v.clone())
        });
        if let Some(hit) = recent {
            self.still_valid(&hit, now)?;
            return Ok(hit);
        }
        let shared = self
            .remembered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(hit) = shared {
            self.still_valid(&hit, now)?;
            self.remember_here(hash, token, &hit);
            return Ok(hit);
        }

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
                // The id comes from the caller: logged, so bounded.
                .ok_or_else(|| Rejection::UnknownKey(kid.chars().take(64).collect()))?,
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
        let verified = Verified {
            not_before: claims.nbf.unwrap_or(i64::MIN),
            expires: claims.exp,
            kid: kid.as_str().into(),
            key: key.clone(),
            principal: Arc::new(principal_of(claims)?),
        };

        let mut remembered = self.remembered.write().unwrap_or_else(|p| p.into_inner());
        if remembered.len() >= self.capacity {
            // Expired entries first; if that is not enough, start over.
            remembered.retain(|_, r| r.expires + leeway >= now);
            if remembered.len() >= self.capacity {
                remembered.clear();
            }
        }
        if self.capacity > 0 {
            remembered.insert(token.into(), verified.clone());
            drop(remembered);
            self.remember_here(hash, token, &verified);
        }
        Ok(verified)
    }

    fn remember_here(&self, hash: u64, token: &str, verified: &Verified) {
        RECENT.with_borrow_mut(|recent| {
            if recent.len() >= RECENT_PER_THREAD {
                recent.remove(0);
            }
            recent.push((self.id, hash, token.into(), verified.clone()));
        });
    }
}

/// The token of an `authorization: Bearer <token>` header value.
pub fn bearer(authorization: Option<&str>) -> Result<&str, Rejection> {
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
        Role::TerritoryMember
            if claims.tde_territories.len() != 1 || !claims.tde_regions.is_empty() =>
        {
            return Err(Rejection::Claims(
                "a territory member has exactly one territory and no région".into(),
            ));
        }
        // Only project leads see by région: another role's régions would widen it.
        Role::National | Role::Agency | Role::Provider if !claims.tde_regions.is_empty() => {
            return Err(Rejection::Claims(format!(
                "tde_regions is for project leads, not a {role}"
            )));
        }
        _ if role != Role::Provider && claims.tde_provider.is_some() => {
            return Err(Rejection::Claims(format!(
                "tde_provider is for providers, not a {role}"
            )));
        }
        Role::ProjectLead if claims.tde_territories.is_empty() && claims.tde_regions.is_empty() => {
            return Err(Rejection::Claims(
                "a project lead has territories or régions".into(),
            ));
        }
        _ => {}
    }
    let email = claims
        .email
        .filter(|_| claims.email_verified)
        .map(|e| crate::personal_data::normalize_email(&e))
        .filter(|e| !e.is_empty() && e.len() <= 254);
    Ok(Principal::new(
        claims.sub,
        claims.client_id.filter(|c| !c.is_empty()),
        role,
        claims.scope.split_whitespace().map(str::to_string),
        claims.tde_territories,
        claims.tde_regions,
    )
    .with_email(email)
    .with_provider(
        claims
            .tde_provider
            .filter(|p| !p.is_empty() && p.len() <= 128),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{LocalIssuer, TokenSpec};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};

    /// A provider's token names the provider it speaks for (matching shows it its own
    /// proposals only); another role naming one is refused, and a provider keeps its role's
    /// scopes whatever the token asks.
    #[test]
    fn a_provider_token_names_its_provider_and_only_a_provider_may() {
        let claims = |role: &str, provider: Option<&str>| -> Claims {
            let mut v = serde_json::json!({
                "sub": "s", "exp": 0, "tde_role": role,
                "scope": "matching:read matching:write plans:write",
            });
            if let Some(p) = provider {
                v["tde_provider"] = p.into();
            }
            serde_json::from_value(v).unwrap()
        };
        let p = principal_of(claims("provider", Some("prov-1"))).unwrap();
        assert_eq!(p.provider_id.as_deref(), Some("prov-1"));
        assert!(p.has_scope(crate::auth::scope::MATCHING_WRITE));
        assert!(!p.has_scope(crate::auth::scope::PLANS_WRITE));
        assert!(matches!(
            principal_of(claims("national", Some("prov-1"))),
            Err(Rejection::Claims(_))
        ));
        assert_eq!(
            principal_of(claims("provider", None)).unwrap().provider_id,
            None
        );
    }

    /// ES256 tokens verify against a P-256 key of the set, and an EdDSA key cannot be used
    /// with another algorithm's token.
    #[tokio::test]
    async fn es256_and_eddsa_keys_each_verify_their_own_algorithm() {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let ed = LocalIssuer::generate("iss", "aud").unwrap();
        let jwks = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "ec-1", "alg": "ES256",
             "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])},
            ed.jwk(),
        ]});
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, jwks.to_string()).unwrap();
        let settings = AuthSettings {
            issuer: "iss".into(),
            audience: "aud".into(),
            jwks_file: Some(path),
            ..AuthSettings::default()
        };
        let verifier = Verifier::new(&settings).await.unwrap();

        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": "iss", "aud": "aud", "sub": "agency-app", "exp": now + 60, "nbf": now,
            "tde_role": "agency", "scope": "territories:read territories:write",
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
        let es256 = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        let principal = verifier
            .verify(Some(&format!("Bearer {es256}")))
            .await
            .unwrap();
        assert_eq!(principal.subject, "agency-app");
        assert_eq!(principal.scopes(), &["territories:read".to_string()]);

        // The EC-signed token presented under the Ed25519 key's id.
        header.kid = Some(ed.kid().to_string());
        let confused = jsonwebtoken::encode(&header, &claims, &key).unwrap();
        assert!(matches!(
            verifier.verify(Some(&format!("Bearer {confused}"))).await,
            Err(Rejection::Algorithm(_))
        ));
        let eddsa = ed
            .mint(&TokenSpec::new(crate::auth::Role::National, "n"))
            .unwrap();
        assert!(
            verifier
                .verify(Some(&format!("Bearer {eddsa}")))
                .await
                .is_ok()
        );
    }

    /// Tokens with unknown key ids, sent by anyone without credentials, make the key set be
    /// re-read: a re-read finding the same keys invalidates nothing, and a token whose key is
    /// still in the set keeps verifying; a key that left the set stops verifying.
    #[tokio::test]
    async fn key_set_re_reads_keep_the_keys_still_there() {
        let signer = LocalIssuer::generate("iss", "aud").unwrap();
        let stranger = LocalIssuer::generate("iss", "aud").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwks.json");
        std::fs::write(
            &path,
            serde_json::json!({"keys": [signer.jwk()]}).to_string(),
        )
        .unwrap();
        let settings = AuthSettings {
            issuer: "iss".into(),
            audience: "aud".into(),
            jwks_file: Some(path.clone()),
            jwks_refresh_min_interval_ms: 0,
            ..AuthSettings::default()
        };
        let verifier = Verifier::new(&settings).await.unwrap();
        let spec = TokenSpec::new(crate::auth::Role::National, "n");
        let held = format!("Bearer {}", signer.mint(&spec).unwrap());
        assert!(verifier.verify(Some(&held)).await.is_ok());
        for i in 0..50 {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some(format!("random-{i}-{}", uuid::Uuid::new_v4()));
            let forged = stranger.mint(&spec).unwrap();
            let (_, rest) = forged.split_once('.').unwrap();
            let head = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
            let token = format!("Bearer {head}.{rest}");
            assert!(verifier.verify(Some(&token)).await.is_err());
            // Those who hold good tokens keep working, old and new alike.
            assert!(
                verifier.verify(Some(&held)).await.is_ok(),
                "after {i} re-reads"
            );
            let fresh = format!("Bearer {}", signer.mint(&spec).unwrap());
            assert!(verifier.verify(Some(&fresh)).await.is_ok());
        }
        // Rotation: the old key leaves the set; a token of the new key makes it re-read.
        let next = LocalIssuer::generate("iss", "aud").unwrap();
        std::fs::write(&path, serde_json::json!({"keys": [next.jwk()]}).to_string()).unwrap();
        let rotated = format!("Bearer {}", next.mint(&spec).unwrap());
        assert!(verifier.verify(Some(&rotated)).await.is_ok());
        assert!(
            verifier.verify(Some(&held)).await.is_err(),
            "its key left the set"
        );
    }

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
