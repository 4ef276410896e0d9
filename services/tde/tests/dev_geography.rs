//! The reference geography ships with tde: a fresh clone's `tde dev`, started with no flag from
//! a directory holding nothing of the repository, serves the 2026 vintage; `tde geography
//! convert` turns a release into an importable vintage, and an older one is refused.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn tde() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tde"))
}

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../territories/tests/fixtures")
        .join(path)
}

/// Stops `tde dev` on drop, even when an assertion failed.
struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        // SAFETY: kill has no memory effects; the pid is our own child's.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
    }
}

fn run(cwd: &Path, server: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = tde()
        .current_dir(cwd)
        .args(["--server", server])
        .args(args)
        .env("TDE_TOKEN", token)
        .output()
        .expect("tde runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_fresh_dev_server_serves_the_shipped_geography() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = format!("http://{listen}");
    // No --geography, no --config, nothing of the repository in the working directory.
    let _dev = Dev(tde()
        .current_dir(cwd)
        .args(["dev", "--listen", &listen])
        .env("RUST_LOG", "warn")
        .env_remove("TDE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tde dev starts"));

    // `tde dev` made its key in ./data; `tde token` mints with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let token = loop {
        let out = tde().current_dir(cwd).arg("token").output().unwrap();
        if out.status.success() && cwd.join("data/keys").exists() {
            break String::from_utf8(out.stdout).unwrap().trim().to_string();
        }
        assert!(Instant::now() < deadline, "no local key");
        std::thread::sleep(Duration::from_millis(100));
    };

    // The shipped vintage is imported right after start-up.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (ok, out, _) = run(cwd, &server, &token, &["geography", "vintage"]);
        if ok && out.contains("\"2026\"") {
            assert!(out.contains("34969"), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shipped geography was not loaded: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = run(
        cwd,
        &server,
        &token,
        &[
            "--output",
            "json",
            "geography",
            "search",
            "saint etienne",
            "--limit",
            "3",
        ],
    );
    assert!(ok, "{err}");
    let found: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let first = &found["communes"][0];
    assert_eq!(first["code"], "42218", "{out}");
    assert_eq!(first["name"], "Saint-Étienne");

    // A release turned into an importable vintage; an older one than the loaded 2026 is
    // refused, naming both.
    let converted = cwd.join("geography-2024");
    let (ok, out, err) = run(
        cwd,
        &server,
        &token,
        &[
            "geography",
            "convert",
            "--from",
            fixture("journey/2024").to_str().unwrap(),
            "--to",
            converted.to_str().unwrap(),
            "--vintage",
            "2024",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("vintage 2024"), "{out}");
    assert!(converted.join("communes.json.gz").is_file());
    let (ok, _, err) = run(
        cwd,
        &server,
        &token,
        &["geography", "import", "--dir", converted.to_str().unwrap()],
    );
    assert!(!ok);
    assert!(
        err.contains("FailedPrecondition") && err.contains("2024") && err.contains("2026"),
        "{err}"
    );
}
