//! Personal data held across services (RGPD articles 15 and 17). Each service answers for its
//! own data through a `PersonalDataHolder`; every process serves its services' holders as
//! `tde.personal_data.v1.HoldingsService`; `gather_export` and `gather_erasure` ask this
//! process's holders and the peer processes', so that one request reaches every copy and
//! the answer says what each service held or did.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::{Request, Response, Status};

use tde_proto::personal_data::v1 as pb;
use tde_proto::personal_data::v1::holdings_service_client::HoldingsServiceClient;

use crate::api::Caller;
use crate::error::ApiError;

/// The longest address accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// What one service holds about people, and how it erases them. `email` is normalised
/// (`personal_data::normalize_email`); a holder filters what it exports with
/// `Caller::may_see`, as its API does.
#[async_trait]
pub trait PersonalDataHolder: Send + Sync {
    async fn export(&self, caller: &Caller, email: &str) -> Result<Vec<pb::Holding>, ApiError>;

    /// Erases or redacts the person's data, in one transaction; idempotent.
    async fn erase(&self, caller: &Caller, email: &str) -> Result<Vec<pb::ErasureStep>, ApiError>;
}

/// A service's holder, with the service's name.
type Named = (&'static str, Arc<dyn PersonalDataHolder>);

/// The holders of the services of this process, by service name (filled at start-up).
#[derive(Clone, Default)]
pub struct LocalHolders(Arc<RwLock<Vec<Named>>>);

impl LocalHolders {
    pub fn add(&self, service: &'static str, holder: Arc<dyn PersonalDataHolder>) {
        if let Ok(mut holders) = self.0.write() {
            holders.push((service, holder));
        }
    }

    fn snapshot(&self) -> Vec<Named> {
        self.0.read().map(|h| h.clone()).unwrap_or_default()
    }

    pub fn services(&self) -> Vec<&'static str> {
        self.snapshot().into_iter().map(|(s, _)| s).collect()
    }

    /// The holders `services` names (all when empty); an unknown name is NOT_FOUND.
    fn selected(&self, services: &[String]) -> Result<Vec<Named>, ApiError> {
        let all = self.snapshot();
        if services.is_empty() {
            return Ok(all);
        }
        services
            .iter()
            .map(|name| {
                all.iter()
                    .find(|(s, _)| *s == name.as_str())
                    .cloned()
                    .ok_or_else(|| ApiError::NotFound {
                        resource_type: "service",
                        name: crate::input::quote(name),
                        field: Some("services"),
                    })
            })
            .collect()
    }
}

/// Checks and normalises the address of a request's `field`.
pub fn parse_email(field: &'static str, raw: &str) -> Result<String, ApiError> {
    crate::input::text(field, raw, MAX_EMAIL)?;
    let email = crate::personal_data::normalize_email(raw);
    match email.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => Ok(email),
        _ => Err(ApiError::invalid(field, "must be an e-mail address")),
    }
}

async fn export_local(
    caller: &Caller,
    email: &str,
    holders: Vec<Named>,
) -> Vec<pb::ServiceHoldings> {
    let mut answers = Vec::new();
    for (service, holder) in holders {
        answers.push(match holder.export(caller, email).await {
            Ok(holdings) => pb::ServiceHoldings {
                service: service.to_string(),
                status: pb::AnswerStatus::Answered as i32,
                problem: String::new(),
                holdings,
            },
            Err(e) => {
                tracing::warn!(service, error = %e, "personal data export failed");
                unavailable_holdings(service, &e.to_string())
            }
        });
    }
    if answers.iter().any(|a| !a.holdings.is_empty()) {
        caller.reads_personal_data();
    }
    answers
}

async fn erase_local(caller: &Caller, email: &str, holders: Vec<Named>) -> Vec<pb::ServiceErasure> {
    let mut answers = Vec::new();
    for (service, holder) in holders {
        answers.push(match holder.erase(caller, email).await {
            Ok(steps) => pb::ServiceErasure {
                service: service.to_string(),
                status: pb::AnswerStatus::Answered as i32,
                problem: String::new(),
                steps,
            },
            Err(e) => {
                tracing::warn!(service, error = %e, "personal data erasure failed");
                unavailable_erasure(service, &e.to_string())
            }
        });
    }
    answers
}

fn unavailable_holdings(service: &str, problem: &str) -> pb::ServiceHoldings {
    pb::ServiceHoldings {
        service: service.to_string(),
        status: pb::AnswerStatus::Unavailable as i32,
        problem: problem.to_string(),
        holdings: Vec::new(),
    }
}

