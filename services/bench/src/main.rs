//! `tde-bench`: the benchmarks documented in the README, a binary of their own so that the
//! test harness they run on never ships in `tde`. Each prints its figure beside a reference measured
//! in the same run, on the same machine, by the same load generator:
//!
//! - `get-territory`: GetTerritory on PostgreSQL at 64 requests in flight over a socket, next
//!   to a bare tonic echo server;
//! - `import`: the full reference geography into PostgreSQL, next to COPY of the same rows
//!   into bare tables;
//! - `events`: RegisterTerritory to event received by a JetStream consumer, next to bare
//!   JetStream publish-to-consume of as many messages;
//! - `reminders`: 10,000 due reminders sent by the notifications dispatcher to a local SMTP
//!   server, next to a bare SMTP client feeding the same server;
//! - `meetings`: a 30-day window of the national calendar of steering meetings (420,000
//!   seeded), page by page, next to the bare SQL of the same pages;
//! - `approvals`: 200 subsidy approvals at once against one envelope, next to a bare loop of
//!   the same conditional `UPDATE … RETURNING`;
//! - `dashboard`: the national subsidies dashboard over 35,000 territories × 3 years (≈ 400,000
//!   ledger entries), next to the bare SQL of its aggregates.
//!
//! They use the test harness for PostgreSQL and NATS (fresh database, unique namespace), so
//! they run wherever the test suite runs. Build them in release mode (see the README).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Subcommand;
use hdrhistogram::Histogram;
use sea_orm::ConnectionTrait;
use tde::platform::Role;

/// The bare echo service, reference point of the gRPC benchmarks (never served by tde).
mod echo {
    tonic::include_proto!("tde.bench.v1");
}

use tde_proto::territories::v1 as pb;
use tde_proto::territories::v1::territory_service_client::TerritoryServiceClient;
use tde_runtime::auth::{AuthChannel, Bearer, TokenSpec};
use tde_runtime::bus::{ConsumerSpec, Envelope, EventBus, JetStreamBus, Namespace};
use tde_runtime::testing::{
    TestEnv, Topology, channel, nats_url, raw_channel, token, unique_name, with_token,
};

mod matching;
mod meetings;
mod reminders;
mod subsidies;

