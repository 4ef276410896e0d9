//! The test harness: real PostgreSQL and NATS JetStream, a database and a namespace of
//! streams and subjects per test, and servers started in-process on port 0 through the same
//! start-up path as `main` (`server::start`).
//!
//! PostgreSQL is taken from `TDE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`) and NATS from `TDE_TEST_NATS_URL` (default
//! `nats://127.0.0.1:4222`). Where nothing answers there, throwaway instances are started from
//! the installed binaries in temp dirs on free ports; they die with the test process.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng as _;
use sea_orm::{ConnectionTrait, Database};
use tokio::net::TcpListener;

use crate::auth::{AuthChannel, Bearer, DEV_AUDIENCE, DEV_ISSUER, LocalIssuer, Role, TokenSpec};
use crate::bus::{EventBus, JetStreamBus, MemoryBus};
use crate::config::{BusKind, LogFormat, Settings};
use crate::server::{RunningPlatform, ServiceModule, StartError};

/// A random lowercase name, for databases and namespaces.
pub fn unique_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..12)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect();
    format!("{prefix}{suffix}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the loopback interface accepts a listener on port 0")
}

fn answers(host_port: &str) -> bool {
    host_port
        .to_socket_addrs()
        .ok()
        .into_iter()
        .flatten()
        .any(|addr: SocketAddr| {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
        })
}

fn host_port_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

fn wait_until_answers(host_port: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers(host_port) {
        assert!(
            Instant::now() < deadline,
            "{what} did not start on {host_port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds an installed binary in PATH or in Debian's PostgreSQL folders.
fn find_binary(name: &str) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|v| v.join("bin").join(name)));
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// A child process that dies with the test process (parent-death signal), and is killed on
/// drop.
struct OwnedProcess(Child);

impl Drop for OwnedProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `job` on a thread that lives as long as the process. The parent-death signal fires
/// when the *thread* that spawned a child ends, so children shared by several tests must be
/// spawned from a thread that no test owns.
fn on_process_thread(job: Job) {
    static SPAWNER: OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("test-harness-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .expect("spawn the harness thread");
        std::sync::Mutex::new(tx)
    });
    let _ = sender.lock().unwrap_or_else(|p| p.into_inner()).send(job);
}

fn spawn_owned(
    command: Command,
    death_signal: i32,
    run_as: Option<(u32, u32)>,
) -> std::io::Result<OwnedProcess> {
    let (tx, rx) = std::sync::mpsc::channel();
    on_process_thread(Box::new(move || {
        let mut command = command;
        let _ = tx.send(spawn_here(&mut command, death_signal, run_as));
    }));
    rx.recv()
        .map_err(|_| std::io::Error::other("harness thread gone"))?
}

fn spawn_here(
    command: &mut Command,
    death_signal: i32,
    run_as: Option<(u32, u32)>,
) -> std::io::Result<OwnedProcess> {
    use std::os::unix::process::CommandExt as _;
    if let Some((uid, gid)) = run_as {
        command.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; it runs in the child between fork and exec, after
    // the uid change (which would otherwise clear the setting).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map(OwnedProcess)
}

fn quiet(command: &mut Command) {
    command.stdout(Stdio::null()).stderr(Stdio::null());
}

/// PostgreSQL refuses to run as root: throwaway instances run as the `postgres` user then.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam returns null or a pointer to static storage, read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

struct Instance {
    url: String,
    _process: Option<(OwnedProcess, tempfile::TempDir)>,
}

/// The PostgreSQL server of the tests: an admin URL without database name.
pub fn postgres_url() -> &'static str {
    static PG: OnceLock<Instance> = OnceLock::new();
    &PG.get_or_init(|| {
        let url = std::env::var("TDE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        if answers(&host_port_of(&url)) {
            return Instance {
                url,
                _process: None,
            };
        }
        start_throwaway_postgres()
    })
    .url
}

