//! The key set tokens are verified against: a JWKS from a file or an https URL, configured by
//! the operator and never named by a token (`jku`, `x5u` and embedded keys are ignored). It is
//! loaded at start-up and fetched again when a token names a key id it does not hold (key
//! rotation at the identity provider), at most once per `min_interval`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// The only signature algorithms accepted: asymmetric, so that holding the key set does not
/// allow minting tokens.
pub const ALLOWED_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("reading the key set {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching the key set: {0}")]
    Fetch(String),
    #[error("the key set is not a JWKS document: {0}")]
    Parse(String),
}

/// Where the key set comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    File(PathBuf),
    Url(String),
}

/// Whether a key set URL is acceptable: https, or http to the loopback interface (tests, a
/// sidecar).
pub fn acceptable_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

impl std::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A verification key and the one algorithm it may verify.
pub struct VerificationKey {
    pub key: DecodingKey,
    pub algorithm: Algorithm,
    /// The JWK as published: a re-read finding the same text keeps this very key (and the
    /// tokens verified with it).
    pub published: String,
}

/// The key set, by key id.
pub struct KeySet {
    source: KeySource,
    http: Option<reqwest::Client>,
    keys: RwLock<Arc<HashMap<String, Arc<VerificationKey>>>>,
    /// Serialises refreshes and remembers the last one.
    last_refresh: tokio::sync::Mutex<Instant>,
    min_interval: Duration,
    /// Unknown key ids a refresh was made for lately: one refresh each, not one per token.
    tried: std::sync::Mutex<HashMap<String, Instant>>,
}

/// How long an unknown key id that a refresh did not find stays unknown without another
/// refresh.
const UNKNOWN_KID_QUIET: Duration = Duration::from_secs(300);
/// Unknown key ids remembered at most (random ids cannot grow memory).
const UNKNOWN_KIDS_KEPT: usize = 1_024;

impl KeySet {
    /// Loads the key set. A file must be readable; a URL that does not answer yet leaves the
    /// set empty, to be fetched on the first token (the identity provider may start later).
    pub async fn load(source: KeySource, min_interval: Duration) -> Result<Self, KeySetError> {
        let http = match &source {
            KeySource::Url(_) => Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| KeySetError::Fetch(e.to_string()))?,
            ),
            KeySource::File(_) => None,
        };
        let set = Self {
            source,
            http,
            keys: RwLock::new(Arc::new(HashMap::new())),
            last_refresh: tokio::sync::Mutex::new(Instant::now()),
            min_interval,
            tried: Default::default(),
        };
        match set.fetch().await {
            Ok(keys) => set.replace(keys),
            Err(e @ KeySetError::Fetch(_)) => {
                tracing::warn!(error = %e, "key set not available yet; fetched again on the first token");
            }
            Err(e) => return Err(e),
        }
        Ok(set)
    }

    pub fn get(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(kid)
            .cloned()
    }

    /// Whether `key` is still the key of `kid` in the set (a token verified with it stays
    /// valid across re-reads that keep it).
    pub fn still_holds(&self, kid: &str, key: &Arc<VerificationKey>) -> bool {
        self.get(kid)
            .is_some_and(|current| Arc::ptr_eq(&current, key))
    }

    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A token names `kid`, which the set does not hold: fetches the set again unless that
    /// was done less than `min_interval` ago, and looks again.
    pub async fn refresh_for(&self, kid: &str) -> Option<Arc<VerificationKey>> {
        {
            // An id a recent refresh did not find is not worth another.
            let tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
            if tried
                .get(kid)
                .is_some_and(|at| at.elapsed() < UNKNOWN_KID_QUIET)
                && !self.is_empty()
            {
                return None;
            }
        }
        let mut last = self.last_refresh.lock().await;
        // Another call may have refreshed while this one waited.
        if let Some(key) = self.get(kid) {
            return Some(key);
        }
        if last.elapsed() < self.min_interval && !self.is_empty() {
            return None;
        }
        *last = Instant::now();
        {
            let mut tried = self.tried.lock().unwrap_or_else(|p| p.into_inner());
            if tried.len() >= UNKNOWN_KIDS_KEPT {
                tried.clear();
            }
            tried.insert(kid.chars().take(64).collect(), Instant::now());
        }
        match self.fetch().await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "key set refreshed");
                self.replace(keys);
            }
            Err(e) => tracing::warn!(error = %e, "refreshing the key set failed"),
        }
        self.get(kid)
    }

    /// Installs a re-read set, keeping the very key of every kid whose JWK did not change.
    fn replace(&self, mut keys: HashMap<String, Arc<VerificationKey>>) {
        let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
        for (kid, key) in keys.iter_mut() {
            if let Some(old) = current.get(kid)
                && old.published == key.published
                && old.algorithm == key.algorithm
            {
                *key = old.clone();
            }
        }
        *current = Arc::new(keys);
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<VerificationKey>>, KeySetError> {
        let bytes = match (&self.source, &self.http) {
            (KeySource::File(path), _) => {
                tokio::fs::read(path)
                    .await
                    .map_err(|source| KeySetError::Read {
                        path: path.clone(),
                        source,
                    })?
            }
            (KeySource::Url(url), Some(http)) => {
                let response = http
                    .get(url)
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| KeySetError::Fetch(e.to_string()))?;
                response
                    .bytes()
                    .await
                    .map_err(|e| KeySetError::Fetch(e.to_string()))?
                    .to_vec()
            }
            (KeySource::Url(_), None) => {
                return Err(KeySetError::Fetch("no HTTP client".into()));
            }
        };
        parse_jwks(&bytes)
    }
}

