//! The Prometheus endpoint: requests and latency per method, outbox backlog and age.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use tde::platform::{self, Role};
use tde_runtime::config::Settings;
use tde_runtime::testing::free_port;

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[tokio::test]
async fn metrics_per_method_and_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = platform::dev_settings(
        Settings::default(),
        dir.path(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let port = free_port();
    settings.telemetry.metrics_listen = Some(([127, 0, 0, 1], port).into());
    let running = platform::start(settings, Role::ALL).await.unwrap();
    common::quickstart(common::dev_channel(running.local_addr, dir.path()).await).await;
    // The outbox gauges are refreshed about once a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let text = tokio::task::spawn_blocking(move || scrape(port))
        .await
        .unwrap();
    for expected in [
        "tde_grpc_server_requests_total{method=\"/tde.territories.v1.TerritoryService/RegisterTerritory\",code=\"Ok\"} 1",
        "tde_grpc_server_request_duration_seconds_bucket{method=\"/tde.territories.v1.TerritoryService/AdvanceTerritoryStage\"",
        "tde_outbox_backlog_events{service=\"territories\"}",
        "tde_outbox_oldest_event_age_seconds{service=\"territories\"}",
        "tde_outbox_published_events_total{service=\"territories\"}",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    running.shutdown().await.unwrap();
}
