//! Simulated power loss: a child process runs a workload against a copy of a small store
//! under a `store::io::Plan` that, just before sync point k, takes back every write no
//! fsync made durable (file bytes, and directory entries whose directory was not synced)
//! and ends the process. The parent then reopens the store with the real backend and
//! checks that every acknowledged message is intact, every acknowledged backup verifies,
//! nothing owed before the workload went, and `check` is clean. k runs over the sync points
//! of a delivery burst, an expunge with optimisation, a backup and an archive run (a bound
//! sample; `TEGAMI_FAULT_FULL=1` for all of them).
//!
//! The child is this test binary again, running the same test with `TEGAMI_POWER_CHILD`
//! set: a real process exit, so nothing of the crashed run (locks, SQLite's shared memory
//! in this process, threads) survives into the reopen.

mod io_common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use store::prelude::*;

use io_common::{Ack, Workload, copy_tree, inventory, make_baseline, run, verify};
use store::io::{CRASH_EXIT, Plan};
use store::{BlobId, SqliteStore};

/// Crash points explored per workload in the bounded run: today that is every one.
const BOUND: u64 = 40;

/// When the child cuts the power.
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// Never: the run counts the sync points.
    Never,
    /// Just before sync point k.
    At(u64),
    /// Right after the workload's last answer, before the store closes.
    AfterLastAnswer,
}

/// In the child: runs the workload under a power-cut plan, writing each promise to
/// `acks` as soon as it is made, and the sync points counted to `syncs` if no cut came.
fn child(work: &Path, workload: Workload, cut: Cut) {
    let crash_at = match cut {
        Cut::At(k) => Some(k),
        _ => None,
    };
    let (data, backups) = (work.join("data"), work.join("backups"));
    let plan = Plan::new(&[&data, &backups]);
    plan.track_power(&work.join("stash"), crash_at).unwrap();
    let _installed = plan.install();
    let acks = std::sync::Mutex::new(
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.join("acks"))
            .unwrap(),
    );
    let store = SqliteStore::open(&data).unwrap();
    run(workload, &store, &data, &backups, &|a| {
        // Written at once: a crash of this process loses no byte already written.
        let mut file = acks.lock().unwrap();
        writeln!(file, "{}", a.to_line()).unwrap();
    });
    if let Cut::AfterLastAnswer = cut {
        plan.cut_power();
    }
    drop(store);
    fs::write(work.join("syncs"), plan.syncs().to_string()).unwrap();
}