/// Parses a JWKS document. Keys that are not signature keys of an allowed algorithm, or have
/// no `kid`, are skipped with a warning rather than failing the whole set.
pub fn parse_jwks(bytes: &[u8]) -> Result<HashMap<String, Arc<VerificationKey>>, KeySetError> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| KeySetError::Parse(e.to_string()))?;
    let mut keys = HashMap::new();
    for value in doc.keys {
        let published = value.to_string();
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a key of an unsupported type");
                continue;
            }
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!("skipping a key without kid");
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(algorithm) = algorithm_of(&jwk) else {
            tracing::warn!(kid, "skipping a key of no allowed algorithm");
            continue;
        };
        match DecodingKey::from_jwk(&jwk) {
            Ok(key) => {
                keys.insert(
                    kid,
                    Arc::new(VerificationKey {
                        key,
                        algorithm,
                        published,
                    }),
                );
            }
            Err(e) => tracing::warn!(kid, error = %e, "skipping an unreadable key"),
        }
    }
    Ok(keys)
}

/// The allowed algorithm a key is for, from its type (and its `alg`, which must agree).
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        // Symmetric keys ("oct") and other curves are never accepted.
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(by_type),
        Some(declared) => (format!("{declared:?}") == format!("{by_type:?}")).then_some(by_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_set_urls() {
        assert!(acceptable_url("https://auth.example.fr/jwks"));
        assert!(acceptable_url("http://127.0.0.1:8080/jwks"));
        assert!(acceptable_url("http://localhost/jwks"));
        assert!(!acceptable_url("http://auth.example.fr/jwks"));
        assert!(!acceptable_url("http://127.0.0.1.evil.fr/jwks"));
        assert!(!acceptable_url("file:///etc/passwd"));
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let doc = br#"{"keys":[
            {"kty":"oct","kid":"s","k":"c2VjcmV0"},
            {"kty":"OKP","crv":"Ed25519","kid":"e","use":"enc","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"ok","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","kid":"wrong-alg","alg":"RS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["ok"]);
        assert_eq!(keys["ok"].algorithm, Algorithm::EdDSA);
        assert!(parse_jwks(b"not json").is_err());
    }
}
