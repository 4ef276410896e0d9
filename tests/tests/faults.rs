//! The fault-injection suite of issue 14, with servers stopped and started under the test:
//!
//! - plans' own PostgreSQL (a cluster of the test) stopped while territories are registered,
//!   then started again: plans' read model gets every territory exactly once, nothing parked;
//! - the test's own NATS stopped for a minute under a load of 1,000 registrations: every event
//!   published once after the restart, in order per territory, and every territory in plans'
//!   read model.
//!
//! Plans runs as a process of its own, through `tde serve plans`'s start-up (the shipped
//! configuration overridden by `TDE_` variables): this test binary started again as
//! `child_process_serving_one_service`. Territories, the producer, runs in the test process
//! on the shared PostgreSQL, where the test can read its outbox.
//!
//! Outages last `TDE_TEST_FAULT_PG_OUTAGE_S` (default 60) and `TDE_TEST_FAULT_NATS_OUTAGE_S`
//! (default 60) seconds (`TDE_TEST_` variables are not settings of the services); the issue's
//! full durations: `TDE_TEST_FAULT_PG_OUTAGE_S=300 cargo test -p tde-e2e --test faults`. The
//! consumer is configured so that the retries of the code before the fix (`bus.max_deliver` =
//! 3 deliveries, 100 ms apart, a 2 s acknowledgement wait) are all spent within the first
//! seconds of the outage.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};
use tde::platform::{self, Role};
use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::AuthChannel;
use tde_runtime::bus::Namespace;
use tde_runtime::server::RunningPlatform;
use tde_runtime::testing::{
    KeySetServer, NatsServer, PostgresServer, TestDatabase, TestEnv, TestProcess, channel,
    free_port, national_token, nats_url, test_issuer, with_token,
};

/// The variable that makes this binary serve one service (see `child_process_serving_one_service`).
const SERVE_VAR: &str = "TDE_TEST_FAULTS_SERVE";

fn outage(var: &str, default_s: u64) -> Duration {
    let seconds = std::env::var(var)
        .ok()
        .map(|v| v.parse::<u64>().expect("a number of seconds"))
        .unwrap_or(default_s);
    Duration::from_secs(seconds)
}

fn pg_outage() -> Duration {
    outage("TDE_TEST_FAULT_PG_OUTAGE_S", 60)
}

fn nats_outage() -> Duration {
    outage("TDE_TEST_FAULT_NATS_OUTAGE_S", 60)
}

fn shipped(service: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../deploy/config/{service}.toml"))
}

/// Not a test: what a child process of the suite runs, as `tde serve <service>` does (settings
/// from `TDE_CONFIG` and the `TDE_` variables, start, wait for a signal). Returns at once in
/// an ordinary run.
#[test]
fn child_process_serving_one_service() {
    let Ok(service) = std::env::var(SERVE_VAR) else {
        return;
    };
    let role = <Role as clap::ValueEnum>::from_str(&service, true).expect("a service of tde");
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        let settings =
            platform::load_process_settings(None, &[role]).expect("the settings are accepted");
        let running = platform::start(settings, &[role])
            .await
            .expect("the service starts");
        let token = running.shutdown_token();
        tokio::spawn(async move {
            tde_runtime::server::shutdown_signal().await;
            token.cancel();
        });
        running.wait().await.expect("the service stops cleanly");
    });
}

