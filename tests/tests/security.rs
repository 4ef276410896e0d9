//! Security of every API, over real sockets: authentication on every RPC (table-driven over
//! the methods of every service, from the descriptors), the scope matrix, territory isolation,
//! the audit trail, personal-data export and erasure, the rate limit, key rotation and mutual
//! TLS.

mod common;

use std::str::FromStr as _;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Buf as _, BufMut as _};
use prost_types::FieldMask;
use sea_orm::ConnectionTrait as _;
use tde::platform::{self, Role as PlatformRole};
use tde_proto::audit::v1 as audit;
use tde_proto::audit::v1::audit_service_client::AuditServiceClient;
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::personal_data_service_client::PersonalDataServiceClient;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::policy::{MethodPolicy, RUNTIME_POLICIES, check_coverage};
use tde_runtime::auth::{DEV_AUDIENCE, DEV_ISSUER, LocalIssuer, Role, TokenSpec, scope};
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{
    KeySetServer, TestEnv, channel, channel_as, raw_channel, test_issuer, token,
};
use tonic::Code;
use tonic::codec::{DecodeBuf, EncodeBuf};
use tonic_types::StatusExt as _;

/// Sends and receives message bytes as they are: any method can be called with any body.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Calls `path` with an empty message and `token`; returns the status.
async fn call(
    channel: tonic::transport::Channel,
    path: &str,
    token: Option<&str>,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(Vec::<u8>::new());
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    match grpc.unary(request, path, RawCodec).await {
        Ok(_) => tonic::Status::ok(""),
        Err(status) => status,
    }
}

/// Every method the platform serves, with its policy.
fn all_policies() -> Vec<MethodPolicy> {
    let mut all: Vec<MethodPolicy> = RUNTIME_POLICIES.to_vec();
    for module in platform::modules(PlatformRole::ALL) {
        all.extend_from_slice(module.policies());
    }
    all
}

async fn start(env: &TestEnv) -> RunningPlatform {
    env.start(platform::modules(PlatformRole::ALL))
        .await
        .expect("starts")
}

#[test]
fn every_method_of_every_service_has_a_policy() {
    let pool = tde_proto::descriptor_pool();
    let mut services: Vec<&str> = Vec::new();
    let mut policies: Vec<MethodPolicy> = Vec::new();
    for module in platform::modules(PlatformRole::ALL) {
        services.extend_from_slice(module.grpc_services());
        policies.extend_from_slice(module.policies());
    }
    let problems = check_coverage(pool, &services, &policies);
    assert!(problems.is_empty(), "{problems:#?}");
    // Every tde service of the descriptors is served by some module (or is the runtime's).
    for service in pool.services() {
        let name = service.full_name();
        if name.starts_with("tde.bench.") {
            continue; // The benchmark's reference server, never part of the platform.
        }
        let runtime = RUNTIME_POLICIES
            .iter()
            .any(|p| p.method.starts_with(&format!("/{name}/")));
        assert!(
            runtime || services.contains(&name),
            "{name} is in the protos but no module serves it with policies"
        );
        if runtime {
            for method in service.methods() {
                let path = format!("/{name}/{}", method.name());
                assert!(
                    RUNTIME_POLICIES.iter().any(|p| p.method == path),
                    "{path} has no policy"
                );
            }
        }
    }
}