fn start_throwaway_postgres() -> Instance {
    let dir = tempfile::tempdir().expect("temp dir");
    let run_as = postgres_user();
    let data = init_cluster(dir.path(), run_as);
    let port = free_port();
    let server = postgres_command(&data, port, dir.path(), 400);
    // SIGQUIT: immediate shutdown of the postmaster and its children.
    let process = spawn_owned(server, libc::SIGQUIT, run_as).expect("postgres starts");
    wait_until_answers(&format!("127.0.0.1:{port}"), "PostgreSQL");
    Instance {
        url: format!("postgres://postgres@127.0.0.1:{port}"),
        _process: Some((process, dir)),
    }
}

/// A new cluster in `dir/data` (trust authentication, user `postgres`), owned by `run_as`.
fn init_cluster(dir: &Path, run_as: Option<(u32, u32)>) -> PathBuf {
    let initdb = find_binary("initdb")
        .expect("no PostgreSQL running and no initdb installed: run the README's test command");
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown temp dir");
    }
    let data = dir.join("data");
    let mut init = Command::new(&initdb);
    init.args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "-D",
    ])
    .arg(&data);
    quiet(&mut init);
    let status = spawn_owned(init, libc::SIGKILL, run_as)
        .and_then(|mut p| p.0.wait())
        .expect("initdb runs");
    assert!(status.success(), "initdb failed");
    data
}

/// The postmaster of the cluster in `data`, on the loopback interface at `port`, its socket
/// in `socket_dir`.
fn postgres_command(data: &Path, port: u16, socket_dir: &Path, max_connections: u32) -> Command {
    let postgres = find_binary("postgres").expect("postgres binary not found beside initdb");
    let mut server = Command::new(&postgres);
    server
        .arg("-D")
        .arg(data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            &format!("max_connections={max_connections}"),
            "-k",
        ])
        .arg(socket_dir);
    quiet(&mut server);
    server
}

/// The shared NATS server of the tests (JetStream enabled).
pub fn nats_url() -> &'static str {
    static NATS: OnceLock<Instance> = OnceLock::new();
    &NATS
        .get_or_init(|| {
            let url = std::env::var("TDE_TEST_NATS_URL")
                .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
            if answers(&host_port_of(&url)) {
                return Instance {
                    url,
                    _process: None,
                };
            }
            let server = NatsServer::start();
            let url = server.url();
            let NatsServer { process, dir, .. } = server;
            Instance {
                url,
                _process: Some((process.expect("started"), dir)),
            }
        })
        .url
}

/// A NATS server owned by one test, which it can stop and start again (same port, same
/// storage) to test behaviour while the bus is down.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<OwnedProcess>,
}

impl NatsServer {
    pub fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            process: None,
        };
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (as a crash would).
    pub fn stop(&mut self) {
        self.process = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while answers(&format!("127.0.0.1:{}", self.port)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again on the same port and storage.
    pub fn resume(&mut self) {
        let binary = find_binary("nats-server")
            .expect("nats-server is not installed: run the README's test command");
        let mut command = Command::new(binary);
        command
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path());
        quiet(&mut command);
        self.process = Some(spawn_owned(command, libc::SIGKILL, None).expect("nats-server starts"));
        wait_until_answers(&format!("127.0.0.1:{}", self.port), "nats-server");
    }
}

/// A PostgreSQL cluster owned by one test (its own data directory, port and postmaster),
/// which it can stop and start again (same port, same data) to test a service whose own
/// database goes away. Removed on drop.
pub struct PostgresServer {
    port: u16,
    dir: tempfile::TempDir,
    data: PathBuf,
    run_as: Option<(u32, u32)>,
    process: Option<OwnedProcess>,
}

impl PostgresServer {
    /// Creates the cluster (initdb) and starts it.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let run_as = postgres_user();
        let data = init_cluster(dir.path(), run_as);
        let mut server = Self {
            port: free_port(),
            dir,
            data,
            run_as,
            process: None,
        };
        server.resume();
        server
    }

    /// The admin URL, without database name.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Creates the database `name`; returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let admin = format!("{}/postgres", self.url());
        // A postmaster just started accepts connections before it serves them: retry a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = async {
                let db = Database::connect(&admin).await?;
                db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await?;
                db.close().await
            };
            match attempt.await {
                Ok(()) => return format!("{}/{name}", self.url()),
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the test's PostgreSQL not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create database {name} on {admin}: {e}"),
            }
        }
    }

    /// Stops the server as `pg_ctl stop` does (fast shutdown: sessions are terminated, the
    /// cluster is left clean), and waits until it is gone.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(process.0.id()) {
            // SAFETY: kill has no memory-safety preconditions; pid is our own child.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(process.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Still there after the deadline: the drop kills it.
        drop(process);
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        let server = postgres_command(&self.data, self.port, self.dir.path(), 100);
        self.process =
            Some(spawn_owned(server, libc::SIGQUIT, self.run_as).expect("postgres starts"));
        wait_until_answers(&format!("127.0.0.1:{}", self.port), "PostgreSQL");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(process) = &self.process
            && let Ok(pid) = i32::try_from(process.0.id())
        {
            // SAFETY: as in `stop`. Immediate shutdown: the data is thrown away.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        if let Some(process) = &mut self.process {
            while matches!(process.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.process = None;
    }
}

