//! Two replicas of the territories service on one PostgreSQL database, as on Kubernetes:
//! each keeps a read cache, and a write on one is seen by the other at once (the cache is
//! evicted by a notification committed with the write).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::App;
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::testing::{Topology, channel};
use tde_territories::TerritoriesModule;

async fn get(
    client: &mut TerritoryServiceClient<tde_runtime::auth::AuthChannel>,
    id: &str,
) -> pb::Territory {
    client
        .get_territory(pb::GetTerritoryRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .territory
        .unwrap()
}

#[tokio::test]
async fn a_write_on_one_replica_is_read_on_the_other() {
    let a = App::with_geography(Topology::Postgres).await;
    let b = a
        .env
        .start(vec![Arc::new(TerritoriesModule::default())])
        .await
        .unwrap();
    let mut on_a = a.territories();
    let mut on_b = TerritoryServiceClient::new(channel(b.local_addr).await);

    let t = a.register(pb::AuthorityKind::Commune, "42218").await;
    // Both replicas have it cached now.
    for _ in 0..3 {
        assert_eq!(
            get(&mut on_a, &t.id).await.stage,
            pb::Stage::Prospect as i32
        );
        assert_eq!(
            get(&mut on_b, &t.id).await.stage,
            pb::Stage::Prospect as i32
        );
    }

    for (mut writer, stage) in [
        (on_b.clone(), pb::Stage::Diagnostic),
        (on_a.clone(), pb::Stage::CharterSigned),
    ] {
        let written = writer
            .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                id: t.id.clone(),
                stage: stage as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .territory
            .unwrap();
        // The writer reads its own write at once; the other replica within moments.
        assert_eq!(get(&mut writer, &t.id).await, written);
        for mut client in [on_a.clone(), on_b.clone()] {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            loop {
                let seen = get(&mut client, &t.id).await;
                if seen == written {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "a stale territory outlived its notification"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    b.shutdown().await.unwrap();
}
