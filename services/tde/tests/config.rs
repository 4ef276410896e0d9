//! The shipped configuration files, each loaded under the service(s) it is for, and the
//! boundaries between services' sections.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tde::platform::{self, Role};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/config")
}

/// `dev.toml` is for every service (`tde dev`); `<service>.toml` for that service.
fn roles_of(file: &Path) -> Vec<Role> {
    let stem = file
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem == "dev" {
        return Role::ALL.to_vec();
    }
    vec![
        <Role as clap::ValueEnum>::from_str(stem, true)
            .unwrap_or_else(|_| panic!("{}: name it after a service, or dev", file.display())),
    ]
}

#[test]
fn every_shipped_file_loads_under_its_services() {
    let mut loaded = 0;
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            platform::load_settings(Some(&path), &HashMap::new(), &roles_of(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            loaded += 1;
        }
    }
    assert!(loaded >= 4, "expected the shipped files in deploy/config");
}

#[test]
fn a_section_is_accepted_only_where_its_service_runs() {
    let notifications = config_dir().join("notifications.toml");
    let err = platform::load_settings(Some(&notifications), &HashMap::new(), &[Role::Territories])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`notifications` is unknown here"), "{err}");
    let env: HashMap<String, String> = [(
        "TDE_NOTIFICATIONS__REMINDER_HOUR".to_string(),
        "8".to_string(),
    )]
    .into();
    let err = platform::load_settings(None, &env, &[Role::Plans])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`notifications`"), "{err}");
    assert!(platform::load_settings(None, &env, &[Role::Notifications]).is_ok());
}

#[test]
fn unknown_and_bad_keys_of_a_service_section_are_named() {
    let dir = tempfile::tempdir().unwrap();
    for (body, named) in [
        ("[notifications]\nreminder_hours = 8\n", "reminder_hours"),
        (
            "[notifications]\nreminder_hour = 25\n",
            "notifications.reminder_hour",
        ),
        (
            "[notifications]\nlease_ms = \"soon\"\n",
            "notifications.lease_ms",
        ),
        (
            "[notifications.smtp]\nhost = \"x\"\nport = 25\nsecurity = \"ssl\"\n",
            "security",
        ),
    ] {
        let path = dir.path().join("n.toml");
        std::fs::write(&path, body).unwrap();
        let err = platform::load_settings(Some(&path), &HashMap::new(), &[Role::Notifications])
            .unwrap_err()
            .to_string();
        assert!(err.contains(named), "{body}: {err}");
    }
}

#[test]
fn tde_config_check_answers_for_a_file_and_its_services() {
    let tde = env!("CARGO_BIN_EXE_tde");
    let file = config_dir().join("notifications.toml");
    let ok = Command::new(tde)
        .args(["config", "check", "notifications", "--file"])
        .arg(&file)
        .env_remove("TDE_CONFIG")
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = Command::new(tde)
        .args(["config", "check", "territories", "--file"])
        .arg(&file)
        .env_remove("TDE_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("`notifications`"));
}
