//! A tower layer on every gRPC call: continues the caller's W3C trace context (or starts one),
//! opens a span named after the method, and records request count and latency per method and
//! status code for Prometheus.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::Instrument as _;

use crate::telemetry::{TRACEPARENT, TraceContext, metric};

/// Records every call; methods outside `known` share the label `unknown`, so that callers
/// cannot grow the metric series with made-up paths.
#[derive(Clone, Default)]
pub struct ObserveLayer {
    known: Arc<HashSet<String>>,
}

impl ObserveLayer {
    pub fn new(known: impl IntoIterator<Item = String>) -> Self {
        Self {
            known: Arc::new(known.into_iter().collect()),
        }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            known: self.known.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    known: Arc<HashSet<String>>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path();
        let method = if self.known.contains(method) {
            method.to_string()
        } else {
            "unknown".to_string()
        };
        let trace = TraceContext::continue_from(
            request
                .headers()
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok()),
        );
        let span = tracing::info_span!("grpc", method = %method, trace_id = %trace.trace_id_hex());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(trace.scope(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(|c| format!("{:?}", tonic::Code::from(c)))
                        .unwrap_or_else(|| "Ok".into()),
                    Err(_) => "Transport".into(),
                };
                let elapsed = started.elapsed().as_secs_f64();
                metrics::counter!(metric::GRPC_REQUESTS, "method" => method.clone(), "code" => code.clone())
                    .increment(1);
                metrics::histogram!(metric::GRPC_LATENCY, "method" => method).record(elapsed);
                tracing::debug!(code, elapsed_ms = elapsed * 1e3, "call finished");
                result
            }
            .instrument(span),
        ))
    }
}
