//! `tde dev`: every service in one process, SQLite files, in-process bus — started through the
//! same code as the binary, used through gRPC over a socket, restarted on the same data.

mod common;

use std::time::Duration;

use tde::platform::{self, Role};
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::config::Settings;

fn dev(data_dir: &std::path::Path) -> Settings {
    platform::dev_settings(
        Settings::default(),
        data_dir,
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn the_quickstart_works_and_survives_a_restart() {
    let dir = tempfile_dir();
    let running = platform::start(dev(dir.path()), Role::ALL).await.unwrap();
    let t = common::quickstart(common::dev_channel(running.local_addr, dir.path()).await).await;
    assert_eq!(t.stage, pb::Stage::Diagnostic as i32);
    let body = t.steering_body.clone().unwrap();
    assert_eq!(body.members[0].phone, common::PHONE_E164);
    running.shutdown().await.unwrap();
    assert!(
        dir.path().join("territories.db").exists(),
        "SQLite file under the data dir"
    );

    let running = platform::start(dev(dir.path()), Role::ALL).await.unwrap();
    let mut client =
        TerritoryServiceClient::new(common::dev_channel(running.local_addr, dir.path()).await);
    let again = client
        .get_territory(pb::GetTerritoryRequest { id: t.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap();
    assert_eq!(again, t, "nothing lost across a restart");
    let backlog = tde_runtime::outbox::backlog(&running.service("territories").unwrap().db)
        .await
        .unwrap();
    assert_eq!(backlog.events, 0, "the outbox was flushed");
    running.shutdown().await.unwrap();
}

/// Shutdown: health says NOT_SERVING first (for load balancers), then the listener stops.
#[tokio::test]
async fn shutdown_reports_not_serving_before_stopping() {
    let dir = tempfile_dir();
    let mut settings = dev(dir.path());
    settings.server.shutdown_drain_ms = 1_500;
    let running = platform::start(settings, Role::ALL).await.unwrap();
    let ch = common::dev_channel(running.local_addr, dir.path()).await;
    assert_eq!(
        common::health(ch.clone(), "tde.territories.v1.TerritoryService").await,
        Some(common::SERVING)
    );
    let token = running.shutdown_token();
    let stopping = tokio::spawn(running.wait());
    token.cancel();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut seen = None;
    while tokio::time::Instant::now() < deadline {
        seen = common::health(ch.clone(), "tde.territories.v1.TerritoryService").await;
        if seen == Some(common::NOT_SERVING) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(seen, Some(common::NOT_SERVING));
    stopping.await.unwrap().unwrap();
    assert!(common::health(ch, "").await.is_none(), "stopped");
}

/// Reflection lists every service of the process.
#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection_client::list_services;
    let dir = tempfile_dir();
    let running = platform::start(dev(dir.path()), Role::ALL).await.unwrap();
    let services = list_services(common::dev_channel(running.local_addr, dir.path()).await).await;
    for expected in [
        "tde.territories.v1.TerritoryService",
        "tde.territories.v1.GeographyService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} in {services:?}"
        );
    }
    running.shutdown().await.unwrap();
}

fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

mod tonic_reflection_client {
    use tde_runtime::auth::AuthChannel as Channel;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    pub async fn list_services(channel: Channel) -> Vec<String> {
        let mut client = ServerReflectionClient::new(channel);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = client
            .server_reflection_info(tokio_stream::iter(vec![request]))
            .await
            .unwrap()
            .into_inner();
        let Some(Ok(response)) = tokio_stream::StreamExt::next(&mut responses).await else {
            return Vec::new();
        };
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                list.service.into_iter().map(|s| s.name).collect()
            }
            _ => Vec::new(),
        }
    }
}