fn unavailable_erasure(service: &str, problem: &str) -> pb::ServiceErasure {
    pb::ServiceErasure {
        service: service.to_string(),
        status: pb::AnswerStatus::Unavailable as i32,
        problem: format!("{problem}; it erases when it receives the personal_data.erased event"),
        steps: Vec::new(),
    }
}

/// The other processes holding personal data: their gRPC address by service name, called
/// with the caller's own credentials (each applies its own rights).
#[derive(Clone, Debug, Default)]
pub struct Peers {
    pub addresses: BTreeMap<String, String>,
    pub timeout: Duration,
}

impl Peers {
    /// The peers answering for services that are not in this process.
    fn remote<'a>(&'a self, local: &[&str]) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.addresses
            .iter()
            .filter(move |(service, _)| !local.contains(&service.as_str()))
    }

    async fn client(
        &self,
        address: &str,
    ) -> Result<HoldingsServiceClient<tonic::transport::Channel>, String> {
        let endpoint = tonic::transport::Endpoint::from_shared(address.to_string())
            .map_err(|e| format!("bad address {}: {e}", crate::input::quote(address)))?
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| format!("could not reach {address}: {e}"))?;
        Ok(HoldingsServiceClient::new(channel))
    }
}

/// The caller's credentials, passed on to the peers.
pub fn forwarded_credentials(metadata: &MetadataMap) -> Option<AsciiMetadataValue> {
    metadata.get("authorization").cloned()
}

