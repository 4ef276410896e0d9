//! Telemetry: structured logs (pretty, compact or JSON; `RUST_LOG` overrides the configured
//! filter), W3C trace context carried across gRPC metadata and NATS headers, and Prometheus
//! metrics.

use std::sync::OnceLock;

use rand::RngCore as _;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, TelemetrySettings};

/// Metric names, declared once.
pub mod metric {
    pub const GRPC_REQUESTS: &str = "tde_grpc_server_requests_total";
    pub const GRPC_LATENCY: &str = "tde_grpc_server_request_duration_seconds";
    pub const OUTBOX_BACKLOG: &str = "tde_outbox_backlog_events";
    pub const OUTBOX_OLDEST_AGE: &str = "tde_outbox_oldest_event_age_seconds";
    pub const OUTBOX_PUBLISHED: &str = "tde_outbox_published_events_total";
    pub const CONSUMER_LAG: &str = "tde_consumer_lag_events";
    pub const CONSUMER_PROCESSED: &str = "tde_consumer_processed_events_total";
    /// Calls refused before any handler, by reason (unauthenticated, scope, rate, no_policy).
    pub const AUTH_REFUSED: &str = "tde_auth_refused_calls_total";
    pub const AUDIT_FAILURES: &str = "tde_audit_write_failures_total";
    /// Events a consumer parked as dead letters (it could never process them).
    pub const DEAD_LETTERED: &str = "tde_dead_lettered_events_total";
    /// Dead letters not replayed yet, per service.
    pub const DEAD_LETTERS: &str = "tde_dead_letters";
    /// 1 while a consumer waits for its database with an event in hand.
    pub const CONSUMER_WAITING: &str = "tde_consumer_waiting_for_storage";
    /// Outbox events the bus refused for good, parked, per service.
    pub const OUTBOX_PARKED: &str = "tde_outbox_parked_events";
    /// Background tasks restarted after they stopped or panicked.
    pub const TASK_RESTARTS: &str = "tde_task_restarts_total";
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("metrics endpoint on {addr}: {message}")]
    Metrics {
        addr: std::net::SocketAddr,
        message: String,
    },
}

/// Installs the global log subscriber. Later calls (tests, several services in one process)
/// keep the first one.
pub fn init(settings: &TelemetrySettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match settings.log_format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().pretty()).try_init(),
        LogFormat::Compact => registry.with(fmt::layer().compact()).try_init(),
    };
}

/// Starts the Prometheus endpoint once per process.
pub fn init_metrics(settings: &TelemetrySettings) -> Result<(), TelemetryError> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let Some(addr) = settings.metrics_listen else {
        return Ok(());
    };
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ])
        .map_err(|e| TelemetryError::Metrics {
            addr,
            message: e.to_string(),
        })?
        // Lateness is seconds to hours, not a call's milliseconds.
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_lateness_seconds".into()),
            &[
                1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 86_400.0,
            ],
        )
        .map_err(|e| TelemetryError::Metrics {
            addr,
            message: e.to_string(),
        })?
        .install()
        .map_err(|e| TelemetryError::Metrics {
            addr,
            message: e.to_string(),
        })?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// The header that carries W3C trace context, in gRPC metadata and NATS headers alike.
pub const TRACEPARENT: &str = "traceparent";

/// W3C trace context (`traceparent`: version-traceid-parentid-flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        rng.fill_bytes(&mut trace_id);
        rng.fill_bytes(&mut span_id);
        Self {
            trace_id,
            span_id,
            flags: 1,
        }
    }

    /// A span of the same trace, as when this process continues a caller's trace.
    pub fn child(&self) -> Self {
        let mut span_id = [0u8; 8];
        rand::rng().fill_bytes(&mut span_id);
        Self { span_id, ..*self }
    }

    /// Parses a `traceparent` header; None when malformed (a new trace is then started).
    pub fn parse(header: &str) -> Option<Self> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        decode_hex(parts[1], &mut trace_id)?;
        decode_hex(parts[2], &mut span_id)?;
        let mut flags = [0u8; 1];
        decode_hex(parts[3], &mut flags)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: flags[0],
        })
    }

    pub fn to_header(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// Continues `header` when valid, else starts a new trace.
    pub fn continue_from(header: Option<&str>) -> Self {
        header
            .and_then(Self::parse)
            .map(|c| c.child())
            .unwrap_or_else(Self::new_root)
    }

    /// The context of the task running now, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| *c).ok()
    }

    /// Runs `fut` with this context as the current one.
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str, out: &mut [u8]) -> Option<()> {
    if s.len() != out.len() * 2 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse(h).unwrap();
        assert_eq!(c.to_header(), h);
        let child = TraceContext::continue_from(Some(h));
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
    }

    #[test]
    fn malformed_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
        assert!(TraceContext::parse(&TraceContext::new_root().to_header()).is_some());
    }

    #[tokio::test]
    async fn current_context_is_task_local() {
        assert!(TraceContext::current().is_none());
        let c = TraceContext::new_root();
        let seen = c.scope(async { TraceContext::current() }).await;
        assert_eq!(seen, Some(c));
    }
}
