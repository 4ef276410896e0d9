//! Shared set-up of the territories tests: a server started through the runtime's start-up
//! path on a fresh database, with the test geography loaded.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::geography_service_client::GeographyServiceClient;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::AuthChannel as Channel;
use tde_runtime::auth::TokenSpec;
use tde_runtime::bus::Subscription;
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{TestEnv, Topology, channel, channel_as};
use tde_territories::TerritoriesModule;

pub fn fixture(vintage: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/geo{vintage}"))
}

/// A vintage of the two-vintage journey (`fixtures/journey/<year>`, see its README).
pub fn journey(vintage: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/journey/{vintage}"))
}

pub struct App {
    pub env: TestEnv,
    pub platform: RunningPlatform,
    pub channel: Channel,
}

impl App {
    pub async fn start(topology: Topology) -> Self {
        Self::start_in(TestEnv::new(topology, &["territories"]).await).await
    }

    pub async fn start_in(env: TestEnv) -> Self {
        let platform = env
            .start(vec![Arc::new(TerritoriesModule::default())])
            .await
            .expect("server starts");
        let channel = channel(platform.local_addr).await;
        Self {
            env,
            platform,
            channel,
        }
    }

    /// Starts and loads the 2026 test geography.
    pub async fn with_geography(topology: Topology) -> Self {
        let app = Self::start(topology).await;
        app.import("2026").await;
        app
    }

    pub async fn import(&self, vintage: &str) -> tde_territories::api::geography::ImportOutcome {
        let g = tde_territories::api::geography::read_dir(vintage, &fixture(vintage))
            .expect("fixture parses");
        let ctx = self.ctx();
        tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
            .await
            .expect("import")
    }

    /// Imports the raw files in `dir` as `vintage` through the ImportGeography RPC, as an
    /// operator does (the RPC also empties the read cache of territories).
    pub async fn import_over_grpc(
        &self,
        dir: &std::path::Path,
        vintage: &str,
    ) -> Result<pb::ImportGeographyResponse, tonic::Status> {
        let mut messages = Vec::new();
        for (name, file) in [
            ("regions.json", pb::GeographyFile::Regions),
            ("departements.json", pb::GeographyFile::Departements),
            ("communes.json", pb::GeographyFile::Communes),
            ("epci.json", pb::GeographyFile::Epci),
        ] {
            messages.push(pb::ImportGeographyRequest {
                vintage: vintage.into(),
                file: file as i32,
                data: std::fs::read(dir.join(name)).expect("fixture file"),
            });
        }
        self.geography()
            .import_geography(tokio_stream::iter(messages))
            .await
            .map(|r| r.into_inner())
    }

    pub fn ctx(&self) -> &tde_runtime::ServiceContext {
        self.platform
            .service("territories")
            .expect("territories runs")
    }

    pub fn territories(&self) -> TerritoryServiceClient<Channel> {
        TerritoryServiceClient::new(self.channel.clone())
    }

    /// The territories service as the caller of `spec` sees it.
    pub async fn territories_as(&self, spec: &TokenSpec) -> TerritoryServiceClient<Channel> {
        TerritoryServiceClient::new(channel_as(self.platform.local_addr, spec).await)
    }

    pub fn geography(&self) -> GeographyServiceClient<Channel> {
        GeographyServiceClient::new(self.channel.clone())
    }

    pub async fn register(&self, kind: pb::AuthorityKind, code: &str) -> pb::Territory {
        self.territories()
            .register_territory(pb::RegisterTerritoryRequest {
                kind: kind as i32,
                official_code: code.into(),
                request_id: String::new(),
            })
            .await
            .expect("registered")
            .into_inner()
            .territory
            .expect("territory")
    }

    pub async fn get(&self, id: &str) -> pb::Territory {
        self.territories()
            .get_territory(pb::GetTerritoryRequest { id: id.into() })
            .await
            .expect("found")
            .into_inner()
            .territory
            .expect("territory")
    }

    /// A new durable consumer of the territories stream.
    pub async fn subscribe(&self) -> Box<dyn Subscription> {
        tde_runtime::testing::subscribe_to(
            self.env.bus.as_ref(),
            &self.ctx().namespace,
            "territories",
        )
        .await
    }
}

pub use tde_runtime::testing::next_event;

/// Collects exactly `count` events, then checks that no other arrives shortly after.
pub async fn collect_events(
    sub: &mut Box<dyn Subscription>,
    count: usize,
) -> Vec<tde_runtime::bus::Envelope> {
    let mut events = Vec::new();
    while events.len() < count {
        let d = next_event(sub, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("only {} of {count} events arrived", events.len()));
        events.push(d.envelope.clone());
        d.ack().await.expect("ack");
    }
    if let Some(extra) = next_event(sub, Duration::from_millis(500)).await {
        panic!(
            "one event too many: {} {}",
            extra.envelope.subject, extra.envelope.id
        );
    }
    events
}
