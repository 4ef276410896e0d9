//! A local token issuer: an Ed25519 signing key and its public key set (JWKS), created in a
//! folder on first use. `tde dev` trusts it and `tde token` mints with it; the tests mint
//! their tokens the same way. In production tokens come from the identity provider and this
//! is not used.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Serialize;

use super::Role;

const SIGNING_KEY_FILE: &str = "signing-key.p8";
const KEY_SET_FILE: &str = "jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the signing key is unreadable: {0}")]
    Key(String),
    #[error("signing: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// What a minted token says.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub subject: String,
    pub client_id: Option<String>,
    pub role: Role,
    pub scopes: Vec<String>,
    pub territories: Vec<String>,
    pub regions: Vec<String>,
    /// The person's verified e-mail address (`email`, with `email_verified: true`).
    pub email: Option<String>,
    /// The provider a provider's token speaks for (`tde_provider`).
    pub provider: Option<String>,
    pub lifetime: std::time::Duration,
    /// Explicit `nbf` and `exp` (unix seconds), for tests of time checks.
    pub not_before: Option<i64>,
    pub expires: Option<i64>,
}

impl TokenSpec {
    /// A token of `role` for `subject`, with the role's default scopes, valid one hour.
    pub fn new(role: Role, subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            client_id: None,
            role,
            scopes: role.default_scopes(),
            territories: Vec::new(),
            regions: Vec::new(),
            email: None,
            provider: None,
            lifetime: std::time::Duration::from_secs(3600),
            not_before: None,
            expires: None,
        }
    }

    pub fn scopes<S: AsRef<str>>(mut self, scopes: &[S]) -> Self {
        self.scopes = scopes.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    pub fn territory(mut self, id: impl Into<String>) -> Self {
        self.territories.push(id.into());
        self
    }

    pub fn region(mut self, code: impl Into<String>) -> Self {
        self.regions.push(code.into());
        self
    }

    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    pub fn provider(mut self, id: impl Into<String>) -> Self {
        self.provider = Some(id.into());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
}

#[derive(Serialize)]
struct MintedClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    tde_role: &'a str,
    scope: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tde_territories: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tde_regions: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tde_provider: Option<&'a str>,
}

/// An Ed25519 signing key with its key id, issuer and audience.
pub struct LocalIssuer {
    kid: String,
    key: EncodingKey,
    public_key: Vec<u8>,
    issuer: String,
    audience: String,
}

