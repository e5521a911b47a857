//! Runs the end-to-end scripts in `tests/e2e/` against the binary cargo just built.
//!
//! The scripts are plain Python (standard library plus swaks) so that real clients
//! (smtplib, poplib, swaks, openssl) talk to the real server over real sockets. Each test
//! here runs one script and fails with the script's whole output when it exits non-zero;
//! `scripts/test` installs what the scripts need.

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
fn roundtrip() {
    run_script("roundtrip");
}

#[test]
fn concurrency() {
    run_script("concurrency");
}

#[test]
fn crash() {
    run_script("crash");
}

#[test]
fn bad_input() {
    run_script("bad_input");
}

#[test]
fn lock() {
    run_script("lock");
}

#[test]
fn tls() {
    run_script("tls");
}
