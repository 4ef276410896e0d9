//! Helpers of the end-to-end tests: the quickstart of the README, through gRPC.
#![allow(dead_code)]

use std::path::PathBuf;

use prost_types::FieldMask;
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::geography_service_client::GeographyServiceClient;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::AuthChannel as Channel;

pub fn fixture(vintage: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
        "../services/territories/tests/fixtures/geo{vintage}"
    ))
}

/// A channel to a `tde dev` whose data dir is `data_dir`, with a national token minted by its
/// local key, as `tde token` does.
pub async fn dev_channel(addr: std::net::SocketAddr, data_dir: &std::path::Path) -> Channel {
    let issuer =
        tde::platform::dev_issuer(&tde_runtime::config::Settings::default(), data_dir).unwrap();
    let token = issuer
        .mint(&tde_runtime::auth::TokenSpec::new(
            tde_runtime::auth::Role::National,
            "e2e-operator",
        ))
        .unwrap();
    tde_runtime::testing::with_token(tde_runtime::testing::raw_channel(addr).await, &token)
}

pub const EMAIL: &str = "delphine.martin@mairie-exemple.fr";
pub const PHONE: &str = "06 98 76 54 32";
pub const PHONE_E164: &str = "+33698765432";

/// Imports the test geography, registers Saint-Étienne, records its steering body and moves
/// it to the diagnostic stage; returns the territory.
pub async fn quickstart(channel: Channel) -> pb::Territory {
    let mut geography = GeographyServiceClient::new(channel.clone());
    let imported = tde::client::import_geography(&mut geography, &fixture("2026"), "2026", false)
        .await
        .expect("geography imports over gRPC");
    assert_eq!(imported.communes, 533);

    let mut territories = TerritoryServiceClient::new(channel);
    let t = territories
        .register_territory(pb::RegisterTerritoryRequest {
            kind: pb::AuthorityKind::Commune as i32,
            official_code: "42218".into(),
            request_id: "quickstart".into(),
        })
        .await
        .expect("registered")
        .into_inner()
        .territory
        .expect("territory");
    let mut input = t.clone();
    input.steering_body = Some(pb::SteeringBody {
        name: "Comité de pilotage Saint-Étienne".into(),
        relies_on_existing_body: false,
        members: vec![pb::Person {
            name: "Delphine Martin".into(),
            email: EMAIL.into(),
            phone: PHONE.into(),
            role: "adjointe à la vie associative".into(),
        }],
    });
    territories
        .update_territory(pb::UpdateTerritoryRequest {
            territory: Some(input),
            update_mask: Some(FieldMask {
                paths: vec!["steering_body".into()],
            }),
        })
        .await
        .expect("steering body recorded");
    territories
        .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
            id: t.id.clone(),
            stage: pb::Stage::Diagnostic as i32,
            etag: String::new(),
            reason: "rencontre du territoire".into(),
        })
        .await
        .expect("advanced")
        .into_inner()
        .territory
        .expect("territory")
}

pub async fn health(channel: Channel, service: &str) -> Option<i32> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