fn b64(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn hs256(header_and_payload: &str, secret: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, header_and_payload.as_bytes());
    format!(
        "{header_and_payload}.{}",
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// Tokens that must all be refused, each with what is wrong with it.
fn bad_tokens() -> Vec<(&'static str, Option<String>)> {
    let issuer = test_issuer();
    let now = chrono::Utc::now().timestamp();
    let spec = || TokenSpec::new(Role::National, "mallory");
    let good = token(&spec());
    let parts: Vec<&str> = good.split('.').collect();
    let (payload, signature) = (parts[1], parts[2]);
    let kid = issuer.kid();

    let mut tampered_signature = signature.as_bytes().to_vec();
    let middle = tampered_signature.len() / 2;
    tampered_signature[middle] = if tampered_signature[middle] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["tde_role"] = "national".into();
    claims["sub"] = "someone-else".into();
    let hs_header = b64(&serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": kid}));
    let x = issuer.jwk()["x"].as_str().unwrap().to_string();

    vec![
        ("no token", None),
        ("not a JWT", Some("not-a-jwt".into())),
        (
            "expired",
            Some(token(&TokenSpec {
                not_before: Some(now - 7_200),
                expires: Some(now - 3_600),
                ..spec()
            })),
        ),
        (
            "not yet valid",
            Some(token(&TokenSpec {
                not_before: Some(now + 3_600),
                expires: Some(now + 7_200),
                ..spec()
            })),
        ),
        (
            "wrong issuer",
            Some(
                issuer
                    .with_claims("https://evil.example", DEV_AUDIENCE)
                    .mint(&spec())
                    .unwrap(),
            ),
        ),
        (
            "wrong audience",
            Some(
                issuer
                    .with_claims(DEV_ISSUER, "another-api")
                    .mint(&spec())
                    .unwrap(),
            ),
        ),
        (
            "alg none",
            Some(format!(
                "{}.{payload}.",
                b64(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid}))
            )),
        ),
        (
            "HS256 signed with the public key as secret",
            Some(hs256(
                &format!("{hs_header}.{payload}"),
                issuer.public_key(),
            )),
        ),
        (
            "HS256 signed with the JWK's x as secret",
            Some(hs256(&format!("{hs_header}.{payload}"), x.as_bytes())),
        ),
        (
            "tampered signature",
            Some(format!(
                "{}.{payload}.{}",
                parts[0],
                String::from_utf8(tampered_signature).unwrap()
            )),
        ),
        (
            "tampered claims",
            Some(format!("{}.{}.{signature}", parts[0], b64(&claims))),
        ),
        (
            "unknown kid",
            Some(
                LocalIssuer::generate(DEV_ISSUER, DEV_AUDIENCE)
                    .unwrap()
                    .mint(&spec())
                    .unwrap(),
            ),
        ),
    ]
}

#[tokio::test]
async fn bad_tokens_are_unauthenticated_on_every_rpc() {
    let mut env = TestEnv::sqlite().await;
    env.settings.server.reflection = true;
    let running = start(&env).await;
    let ch = raw_channel(running.local_addr).await;
    let tokens = bad_tokens();
    let mut checked = 0;
    for policy in all_policies() {
        for (what, bad) in &tokens {
            let status = call(ch.clone(), policy.method, bad.as_deref()).await;
            assert_eq!(
                status.code(),
                Code::Unauthenticated,
                "{} with {what}: {status:?}",
                policy.method
            );
            // One answer whatever failed: nothing tells an attacker which check it was.
            assert_eq!(status.message(), "unauthenticated", "{what}");
            checked += 1;
        }
    }
    assert!(checked >= 15 * tokens.len(), "every method was tried");

    // Health stays open to probes.
    let health = call(ch.clone(), "/grpc.health.v1.Health/Check", None).await;
    assert_eq!(health.code(), Code::Ok, "{health:?}");
    // A valid token passes authentication on every method.
    let good = tde_runtime::testing::national_token();
    for policy in all_policies() {
        let status = call(ch.clone(), policy.method, Some(&good)).await;
        assert_ne!(status.code(), Code::Unauthenticated, "{}", policy.method);
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn each_method_requires_its_scope() {
    let env = TestEnv::sqlite().await;
    let running = start(&env).await;
    let ch = raw_channel(running.local_addr).await;
    let mut checked = 0;
    for policy in all_policies() {
        let Some(required) = policy.scope else {
            continue;
        };
        let others: Vec<&str> = scope::ALL
            .iter()
            .copied()
            .filter(|s| *s != required)
            .collect();
        // A method only providers call (answering a proposal) is tried with a provider.
        let role = if policy.admits(Role::National) {
            Role::National
        } else {
            Role::Provider
        };
        let without = token(&TokenSpec::new(role, "n").scopes(&others));
        let status = call(ch.clone(), policy.method, Some(&without)).await;
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{} without {required}: {status:?}",
            policy.method
        );
        assert!(
            status.message().contains(required),
            "names the scope: {} {status:?}",
            policy.method
        );
        let with = token(&TokenSpec::new(role, "n").scopes(&[required]));
        let status = call(ch.clone(), policy.method, Some(&with)).await;
        assert!(
            !matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated
            ),
            "{} with {required}: {status:?}",
            policy.method
        );
        checked += 1;
    }
    assert!(checked >= 15);
    // Roles bound scopes: an agency's token asking for write scopes cannot write.
    let agency = token(
        &TokenSpec::new(Role::Agency, "dgcl-app")
            .scopes(&[scope::TERRITORIES_READ, scope::TERRITORIES_ADMIN]),
    );
    let status = call(
        ch.clone(),
        "/tde.territories.v1.TerritoryService/RegisterTerritory",
        Some(&agency),
    )
    .await;
    assert_eq!(status.code(), Code::PermissionDenied);
    running.shutdown().await.unwrap();
}

const B_EMAIL: &str = "claire.durand@mairie-b.fr";

fn person(name: &str, email: &str) -> pb::Person {
    pb::Person {
        name: name.into(),
        email: email.into(),
        phone: "04 77 00 00 01".into(),
        role: "DGS".into(),
    }
}

async fn import_geography(running: &RunningPlatform) {
    let ctx = running.service("territories").unwrap();
    let g = tde_territories::api::geography::read_dir("2026", &common::fixture("2026")).unwrap();
    tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .unwrap();
}

async fn register(
    client: &mut TerritoryServiceClient<tde_runtime::auth::AuthChannel>,
    code: &str,
) -> pb::Territory {
    client
        .register_territory(pb::RegisterTerritoryRequest {
            kind: pb::AuthorityKind::Commune as i32,
            official_code: code.into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap()
}

fn with_contact(t: &pb::Territory, email: &str) -> pb::UpdateTerritoryRequest {
    pb::UpdateTerritoryRequest {
        territory: Some(pb::Territory {
            id: t.id.clone(),
            privileged_contact: Some(person("Claire Durand", email)),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["privileged_contact".into()],
        }),
    }
}

/// A territory member of A, on every RPC that takes an id, with B's ids: NOT_FOUND exactly as
/// for an id that does not exist, and B unchanged. Lists show A alone. Every write and every
/// read of personal data is on the audit trail, which nobody can rewrite.
#[tokio::test]
async fn a_territory_member_sees_only_their_territory() {
    let env = TestEnv::postgres(&[
        "territories",
        "plans",
        "notifications",
        "matching",
        "subsidies",
    ])
    .await;
    let running = start(&env).await;
    import_geography(&running).await;
    let mut national = TerritoryServiceClient::new(channel(running.local_addr).await);
    let a = register(&mut national, "42218").await;
    let b = register(&mut national, "42001").await;
    let corsica = register(&mut national, "2A001").await;
    let b = national
        .update_territory(with_contact(&b, B_EMAIL))
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();

    let member = TokenSpec::new(Role::TerritoryMember, "elu-a").territory(a.id.clone());
    let mut as_member = TerritoryServiceClient::new(channel_as(running.local_addr, &member).await);
    let missing = uuid::Uuid::now_v7().to_string();
    let same_as_missing = |status: tonic::Status, id: &str| {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        let unknown = status.message().replace(id, "ID");
        (
            unknown,
            status
                .get_error_details()
                .resource_info()
                .map(|r| r.resource_type.clone()),
        )
    };
    let get = |id: &str| pb::GetTerritoryRequest { id: id.into() };
    let advance = |id: &str| pb::AdvanceTerritoryStageRequest {
        id: id.into(),
        stage: pb::Stage::Diagnostic as i32,
        ..Default::default()
    };
    for id in [b.id.as_str(), missing.as_str()] {
        let shapes = [
            as_member.get_territory(get(id)).await.unwrap_err(),
            as_member
                .update_territory(with_contact(
                    &pb::Territory {
                        id: id.into(),
                        ..Default::default()
                    },
                    "intrus@exemple.fr",
                ))
                .await
                .unwrap_err(),
        ]
        .map(|s| same_as_missing(s, id));
        let reference = (
            "territory \"ID\" not found".to_string(),
            Some("territory".to_string()),
        );
        for shape in shapes {
            assert_eq!(shape, reference, "B looks exactly like a missing territory");
        }
        // Moving a territory along its path is a programme decision, not a member's: refused
        // before any lookup, so it reveals nothing either.
        let status = as_member
            .advance_territory_stage(advance(id))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        // Withdrawing needs territories:admin, which no territory member can hold.
        let status = as_member
            .withdraw_territory(pb::WithdrawTerritoryRequest {
                id: id.into(),
                reason: "x".into(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let mine = as_member
        .list_territories(pb::ListTerritoriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        mine.territories.iter().map(|t| &t.id).collect::<Vec<_>>(),
        vec![&a.id],
        "lists hold only what the caller may see"
    );
    as_member.get_territory(get(&a.id)).await.unwrap();
    let b_after = national
        .get_territory(get(&b.id))
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(b_after, b, "B unchanged");

    // A project lead of région 84 sees the Loire's territories, not Corsica's.
    let lead = TokenSpec::new(Role::ProjectLead, "cdp-84").region("84");
    let mut as_lead = TerritoryServiceClient::new(channel_as(running.local_addr, &lead).await);
    as_lead.get_territory(get(&b.id)).await.unwrap();
    let status = as_lead.get_territory(get(&corsica.id)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let listed = as_lead
        .list_territories(pb::ListTerritoriesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.territories.len(), 2);

    // An agency without contacts:read gets territories without contacts' personal data.
    let agency = TokenSpec::new(Role::Agency, "stats-app")
        .client("insee")
        .scopes(&[scope::TERRITORIES_READ]);
    let mut as_agency = TerritoryServiceClient::new(channel_as(running.local_addr, &agency).await);
    let seen = as_agency
        .get_territory(get(&b.id))
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert!(seen.personal_data_withheld);
    assert!(seen.privileged_contact.is_none());
    // With contacts:read it sees them, and that read is audited.
    let reader = TokenSpec::new(Role::Agency, "dpo-app").client("dgcl");
    let mut as_reader = TerritoryServiceClient::new(channel_as(running.local_addr, &reader).await);
    let mut request = tonic::Request::new(get(&b.id));
    request
        .metadata_mut()
        .insert("x-request-id", "req-contacts-1".parse().unwrap());
    let seen = as_reader
        .get_territory(request)
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(seen.privileged_contact.unwrap().email, B_EMAIL);

    let mut audit_client = AuditServiceClient::new(channel(running.local_addr).await);
    let list = |subject: &str| audit::ListAuditEventsRequest {
        subject: subject.into(),
        ..Default::default()
    };
    let by_member = audit_client
        .list_audit_events(list("elu-a"))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    let refused_update = by_member
        .iter()
        .find(|e| {
            e.method.ends_with("/UpdateTerritory") && e.resource == format!("territories/{}", b.id)
        })
        .expect("the refused write is on the trail");
    assert_eq!(refused_update.outcome, "NOT_FOUND");
    assert_eq!(refused_update.role, "territory_member");
    assert_eq!(refused_update.kind, "write");
    assert!(!refused_update.request_id.is_empty());
    assert!(
        by_member
            .iter()
            .any(|e| e.method.ends_with("/WithdrawTerritory") && e.outcome == "PERMISSION_DENIED"),
        "{by_member:#?}"
    );
    // A successful write has exactly one record, committed with the change itself.
    let updates = audit_client
        .list_audit_events(audit::ListAuditEventsRequest {
            subject: "test-national".into(),
            method: "UpdateTerritory".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(updates.len(), 1, "{updates:#?}");
    assert_eq!(updates[0].outcome, "OK");
    assert_eq!(updates[0].resource, format!("territories/{}", b.id));
    assert_eq!(updates[0].client_id, "tde-tests");
    let registrations = audit_client
        .list_audit_events(audit::ListAuditEventsRequest {
            method: "/tde.territories.v1.TerritoryService/RegisterTerritory".into(),
            outcome: "ok".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(registrations.len(), 3, "{registrations:#?}");
    let reads = audit_client
        .list_audit_events(list("dpo-app"))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert_eq!(reads[0].kind, "personal_data_read");
    assert_eq!(reads[0].client_id, "dgcl");
    assert_eq!(reads[0].request_id, "req-contacts-1");
    assert_eq!(reads[0].resource, format!("territories/{}", b.id));
    // Reads without personal data are not audited.
    let none = audit_client
        .list_audit_events(list("stats-app"))
        .await
        .unwrap()
        .into_inner()
        .audit_events;
    assert!(none.is_empty(), "{none:#?}");
    // Pagination, newest first.
    let page = audit_client
        .list_audit_events(audit::ListAuditEventsRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.audit_events.len(), 2);
    assert!(page.audit_events[0].id > page.audit_events[1].id);
    let next = audit_client
        .list_audit_events(audit::ListAuditEventsRequest {
            page_size: 2,
            page_token: page.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(next.audit_events[0].id < page.audit_events[1].id);
    // Audit reading needs audit:read, which a member cannot hold.
    let mut member_audit = AuditServiceClient::new(channel_as(running.local_addr, &member).await);
    let status = member_audit.list_audit_events(list("")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // Append-only, down to the database.
    let db = &running.service("territories").unwrap().db;
    assert!(
        db.execute_unprepared("DELETE FROM audit_events")
            .await
            .is_err()
    );
    assert!(
        db.execute_unprepared("UPDATE audit_events SET outcome = 'OK'")
            .await
            .is_err()
    );
    running.shutdown().await.unwrap();
}

/// Fields the server owns cannot be written through an update mask.
#[tokio::test]
async fn server_owned_fields_cannot_be_written() {
    let env = TestEnv::sqlite().await;
    let running = start(&env).await;
    import_geography(&running).await;
    let mut client = TerritoryServiceClient::new(channel(running.local_addr).await);
    let t = register(&mut client, "42218").await;
    for field in [
        "id",
        "stage",
        "stage_history",
        "etag",
        "create_time",
        "update_time",
        "code_history",
        "name",
    ] {
        let status = client
            .update_territory(pb::UpdateTerritoryRequest {
                territory: Some(pb::Territory {
                    id: t.id.clone(),
                    stage: pb::Stage::Completed as i32,
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec![field.into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}");
    }
    let after = client
        .get_territory(pb::GetTerritoryRequest { id: t.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(after, t);
    running.shutdown().await.unwrap();
}

/// The right of access and the right to erasure.
#[tokio::test]
async fn personal_data_is_exported_and_erased_everywhere() {
    let env = TestEnv::sqlite().await;
    let running = start(&env).await;
    import_geography(&running).await;
    let mut client = TerritoryServiceClient::new(channel(running.local_addr).await);
    let a = register(&mut client, "42218").await;
    let b = register(&mut client, "42001").await;
    client
        .update_territory(with_contact(&a, B_EMAIL))
        .await
        .unwrap();
    client
        .update_territory(pb::UpdateTerritoryRequest {
            territory: Some(pb::Territory {
                id: b.id.clone(),
                operational_team: vec![
                    person("Claire Durand", &B_EMAIL.to_uppercase()),
                    person("Paul Roche", "paul.roche@mairie-b.fr"),
                ],
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["operational_team".into()],
            }),
        })
        .await
        .unwrap();

    let mut rgpd = PersonalDataServiceClient::new(channel(running.local_addr).await);
    let export = rgpd
        .export_personal_data(pb::ExportPersonalDataRequest {
            email: B_EMAIL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut capacities: Vec<_> = export
        .records
        .iter()
        .map(|r| (r.territory_id.clone(), r.capacity.clone()))
        .collect();
    capacities.sort();
    let mut expected = vec![
        (a.id.clone(), "privileged_contact".to_string()),
        (b.id.clone(), "operational_team".to_string()),
    ];
    expected.sort();
    assert_eq!(capacities, expected);

    let erased = rgpd
        .erase_personal_data(pb::ErasePersonalDataRequest {
            email: B_EMAIL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(erased.erased_records, 2);
    let a_after = client
        .get_territory(pb::GetTerritoryRequest { id: a.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert!(a_after.privileged_contact.is_none());
    let b_after = client
        .get_territory(pb::GetTerritoryRequest { id: b.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(b_after.operational_team.len(), 1, "the others stay");
    let again = rgpd
        .export_personal_data(pb::ExportPersonalDataRequest {
            email: B_EMAIL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.records.is_empty());

    // The erasure event names the person by fingerprint only; rosters are republished.
    let db = &running.service("territories").unwrap().db;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT event_type, payload FROM outbox_events ORDER BY seq",
        ))
        .await
        .unwrap();
    let mut erasure = None;
    for row in &rows {
        let event_type: String = row.try_get("", "event_type").unwrap();
        let payload: Vec<u8> = row.try_get("", "payload").unwrap();
        if event_type == "tde.territories.v1.PersonalDataErased" {
            erasure =
                Some(<pb::PersonalDataErased as prost::Message>::decode(&payload[..]).unwrap());
        }
    }
    let erasure = erasure.expect("PersonalDataErased published");
    assert_eq!(erasure.territory_ids.len(), 2);
    assert_eq!(erasure.email_sha256.len(), 64);
    for row in rows.iter().rev().take(3) {
        let payload: Vec<u8> = row.try_get("", "payload").unwrap();
        assert!(
            !String::from_utf8_lossy(&payload).contains(B_EMAIL),
            "the erased address is not republished"
        );
    }
    // A bad address is refused with the field named.
    let status = rgpd
        .erase_personal_data(pb::ErasePersonalDataRequest {
            email: "not-an-address".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_rate_limit_triggers_per_client_and_recovers() {
    let mut env = TestEnv::sqlite().await;
    env.settings.auth.rate_limit_per_second = 2;
    env.settings.auth.rate_limit_burst = 3;
    let running = start(&env).await;
    let busy = TokenSpec::new(Role::Agency, "batch").client("busy-app");
    let mut busy = TerritoryServiceClient::new(channel_as(running.local_addr, &busy).await);
    let list = pb::ListTerritoriesRequest::default;
    for _ in 0..3 {
        busy.list_territories(list()).await.unwrap();
    }
    let status = busy.list_territories(list()).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = status
        .get_error_details()
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("retry info");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    // Another client of the same subject's organisation is not held up.
    let other = TokenSpec::new(Role::Agency, "batch").client("other-app");
    let mut other = TerritoryServiceClient::new(channel_as(running.local_addr, &other).await);
    other.list_territories(list()).await.unwrap();
    tokio::time::sleep(retry + Duration::from_millis(20)).await;
    busy.list_territories(list()).await.unwrap();
    running.shutdown().await.unwrap();
}

/// A key added at the identity provider (rotation) is picked up when a token names it; an
/// unknown key id does not make the server fetch the key set more than the configured rate.
#[tokio::test]
async fn key_rotation_at_the_identity_provider() {
    let rotated = LocalIssuer::generate(DEV_ISSUER, DEV_AUDIENCE).unwrap();
    let idp = KeySetServer::start(test_issuer().jwks_json()).await;
    let mut env = TestEnv::sqlite().await;
    env.settings.auth.jwks_file = None;
    env.settings.auth.jwks_url = Some(idp.url.clone());
    env.settings.auth.jwks_refresh_min_interval_ms = 300;
    let running = start(&env).await;
    let ch = raw_channel(running.local_addr).await;
    let path = "/tde.territories.v1.TerritoryService/ListTerritories";
    let new_token = rotated.mint(&TokenSpec::new(Role::National, "n")).unwrap();
    assert_eq!(
        call(ch.clone(), path, Some(&new_token)).await.code(),
        Code::Unauthenticated
    );
    let fetched = idp.requests.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        call(ch.clone(), path, Some(&new_token)).await;
    }
    assert!(
        idp.requests.load(std::sync::atomic::Ordering::SeqCst) <= fetched + 1,
        "unknown key ids do not hammer the identity provider"
    );
    // The provider publishes the new key beside the old one.
    let keys = serde_json::json!({"keys": [test_issuer().jwk(), rotated.jwk()]});
    idp.set_body(keys.to_string());
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        call(ch.clone(), path, Some(&new_token)).await.code(),
        Code::Ok
    );
    let old_token = tde_runtime::testing::national_token();
    assert_eq!(
        call(ch.clone(), path, Some(&old_token)).await.code(),
        Code::Ok
    );
    running.shutdown().await.unwrap();
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// A CA, a server certificate for localhost, a client certificate from that CA, and a
    /// client certificate from another CA.
    fn create() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: String| std::fs::write(dir.path().join(name), pem).unwrap();
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (cert, Issuer::new(params, key))
        };
        let leaf = |names: Vec<String>, issuer: &Issuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(names)
                .unwrap()
                .signed_by(&key, issuer)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (ca_cert, ca_issuer) = ca("tde test CA");
        write("ca.pem", ca_cert.pem());
        let (server, server_key) = leaf(vec!["localhost".into()], &ca_issuer);
        write("server.pem", server);
        write("server.key", server_key);
        let (client, client_key) = leaf(vec!["agency-client".into()], &ca_issuer);
        write("client.pem", client);
        write("client.key", client_key);
        let (_, rogue_issuer) = ca("rogue CA");
        let (rogue, rogue_key) = leaf(vec!["rogue-client".into()], &rogue_issuer);
        write("rogue.pem", rogue);
        write("rogue.key", rogue_key);
        Self { dir }
    }
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_trusted_certificate() {
    let pki = Pki::create();
    let mut env = TestEnv::sqlite().await;
    let health_port = tde_runtime::testing::free_port();
    env.settings.server.tls = Some(tde_runtime::config::TlsSettings {
        cert_file: pki.path("server.pem"),
        key_file: pki.path("server.key"),
        client_ca_file: pki.path("ca.pem"),
    });
    env.settings.server.health_listen = Some(([127, 0, 0, 1], health_port).into());
    let running = start(&env).await;
    let server = format!("https://localhost:{}", running.local_addr.port());
    let tls = |cert: Option<&str>| tde_runtime::auth::client::ClientTls {
        ca_file: Some(pki.path("ca.pem")),
        cert_file: cert.map(|c| pki.path(&format!("{c}.pem"))),
        key_file: cert.map(|c| pki.path(&format!("{c}.key"))),
        domain: Some("localhost".into()),
    };
    let list = "/tde.territories.v1.TerritoryService/ListTerritories";
    let national = tde_runtime::testing::national_token();
    let attempt = |cert: Option<&'static str>| {
        let (server, tls, national) = (server.clone(), tls(cert), national.clone());
        async move {
            match tde_runtime::auth::client::connect(&server, Some(&tls)).await {
                Ok(ch) => call(ch, list, Some(&national)).await.code(),
                Err(_) => Code::Unavailable,
            }
        }
    };
    assert_eq!(
        attempt(Some("client")).await,
        Code::Ok,
        "a trusted client gets in"
    );
    assert_ne!(
        attempt(None).await,
        Code::Ok,
        "no client certificate: refused"
    );
    assert_ne!(
        attempt(Some("rogue")).await,
        Code::Ok,
        "untrusted CA: refused"
    );
    // Plaintext on the TLS port is refused; health answers on its own plaintext port.
    let plain = tonic::transport::Endpoint::from_shared(format!(
        "http://127.0.0.1:{}",
        running.local_addr.port()
    ))
    .unwrap()
    .connect()
    .await;
    if let Ok(ch) = plain {
        assert_ne!(call(ch, list, Some(&national)).await.code(), Code::Ok);
    }
    let health_addr = std::net::SocketAddr::from(([127, 0, 0, 1], health_port));
    let status = common::health(
        tde_runtime::testing::with_token(raw_channel(health_addr).await, "unused"),
        "",
    )
    .await;
    assert_eq!(status, Some(1), "SERVING on the probe port");
    running.shutdown().await.unwrap();
}

/// The objects of two territories, A (Saint-Étienne, région 84) and B (Ajaccio, région 94),
/// through every service: territory, roster, plan, action, steering meeting.
struct TwoTerritories {
    a: std::collections::HashMap<&'static str, String>,
    b: std::collections::HashMap<&'static str, String>,
}

async fn objects_of(
    running: &RunningPlatform,
    territories: &mut TerritoryServiceClient<tde_runtime::auth::AuthChannel>,
    code: &str,
    email: &str,
) -> std::collections::HashMap<&'static str, String> {
    use chrono::Datelike as _;
    use tde_proto::plans::v1 as plans_pb;
    let t = register(territories, code).await;
    territories
        .update_territory(pb::UpdateTerritoryRequest {
            territory: Some(pb::Territory {
                id: t.id.clone(),
                steering_body: Some(pb::SteeringBody {
                    name: "Comité de pilotage".into(),
                    relies_on_existing_body: false,
                    members: vec![person("Claire Durand", email)],
                }),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["steering_body".into()],
            }),
        })
        .await
        .unwrap();
    let ch = channel(running.local_addr).await;
    let mut plans = tde_proto::plans::v1::plan_service_client::PlanServiceClient::new(ch.clone());
    let y = chrono::Utc::now().year() + 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let plan = loop {
        match plans
            .create_plan(plans_pb::CreatePlanRequest {
                territory_id: t.id.clone(),
                title: "Plan".into(),
                start_date: format!("{y}-01-01"),
                request_id: String::new(),
            })
            .await
        {
            Ok(r) => break r.into_inner().plan.unwrap(),
            Err(s) if s.code() == Code::NotFound && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(s) => panic!("{s:?}"),
        }
    };
    let action = tde_proto::plans::v1::action_service_client::ActionServiceClient::new(ch.clone())
        .create_action(plans_pb::CreateActionRequest {
            action: Some(plans_pb::Action {
                plan_id: plan.id.clone(),
                year: 1,
                kind: plans_pb::ActionKind::Training as i32,
                title: "Formation des élus".into(),
                audiences: vec![plans_pb::Audience::ElectedOfficials as i32],
                skills: vec![plans_pb::Skill::ElectedOfficialsTraining as i32],
                planned_start: format!("{y}-02-01"),
                planned_end: format!("{y}-03-31"),
                budget_cents: 100_000,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .action
        .unwrap();
    let meeting =
        tde_proto::plans::v1::steering_meeting_service_client::SteeringMeetingServiceClient::new(
            ch,
        )
        .schedule_steering_meeting(plans_pb::ScheduleSteeringMeetingRequest {
            plan_id: plan.id.clone(),
            start_local: format!("{y}-03-10T10:00"),
            end_local: format!("{y}-03-10T12:00"),
            place: "Hôtel de ville".into(),
            video_link: String::new(),
            agenda: "Lancement".into(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .meeting
        .unwrap();
    let (need, provider, proposal) = matching_objects(running, &action.id).await;
    let (subsidy, envelope, payment) = subsidy_objects(running, &t.id, &plan.id).await;
    [
        ("territory", t.id),
        ("plan", plan.id),
        ("action", action.id),
        ("meeting", meeting.id),
        ("subsidy", subsidy),
        ("envelope", envelope),
        ("payment", payment),
        ("need", need),
        ("provider", provider),
        ("proposal", proposal),
    ]
    .into_iter()
    .collect()
}

/// Matching's objects of an action: its need (once matching heard of it), the one provider
/// of the test (providers belong to no territory: the same for every territory), and a
/// proposal of the need to it.
async fn matching_objects(running: &RunningPlatform, action_id: &str) -> (String, String, String) {
    use tde_proto::common::v1::Skill;
    use tde_proto::matching::v1 as m;
    let ch = channel(running.local_addr).await;
    let mut matching = m::matching_service_client::MatchingServiceClient::new(ch.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while matching
        .get_need(m::GetNeedRequest {
            id: action_id.into(),
        })
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the action never became a need"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The same request id: registered once, the same provider for both territories.
    let provider = m::provider_service_client::ProviderServiceClient::new(ch.clone())
        .register_provider(m::RegisterProviderRequest {
            provider: Some(m::Provider {
                siret: "73282932000074".into(),
                name: "Formateurs associés".into(),
                naf_code: "85.59A".into(),
                qualiopi_expiry_date: "2099-12-31".into(),
                skills: vec![Skill::ElectedOfficialsTraining as i32],
                areas: vec![m::Area {
                    area: Some(m::area::Area::National(true)),
                }],
                capacity: 10,
                day_rate_cents: 1,
                contact: Some(m::ProviderContact {
                    name: "Sam Formateur".into(),
                    email: "sam@formateurs.example.org".into(),
                }),
                ..Default::default()
            }),
            request_id: "security-matrix-provider".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .provider
        .unwrap();
    let proposal = m::proposal_service_client::ProposalServiceClient::new(ch)
        .propose_provider(m::ProposeProviderRequest {
            need_id: action_id.into(),
            provider_id: provider.id.clone(),
            justification: String::new(),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .proposal
        .unwrap();
    (action_id.to_string(), provider.id, proposal.id)
}

/// Subsidies' objects of a plan: its year-1 subsidy (opened from the `plan.year_submitted`
/// that the plans service would publish), granted, and its advance payment; and the national
/// envelope of the year (envelopes belong to no territory: the same for every territory).
async fn subsidy_objects(
    running: &RunningPlatform,
    territory_id: &str,
    plan_id: &str,
) -> (String, String, String) {
    use chrono::Datelike as _;
    use tde_proto::subsidies::v1 as s;
    let y = chrono::Utc::now().year() + 1;
    let ctx = running.service("subsidies").expect("subsidies runs");
    let submitted = tde_proto::plans::v1::PlanYearSubmitted {
        plan_id: plan_id.into(),
        territory_id: territory_id.into(),
        year: 1,
        year_start_date: format!("{y}-01-01"),
        year_end_date: format!("{}-01-01", y + 1),
        submission_number: 1,
        amendment: false,
        budget_cents: 100_000,
        actions: Vec::new(),
        fingerprint: "ab".repeat(32),
        submit_time: None,
        actor: "security-matrix".into(),
    };
    ctx.bus
        .ensure_stream(&ctx.namespace.stream("plans"))
        .await
        .unwrap();
    ctx.bus
        .publish(&[tde_runtime::bus::Envelope {
            id: uuid::Uuid::now_v7().to_string(),
            subject: ctx.namespace.subject("plans", "plan.year_submitted"),
            event_type: "tde.plans.v1.PlanYearSubmitted".into(),
            source: "/tde/plans".into(),
            time: chrono::Utc::now(),
            aggregate_id: plan_id.into(),
            payload: prost::Message::encode_to_vec(&submitted).into(),
            traceparent: None,
        }])
        .await
        .unwrap();
    let ch = channel(running.local_addr).await;
    let envelope = s::envelope_service_client::EnvelopeServiceClient::new(ch.clone())
        .create_envelope(s::CreateEnvelopeRequest {
            budget_year: y,
            region_code: String::new(),
            amount_cents: 100_000_000,
            advance_percent: 0,
            reason: "loi de finances".into(),
            act_reference: "LFI".into(),
            // The same request id: opened once, the same envelope for both territories.
            request_id: "security-matrix-envelope".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .envelope
        .unwrap();
    let mut subsidies = s::subsidy_service_client::SubsidyServiceClient::new(ch);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let subsidy = loop {
        let listed = subsidies
            .list_subsidies(s::ListSubsidiesRequest {
                plan_id: plan_id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .subsidies;
        if let Some(found) = listed.into_iter().next() {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the submitted year never became a subsidy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    subsidies
        .propose_decision(s::ProposeDecisionRequest {
            id: subsidy.id.clone(),
            amount_cents: 100_000,
            legal_act: Some(s::LegalAct {
                kind: s::LegalActKind::Convention as i32,
                reference: "CONV-1".into(),
                date: format!("{y}-01-15"),
            }),
            beneficiary_siret: "21750001600019".into(),
            budget_year: y,
            ..Default::default()
        })
        .await
        .unwrap();
    // Four eyes: another member of the national team approves.
    let approver = channel_as(
        running.local_addr,
        &TokenSpec::new(Role::National, "security-approver"),
    )
    .await;
    let advance = s::subsidy_service_client::SubsidyServiceClient::new(approver)
        .approve_decision(s::ApproveDecisionRequest {
            id: subsidy.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .advance
        .unwrap();
    (subsidy.id, envelope.id, advance.id)
}

/// The kind of object a string field names, from its name and where it stands.
fn names_object(service: &str, message: &str, field: &str) -> Option<&'static str> {
    match field {
        "territory_id" => Some("territory"),
        "subsidy_id" => Some("subsidy"),
        "envelope_id" => Some("envelope"),
        "payment_id" => Some("payment"),
        "plan_id" => Some("plan"),
        "action_id" => Some("action"),
        "meeting_id" => Some("meeting"),
        "need_id" => Some("need"),
        "provider_id" => Some("provider"),
        "proposal_id" => Some("proposal"),
        "id" => match (service, message) {
            (_, "Need") => Some("need"),
            (_, "Provider") => Some("provider"),
            (_, "Proposal") => Some("proposal"),
            ("MatchingService", _) => Some("need"),
            ("ProviderService", _) => Some("provider"),
            ("ProposalService", _) => Some("proposal"),
            (_, "Subsidy") => Some("subsidy"),
            (_, "Envelope") => Some("envelope"),
            (_, "Payment") => Some("payment"),
            ("SubsidyService", _) => Some("subsidy"),
            ("EnvelopeService", _) => Some("envelope"),
            ("PaymentService", _) => Some("payment"),
            (_, "Territory") => Some("territory"),
            (_, "Plan") => Some("plan"),
            (_, "Action") => Some("action"),
            (_, "SteeringMeeting") => Some("meeting"),
            ("TerritoryService", _) => Some("territory"),
            ("PlanService", _) => Some("plan"),
            ("ActionService", _) => Some("action"),
            ("SteeringMeetingService", _) => Some("meeting"),
            _ => None,
        },
        _ => None,
    }
}

/// A request of `descriptor` whose fields naming objects (at any depth up to 2) name those of
/// `ids`; whether any did.
fn request_naming(
    service: &str,
    descriptor: &prost_reflect::MessageDescriptor,
    ids: &dyn Fn(&str) -> String,
    depth: usize,
) -> (prost_reflect::DynamicMessage, bool) {
    use prost_reflect::{Kind, Value};
    let mut message = prost_reflect::DynamicMessage::new(descriptor.clone());
    let mut named = false;
    for field in descriptor.fields() {
        match field.kind() {
            Kind::String if !field.is_list() => {
                if let Some(object) = names_object(service, descriptor.name(), field.name()) {
                    message.set_field(&field, Value::String(ids(object)));
                    named = true;
                }
            }
            Kind::Message(inner) if depth < 2 && !field.is_list() && !field.is_map() => {
                let (nested, any) = request_naming(service, &inner, ids, depth + 1);
                if any {
                    message.set_field(&field, Value::Message(nested));
                    named = true;
                }
            }
            _ => {}
        }
    }
    (message, named)
}

/// Calls `path` with `body`: the status, and the reply's bytes when it succeeded.
async fn call_with(
    channel: tonic::transport::Channel,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> (tonic::Status, Vec<u8>) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let mut request = tonic::Request::new(body);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    match grpc.unary(request, path, RawCodec).await {
        Ok(reply) => (tonic::Status::ok(""), reply.into_inner()),
        Err(status) => (status, Vec::new()),
    }
}

/// The role × method matrix, generated from the descriptors and the policy tables so that a
/// new method cannot escape it: for every unary method of every service whose request names
/// an object, callers who may not see territory B (a member of A, a project lead of A's
/// région, a provider of A) get for B's objects exactly what they get for objects that do not
/// exist; and a member of A gets PERMISSION_DENIED for every programme decision on A's own
/// objects.
#[tokio::test]
async fn another_territorys_objects_are_missing_ones_for_every_method_and_role() {
    use prost::Message as _;
    let env = TestEnv::postgres(&[
        "territories",
        "plans",
        "notifications",
        "matching",
        "subsidies",
    ])
    .await;
    let running = start(&env).await;
    import_geography(&running).await;
    let mut national = TerritoryServiceClient::new(channel(running.local_addr).await);
    let world = TwoTerritories {
        a: objects_of(&running, &mut national, "42218", "claire@saint-etienne.fr").await,
        b: objects_of(&running, &mut national, "2A004", "claire@ajaccio.fr").await,
    };
    let mut missing: std::collections::HashMap<&str, String> =
        ["territory", "plan", "action", "meeting", "need", "proposal"]
            .into_iter()
            .map(|k| (k, uuid::Uuid::now_v7().to_string()))
            .chain(["subsidy", "payment"].map(|k| (k, uuid::Uuid::now_v7().to_string())))
            // Envelopes belong to no territory: the same one in every world.
            .chain([("envelope", world.b["envelope"].clone())])
            .collect();
    // Providers belong to no territory: requests name the same one in every world.
    missing.insert("provider", world.b["provider"].clone());
    let a_id = world.a["territory"].clone();
    let callers = [
        (
            "member of A",
            TokenSpec::new(Role::TerritoryMember, "elu-a").territory(a_id.clone()),
        ),
        (
            "project lead of région 84",
            TokenSpec::new(Role::ProjectLead, "cdp-84").region("84"),
        ),
        (
            "provider of A",
            TokenSpec::new(Role::Provider, "prestataire").territory(a_id.clone()),
        ),
    ];
    let policies = all_policies();
    let pool = tde_proto::descriptor_pool();
    let raw = raw_channel(running.local_addr).await;
    let mut checked = 0;
    for service in pool
        .services()
        .filter(|s| s.full_name().starts_with("tde."))
    {
        for method in service.methods() {
            if method.is_client_streaming() || method.is_server_streaming() {
                continue;
            }
            let path = format!("/{}/{}", service.full_name(), method.name());
            let policy = policies
                .iter()
                .find(|p| p.method == path)
                .expect("a policy");
            let (of_b, names) =
                request_naming(service.name(), &method.input(), &|o| world.b[o].clone(), 0);
            if !names {
                continue;
            }
            let (of_nobody, _) =
                request_naming(service.name(), &method.input(), &|o| missing[o].clone(), 0);
            for (who, spec) in &callers {
                let token = token(spec);
                let (seen_b, reply_b) =
                    call_with(raw.clone(), &path, &token, of_b.encode_to_vec()).await;
                let (seen_missing, reply_missing) =
                    call_with(raw.clone(), &path, &token, of_nobody.encode_to_vec()).await;
                let blank = |s: &tonic::Status, ids: &std::collections::HashMap<&str, String>| {
                    let mut m = s.message().to_string();
                    for id in ids.values() {
                        m = m.replace(id.as_str(), "ID");
                    }
                    (s.code(), m)
                };
                let missing_ids: std::collections::HashMap<&str, String> =
                    missing.iter().map(|(k, v)| (*k, v.clone())).collect();
                let b_ids: std::collections::HashMap<&str, String> =
                    world.b.iter().map(|(k, v)| (*k, v.clone())).collect();
                assert_eq!(
                    blank(&seen_b, &b_ids),
                    blank(&seen_missing, &missing_ids),
                    "{who} on {path}: B's objects must look missing"
                );
                // A list filtered by B's ids answers as for a missing one: nothing.
                assert_eq!(reply_b, reply_missing, "{who} on {path}: the same reply");
                assert_ne!(seen_b.code(), Code::Internal, "{who} on {path}");
            }
            // Programme decisions on A's own objects are not a member's.
            if !policy.admits(Role::TerritoryMember) {
                let (of_a, _) =
                    request_naming(service.name(), &method.input(), &|o| world.a[o].clone(), 0);
                let (status, _) = call_with(
                    raw.clone(),
                    &path,
                    &token(&callers[0].1),
                    of_a.encode_to_vec(),
                )
                .await;
                assert_eq!(
                    status.code(),
                    Code::PermissionDenied,
                    "member of A on {path}"
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} methods name an object");
    running.shutdown().await.unwrap();
}

/// An agency (another administration's system) holds read scopes but not contacts:read:
/// generated from the descriptors like the matrix above, every unary method of every service
/// is called on real objects of a territory with such a token. Each answer is a refusal
/// (PERMISSION_DENIED for what its scopes do not cover) or a reply naming nobody: no name or
/// address of the territory's people, nor of a provider's contact, in any reply.
#[tokio::test]
async fn an_agency_without_contacts_read_never_sees_a_person() {
    use prost::Message as _;
    use tde_runtime::auth::scope;
    let env = TestEnv::sqlite().await;
    let running = start(&env).await;
    import_geography(&running).await;
    let mut national = TerritoryServiceClient::new(channel(running.local_addr).await);
    let a = objects_of(&running, &mut national, "42218", "claire@saint-etienne.fr").await;
    // The roster's other people, so that every kind of contact is there to leak.
    let current = national
        .get_territory(pb::GetTerritoryRequest {
            id: a["territory"].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    national
        .update_territory(with_contact(&current, "contact.prive@saint-etienne.fr"))
        .await
        .unwrap();
    let people = [
        "claire@saint-etienne.fr",
        "Claire Durand",
        "contact.prive@saint-etienne.fr",
        "sam@formateurs.example.org",
        "Sam Formateur",
    ];
    let read_scopes: Vec<&str> = scope::ALL
        .iter()
        .copied()
        .filter(|s| s.ends_with(":read") && *s != scope::CONTACTS_READ)
        .collect();
    let agency = token(&TokenSpec::new(Role::Agency, "agence-partenaire").scopes(&read_scopes));
    let policies = all_policies();
    let pool = tde_proto::descriptor_pool();
    let raw = raw_channel(running.local_addr).await;
    let mut answered = 0;
    for service in pool
        .services()
        .filter(|s| s.full_name().starts_with("tde."))
    {
        for method in service.methods() {
            if method.is_client_streaming() || method.is_server_streaming() {
                continue;
            }
            let path = format!("/{}/{}", service.full_name(), method.name());
            let policy = policies
                .iter()
                .find(|p| p.method == path)
                .expect("a policy");
            let (request, _) =
                request_naming(service.name(), &method.input(), &|o| a[o].clone(), 0);
            let (status, reply) =
                call_with(raw.clone(), &path, &agency, request.encode_to_vec()).await;
            let covered = policy.admits(Role::Agency)
                && policy.scope.is_none_or(|s| read_scopes.contains(&s));
            if !covered {
                assert_eq!(status.code(), Code::PermissionDenied, "agency on {path}");
                continue;
            }
            assert!(
                !matches!(status.code(), Code::Internal | Code::Unknown),
                "agency on {path}: {status:?}"
            );
            let text = String::from_utf8_lossy(&reply);
            for person in people {
                assert!(!text.contains(person), "agency on {path} sees {person}");
            }
            answered += usize::from(status.code() == Code::Ok);
        }
    }
    assert!(
        answered >= 10,
        "only {answered} methods answered the agency"
    );
    running.shutdown().await.unwrap();
}

/// Every string field of every request (and of the messages it holds), filled with control
/// characters, quotes that would break a calendar line, 1 MiB of text and odd Unicode, sent
/// by the national team on real objects: the answer is a clear refusal or a success — never
/// INTERNAL or UNKNOWN — and its trailers stay small enough for any client to read.
#[tokio::test]
async fn hostile_text_in_every_field_gets_a_readable_answer() {
    use prost::Message as _;
    use prost_reflect::{Kind, Value};
    let env = TestEnv::postgres(&[
        "territories",
        "plans",
        "notifications",
        "matching",
        "subsidies",
    ])
    .await;
    let running = start(&env).await;
    import_geography(&running).await;
    let mut national_client = TerritoryServiceClient::new(channel(running.local_addr).await);
    let a = objects_of(
        &running,
        &mut national_client,
        "42218",
        "claire@saint-etienne.fr",
    )
    .await;
    let national = tde_runtime::testing::national_token();
    let raw = raw_channel(running.local_addr).await;
    let hostile = [
        "Claire\r\nBcc: intrus@exemple.fr\0".to_string(),
        "Claire \"la maire\":mailto:someone-else@example.com;X=\"".to_string(),
        "é".repeat(512 * 1024),
        "\u{202E}\u{FEFF}🙂e\u{301}\u{10FFFF}\u{7}".to_string(),
    ];
    let pool = tde_proto::descriptor_pool();
    let mut calls = 0;
    for service in pool
        .services()
        .filter(|s| s.full_name().starts_with("tde."))
    {
        for method in service.methods() {
            if method.is_client_streaming() || method.is_server_streaming() {
                continue;
            }
            let path = format!("/{}/{}", service.full_name(), method.name());
            let (base, _) = request_naming(service.name(), &method.input(), &|o| a[o].clone(), 0);
            // (field path, value) of every string field, at the top and one level down.
            let mut targets: Vec<(Vec<prost_reflect::FieldDescriptor>, ())> = Vec::new();
            for field in method.input().fields() {
                match field.kind() {
                    Kind::String => targets.push((vec![field.clone()], ())),
                    Kind::Message(inner) if !field.is_map() => {
                        for f in inner.fields().filter(|f| f.kind() == Kind::String) {
                            targets.push((vec![field.clone(), f], ()));
                        }
                    }
                    _ => {}
                }
            }
            for (fields, ()) in &targets {
                for text in &hostile {
                    let mut request = base.clone();
                    let value = |f: &prost_reflect::FieldDescriptor| {
                        if f.is_list() {
                            Value::List(vec![Value::String(text.clone())])
                        } else {
                            Value::String(text.clone())
                        }
                    };
                    match fields.as_slice() {
                        [f] => request.set_field(f, value(f)),
                        [outer, f] => {
                            let Kind::Message(inner) = outer.kind() else {
                                continue;
                            };
                            let mut nested = match request.get_field(outer).as_ref() {
                                Value::Message(m) => m.clone(),
                                Value::List(l) => match l.first() {
                                    Some(Value::Message(m)) => m.clone(),
                                    _ => prost_reflect::DynamicMessage::new(inner.clone()),
                                },
                                _ => prost_reflect::DynamicMessage::new(inner.clone()),
                            };
                            nested.set_field(f, value(f));
                            if outer.is_list() {
                                request.set_field(outer, Value::List(vec![Value::Message(nested)]));
                            } else {
                                request.set_field(outer, Value::Message(nested));
                            }
                        }
                        _ => continue,
                    }
                    let (status, _) =
                        call_with(raw.clone(), &path, &national, request.encode_to_vec()).await;
                    let field_name: Vec<&str> = fields.iter().map(|f| f.name()).collect();
                    assert!(
                        !matches!(status.code(), Code::Internal | Code::Unknown),
                        "{path} {}: {status:?}",
                        field_name.join(".")
                    );
                    let trailer_bytes = status.message().len() + status.details().len();
                    assert!(
                        trailer_bytes < 8 * 1024,
                        "{path} {}: a {trailer_bytes}-byte error",
                        field_name.join(".")
                    );
                    calls += 1;
                }
            }
        }
    }
    assert!(calls > 200, "only {calls} calls");
    running.shutdown().await.unwrap();
}
