//! Webhooks: a JSON POST signed with HMAC-SHA256 over `"{timestamp}.{body}"`
//! (`X-TDE-Timestamp`, `X-TDE-Signature: sha256=<hex>[, sha256=<hex>]`), so that receivers
//! check origin and freshness.
//!
//! Safe by construction, wherever the URL came from: https only (but in `tde dev`); the
//! receiver's name resolved by this client, and every address checked against loopback,
//! private, link-local, multicast, unspecified and cloud-metadata ranges at each delivery,
//! the connection going to the checked addresses only (the HTTP client resolves through the
//! same check: DNS rebinding between check and connect finds it again); no redirects; the
//! receiver's answer reduced to its class in what the delivery log records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::SendError;
use crate::domain::message::webhook_signature;
use crate::storage::WebhookSecrets;

pub const TIMESTAMP_HEADER: &str = "x-tde-timestamp";
pub const SIGNATURE_HEADER: &str = "x-tde-signature";

/// Resolves a host name to addresses: the system's resolver in the product, a fake one in
/// tests (no traffic leaves the machine).
#[async_trait]
pub trait Resolver: Send + Sync {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system's resolver (getaddrinfo through tokio).
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        Ok(tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect())
    }
}

/// Why an address may not receive webhooks; None: a public address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address written as IPv6 is judged as what it is.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("boucle locale")
            } else if v6.is_unspecified() {
                Some("adresse non spécifiée")
            } else if v6.is_multicast() {
                Some("multidiffusion")
            } else if first & 0xffc0 == 0xfe80 {
                Some("lien local")
            } else if first & 0xfe00 == 0xfc00 {
                // fc00::/7, which holds the cloud metadata address fd00:ec2::254.
                Some("réseau privé")
            } else if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("service de métadonnées")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("service de métadonnées")
    } else if ip.is_loopback() {
        Some("boucle locale")
    } else if ip.is_private() {
        Some("réseau privé")
    } else if ip.is_link_local() {
        Some("lien local")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multidiffusion")
    } else if ip.is_unspecified() || a == 0 {
        Some("adresse non spécifiée")
    } else if a == 100 && (64..128).contains(&b) {
        Some("réseau privé")
    } else {
        None
    }
}

/// Resolves and checks a host: every address must be allowed (one forbidden address
/// refuses the whole name: a resolver answering a mix is not to be trusted).
async fn checked(
    resolver: &dyn Resolver,
    host: &str,
    allow_private: bool,
) -> Result<Vec<IpAddr>, SendError> {
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolver
            .resolve(host)
            .await
            .map_err(|_| SendError::transient("webhook : nom du destinataire introuvable"))?,
    };
    if addresses.is_empty() {
        return Err(SendError::transient(
            "webhook : nom du destinataire introuvable",
        ));
    }
    if !allow_private {
        for ip in &addresses {
            if let Some(why) = forbidden(*ip) {
                return Err(SendError::permanent(format!(
                    "webhook : adresse du destinataire interdite ({why})"
                )));
            }
        }
    }
    Ok(addresses)
}

/// The HTTP client's resolver: the same resolution and check as before the request, so
/// that what the connection goes to is what was checked.
struct CheckingResolver {
    inner: Arc<dyn Resolver>,
    allow_private: bool,
}

impl reqwest::dns::Resolve for CheckingResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = self.inner.clone();
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = checked(inner.as_ref(), &host, allow_private)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    resolver: Arc<dyn Resolver>,
    /// `tde dev`: http:// and local receivers.
    insecure: bool,
    /// The deployment's shared key, for receivers set before each had its own; empty: none.
    shared_secret: String,
}

impl WebhookClient {
    pub fn new(
        shared_secret: &str,
        timeout: Duration,
        insecure: bool,
        resolver: Arc<dyn Resolver>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            // A redirect could lead anywhere, the checked address left behind.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!insecure)
            // No proxy: the connection goes to the checked address.
            .no_proxy()
            .dns_resolver(Arc::new(CheckingResolver {
                inner: resolver.clone(),
                allow_private: insecure,
            }))
            .build()?;
        Ok(Self {
            http,
            resolver,
            insecure,
            shared_secret: shared_secret.to_string(),
        })
    }