/// `tde serve plans` in a process of its own, as on Kubernetes.
struct PlansProcess {
    process: TestProcess,
    log: PathBuf,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl PlansProcess {
    async fn start(
        database_url: &str,
        nats_url: &str,
        namespace: &str,
        idp: &KeySetServer,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("plans.log");
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("an address");
        let mut command =
            std::process::Command::new(std::env::current_exe().expect("the test binary"));
        command.args([
            "--exact",
            "child_process_serving_one_service",
            "--nocapture",
            "--test-threads=1",
        ]);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("TDE_")) {
            command.env_remove(key);
        }
        let metrics = format!("127.0.0.1:{}", free_port());
        let addr_text = addr.to_string();
        command
            .env(SERVE_VAR, "plans")
            .env("TDE_CONFIG", shipped("plans"));
        for (key, value) in [
            ("TDE_AUTH__JWKS_URL", idp.url.as_str()),
            ("TDE_AUTH__ISSUER", tde_runtime::auth::DEV_ISSUER),
            ("TDE_AUTH__AUDIENCE", tde_runtime::auth::DEV_AUDIENCE),
            ("TDE_DATABASE__URL", database_url),
            ("TDE_BUS__NATS_URL", nats_url),
            ("TDE_BUS__NAMESPACE", namespace),
            // Few, quick retries: the code before the fix spent them all in a second or two.
            ("TDE_BUS__MAX_DELIVER", "3"),
            ("TDE_BUS__RETRY_BACKOFF_MS", "100"),
            ("TDE_BUS__ACK_WAIT_MS", "2000"),
            ("TDE_SERVER__LISTEN", addr_text.as_str()),
            ("TDE_SERVER__SHUTDOWN_DRAIN_MS", "0"),
            ("TDE_TELEMETRY__METRICS_LISTEN", metrics.as_str()),
            ("TDE_TELEMETRY__LOG_FORMAT", "compact"),
            ("TDE_TELEMETRY__LOG_LEVEL", "warn"),
        ] {
            command.env(key, value);
        }
        let process = TestProcess::spawn(command, &log).expect("the plans process starts");
        let mut plans = Self {
            process,
            log,
            addr,
            _dir: dir,
        };
        plans.wait_serving().await;
        plans
    }

    async fn wait_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.assert_running();
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", self.addr))
                .expect("valid endpoint");
            if let Ok(ch) = endpoint.connect().await
                && common::health(with_token(ch, &national_token()), "").await
                    == Some(common::SERVING)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "plans not serving in time:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn assert_running(&mut self) {
        assert!(
            self.process.is_running(),
            "the plans process {} exited:\n{}",
            self.process.id(),
            self.log_text()
        );
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(8_000);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_string()
    }
}

/// Territories in the test process, on the shared PostgreSQL, the shipped geography loaded
/// (34,969 communes: enough codes for a thousand registrations).
struct Territories {
    env: TestEnv,
    platform: RunningPlatform,
    client: TerritoryServiceClient<AuthChannel>,
    codes: Vec<String>,
}

impl Territories {
    async fn start(nats_url: &str) -> Self {
        let env = TestEnv::postgres_with_nats(&["territories"], nats_url).await;
        let platform = env
            .start(platform::modules(&[Role::Territories]))
            .await
            .expect("territories starts");
        let ctx = platform.service("territories").expect("territories runs");
        let g = tde_territories::reference::shipped().expect("the vintage shipped with tde");
        tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
            .await
            .expect("the geography imports");
        let codes = g.communes.iter().map(|c| c.code.clone()).collect();
        let client = TerritoryServiceClient::new(channel(platform.local_addr).await);
        Self {
            env,
            platform,
            client,
            codes,
        }
    }

    fn namespace(&self) -> &str {
        &self.env.settings.bus.namespace
    }

    fn db(&self) -> &DatabaseConnection {
        &self
            .platform
            .service("territories")
            .expect("territories runs")
            .db
    }

    async fn register(&self, code: &str) -> String {
        register_with(self.client.clone(), code).await
    }

    /// Registers the communes `codes`, a few at a time; every tenth then moves to the
    /// diagnostic stage (a second event of the same territory, whose order counts).
    async fn register_all(&self, codes: &[String]) -> Vec<String> {
        let mut ids = Vec::new();
        for chunk in codes.chunks(8) {
            let mut calls = tokio::task::JoinSet::new();
            for code in chunk {
                let code = code.clone();
                let client = self.client.clone();
                calls.spawn(async move {
                    let id = register_with(client, &code).await;
                    (code, id)
                });
            }
            let mut registered = calls.join_all().await;
            registered.sort();
            for (_, id) in registered {
                if ids.len() % 10 == 9 {
                    let mut client = self.client.clone();
                    client
                        .advance_territory_stage(pb::AdvanceTerritoryStageRequest {
                            id: id.clone(),
                            stage: pb::Stage::Diagnostic as i32,
                            etag: String::new(),
                            reason: "rencontre du territoire".into(),
                        })
                        .await
                        .expect("advanced");
                }
                ids.push(id);
            }
        }
        ids
    }
}

