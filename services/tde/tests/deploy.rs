//! The container image and the Kubernetes manifests, checked offline by `deploy/check-k8s`:
//! every overlay rendered and validated against the Kubernetes and custom-resource schemas,
//! the deployment rules checked on the rendered objects, and each service's rendered
//! configuration accepted by this very binary (`tde config check`). `--self-test` also
//! breaks a copy of the manifests in known ways and expects each to be caught.

use std::path::Path;
use std::process::Command;

#[test]
fn image_and_manifests_pass_the_deployment_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new("python3")
        .arg(root.join("deploy/check-k8s"))
        .arg("--self-test")
        .env("TDE_BIN", env!("CARGO_BIN_EXE_tde"))
        .current_dir(&root)
        .output()
        .expect("python3 runs deploy/check-k8s");
    assert!(
        output.status.success(),
        "deploy/check-k8s failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