#[derive(Debug, clap::Parser)]
#[command(
    name = "tde-bench",
    version,
    about = "tde's benchmarks: each figure next to a reference measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// GetTerritory throughput and latency on PostgreSQL, next to a bare tonic echo server.
    GetTerritory {
        /// Requests in flight.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections the requests share.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// Measured seconds per target (after one second of warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Import of the full reference geography into PostgreSQL, next to COPY of the same rows.
    Import {
        /// A vintage's folder; the 2026 vintage shipped with tde when not given.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// RegisterTerritory to event consumed from JetStream, next to bare JetStream.
    Events {
        /// A vintage's folder; the 2026 vintage shipped with tde when not given.
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 5_000)]
        registrations: usize,
        /// Registrations in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Due reminders sent through the notifications dispatcher, next to a bare SMTP client.
    Reminders {
        #[arg(long, default_value_t = 10_000)]
        reminders: usize,
        /// Messages in flight (the dispatcher's concurrency and the bare client's).
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// SMTP connections kept open.
        #[arg(long, default_value_t = 8)]
        pool: u32,
    },
    /// RankProviders of one need among 3,000 providers (gRPC), next to the bare SQL filter.
    Rank {
        #[arg(long, default_value_t = 3_000)]
        providers: usize,
        /// Measured calls, after 20 of warm-up.
        #[arg(long, default_value_t = 500)]
        calls: usize,
        /// Every excluded provider listed one by one (those outside the area too).
        #[arg(long)]
        all_exclusions: bool,
    },
    /// The optimal assignment of 10,000 needs over 3,000 providers, next to greedy.
    Assign {
        #[arg(long, default_value_t = 10_000)]
        needs: usize,
        #[arg(long, default_value_t = 3_000)]
        providers: usize,
        /// Share of providers working nationally, in percent.
        #[arg(long, default_value_t = 2)]
        national_percent: usize,
        /// Also solve the same input with a general min-cost-flow crate (much slower) and
        /// check both totals agree.
        #[arg(long)]
        with_reference_solver: bool,
    },
    /// 200 subsidy approvals at once against one envelope, next to bare UPDATE … RETURNING.
    Approvals {
        #[arg(long, default_value_t = 200)]
        approvals: usize,
        /// Rounds, each on a fresh envelope; the first is a warm-up.
        #[arg(long, default_value_t = 6)]
        rounds: usize,
    },
    /// GetDashboard over 35,000 territories × 3 years with their ledgers, next to bare SQL.
    Dashboard {
        #[arg(long, default_value_t = 35_000)]
        territories: u32,
        /// Measured calls, after 10 of warm-up.
        #[arg(long, default_value_t = 200)]
        calls: usize,
    },
    /// ListSteeringMeetings over a 30-day window at national scale, next to bare SQL.
    Meetings {
        /// Territories seeded, each with 3 plan years of 4 meetings.
        #[arg(long, default_value_t = 35_000)]
        territories: u32,
        /// Walks of the window; the first is a warm-up.
        #[arg(long, default_value_t = 6)]
        rounds: usize,
        #[arg(long, default_value_t = 100)]
        page_size: i32,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    use clap::Parser as _;
    match run(Cli::parse().command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: BenchCommand) -> anyhow::Result<()> {
    // Benchmarks report; the servers they start stay quiet.
    tde_runtime::telemetry::init(&tde_runtime::config::TelemetrySettings {
        log_level: "warn".into(),
        ..Default::default()
    });
    match command {
        BenchCommand::GetTerritory {
            concurrency,
            connections,
            seconds,
        } => get_territory(concurrency, connections, Duration::from_secs(seconds)).await,
        BenchCommand::Import { dir, runs } => import(dir.as_deref(), runs).await,
        BenchCommand::Events {
            dir,
            registrations,
            concurrency,
        } => events(dir.as_deref(), registrations, concurrency).await,
        BenchCommand::Reminders {
            reminders,
            concurrency,
            pool,
        } => reminders::run(reminders, concurrency, pool).await,
        BenchCommand::Meetings {
            territories,
            rounds,
            page_size,
        } => meetings::run(territories, rounds.max(2), page_size).await,
        BenchCommand::Approvals { approvals, rounds } => {
            subsidies::approvals(approvals.max(1), rounds.max(2)).await
        }
        BenchCommand::Dashboard { territories, calls } => {
            subsidies::dashboard(territories, calls.max(1)).await
        }
        BenchCommand::Rank {
            providers,
            calls,
            all_exclusions,
        } => matching::rank(providers, calls.max(1), all_exclusions).await,
        BenchCommand::Assign {
            needs,
            providers,
            national_percent,
            with_reference_solver,
        } => {
            matching::assign(
                needs,
                providers,
                national_percent.min(100),
                with_reference_solver,
            )
            .await
        }
    }
}

/// What a load run measured.
pub struct LoadStats {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

impl LoadStats {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Adds another measurement of the same target.
    fn merge(mut self, other: LoadStats) -> Self {
        self.requests += other.requests;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        let _ = self.latency.add(&other.latency);
        self
    }

    fn micros(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn row(&self, name: &str) -> Vec<String> {
        vec![
            name.to_string(),
            format!("{:.0}", self.per_second()),
            format!("{:.2}", self.micros(0.50)),
            format!("{:.2}", self.micros(0.99)),
            self.errors.to_string(),
        ]
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// `concurrency` workers call `call(worker)` back to back for `duration` after a warm-up
/// second; latency in microseconds.
pub async fn drive<F, Fut>(concurrency: usize, duration: Duration, call: F) -> LoadStats
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let warmup = Instant::now() + Duration::from_secs(1);
    let end = warmup + duration;
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let success = call(worker).await;
                if started >= warmup {
                    if success {
                        ok += 1;
                        let _ = hist.record(started.elapsed().as_micros().max(1) as u64);
                    } else {
                        errors += 1;
                    }
                }
            }
            (hist, ok, errors)
        }));
    }
    let mut latency = histogram();
    let (mut requests, mut errors) = (0, 0);
    for t in tasks {
        if let Ok((h, ok, err)) = t.await {
            let _ = latency.add(h);
            requests += ok;
            errors += err;
        }
    }
    LoadStats {
        requests,
        errors,
        elapsed: duration,
        latency,
    }
}

