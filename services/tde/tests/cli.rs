//! The binary itself: `tde dev` as a process, the operator commands against it, and a clean
//! stop on SIGTERM.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tde() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tde"))
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../territories/tests/fixtures/geo2026")
}

fn run_with(server: &str, token: Option<&str>, args: &[&str]) -> (bool, String, String) {
    let mut command = tde();
    command
        .args(["--server", server])
        .args(args)
        .env_remove("TDE_TOKEN");
    if let Some(token) = token {
        command.env("TDE_TOKEN", token);
    }
    let out = command.output().expect("tde runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn dev_server_and_operator_commands() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = format!("http://{listen}");
    let mut child = tde()
        .args(["dev", "--listen", &listen, "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tde dev starts");

    // `tde token` mints with the key `tde dev` keeps in its data dir, as the README says.
    let data_dir = dir.path().join("data");
    let mint = |args: &[&str]| {
        let out = tde()
            .args(["token", "--data-dir"])
            .arg(&data_dir)
            .args(args)
            .output()
            .expect("tde token runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let operator = mint(&["--subject", "anct-equipe"]);
    let run = |server: &str, args: &[&str]| run_with(server, Some(&operator), args);

    // Ready when the operator commands get an answer (no fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(&server, &["geography", "vintage"]).0 {
        assert!(Instant::now() < deadline, "tde dev did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (ok, out, err) = run(
        &server,
        &[
            "geography",
            "import",
            "--dir",
            fixture().to_str().unwrap(),
            "--vintage",
            "2026",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("533"), "{out}");

    let (ok, out, err) = run(
        &server,
        &[
            "--output",
            "json",
            "territory",
            "register",
            "--kind",
            "commune",
            "--code",
            "42218",
        ],
    );
    assert!(ok, "{err}");
    let t: serde_json::Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(t["name"], "Saint-Étienne");
    let id = t["id"].as_str().unwrap().to_string();

    let (ok, out, err) = run(
        &server,
        &["territory", "advance", &id, "--to", "diagnostic"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("diagnostic") && out.contains("anct-equipe"),
        "{out}"
    );

    let (ok, _, err) = run(&server, &["territory", "advance", &id, "--to", "completed"]);
    assert!(!ok);
    assert!(
        err.contains("FailedPrecondition") && err.contains("diagnostic"),
        "{err}"
    );

    let (ok, _, err) = run(
        &server,
        &["territory", "register", "--kind", "commune", "--code", "4"],
    );
    assert!(!ok);
    assert!(err.contains("official_code"), "names the field: {err}");

    let (ok, out, err) = run(&server, &["territory", "list", "--departement", "42"]);
    assert!(ok, "{err}");
    assert!(out.contains("Saint-Étienne"), "{out}");

    let (ok, out, err) = run(&server, &["audit", "list", "--subject", "anct-equipe"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("RegisterTerritory") && out.contains("OK"),
        "{out}"
    );

    // Without a token: refused. With a member's token of another territory: nothing to see.
    let (ok, _, err) = run_with(&server, None, &["territory", "list"]);
    assert!(!ok);
    assert!(err.contains("Unauthenticated"), "{err}");
    // `tde token` and the server ignore TDE_TOKEN set by an earlier `export` (it is no
    // configuration key).
    let out = tde()
        .args(["token", "--data-dir"])
        .arg(&data_dir)
        .env("TDE_TOKEN", &operator)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let member = mint(&[
        "--role",
        "territory-member",
        "--territory",
        "0192f000-0000-7000-8000-000000000000",
    ]);
    let (ok, _, err) = run_with(&server, Some(&member), &["territory", "get", &id]);
    assert!(!ok);
    assert!(err.contains("NotFound"), "{err}");

    // SIGTERM: graceful stop, exit status 0.
    // SAFETY: kill has no memory effects; the pid is our own child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "tde dev did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(dir.path().join("data/territories.db").exists());
}

#[test]
fn migrate_applies_the_migrations_and_bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/{{service}}.db?mode=rwc", dir.path().display());
    let out = tde()
        .args(["migrate", "territories"])
        .env("TDE_DATABASE__URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("territories.db").exists());

    let out = tde()
        .args(["serve", "territories"])
        .env("TDE_SERVER__MAX_DEADLINE_MS", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.max_deadline_ms"), "{err}");
}
