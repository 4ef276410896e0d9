//! The client side: a channel that sends a bearer token on every call, and optional mutual
//! TLS. Used by the `tde` operator commands, the benchmarks and the tests.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// Adds `authorization: Bearer <token>` to every request (nothing when there is no token).
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Result<Self, ClientError> {
        format!("Bearer {}", token.trim())
            .parse()
            .map(|v| Self(Some(v)))
            .map_err(|_| ClientError::Token)
    }

    pub fn none() -> Self {
        Self(None)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that authenticates every call.
pub type AuthChannel = InterceptedService<Channel, Bearer>;

pub fn with_token(channel: Channel, bearer: Bearer) -> AuthChannel {
    InterceptedService::new(channel, bearer)
}

/// Client certificate and trusted CA for a server with mutual TLS.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// PEM CA certificates that sign the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the URL's host).
    pub domain: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the token holds characters a header cannot carry")]
    Token,
    #[error("bad server address {0}")]
    Address(String),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot reach {server}: {message}")]
    Connect { server: String, message: String },
}

/// Connects to `server` (`http://…`, or `https://…` with `tls`).
pub async fn connect(server: &str, tls: Option<&ClientTls>) -> Result<Channel, ClientError> {
    let mut endpoint = Endpoint::from_shared(server.to_string())
        .map_err(|_| ClientError::Address(server.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| ClientError::Read {
                path: path.clone(),
                source,
            })
        };
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &tls.ca_file {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    endpoint.connect().await.map_err(|e| ClientError::Connect {
        server: server.to_string(),
        message: std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string()),
    })
}