#[derive(Default)]
struct Echo;

#[tonic::async_trait]
impl echo::echo_service_server::EchoService for Echo {
    async fn echo(
        &self,
        request: tonic::Request<echo::EchoRequest>,
    ) -> Result<tonic::Response<echo::EchoResponse>, tonic::Status> {
        Ok(tonic::Response::new(echo::EchoResponse {
            message: request.into_inner().message,
        }))
    }
}

/// A bare tonic server with the echo service, on a free port.
pub async fn start_echo() -> anyhow::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(echo::echo_service_server::EchoServiceServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    Ok(addr)
}

/// `n` connections to `addr`, each sending `token` (none: no credentials).
async fn channels(addr: std::net::SocketAddr, n: usize, token: Option<&str>) -> Vec<AuthChannel> {
    let mut out = Vec::new();
    for _ in 0..n.max(1) {
        let raw = raw_channel(addr).await;
        out.push(match token {
            Some(token) => with_token(raw, token),
            None => tde_runtime::auth::client::with_token(raw, Bearer::none()),
        });
    }
    out
}

/// A second server of territories on the database of `env`, with `settings`.
async fn replica(
    env: &TestEnv,
    settings: tde_runtime::config::Settings,
) -> anyhow::Result<tde_runtime::server::RunningPlatform> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(tde_runtime::server::start(
        settings,
        tde::platform::modules(&[Role::Territories]),
        Some(env.bus.clone()),
        Some(listener),
    )
    .await?)
}

fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    println!("{}", tde::output::table(header, rows));
}

async fn start_territories_on_postgres()
-> anyhow::Result<(TestEnv, tde_runtime::server::RunningPlatform)> {
    let env = TestEnv::new(Topology::Postgres, &["territories"]).await;
    let platform = env
        .start(tde::platform::modules(&[Role::Territories]))
        .await?;
    Ok((env, platform))
}