/// A process of a test (e.g. a service served by another process), its output appended to a
/// file; killed on drop and when the test process dies.
pub struct TestProcess(OwnedProcess);

impl TestProcess {
    pub fn spawn(mut command: Command, log: &Path) -> std::io::Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        command.stdout(out.try_clone()?).stderr(out);
        spawn_owned(command, libc::SIGKILL, None).map(Self)
    }

    pub fn id(&self) -> u32 {
        self.0.0.id()
    }

    /// Whether it still runs (false once it exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.0.0.try_wait(), Ok(None))
    }
}

/// A fresh PostgreSQL database, dropped when this value is.
pub struct TestDatabase {
    pub url: String,
    pub name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        Self::create_named(unique_name("tde_test_")).await
    }

    pub async fn create_named(name: String) -> Self {
        let admin = postgres_url();
        // A server just started accepts connections before it serves them: retry a while.
        let deadline = Instant::now() + Duration::from_secs(30);
        let db = loop {
            match Database::connect(format!("{admin}/postgres")).await {
                Ok(db) => break db,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "test PostgreSQL not ready yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("connect to the test PostgreSQL at {admin}: {e}"),
            }
        };
        db.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create the test database");
        let _ = db.close().await;
        Self {
            url: format!("{admin}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = format!("{}/postgres", postgres_url());
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs outside any runtime: a short-lived one does the work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let db = Database::connect(admin).await.ok()?;
                db.execute_unprepared(&sql).await.ok()?;
                db.close().await.ok()
            })
        })
        .join();
    }
}

fn test_keys() -> &'static (LocalIssuer, tempfile::TempDir) {
    static KEYS: OnceLock<(LocalIssuer, tempfile::TempDir)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let issuer = LocalIssuer::ensure_in(dir.path(), DEV_ISSUER, DEV_AUDIENCE)
            .expect("create the test signing key");
        (issuer, dir)
    })
}

/// The token issuer of the tests, created as `tde dev` creates its own (a key and its key
/// set in a folder); every test server trusts it.
pub fn test_issuer() -> &'static LocalIssuer {
    &test_keys().0
}

/// The key set file of `test_issuer`.
pub fn test_key_set() -> PathBuf {
    LocalIssuer::key_set_path(test_keys().1.path())
}

/// A token of `spec` from the test issuer.
pub fn token(spec: &TokenSpec) -> String {
    test_issuer().mint(spec).expect("mint a test token")
}

/// A token of the national team with every scope.
pub fn national_token() -> String {
    token(&TokenSpec::new(Role::National, "test-national").client("tde-tests"))
}

/// Settings for a test process: port 0, quick polling, a unique namespace, the test issuer
/// trusted, and a rate limit no ordinary test reaches.
pub fn test_settings(database_url: &str, bus: BusKind, nats_url: &str) -> Settings {
    let mut s = Settings::default();
    s.auth.jwks_file = Some(test_key_set());
    s.auth.rate_limit_per_second = 100_000;
    s.auth.rate_limit_burst = 100_000;
    s.server.listen = "127.0.0.1:0".parse().expect("valid address");
    s.server.shutdown_grace_ms = 5_000;
    s.database.url = database_url.to_string();
    s.database.max_connections = 8;
    s.bus.kind = bus;
    s.bus.nats_url = nats_url.to_string();
    s.bus.namespace = unique_name("t");
    s.bus.ack_wait_ms = 2_000;
    s.bus.retry_backoff_ms = 50;
    s.outbox.poll_interval_ms = 20;
    s.outbox.publish_timeout_ms = 2_000;
    s.outbox.max_backoff_ms = 200;
    s.telemetry.log_format = LogFormat::Compact;
    s
}