    /// Whether `url` may receive webhooks as far as its text says (scheme, host, length):
    /// what the API checks when it is set. The addresses are checked at each delivery.
    pub fn check_url(url: &str, insecure: bool) -> Result<reqwest::Url, &'static str> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "n'est pas une URL")?;
        if url.len() > 2_000 {
            return Err("est trop longue (2 000 caractères au plus)");
        }
        match parsed.scheme() {
            "https" => {}
            "http" if insecure => {}
            _ => return Err("doit commencer par https://"),
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("doit nommer un hôte");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("ne doit pas contenir d'identifiants");
        }
        if !insecure
            && let Some(ip) = host_ip(&parsed)
            && forbidden(ip).is_some()
        {
            return Err("désigne une adresse interdite (locale, privée ou de métadonnées)");
        }
        Ok(parsed)
    }

    /// Posts `body` to `url`, signed with `secrets` (the receiver's own; the previous one
    /// too while a rotation overlaps) or, for a receiver without its own, the shared key.
    pub async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
        id: &str,
        secrets: Option<&WebhookSecrets>,
    ) -> Result<(), SendError> {
        let parsed = Self::check_url(url, self.insecure)
            .map_err(|why| SendError::permanent(format!("webhook : l'URL {why}")))?;
        let host = parsed
            .host_str()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .unwrap_or_default();
        // Checked here to tell a forbidden address (permanent) from a resolution failure
        // (transient); the client's resolver checks again what it connects to.
        checked(self.resolver.as_ref(), &host, self.insecure).await?;
        let body = serde_json::to_vec(body).map_err(|e| SendError::permanent(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let now = chrono::Utc::now();
        let keys: Vec<&str> = match secrets {
            Some(s) => std::iter::once(s.current.as_str())
                .chain(
                    s.previous
                        .as_ref()
                        .filter(|(_, until)| *until > now)
                        .map(|(k, _)| k.as_str()),
                )
                .collect(),
            None if !self.shared_secret.is_empty() => vec![self.shared_secret.as_str()],
            None => {
                return Err(SendError::permanent(
                    "webhook : aucun secret de signature (redéfinir l'URL du webhook en crée un)",
                ));
            }
        };
        let signature = keys
            .iter()
            .map(|k| webhook_signature(k, timestamp, &body))
            .collect::<Vec<_>>()
            .join(", ");
        let response = self
            .http
            .post(parsed)
            .header("content-type", "application/json")
            .header("x-tde-notification-id", id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            // Neither the URL (it may carry the receiver's token) nor the error's text
            // (what the receiver's side said) goes to the log: its class only.
            .map_err(|e| {
                SendError::transient(if e.is_timeout() {
                    "webhook : délai dépassé"
                } else {
                    "webhook : destinataire injoignable"
                })
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let code = status.as_u16();
        if status.is_redirection() {
            // Not followed: the receiver must give its final URL.
            return Err(SendError::permanent(
                "webhook : redirection refusée (3xx) — donner l'URL finale",
            ));
        }
        // 4xx but timeouts and throttling: the receiver refuses; retrying will not help.
        if status.is_client_error() && code != 408 && code != 429 {
            Err(SendError::permanent(
                "webhook : refusé par le destinataire (4xx)",
            ))
        } else if status.is_client_error() {
            Err(SendError::transient(
                "webhook : destinataire surchargé (408/429)",
            ))
        } else {
            Err(SendError::transient(
                "webhook : erreur du destinataire (5xx)",
            ))
        }
    }
}

/// The host of `url` when it is an address rather than a name.
fn host_ip(url: &reqwest::Url) -> Option<IpAddr> {
    url.host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_ranges() {
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "224.0.0.1",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(forbidden(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "2001:4860:4860::8888"] {
            assert!(forbidden(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    #[test]
    fn urls() {
        assert!(WebhookClient::check_url("https://hooks.example.fr/x", false).is_ok());
        assert!(WebhookClient::check_url("http://hooks.example.fr/x", false).is_err());
        assert!(WebhookClient::check_url("http://localhost:8080/x", true).is_ok());
        assert!(WebhookClient::check_url("https://127.0.0.1/x", false).is_err());
        assert!(WebhookClient::check_url("https://[::1]/x", false).is_err());
        assert!(WebhookClient::check_url("https://u:p@hooks.example.fr/x", false).is_err());
        assert!(WebhookClient::check_url("ftp://hooks.example.fr/x", false).is_err());
    }
}