fn spawn(test: &str, work: &Path, workload: &str, cut: Cut) -> i32 {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env("TEGAMI_POWER_CHILD", work)
        .env("TEGAMI_POWER_WORKLOAD", workload)
        .env(
            "TEGAMI_POWER_CRASH",
            match cut {
                Cut::Never => "never".to_string(),
                Cut::At(k) => k.to_string(),
                Cut::AfterLastAnswer => "end".to_string(),
            },
        )
        .output()
        .unwrap();
    let code = output.status.code().unwrap_or(-1);
    if code != 0 && code != CRASH_EXIT {
        panic!(
            "child {workload} {cut:?}: exit {code}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    code
}

fn cut_from_env() -> Cut {
    match std::env::var("TEGAMI_POWER_CRASH").unwrap().as_str() {
        "never" => Cut::Never,
        "end" => Cut::AfterLastAnswer,
        k => Cut::At(k.parse().unwrap()),
    }
}

fn explore(test: &str, workload: Workload) {
    if let Ok(work) = std::env::var("TEGAMI_POWER_CHILD") {
        let workload = Workload::from_name(&std::env::var("TEGAMI_POWER_WORKLOAD").unwrap());
        child(Path::new(&work), workload, cut_from_env());
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    make_baseline(&template);
    let owed: BTreeSet<(String, BlobId)> = inventory(&SqliteStore::open(&template).unwrap());

    // Runs without a cut count the sync points (opening and closing the store included).
    // Group commit makes the count vary with how deliveries happen to batch, so the fewest
    // of three is taken: a cut past the end of a shorter run never happens.
    let mut total = u64::MAX;
    for k in 0..3 {
        let count = dir.path().join(format!("count-{k}"));
        copy_tree(&template, &count.join("data"));
        assert_eq!(spawn(test, &count, workload.name(), Cut::Never), 0);
        let syncs: u64 = fs::read_to_string(count.join("syncs"))
            .unwrap()
            .parse()
            .unwrap();
        verify(
            &count.join("data"),
            &owed,
            &read_acks(&count),
            "no power cut",
        );
        total = total.min(syncs);
    }

    let (mut explored, mut cut) = (0, 0);
    let cuts = io_common::points(total, BOUND)
        .into_iter()
        .map(Cut::At)
        .chain([Cut::AfterLastAnswer]);
    for at in cuts {
        let work = dir.path().join(format!("cut-{explored}"));
        copy_tree(&template, &work.join("data"));
        let code = spawn(test, &work, workload.name(), at);
        cut += usize::from(code == CRASH_EXIT);
        let acks = read_acks(&work);
        let context = format!(
            "{} with the power cut {at:?} (of {total} sync points)",
            workload.name()
        );
        verify(&work.join("data"), &owed, &acks, &context);
        // The next backup after the cut works too (an interrupted one is cleaned away).
        if workload == Workload::Backup {
            let options = store::backup::CreateOptions::new(
                work.join("backups"),
                "after".into(),
                store::backup::Trigger::Manual,
                io_common::NOW,
            );
            let report = store::backup::create(&work.join("data"), &options)
                .unwrap_or_else(|e| panic!("{context}: the next backup: {e}"));
            assert!(store::backup::verify(&report.path, None).unwrap().is_ok());
        }
        fs::remove_dir_all(&work).unwrap();
        explored += 1;
    }
    eprintln!(
        "{}: {total} sync points, {explored} crash points explored ({cut} cut the power) in {:.1?}",
        workload.name(),
        started.elapsed()
    );
    assert!(
        cut * 10 >= explored * 8,
        "only {cut} of {explored} runs were cut"
    );
}

fn read_acks(work: &Path) -> Vec<Ack> {
    fs::read_to_string(work.join("acks"))
        .unwrap_or_default()
        .lines()
        .map(Ack::from_line)
        .collect()
}

#[test]
fn power_loss_in_a_delivery_burst() {
    explore("power_loss_in_a_delivery_burst", Workload::Delivery);
}

#[test]
fn power_loss_in_an_expunge_and_optimize() {
    explore("power_loss_in_an_expunge_and_optimize", Workload::Expunge);
}

#[test]
fn power_loss_in_an_imap_move() {
    explore("power_loss_in_an_imap_move", Workload::Move);
}

#[test]
fn power_loss_in_a_backup() {
    explore("power_loss_in_a_backup", Workload::Backup);
}

#[test]
fn power_loss_in_an_archive_run() {
    explore("power_loss_in_an_archive_run", Workload::Archive);
}

/// A restore builds the new data directory beside the live one, makes it durable, and
/// swaps the two. Cut anywhere, the data directory is the old store or the whole restored
/// one; once the restore has answered, the restored one.
#[test]
fn power_loss_in_a_restore() {
    let test = "power_loss_in_a_restore";
    let restore = |work: &Path| {
        let options = store::backup::RestoreOptions {
            owner: None,
            now_unix: io_common::NOW,
            progress: None,
        };
        store::backup::restore(&work.join("backups/b1"), &work.join("data"), &options)
    };
    if let Ok(work) = std::env::var("TEGAMI_POWER_CHILD") {
        let work = Path::new(&work);
        let cut = cut_from_env();
        let plan = Plan::new(&[&work.join("tree")]);
        let crash_at = match cut {
            Cut::At(k) => Some(k),
            _ => None,
        };
        plan.track_power(&work.join("stash"), crash_at).unwrap();
        let _installed = plan.install();
        restore(&work.join("tree")).unwrap();
        fs::write(work.join("acks"), "restored\n").unwrap();
        if let Cut::AfterLastAnswer = cut {
            plan.cut_power();
        }
        fs::write(work.join("syncs"), plan.syncs().to_string()).unwrap();
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    let data = template.join("tree/data");
    make_baseline(&data);
    let options = store::backup::CreateOptions::new(
        template.join("tree/backups"),
        "b1".into(),
        store::backup::Trigger::Manual,
        io_common::NOW,
    );
    store::backup::create(&data, &options).unwrap();
    let owed: BTreeSet<(String, BlobId)> = inventory(&SqliteStore::open(&data).unwrap());
    // Delivered after the backup: only the old store has it, so it tells the two apart.
    let later = io_common::message(700);
    {
        let store = SqliteStore::open(&data).unwrap();
        let a = store.accounts().unwrap()[0].id;
        store.deliver(&later, &[a]).unwrap();
    }
    let later = BlobId::of(&later);
    let holds_later = |data: &Path| {
        inventory(&SqliteStore::open(data).unwrap())
            .iter()
            .any(|(_, b)| *b == later)
    };

    let count = dir.path().join("count");
    copy_tree(&template, &count);
    assert_eq!(spawn(test, &count, "restore", Cut::Never), 0);
    let total: u64 = fs::read_to_string(count.join("syncs"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(!holds_later(&count.join("tree/data")));

    let (mut explored, mut cut, mut old, mut new) = (0, 0, 0, 0);
    let cuts = io_common::points(total, BOUND)
        .into_iter()
        .map(Cut::At)
        .chain([Cut::AfterLastAnswer]);
    for at in cuts {
        let work = dir.path().join(format!("cut-{explored}"));
        copy_tree(&template, &work);
        let code = spawn(test, &work, "restore", at);
        cut += usize::from(code == CRASH_EXIT);
        let answered = work.join("acks").exists();
        let context = format!("restore with the power cut {at:?} (of {total} sync points)");
        let data = work.join("tree/data");
        let was_old = holds_later(&data);
        assert!(
            !(answered && was_old),
            "{context}: the restore answered but did not last"
        );
        verify(&data, &owed, &[], &context);
        if was_old {
            old += 1;
        } else {
            new += 1;
        }
        fs::remove_dir_all(&work).unwrap();
        explored += 1;
    }
    eprintln!(
        "restore: {total} sync points, {explored} crash points explored ({cut} cut the power; \
         {old} left the old store, {new} the restored one) in {:.1?}",
        started.elapsed()
    );
    assert!(
        old > 0 && new > 0,
        "the cuts fell on both sides of the swap"
    );
}