/// Where a test runs: the dev topology (SQLite files, in-process bus) or the production one
/// (PostgreSQL, JetStream).
pub enum Topology {
    Sqlite,
    Postgres,
}

/// The storage and bus of one test.
pub struct TestEnv {
    pub settings: Settings,
    pub bus: Arc<dyn EventBus>,
    pub dir: tempfile::TempDir,
    /// Dropped with the environment.
    _databases: Vec<TestDatabase>,
    _streams: Option<NamespacedStreams>,
}

/// The streams (and so their consumers) of one namespace on a shared NATS server, deleted
/// when this value is dropped: a test leaves nothing behind.
pub struct NamespacedStreams {
    pub nats_url: String,
    pub namespace: String,
}

impl Drop for NamespacedStreams {
    fn drop(&mut self) {
        let url = self.nats_url.clone();
        let prefix = format!("{}_", self.namespace.to_ascii_uppercase());
        if self.namespace.is_empty() {
            return;
        }
        // Drop runs outside any runtime: a short-lived one does the work, bounded in time.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                use futures::TryStreamExt as _;
                let work = async {
                    let client = async_nats::connect(&url).await.ok()?;
                    let js = async_nats::jetstream::new(client);
                    let names: Vec<String> = js.stream_names().try_collect().await.ok()?;
                    for name in names.into_iter().filter(|n| n.starts_with(&prefix)) {
                        let _ = js.delete_stream(&name).await;
                    }
                    Some(())
                };
                tokio::time::timeout(Duration::from_secs(10), work)
                    .await
                    .ok()
                    .flatten()
            })
        })
        .join();
    }
}

impl TestEnv {
    /// SQLite files in a temp dir and an in-process bus.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/{{service}}.db?mode=rwc", dir.path().display());
        let settings = test_settings(&url, BusKind::Memory, "");
        Self {
            settings,
            bus: Arc::new(MemoryBus::new()),
            dir,
            _databases: Vec::new(),
            _streams: None,
        }
    }

    /// A fresh PostgreSQL database per service and the shared NATS server.
    pub async fn postgres(services: &[&str]) -> Self {
        Self::postgres_with_nats(services, nats_url()).await
    }

    /// As `postgres`, with the NATS server at `nats_url` (e.g. a `NatsServer` of the test).
    pub async fn postgres_with_nats(services: &[&str], nats_url: &str) -> Self {
        // One database per service, `<base>_<service>`: `{service}` in the URL selects it.
        let base = unique_name("tde_test_");
        let mut databases = Vec::new();
        for service in services {
            databases.push(TestDatabase::create_named(format!("{base}_{service}")).await);
        }
        let url = format!("{}/{base}_{{service}}", postgres_url());
        let settings = test_settings(&url, BusKind::Nats, nats_url);
        let settings_namespace = settings.bus.namespace.clone();
        let dir = tempfile::tempdir().expect("temp dir");
        let bus: Arc<dyn EventBus> = Arc::new(
            JetStreamBus::connect(
                nats_url,
                Duration::from_millis(settings.outbox.publish_timeout_ms),
            )
            .await
            .expect("connect to NATS"),
        );
        Self {
            settings,
            bus,
            dir,
            _databases: databases,
            _streams: Some(NamespacedStreams {
                nats_url: nats_url.to_string(),
                namespace: settings_namespace,
            }),
        }
    }

    pub async fn new(topology: Topology, services: &[&str]) -> Self {
        match topology {
            Topology::Sqlite => Self::sqlite().await,
            Topology::Postgres => Self::postgres(services).await,
        }
    }

    /// Starts `modules` through `server::start`, on a free port. A service whose section the
    /// test did not set gets its defaults as `tde dev` has them, in this environment's
    /// folder (never the working directory).
    pub async fn start(
        &self,
        modules: Vec<Arc<dyn ServiceModule>>,
    ) -> Result<RunningPlatform, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let mut settings = self.settings.clone();
        let dev = crate::config::DevEnvironment {
            data_dir: self.dir.path().to_path_buf(),
            listen: "127.0.0.1:0".parse().expect("valid address"),
        };
        for spec in modules.iter().filter_map(|m| m.settings_section()) {
            settings
                .services
                .insert_default_for_dev(&spec, &dev)
                .expect("a service's default section is valid");
        }
        crate::server::start(settings, modules, Some(self.bus.clone()), Some(listener)).await
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A gRPC channel to a test server, without credentials.
pub async fn raw_channel(addr: SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("valid endpoint")
        .connect()
        .await
        .expect("connect to the test server")
}

