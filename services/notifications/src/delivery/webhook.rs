//! Webhooks: a JSON POST signed with HMAC-SHA256 over `"{timestamp}.{body}"`
//! (`X-TDE-Timestamp`, `X-TDE-Signature: sha256=<hex>`), so that receivers check origin and
//! freshness.

use std::time::Duration;

use super::SendError;
use crate::domain::message::webhook_signature;

pub const TIMESTAMP_HEADER: &str = "x-tde-timestamp";
pub const SIGNATURE_HEADER: &str = "x-tde-signature";

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    secret: String,
}

impl WebhookClient {
    pub fn new(secret: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            secret: secret.to_string(),
        })
    }

    pub async fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
        id: &str,
    ) -> Result<(), SendError> {
        let body = serde_json::to_vec(body).map_err(|e| SendError::permanent(e.to_string()))?;
        let timestamp = chrono::Utc::now().timestamp();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-tde-notification-id", id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                webhook_signature(&self.secret, timestamp, &body),
            )
            .body(body)
            .send()
            .await
            // Without the URL: it may carry the receiver's token.
            .map_err(|e| SendError::transient(format!("webhook: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("webhook answered {status}");
        // 4xx but timeouts and throttling: the receiver refuses; retrying will not help.
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(SendError::permanent(message))
        } else {
            Err(SendError::transient(message))
        }
    }
}