async fn get_territory(
    concurrency: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<()> {
    let (env, platform) = start_territories_on_postgres().await?;
    let ctx = platform
        .service("territories")
        .context("territories runs")?;
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../territories/tests/fixtures/geo2026");
    let g = tde_territories::api::geography::read_dir("2026", &fixture)?;
    tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut ids = Vec::new();
    let mut client = TerritoryServiceClient::new(channel(platform.local_addr).await);
    for commune in g.communes.iter().take(200) {
        let t = client
            .register_territory(pb::RegisterTerritoryRequest {
                kind: pb::AuthorityKind::Commune as i32,
                official_code: commune.code.clone(),
                request_id: String::new(),
            })
            .await?
            .into_inner();
        ids.push(t.territory.context("territory")?.id);
    }
    let ids = Arc::new(ids);
    // A dashboard's token: reads only, reused until it expires as clients do.
    let read_token = token(
        &TokenSpec::new(tde_runtime::auth::Role::National, "bench-dashboard")
            .client("bench")
            .scopes(&[tde_runtime::auth::scope::TERRITORIES_READ]),
    );

    let echo_channels = Arc::new(channels(start_echo().await?, connections, None).await);
    println!("echo: {concurrency} in flight over {connections} connections for {duration:?}…");
    let echo_stats = drive(concurrency, duration, move |w| {
        let mut c = echo::echo_service_client::EchoServiceClient::new(
            echo_channels[w % echo_channels.len()].clone(),
        );
        async move {
            c.echo(echo::EchoRequest {
                message: "bonjour".into(),
            })
            .await
            .is_ok()
        }
    })
    .await;

    // A second server on the same database with authentication off: the same calls, without
    // token checks, policy, rate limit or audit. The two are measured in alternating rounds,
    // so that drifts of the machine (CPU steal, caches) weigh on both alike.
    let mut open_settings = env.settings.clone();
    open_settings.auth.enabled = false;
    let open_platform = replica(&env, open_settings).await?;
    let secured_channels =
        Arc::new(channels(platform.local_addr, connections, Some(&read_token)).await);
    let open_channels = Arc::new(channels(open_platform.local_addr, connections, None).await);
    const ROUNDS: u32 = 4;
    let slice = duration / ROUNDS;
    println!(
        "GetTerritory on PostgreSQL, read cache on, authentication on and off in {ROUNDS} alternating rounds: {concurrency} in flight over {connections} connections for {duration:?} each…"
    );
    let (mut secured, mut open): (Option<LoadStats>, Option<LoadStats>) = (None, None);
    for round in 0..ROUNDS {
        for auth in [round % 2 == 0, round % 2 == 1] {
            let (target, chans) = if auth {
                (&mut secured, secured_channels.clone())
            } else {
                (&mut open, open_channels.clone())
            };
            let stats = load_get_territory(concurrency, slice, chans, ids.clone()).await;
            *target = Some(match target.take() {
                Some(before) => before.merge(stats),
                None => stats,
            });
        }
    }
    let authenticated = secured.context("measured")?;
    let open = open.context("measured")?;

    // A third on the same database with its cache off: every read is a query.
    let mut uncached_settings = env.settings.clone();
    uncached_settings.cache.enabled = false;
    let uncached_platform = replica(&env, uncached_settings).await?;
    println!(
        "GetTerritory on PostgreSQL, read cache off, authentication on: {concurrency} in flight over {connections} connections for {duration:?}…"
    );
    let uncached = load_get_territory(
        concurrency,
        duration,
        Arc::new(channels(uncached_platform.local_addr, connections, Some(&read_token)).await),
        ids,
    )
    .await;

    print_table(
        &["target", "requests/s", "p50 ms", "p99 ms", "errors"],
        vec![
            echo_stats.row("bare tonic echo (reference)"),
            open.row("GetTerritory, cache on, authentication off (reference)"),
            authenticated.row("GetTerritory, cache on, authentication on (default)"),
            uncached.row("GetTerritory, cache off, authentication on"),
        ],
    );
    println!(
        "GetTerritory with authentication: {:.0} requests/s = {:.1}% of the same without (target ≥ 85%)",
        authenticated.per_second(),
        authenticated.per_second() / open.per_second() * 100.0,
    );
    for (what, stats) in [("cache on", &authenticated), ("cache off", &uncached)] {
        println!(
            "GetTerritory ({what}, authenticated): {:.0} requests/s = {:.1}% of the echo (target ≥ 35%), p99 {:.2} ms (target ≤ 10 ms)",
            stats.per_second(),
            stats.per_second() / echo_stats.per_second() * 100.0,
            stats.micros(0.99)
        );
    }
    uncached_platform.shutdown().await?;
    open_platform.shutdown().await?;
    platform.shutdown().await?;
    Ok(())
}

async fn load_get_territory(
    concurrency: usize,
    duration: Duration,
    channels: Arc<Vec<AuthChannel>>,
    ids: Arc<Vec<String>>,
) -> LoadStats {
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    drive(concurrency, duration, move |w| {
        let mut c = TerritoryServiceClient::new(channels[w % channels.len()].clone());
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = ids[n % ids.len()].clone();
        async move {
            c.get_territory(pb::GetTerritoryRequest { id })
                .await
                .is_ok()
        }
    })
    .await
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The geography of a benchmark: `dir`, or the vintage shipped with tde.
fn geography(
    dir: Option<&std::path::Path>,
) -> anyhow::Result<tde_territories::domain::geography::Geography> {
    match dir {
        Some(dir) => tde_territories::reference::read_dir(dir, None),
        None => tde_territories::reference::shipped(),
    }
}

async fn import(dir: Option<&std::path::Path>, runs: usize) -> anyhow::Result<()> {
    use tde_territories::domain::names::normalize;
    let started = Instant::now();
    let g = geography(dir)?;
    let parse = started.elapsed();
    println!(
        "{} communes, {} EPCI, {} départements, {} régions (parsed in {:.3} s)",
        g.communes.len(),
        g.epcis.len(),
        g.departements.len(),
        g.regions.len(),
        parse.as_secs_f64()
    );

    let mut rows = Vec::new();
    for run in 1..=runs.max(1) {
        let (_env, platform) = start_territories_on_postgres().await?;
        let ctx = platform
            .service("territories")
            .context("territories runs")?;

        // Reference: the same rows, as CSV, COPY'd into bare tables (no keys, no indexes).
        let db = &ctx.db;
        for ddl in [
            "CREATE TABLE copy_regions (code text, name text, zone text)",
            "CREATE TABLE copy_departements (code text, name text, region_code text, zone text)",
            "CREATE TABLE copy_communes (code text, name text, name_search text, departement_code text, region_code text, zone text, population bigint, siren text, epci_siren text, postal_codes text, former_codes text)",
            "CREATE TABLE copy_epcis (siren text, name text, kind text, population bigint, departement_code text, region_code text, zone text)",
        ] {
            db.execute_unprepared(ddl).await?;
        }
        let mut regions = String::new();
        for r in &g.regions {
            regions += &format!("{},{},{}\n", r.code, csv_field(&r.name), r.zone.as_str());
        }
        let mut departements = String::new();
        for d in &g.departements {
            departements += &format!(
                "{},{},{},{}\n",
                d.code,
                csv_field(&d.name),
                d.region_code,
                d.zone.as_str()
            );
        }
        let mut communes = String::new();
        for c in &g.communes {
            communes += &format!(
                "{},{},{},{},{},{},{},{},{},{},{}\n",
                c.code,
                csv_field(&c.name),
                csv_field(&normalize(&c.name)),
                c.departement_code,
                c.region_code,
                c.zone.as_str(),
                c.population,
                c.siren,
                c.epci_siren.clone().unwrap_or_default(),
                csv_field(&c.postal_codes.join(",")),
                csv_field(&c.former_codes.join(","))
            );
        }
        let mut epcis = String::new();
        for e in &g.epcis {
            epcis += &format!(
                "{},{},{},{},{},{},{}\n",
                e.siren,
                csv_field(&e.name),
                e.kind,
                e.population,
                e.departement_code,
                e.region_code,
                e.zone.as_str()
            );
        }
        let pool = db.get_postgres_connection_pool();
        let copy_started = Instant::now();
        let mut conn = pool.acquire().await?;
        for (table, data) in [
            ("copy_regions", &regions),
            ("copy_departements", &departements),
            ("copy_communes", &communes),
            ("copy_epcis", &epcis),
        ] {
            let mut copy = conn
                .copy_in_raw(&format!("COPY {table} FROM STDIN (FORMAT csv)"))
                .await?;
            copy.send(data.as_bytes()).await?;
            copy.finish().await?;
        }
        drop(conn);
        let copy = copy_started.elapsed();

        let import_started = Instant::now();
        tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let imported = import_started.elapsed();
        rows.push((run, copy, imported));
        platform.shutdown().await?;
    }
    let best = |f: fn(&(usize, Duration, Duration)) -> Duration| {
        rows.iter().map(f).min().unwrap_or_default()
    };
    print_table(
        &[
            "run",
            "COPY, bare tables (reference) s",
            "tde import s",
            "ratio",
        ],
        rows.iter()
            .map(|(run, copy, imported)| {
                vec![
                    run.to_string(),
                    format!("{:.3}", copy.as_secs_f64()),
                    format!("{:.3}", imported.as_secs_f64()),
                    format!("{:.2}×", imported.as_secs_f64() / copy.as_secs_f64()),
                ]
            })
            .collect(),
    );
    let (copy, imported) = (best(|r| r.1), best(|r| r.2));
    println!(
        "import of the 2026 geography: {:.3} s (best of {}) = {:.2}× COPY's {:.3} s (target ≤ 3×); parsing the JSON adds {:.3} s",
        imported.as_secs_f64(),
        rows.len(),
        imported.as_secs_f64() / copy.as_secs_f64(),
        copy.as_secs_f64(),
        parse.as_secs_f64()
    );
    Ok(())
}

/// Receives `count` events and records, for each, the time from its `ce-time` (for tde: the
/// commit of the change, written in the same transaction) to its arrival.
async fn consume_latencies(
    mut sub: Box<dyn tde_runtime::bus::Subscription>,
    count: usize,
) -> Histogram<u64> {
    let mut hist = histogram();
    for _ in 0..count {
        let Some(Ok(d)) = sub.next().await else { break };
        let latency = (chrono::Utc::now() - d.envelope.time)
            .num_microseconds()
            .unwrap_or(0)
            .max(1) as u64;
        let _ = hist.record(latency);
        let _ = d.ack().await;
    }
    hist
}

async fn events(
    dir: Option<&std::path::Path>,
    registrations: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let (_env, platform) = start_territories_on_postgres().await?;
    let ctx = platform
        .service("territories")
        .context("territories runs")?;
    let g = geography(dir)?;
    tde_territories::api::geography::import(&ctx.db, &ctx.outbox, &g)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let registrations = registrations.min(g.communes.len());
    let codes: Arc<Vec<String>> = Arc::new(
        g.communes
            .iter()
            .take(registrations)
            .map(|c| c.code.clone())
            .collect(),
    );

    // Reference: bare JetStream, the same number of messages published and consumed.
    let bus = JetStreamBus::connect(nats_url(), Duration::from_secs(5)).await?;
    let reference = {
        let ns = Namespace::new(unique_name("ref"));
        let stream = ns.stream("bench");
        bus.ensure_stream(&stream).await?;
        let sub = bus
            .subscribe(&ConsumerSpec {
                stream: stream.name.clone(),
                durable_name: ns.durable("ref"),
                filter_subjects: vec![],
                max_deliver: 3,
                ack_wait: Duration::from_secs(30),
            })
            .await?;
        let started = Instant::now();
        let consumer = tokio::spawn(consume_latencies(sub, registrations));
        for chunk in (0..registrations).collect::<Vec<_>>().chunks(64) {
            let batch: Vec<Envelope> = chunk
                .iter()
                .map(|i| Envelope {
                    id: format!("ref-{i}"),
                    subject: ns.subject("bench", "thing.happened"),
                    event_type: "tde.bench.v1.Thing".into(),
                    source: "/tde/bench".into(),
                    time: chrono::Utc::now(),
                    aggregate_id: i.to_string(),
                    payload: vec![0u8; 400].into(),
                    traceparent: None,
                })
                .collect();
            bus.publish(&batch)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let hist = consumer.await?;
        (registrations as f64 / started.elapsed().as_secs_f64(), hist)
    };

    let ns = ctx.namespace.clone();
    let stream = ns.stream("territories");
    bus.ensure_stream(&stream).await?;
    let sub = bus
        .subscribe(&ConsumerSpec {
            stream: stream.name.clone(),
            durable_name: ns.durable("bench"),
            filter_subjects: vec![ns.subject("territories", "territory.registered")],
            max_deliver: 3,
            ack_wait: Duration::from_secs(30),
        })
        .await?;
    let channel = channel(platform.local_addr).await;
    let started = Instant::now();
    let consumer = tokio::spawn(consume_latencies(sub, registrations));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (codes, next, channel) = (codes.clone(), next.clone(), channel.clone());
        workers.push(tokio::spawn(async move {
            let mut client = TerritoryServiceClient::new(channel);
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(code) = codes.get(i) else { break };
                let r = client
                    .register_territory(pb::RegisterTerritoryRequest {
                        kind: pb::AuthorityKind::Commune as i32,
                        official_code: code.clone(),
                        request_id: String::new(),
                    })
                    .await;
                if r.is_err() {
                    errors += 1;
                }
            }
            errors
        }));
    }
    let mut errors = 0;
    for w in workers {
        errors += w.await?;
    }
    let hist = consumer.await?;
    let rate = registrations as f64 / started.elapsed().as_secs_f64();
    let p99 = |h: &Histogram<u64>| h.value_at_quantile(0.99) as f64 / 1000.0;
    print_table(
        &["target", "events/s", "p50 ms", "p99 ms"],
        vec![
            vec![
                "bare JetStream publish → consume (reference)".into(),
                format!("{:.0}", reference.0),
                format!("{:.2}", reference.1.value_at_quantile(0.5) as f64 / 1000.0),
                format!("{:.2}", p99(&reference.1)),
            ],
            vec![
                "RegisterTerritory → outbox → JetStream → consumer".into(),
                format!("{rate:.0}"),
                format!("{:.2}", hist.value_at_quantile(0.5) as f64 / 1000.0),
                format!("{:.2}", p99(&hist)),
            ],
        ],
    );
    println!(
        "registrations: {rate:.0}/s (target ≥ 1,000/s), commit-to-consume p99 {:.2} ms (target ≤ 100 ms), {errors} errors, {} events received",
        p99(&hist),
        hist.len()
    );
    platform.shutdown().await?;
    Ok(())
}
