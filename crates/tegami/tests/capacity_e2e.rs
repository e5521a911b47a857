//! Runs the capacity and monitoring end-to-end scripts in `tests/e2e/` against the binary
//! cargo just built: the planner (`plan.py`), the WAL bound (`wal.py`), the usage
//! statistics (`stats.py`), `/metrics`, `/health` and the maintenance page (`metrics.py`,
//! which installs prometheus_client with pip if it is missing) and the alerts by mail and
//! webhook (`alerts.py`).
//!
//! Same runner as `ops_e2e.rs`: each test runs one Python script and fails with the
//! script's whole output when it exits non-zero.

use std::path::PathBuf;
use std::process::Command;

fn run_script(name: &str) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let script = root.join("tests/e2e").join(format!("{name}.py"));
    let output = Command::new("python3")
        .arg(&script)
        .current_dir(&root)
        .env("TEGAMI_BIN", env!("CARGO_BIN_EXE_tegami"))
        // The scripts import harness.py; keep __pycache__ out of the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONUNBUFFERED", "1")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 {}: {e} (is python3 installed?)",
                script.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tests/e2e/{name}.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    // Shown with --nocapture: what the script checked.
    println!("{stdout}");
}

#[test]
fn plan() {
    run_script("plan");
}

#[test]
fn wal_bound() {
    run_script("wal");
}

#[test]
fn stats_usage() {
    run_script("stats");
}

#[test]
fn metrics_health_maintenance() {
    run_script("metrics");
}

#[test]
fn alerts() {
    run_script("alerts");
}