fn with_credentials<T>(message: T, credentials: &Option<AsciiMetadataValue>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = credentials {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

/// The holders of this process but `except`'s, and the services this process answers for
/// (`except` included: it answers for itself).
fn local_but(local: &LocalHolders, except: &'static str) -> (Vec<Named>, Vec<&'static str>) {
    let holders = local
        .snapshot()
        .into_iter()
        .filter(|(s, _)| *s != except)
        .collect();
    let mut here = local.services();
    here.push(except);
    (holders, here)
}

/// Asks each peer answering for a service that is not `here` with `call` (the peer's client,
/// the service's name); a peer that cannot answer is reported with `unavailable`.
async fn ask_peers<A, Fut>(
    peers: &Peers,
    here: &[&str],
    call: impl Fn(HoldingsServiceClient<tonic::transport::Channel>, String) -> Fut,
    unavailable: fn(&str, &str) -> A,
    service_of: fn(&A) -> &str,
) -> Vec<A>
where
    Fut: std::future::Future<Output = Result<Vec<A>, Status>>,
{
    let mut answers = Vec::new();
    for (service, address) in peers.remote(here) {
        let answer = match peers.client(address).await {
            Ok(client) => call(client, service.clone())
                .await
                .map_err(|s| format!("{}: {}", s.code(), s.message())),
            Err(e) => Err(e),
        };
        match answer {
            Ok(services) => {
                answers.extend(services.into_iter().filter(|s| service_of(s) == service))
            }
            Err(problem) => {
                tracing::warn!(service = %service, %problem, "peer did not answer");
                answers.push(unavailable(service, &problem));
            }
        }
    }
    answers
}

/// What every service but `except` (the one asking, which answers for itself) holds about
/// the person whose normalised address is `email`: this process's services, then each peer
/// (a peer that cannot answer says so).
pub async fn gather_export(
    local: &LocalHolders,
    peers: &Peers,
    caller: &Caller,
    credentials: &Option<AsciiMetadataValue>,
    email: &str,
    except: &'static str,
) -> Vec<pb::ServiceHoldings> {
    let (holders, here) = local_but(local, except);
    let mut answers = export_local(caller, email, holders).await;
    let call = |mut client: HoldingsServiceClient<_>, service: String| async move {
        let request = pb::ExportHoldingsRequest {
            email: email.to_string(),
            services: vec![service],
        };
        client
            .export_holdings(with_credentials(request, credentials))
            .await
            .map(|r| r.into_inner().services)
    };
    answers.extend(
        ask_peers(peers, &here, call, unavailable_holdings, |a| {
            a.service.as_str()
        })
        .await,
    );
    answers
}

/// Erases the person from this process's services but `except` (which erases itself), then
/// from each peer; says what each did.
pub async fn gather_erasure(
    local: &LocalHolders,
    peers: &Peers,
    caller: &Caller,
    credentials: &Option<AsciiMetadataValue>,
    email: &str,
    except: &'static str,
) -> Vec<pb::ServiceErasure> {
    let (holders, here) = local_but(local, except);
    let mut answers = erase_local(caller, email, holders).await;
    let call = |mut client: HoldingsServiceClient<_>, service: String| async move {
        let request = pb::EraseHoldingsRequest {
            email: email.to_string(),
            services: vec![service],
        };
        client
            .erase_holdings(with_credentials(request, credentials))
            .await
            .map(|r| r.into_inner().services)
    };
    answers.extend(
        ask_peers(peers, &here, call, unavailable_erasure, |a| {
            a.service.as_str()
        })
        .await,
    );
    answers
}

/// Erases the copies of a person's data that a service's own published events of one kind
/// carry (`suffix`, e.g. `territory.steering_body_changed`, and its `event_type`), selected
/// by `names`: the published outbox rows, in `txn`, and the events stored in its stream.
/// What an erasure event's consumer calls, knowing the person by fingerprint only; an
/// unreachable bus is `Unavailable` (the consumer waits and retries). Returns how many
/// outbox rows and stream events went.
pub async fn erase_published(
    ctx: &crate::ServiceContext,
    txn: &impl sea_orm::ConnectionTrait,
    suffix: &str,
    event_type: &str,
    names: &(dyn for<'p> Fn(&'p [u8]) -> bool + Send + Sync),
) -> Result<(u64, u64), crate::inbox::HandlerError> {
    let rows = crate::outbox::forget_published_naming(txn, event_type, names).await?;
    let events = ctx
        .bus
        .erase_events(
            &ctx.namespace.stream(ctx.service).name,
            &ctx.namespace.subject(ctx.service, suffix),
            names,
        )
        .await
        .map_err(|e| crate::inbox::HandlerError::Unavailable(e.into()))?;
    if rows + events > 0 {
        tracing::info!(
            service = ctx.service,
            rows,
            events,
            "published events naming an erased person erased"
        );
    }
    Ok((rows, events))
}

/// `tde.personal_data.v1.HoldingsService`: the holders of this process's services.
pub struct HoldingsApi {
    holders: LocalHolders,
}

impl HoldingsApi {
    pub fn new(holders: LocalHolders) -> Self {
        Self { holders }
    }
}

#[async_trait]
impl pb::holdings_service_server::HoldingsService for HoldingsApi {
    async fn export_holdings(
        &self,
        request: Request<pb::ExportHoldingsRequest>,
    ) -> Result<Response<pb::ExportHoldingsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let email = parse_email("email", &r.email)?;
        caller.concerns(format!(
            "people/{}",
            crate::personal_data::fingerprint(&email)
        ));
        let holders = self.holders.selected(&r.services)?;
        Ok(Response::new(pb::ExportHoldingsResponse {
            services: export_local(&caller, &email, holders).await,
        }))
    }

    async fn erase_holdings(
        &self,
        request: Request<pb::EraseHoldingsRequest>,
    ) -> Result<Response<pb::EraseHoldingsResponse>, Status> {
        let caller = Caller::of(&request);
        let r = request.into_inner();
        let email = parse_email("email", &r.email)?;
        caller.concerns(format!(
            "people/{}",
            crate::personal_data::fingerprint(&email)
        ));
        let holders = self.holders.selected(&r.services)?;
        Ok(Response::new(pb::EraseHoldingsResponse {
            services: erase_local(&caller, &email, holders).await,
        }))
    }
}

/// A step of an erasure report, when it did something.
pub fn step(kind: &str, count: u64, action: &str) -> Option<pb::ErasureStep> {
    (count > 0).then(|| pb::ErasureStep {
        kind: kind.to_string(),
        count: i32::try_from(count).unwrap_or(i32::MAX),
        action: action.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_normalised() {
        assert_eq!(
            parse_email("email", " Andre\u{301}@Exemple.FR ").unwrap(),
            "andré@exemple.fr"
        );
        for bad in ["", "no-at-sign", "@exemple.fr", "a@", "a\r\n@x.fr"] {
            assert!(parse_email("email", bad).is_err(), "{bad:?}");
        }
        assert!(parse_email("email", &format!("{}@x.fr", "a".repeat(300))).is_err());
    }

    #[test]
    fn empty_steps_are_left_out() {
        assert!(step("recipient", 0, "deleted").is_none());
        assert_eq!(step("recipient", 2, "deleted").unwrap().count, 2);
    }
}