async fn register_with(mut client: TerritoryServiceClient<AuthChannel>, code: &str) -> String {
    client
        .register_territory(pb::RegisterTerritoryRequest {
            kind: pb::AuthorityKind::Commune as i32,
            official_code: code.to_string(),
            request_id: format!("faults-{code}"),
        })
        .await
        .expect("registered")
        .into_inner()
        .territory
        .expect("a territory")
        .id
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("the count is read")
        .expect("one row");
    row.try_get_by_index::<i64>(0).expect("a count")
}

/// What plans' database holds: territories of its read model, events in its inbox, dead
/// letters. `None` while it cannot be reached.
async fn plans_counts(url: &str) -> Option<(i64, i64, i64)> {
    let db = Database::connect(url).await.ok()?;
    let read = async {
        let territories = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT (SELECT count(*) FROM territories), (SELECT count(*) FROM inbox_events), (SELECT count(*) FROM dead_letters)",
            ))
            .await
            .ok()??;
        Some((
            territories.try_get_by_index::<i64>(0).ok()?,
            territories.try_get_by_index::<i64>(1).ok()?,
            territories.try_get_by_index::<i64>(2).ok()?,
        ))
    }
    .await;
    let _ = db.close().await;
    read
}

/// Waits until plans' read model holds `territories` territories (at most `within`), then
/// returns its counts.
async fn wait_for_read_model(
    plans: &mut PlansProcess,
    url: &str,
    territories: i64,
    within: Duration,
) -> (i64, i64, i64) {
    let deadline = Instant::now() + within;
    let mut last = None;
    loop {
        plans.assert_running();
        if let Some(counts) = plans_counts(url).await {
            if counts.0 >= territories {
                return counts;
            }
            last = Some(counts);
        }
        assert!(
            Instant::now() < deadline,
            "plans' read model has {last:?} (territories, inbox, dead letters), not {territories} territories, after {within:?}:\n{}",
            plans.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Plans' PostgreSQL stopped while `n` territories are registered, for `pg_outage()`, then
/// started again: each reaches plans' read model once, nothing is parked.
async fn consumer_database_stopped_while_events_arrive(n: usize) {
    let started = Instant::now();
    let idp = KeySetServer::start(test_issuer().jwks_json()).await;
    let territories = Territories::start(nats_url()).await;
    let mut cluster = PostgresServer::start();
    let plans_url = cluster.create_database("plans").await;
    let mut plans =
        PlansProcess::start(&plans_url, nats_url(), territories.namespace(), &idp).await;

    // The way works before the fault: one territory reaches plans.
    let first = territories.register(&territories.codes[0]).await;
    wait_for_read_model(&mut plans, &plans_url, 1, Duration::from_secs(60)).await;

    cluster.stop();
    let outage_started = Instant::now();
    let codes = &territories.codes[1..=n];
    let mut ids = vec![first];
    for code in codes {
        ids.push(territories.register(code).await);
    }
    // Every event is on the stream, and so offered to plans, during the outage.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tde_runtime::outbox::backlog(territories.db())
        .await
        .expect("the backlog is read")
        .events
        > 0
    {
        assert!(Instant::now() < deadline, "territories' events published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The outage itself (the fault, not an assertion), with the consumer alive throughout.
    while outage_started.elapsed() < pg_outage() {
        plans.assert_running();
        assert!(
            plans_counts(&plans_url).await.is_none(),
            "the database is down"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    cluster.resume();
    let resumed = Instant::now();

    let expected = i64::try_from(ids.len()).expect("a count");
    let (read_model, inbox, dead_letters) = wait_for_read_model(
        &mut plans,
        &plans_url,
        expected,
        Duration::from_secs(120) + Duration::from_millis(100 * n as u64),
    )
    .await;
    let caught_up = resumed.elapsed();
    // Nothing arrives later: the stream holds exactly these events, each processed once.
    let published = count(territories.db(), "SELECT count(*) FROM outbox_events").await;
    let db = Database::connect(&plans_url)
        .await
        .expect("plans' database is back");
    let known = count(&db, "SELECT count(*) FROM territories").await;
    let inbox_distinct = count(
        &db,
        "SELECT count(DISTINCT (consumer, event_id)) FROM inbox_events",
    )
    .await;
    let listed: Vec<String> = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT id FROM territories",
        ))
        .await
        .expect("the read model is read")
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("an id"))
        .collect();
    let listed: HashSet<String> = listed.into_iter().collect();
    let missing = ids.iter().filter(|id| !listed.contains(*id)).count();
    eprintln!(
        "faults: plans' PostgreSQL stopped {:?} while {n} territories were registered: {published} events published, read model {known} (expected {expected}), inbox {inbox} ({inbox_distinct} distinct), dead letters {dead_letters}, missing {missing}; caught up {caught_up:?} after the restart; test {:?}",
        pg_outage(),
        started.elapsed()
    );
    assert_eq!(read_model, expected);
    assert_eq!(known, expected, "each territory once");
    assert_eq!(missing, 0, "none lost");
    assert_eq!(inbox, published, "each event processed, once");
    assert_eq!(inbox_distinct, inbox);
    assert_eq!(dead_letters, 0, "nothing parked");
    plans.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_postgres_stopped_while_one_territory_is_registered() {
    consumer_database_stopped_while_events_arrive(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_postgres_stopped_while_a_thousand_territories_are_registered() {
    consumer_database_stopped_while_events_arrive(1_000).await;
}

/// The messages of the stream `name`, in stream order: (subject, Nats-Msg-Id, ce-subject).
async fn stream_messages(nats: &str, name: &str) -> Vec<(String, String, String)> {
    let client = async_nats::connect(nats).await.expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(name).await.expect("the stream exists");
    let info = stream.get_info().await.expect("the stream's state");
    let mut messages = Vec::new();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let m = stream
            .get_raw_message(seq)
            .await
            .expect("a message of the stream");
        let header = |name: &str| {
            m.headers
                .get(name)
                .map(|v| v.as_str().to_string())
                .unwrap_or_default()
        };
        messages.push((
            m.subject.to_string(),
            header("Nats-Msg-Id"),
            header("ce-subject"),
        ));
    }
    assert_eq!(messages.len() as u64, info.state.messages, "no gap");
    messages
}

/// NATS stopped for `nats_outage()` under a load of 1,000 registrations (a tenth of the
/// territories also moving to diagnostic): every event published once after the restart, in
/// the order of the outbox for each territory, and every territory in plans' read model once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_stopped_for_a_minute_under_a_thousand_registrations() {
    const N: usize = 1_000;
    let started = Instant::now();
    let mut nats = NatsServer::start();
    let idp = KeySetServer::start(test_issuer().jwks_json()).await;
    let territories = std::sync::Arc::new(Territories::start(&nats.url()).await);
    let plans_db = TestDatabase::create().await;
    let mut plans =
        PlansProcess::start(&plans_db.url, &nats.url(), territories.namespace(), &idp).await;

    // The load runs throughout; NATS goes away after its first tenth.
    let load = {
        let territories = territories.clone();
        tokio::spawn(async move {
            let codes = territories.codes[..N].to_vec();
            territories.register_all(&codes).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(territories.db(), "SELECT count(*) FROM outbox_events").await < (N / 10) as i64 {
        assert!(Instant::now() < deadline, "the load started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nats.stop();
    let stopped_at = count(territories.db(), "SELECT count(*) FROM outbox_events").await;
    let outage_started = Instant::now();
    while outage_started.elapsed() < nats_outage() {
        plans.assert_running();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let written_during = count(territories.db(), "SELECT count(*) FROM outbox_events").await;
    nats.resume();
    let ids = load.await.expect("the load completes");
    assert_eq!(ids.len(), N);

    // Published: the outbox drains.
    let deadline = Instant::now() + Duration::from_secs(120);
    while tde_runtime::outbox::backlog(territories.db())
        .await
        .expect("the backlog is read")
        .events
        > 0
    {
        assert!(
            Instant::now() < deadline,
            "the outbox drained after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (read_model, inbox, dead_letters) = wait_for_read_model(
        &mut plans,
        &plans_db.url,
        N as i64,
        Duration::from_secs(180),
    )
    .await;

    // Once each, on the stream, in the order of the outbox per territory.
    let ns = Namespace::new(territories.namespace());
    let messages = stream_messages(&nats.url(), &ns.stream("territories").name).await;
    let outbox: Vec<(String, String)> = territories
        .db()
        .query_all_raw(Statement::from_string(
            territories.db().get_database_backend(),
            "SELECT event_id, aggregate_id FROM outbox_events ORDER BY seq",
        ))
        .await
        .expect("the outbox is read")
        .iter()
        .map(|r| {
            (
                r.try_get_by_index::<String>(0).expect("an id"),
                r.try_get_by_index::<String>(1).expect("an aggregate"),
            )
        })
        .collect();
    let distinct: HashSet<&str> = messages.iter().map(|(_, id, _)| id.as_str()).collect();
    let duplicated = messages.len() - distinct.len();
    let published: HashSet<&str> = outbox.iter().map(|(id, _)| id.as_str()).collect();
    let lost = published.difference(&distinct).count();
    let per_aggregate = |events: Vec<(&str, &str)>| {
        let mut by: HashMap<String, Vec<String>> = HashMap::new();
        for (id, aggregate) in events {
            by.entry(aggregate.to_string())
                .or_default()
                .push(id.to_string());
        }
        by
    };
    let in_outbox = per_aggregate(
        outbox
            .iter()
            .map(|(id, a)| (id.as_str(), a.as_str()))
            .collect(),
    );
    let on_stream = per_aggregate(
        messages
            .iter()
            .map(|(_, id, a)| (id.as_str(), a.as_str()))
            .collect(),
    );
    let out_of_order = in_outbox
        .iter()
        .filter(|(a, ids)| on_stream.get(*a) != Some(*ids))
        .count();
    let plans_conn = Database::connect(&plans_db.url)
        .await
        .expect("plans' database");
    let known = count(&plans_conn, "SELECT count(*) FROM territories").await;
    let _ = plans_conn.close().await;
    eprintln!(
        "faults: NATS stopped {:?} under {N} registrations ({stopped_at} events before the stop, {} written while it was down): {} in the outbox, {} messages on the stream ({} distinct Nats-Msg-Id), duplicated {duplicated}, lost {lost}, territories out of order {out_of_order}; plans' read model {known}, inbox {inbox}, dead letters {dead_letters}; test {:?}",
        nats_outage(),
        written_during - stopped_at,
        outbox.len(),
        messages.len(),
        distinct.len(),
        started.elapsed()
    );
    assert!(
        written_during > stopped_at,
        "registrations went on while NATS was down"
    );
    assert_eq!(
        messages.len(),
        outbox.len(),
        "every event on the stream once"
    );
    assert_eq!(duplicated, 0);
    assert_eq!(lost, 0);
    assert_eq!(out_of_order, 0, "in order per territory");
    assert_eq!(read_model, N as i64);
    assert_eq!(known, N as i64);
    assert_eq!(inbox, outbox.len() as i64, "each event processed once");
    assert_eq!(dead_letters, 0);
    plans.assert_running();
}