/// A gRPC channel to a test server, calling as the national team with every scope.
pub async fn channel(addr: SocketAddr) -> AuthChannel {
    with_token(raw_channel(addr).await, &national_token())
}

/// A gRPC channel to a test server, calling with a token of `spec`.
pub async fn channel_as(addr: SocketAddr, spec: &TokenSpec) -> AuthChannel {
    with_token(raw_channel(addr).await, &token(spec))
}

/// `channel` with `token` on every call.
pub fn with_token(channel: tonic::transport::Channel, token: &str) -> AuthChannel {
    crate::auth::client::with_token(channel, Bearer::new(token).expect("a header-safe token"))
}

/// A minimal HTTP server on the loopback interface answering every GET with the current
/// `body` (an identity provider's key set endpoint, for tests). Counts the requests.
pub struct KeySetServer {
    pub url: String,
    pub body: Arc<std::sync::Mutex<String>>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl KeySetServer {
    pub async fn start(body: String) -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let url = format!(
            "http://{}/jwks.json",
            listener.local_addr().expect("local address")
        );
        let body = Arc::new(std::sync::Mutex::new(body));
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (served, count) = (body.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (served, count) = (served.clone(), count.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let _ = socket.read(&mut buf).await;
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = served.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url,
            body,
            requests,
            task,
        }
    }

    pub fn set_body(&self, body: String) {
        *self.body.lock().unwrap_or_else(|p| p.into_inner()) = body;
    }
}

impl Drop for KeySetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a test body on SQLite (dev topology) and on PostgreSQL with JetStream.
#[macro_export]
macro_rules! on_both_topologies {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name(tde_runtime::testing::Topology::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name(tde_runtime::testing::Topology::Postgres).await
                }
            }
        )*
    };
}

/// A new durable consumer of the whole stream of `service` in `namespace` (created if
/// missing), as a test reads what a service published.
pub async fn subscribe_to(
    bus: &dyn EventBus,
    namespace: &crate::bus::Namespace,
    service: &str,
) -> Box<dyn crate::bus::Subscription> {
    let stream = namespace.stream(service);
    bus.ensure_stream(&stream).await.expect("stream");
    bus.subscribe(&crate::bus::ConsumerSpec {
        stream: stream.name,
        durable_name: namespace.durable(&unique_name("test")),
        filter_subjects: Vec::new(),
        max_deliver: 5,
        ack_wait: Duration::from_secs(30),
    })
    .await
    .expect("subscribe")
}

/// The next event of `sub` within `within`, if any.
pub async fn next_event(
    sub: &mut Box<dyn crate::bus::Subscription>,
    within: Duration,
) -> Option<crate::bus::Delivery> {
    match tokio::time::timeout(within, sub.next()).await {
        Ok(Some(Ok(d))) => Some(d),
        Ok(Some(Err(e))) => panic!("bus error: {e}"),
        Ok(None) | Err(_) => None,
    }
}

/// Waits (up to 30 s) until a consumer on `db` processed event `event_id` and committed its
/// effect (the inbox row commits with it): a redelivery test must know the event was handled
/// before it asserts that nothing changed.
pub async fn wait_until_processed(db: &sea_orm::DatabaseConnection, event_id: &str) {
    let backend = db.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => "SELECT event_id FROM inbox_events WHERE event_id = $1",
        _ => "SELECT event_id FROM inbox_events WHERE event_id = ?",
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = db
            .query_one_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [event_id.into()],
            ))
            .await
            .expect("inbox read");
        if found.is_some() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event {event_id} never processed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