impl LocalIssuer {
    /// A new random key (tests that need a key the server does not know).
    pub fn generate(issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|e| IssuerError::Key(e.to_string()))?;
        Self::from_pkcs8(pkcs8.as_ref(), issuer, audience)
    }

    pub fn from_pkcs8(pkcs8: &[u8], issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| IssuerError::Key(e.to_string()))?;
        let public_key = pair.public_key().as_ref().to_vec();
        // The key id is derived from the public key: the same key always has the same id.
        let digest = ring::digest::digest(&ring::digest::SHA256, &public_key);
        let kid = format!("tde-{}", &URL_SAFE_NO_PAD.encode(digest.as_ref())[..16]);
        Ok(Self {
            kid,
            key: EncodingKey::from_ed_der(pkcs8),
            public_key,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
        })
    }

    /// The issuer whose key lives in `dir` (`signing-key.p8`, and `jwks.json` for the
    /// servers), creating both on first use.
    pub fn ensure_in(dir: &Path, issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| IssuerError::Io { path, source }
        };
        let key_path = dir.join(SIGNING_KEY_FILE);
        let this = match std::fs::read(&key_path) {
            Ok(pkcs8) => Self::from_pkcs8(&pkcs8, issuer, audience)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                    .map_err(|e| IssuerError::Key(e.to_string()))?;
                // `tde dev` and `tde token` may both create it at once: the key is written
                // aside, then linked into place, which only one of them can do; the other
                // reads the winner's key.
                let aside = dir.join(format!(".{SIGNING_KEY_FILE}.{}", uuid::Uuid::new_v4()));
                write_private(&aside, pkcs8.as_ref()).map_err(io(&aside))?;
                let linked = std::fs::hard_link(&aside, &key_path);
                let _ = std::fs::remove_file(&aside);
                match linked {
                    Ok(()) => Self::from_pkcs8(pkcs8.as_ref(), issuer, audience)?,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let existing = std::fs::read(&key_path).map_err(io(&key_path))?;
                        Self::from_pkcs8(&existing, issuer, audience)?
                    }
                    Err(e) => return Err(io(&key_path)(e)),
                }
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        // Written aside and renamed: a server reading it never sees half a file.
        let jwks_path = Self::key_set_path(dir);
        let aside = dir.join(format!(".{KEY_SET_FILE}.{}", uuid::Uuid::new_v4()));
        std::fs::write(&aside, this.jwks_json()).map_err(io(&aside))?;
        std::fs::rename(&aside, &jwks_path).map_err(io(&jwks_path))?;
        Ok(this)
    }

    /// Where `ensure_in(dir)` writes the public key set.
    pub fn key_set_path(dir: &Path) -> PathBuf {
        dir.join(KEY_SET_FILE)
    }

    /// Loads the key of `dir` without creating anything.
    pub fn load_from(dir: &Path, issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        let key_path = dir.join(SIGNING_KEY_FILE);
        let pkcs8 = std::fs::read(&key_path).map_err(|source| IssuerError::Io {
            path: key_path,
            source,
        })?;
        Self::from_pkcs8(&pkcs8, issuer, audience)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// The public key set (JWKS) that verifies this issuer's tokens.
    pub fn jwks_json(&self) -> String {
        serde_json::json!({
            "keys": [self.jwk()]
        })
        .to_string()
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "use": "sig",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&self.public_key),
        })
    }

    /// The same key, minting for another issuer or audience (tests).
    pub fn with_claims(&self, issuer: &str, audience: &str) -> Self {
        Self {
            kid: self.kid.clone(),
            key: self.key.clone(),
            public_key: self.public_key.clone(),
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// A signed token.
    pub fn mint(&self, spec: &TokenSpec) -> Result<String, IssuerError> {
        let now = chrono::Utc::now().timestamp();
        let lifetime = i64::try_from(spec.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = MintedClaims {
            iss: &self.issuer,
            sub: &spec.subject,
            aud: &self.audience,
            iat: now,
            nbf: spec.not_before.unwrap_or(now),
            exp: spec.expires.unwrap_or(now.saturating_add(lifetime)),
            jti: uuid::Uuid::new_v4().to_string(),
            client_id: spec.client_id.as_deref(),
            tde_role: spec.role.as_str(),
            scope: spec.scopes.join(" "),
            tde_territories: &spec.territories,
            tde_regions: &spec.regions,
            email: spec.email.as_deref(),
            email_verified: spec.email.as_ref().map(|_| true),
            tde_provider: spec.provider.as_deref(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `tde dev` and `tde token` starting together agree on one key.
    #[test]
    fn concurrent_creations_agree_on_one_key() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_path_buf();
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let path = path.clone();
                    std::thread::spawn(move || {
                        LocalIssuer::ensure_in(&path, "i", "a")
                            .unwrap()
                            .kid()
                            .to_string()
                    })
                })
                .collect();
            let kids: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
            let jwks = std::fs::read(LocalIssuer::key_set_path(&path)).unwrap();
            assert!(
                super::super::keys::parse_jwks(&jwks)
                    .unwrap()
                    .contains_key(&kids[0])
            );
        }
    }

    #[test]
    fn keys_are_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalIssuer::ensure_in(dir.path(), "i", "a").unwrap();
        let b = LocalIssuer::ensure_in(dir.path(), "i", "a").unwrap();
        assert_eq!(a.kid(), b.kid());
        let jwks = std::fs::read(LocalIssuer::key_set_path(dir.path())).unwrap();
        let keys = super::super::keys::parse_jwks(&jwks).unwrap();
        assert!(keys.contains_key(a.kid()));
        let token = a.mint(&TokenSpec::new(Role::National, "alice")).unwrap();
        assert_eq!(token.split('.').count(), 3);
    }
}
