//! Runs every end-to-end script in `tests/e2e/` against the binary cargo just built, one
//! test per script, grouped by area. A script talks to a real `tegami serve` with real
//! clients (smtplib, poplib, imaplib, swaks, openssl, mbsync, fetchmail) and exits non-zero
//! on the first failed check; the test then fails with the script's whole output.
//!
//! `ops::disk_guard` mounts a tmpfs and `backup::backup_owner` chowns, so the suite runs as
//! root (as `scripts/test` does on CI).

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

/// `area { test => "script", ... }`: one module per area, one test per script.
macro_rules! scripts {
    ($($area:ident { $($test:ident => $script:literal),* $(,)? })*) => {
        $(mod $area {
            $(#[test]
            fn $test() {
                super::run_script($script);
            })*
        })*
    };
}

scripts! {
    foundation {
        roundtrip => "roundtrip",
        concurrency => "concurrency",
        crash => "crash",
        bad_input => "bad_input",
        lock => "lock",
        tls => "tls",
        tls_implicit => "tls_implicit",
    }
    imap {
        commands => "imap_commands",
        sessions => "imap_sessions",
        mbsync => "imap_mbsync",
        fetchmail => "imap_fetchmail",
        bad_input => "imap_bad_input",
        condstore => "imap_condstore",
        list_extended => "imap_list_extended",
        search_index => "imap_search_index",
        quota => "quota",
        utf8 => "imap_utf8",
        rev2 => "imap_rev2",
    }
    ops {
        maintenance => "maintenance",
        disk_guard => "disk_guard",
        check_repair => "check_repair",
        check_online => "check_online",
        check_orphans => "check_orphans",
        config_refusals => "config_refusals",
        schedule => "schedule",
    }
    backup {
        backup => "backup",
        damage => "backup_damage",
        owner => "backup_owner",
        incremental => "backup_incremental",
        schedule => "backup_schedule",
        upgrade => "backup_upgrade",
        upgrade_fixtures => "upgrade_fixtures",
        secrets => "backup_secrets",
        recovery => "recovery",
    }
    capacity {
        plan => "plan",
        wal_bound => "wal",
        stats_usage => "stats",
        metrics_health_maintenance => "metrics",
        alerts => "alerts",
    }
    archive {
        import_export => "import_export",
        archive => "archive",
        retention => "retention",
    }
    outbound {
        peers => "outbound_peers",
        submission => "outbound_submission",
        delivery => "outbound_delivery",
        failures => "outbound_failures",
        crash => "outbound_crash",
    }
    service {
        service_unit_and_deb => "service",
        background_services => "services",
    }
    hardening {
        pop3_plaintext => "pop3_plaintext",
        login_throttle => "login_throttle",
        idle_connections => "idle_connections",
        slowloris => "slowloris",
        disk_burst => "disk_burst",
    }
    newsletter {
        campaign => "newsletter_campaign",
        crash => "newsletter_crash",
        steps => "newsletter_steps",
        bounces => "newsletter_bounces",
        once => "newsletter_once",
        complaints => "newsletter_complaints",
        preview => "newsletter_preview",
        report => "newsletter_report",
        segments => "newsletter_segments",
    }
    acme {
        pebble => "acme",
    }
    dns {
        records_autoconfig_postmaster => "dns_records",
    }
    address {
        ddns_witness => "ddns_witness",
    }
    console {
        frame_and_security => "console",
        ops_screens => "console_ops",
        backups_and_archives => "console_backup",
        directory_queue_stats_planner => "console_directory",
        newsletter => "console_newsletter",
        user_screens => "console_user",
    }
}
