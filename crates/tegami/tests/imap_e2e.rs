//! Runs the IMAP end-to-end scripts in `tests/e2e/imap_*.py` against the binary cargo just
//! built: Python's imaplib over every command, several sessions and IDLE, mbsync (isync)
//! and fetchmail as real clients, and hostile input.
//!
//! Same runner as `e2e.rs`: each test runs one Python script and fails with the script's
//! whole output when it exits non-zero. `scripts/test` installs mbsync and fetchmail.

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
fn imap_commands() {
    run_script("imap_commands");
}

#[test]
fn imap_sessions() {
    run_script("imap_sessions");
}

#[test]
fn imap_mbsync() {
    run_script("imap_mbsync");
}

#[test]
fn imap_fetchmail() {
    run_script("imap_fetchmail");
}

#[test]
fn imap_bad_input() {
    run_script("imap_bad_input");
}
