//! The tower layer in front of every gRPC service: authenticates the caller, applies the
//! method's policy (deny by default), limits each client's rate, hands the handler its
//! `Principal`, and appends the audit record once the call is over.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::policy::{MethodPolicy, is_public};
use super::{Principal, Verifier};
use crate::api::REQUEST_ID_HEADER;
use crate::audit::{self, AuditKind, AuditNote, AuditRecord, AuditWriter};
use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::telemetry::metric;

/// The request id of a call (`x-request-id`, or generated), as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Where a method is served: its policy, its service and that service's audit trail.
pub struct Route {
    pub policy: MethodPolicy,
    pub service: &'static str,
    pub trail: Option<AuditWriter>,
}

/// Everything the layer needs, shared by every connection.
pub struct AuthState {
    /// None when authentication is off (measurements only).
    verifier: Option<Verifier>,
    routes: HashMap<&'static str, Route, foldhash::fast::RandomState>,
    limiter: DefaultKeyedRateLimiter<String>,
    unrestricted: Arc<Principal>,
}

impl AuthState {
    pub fn new(verifier: Option<Verifier>, routes: Vec<Route>, settings: &AuthSettings) -> Self {
        let per_second = NonZeroU32::new(settings.rate_limit_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.rate_limit_burst).unwrap_or(per_second);
        Self {
            verifier,
            routes: routes.into_iter().map(|r| (r.policy.method, r)).collect(),
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            unrestricted: Arc::new(Principal::unrestricted()),
        }
    }

    /// Forgets, once a minute, the clients idle long enough to be back at a full burst; ends
    /// when the state is dropped.
    pub fn forget_idle_clients(state: &Arc<AuthState>) {
        let state = Arc::downgrade(state);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                let Some(state) = state.upgrade() else { return };
                state.limiter.retain_recent();
                state.limiter.shrink_to_fit();
            }
        });
    }

    async fn authenticate(&self, authorization: Option<&str>) -> Option<Arc<Principal>> {
        let Some(verifier) = &self.verifier else {
            return Some(self.unrestricted.clone());
        };
        let outcome = verifier.verify(authorization).await;
        match outcome {
            Ok(principal) => Some(principal),
            Err(reason) => {
                tracing::warn!(%reason, "call refused: unauthenticated");
                metrics::counter!(metric::AUTH_REFUSED, "reason" => "unauthenticated").increment(1);
                None
            }
        }
    }

    /// The policy check and the rate limit, for an authenticated caller.
    fn authorise(&self, route: Option<&Route>, principal: &Principal) -> Result<(), ApiError> {
        let Some(route) = route else {
            metrics::counter!(metric::AUTH_REFUSED, "reason" => "no_policy").increment(1);
            return Err(ApiError::PermissionDenied(
                "this method has no access policy".into(),
            ));
        };
        if !route.policy.admits(principal.role) {
            metrics::counter!(metric::AUTH_REFUSED, "reason" => "role").increment(1);
            return Err(ApiError::PermissionDenied(format!(
                "this call is a programme decision, not open to the role {}",
                principal.role
            )));
        }
        if let Some(scope) = route.policy.scope
            && !principal.has_scope(scope)
        {
            metrics::counter!(metric::AUTH_REFUSED, "reason" => "scope").increment(1);
            return Err(ApiError::PermissionDenied(format!(
                "this call needs the scope {scope}"
            )));
        }
        if self.verifier.is_some()
            && let Err(not_until) = self.limiter.check_key(&principal.rate_key)
        {
            metrics::counter!(metric::AUTH_REFUSED, "reason" => "rate").increment(1);
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::ResourceExhausted {
                message: "too many calls from this client: slow down".into(),
                retry_after,
            });
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct AuthLayer {
    state: Arc<AuthState>,
}

impl AuthLayer {
    pub fn new(state: Arc<AuthState>) -> Self {
        Self { state }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    state: Arc<AuthState>,
}

fn request_id_of<B>(request: &http::Request<B>) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn outcome_of<RB>(response: &http::Response<RB>) -> tonic::Code {
    // Errors are trailers-only responses: their status is in the headers. A unary success
    // sends it in the trailers, after this point.
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

fn with_request_id<RB>(mut response: http::Response<RB>, request_id: &str) -> http::Response<RB> {
    if let Ok(value) = http::HeaderValue::from_str(request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

impl<S, B, RB> tower::Service<http::Request<B>> for Auth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if is_public(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The ready service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let request_id = request_id_of(&request);
            let authorization = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let Some(principal) = state.authenticate(authorization).await else {
                let status = tonic::Status::from(ApiError::Unauthenticated);
                return Ok(with_request_id(status.into_http(), &request_id));
            };
            let route = state.routes.get(request.uri().path());
            let note = AuditNote::default();
            let method = request.uri().path().to_string();
            let record = |kind, code| AuditRecord {
                service: route.map(|r| r.service).unwrap_or("runtime"),
                method: method.clone(),
                resource: note.resource().unwrap_or_default(),
                subject: principal.subject.clone(),
                client_id: principal.client_id.clone().unwrap_or_default(),
                role: principal.role.as_str().to_string(),
                request_id: request_id.clone(),
                outcome: audit::code_name(code),
                kind,
                at: crate::api::now(),
            };
            let audited = route.is_some_and(|r| r.policy.audited && r.trail.is_some());
            if audited {
                note.expect_write(record(AuditKind::Write, tonic::Code::Ok));
            }
            let outcome = match state.authorise(route, &principal) {
                Ok(()) => {
                    let extensions = request.extensions_mut();
                    extensions.insert(principal.clone());
                    extensions.insert(RequestId(request_id.clone()));
                    extensions.insert(note.clone());
                    Ok(audit::scope(note.clone(), inner.call(request)).await?)
                }
                Err(refusal) => Err(refusal),
            };
            let code = match &outcome {
                Ok(response) => outcome_of(response),
                Err(refusal) => refusal.code(),
            };
            let kind = if audited {
                // A successful write whose transaction holds its record is done; anything
                // else (refused, failed, rolled back, or no transaction) is appended now.
                (code != tonic::Code::Ok || !note.written_in_transaction())
                    .then_some(AuditKind::Write)
            } else if note.personal_data_read() && code == tonic::Code::Ok {
                Some(AuditKind::PersonalDataRead)
            } else {
                None
            };
            let mut outcome = outcome;
            if let (Some(kind), Some(trail)) = (kind, route.and_then(|r| r.trail.as_ref())) {
                let entry = record(kind, code);
                // Written before the caller hears back, so that an answered call is on the
                // trail.
                if let Err(error) = trail.append(entry).await {
                    metrics::counter!(metric::AUDIT_FAILURES).increment(1);
                    tracing::error!(%error, "the audit record could not be written");
                    // Personal data is not handed out unrecorded: the read fails closed.
                    if kind == AuditKind::PersonalDataRead {
                        outcome = Err(ApiError::Unavailable {
                            message: "the read could not be audited: try again".into(),
                            retry_after: std::time::Duration::from_secs(1),
                        });
                    }
                }
            }
            let response = match outcome {
                Ok(response) => response,
                Err(refusal) => tonic::Status::from(refusal).into_http(),
            };
            Ok(with_request_id(response, &request_id))
        })
    }
}
