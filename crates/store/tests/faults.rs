//! I/O fault injection: every file operation of a workload (a group-committed delivery, an
//! IMAP MOVE, an expunge, a backup, an archive run), blob files and SQLite's own alike, is
//! failed in turn, once with EIO and once with ENOSPC that lasts (a full disk). The store
//! must answer with an error, never panic, lose nothing it acknowledged, keep working once
//! the disk is well again, and reopen with a clean `check`.
//!
//! Bounded to a sample of the operations; `TEGAMI_FAULT_FULL=1` tries every one.

mod io_common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use store::prelude::*;

use io_common::{Ack, Workload, copy_tree, inventory, make_baseline, run, verify};
use store::SqliteStore;
use store::io::{EIO, ENOSPC, Fault, Plan};

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts every panic in the process, the store's own threads' included (a panic on the
/// writer thread would otherwise only show as an error). Once: `cargo test` runs these
/// tests as threads of one process.
fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// Points explored per workload and error in the bounded run.
const BOUND: u64 = 24;

fn explore(workload: Workload) {
    count_panics();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    make_baseline(&template);

    // Runs without faults say how many operations the workload makes. Group commit makes
    // the count vary with how deliveries happen to batch, so the fewest of three is taken:
    // a point past the end of a shorter run is never reached.
    let count = |k: usize| {
        let work = dir.path().join(format!("count-{k}"));
        copy_tree(&template, &work.join("data"));
        let (data, backups) = (work.join("data"), work.join("backups"));
        // Installed before the store opens, so that SQLite's connections use its VFS.
        let plan = Plan::new(&[&data, &backups]);
        let _installed = plan.install();
        let store = SqliteStore::open(&data).unwrap();
        plan.reset();
        let errors = run(workload, &store, &data, &backups, &|_| {});
        assert!(errors.is_empty(), "{errors:?}");
        drop(store);
        eprintln!(
            "{}: {} operations, {} sync points: {:?}",
            workload.name(),
            plan.ops(),
            plan.syncs(),
            plan.per_op()
        );
        plan.ops()
    };
    let total = (0..3).map(count).min().unwrap();

    let mut explored = 0;
    let mut failed_answers = 0;
    let mut reached = 0;
    for n in io_common::points(total, BOUND) {
        for (errno, lasting) in [(EIO, false), (ENOSPC, true)] {
            let context = format!(
                "{} with operation {n} of {total} failing ({})",
                workload.name(),
                if errno == EIO {
                    "EIO"
                } else {
                    "ENOSPC, lasting"
                }
            );
            let work = dir.path().join(format!("{n}-{errno}"));
            let (data, backups) = (work.join("data"), work.join("backups"));
            copy_tree(&template, &data);
            let plan = Plan::new(&[&data, &backups]);
            let installed = plan.install();
            let store = SqliteStore::open(&data).unwrap();
            let owed = inventory(&store);
            let acks = Mutex::new(Vec::new());
            plan.reset();
            plan.set_fault(if lasting {
                Fault::From { at: n, errno }
            } else {
                Fault::Once { at: n, errno }
            });
            let errors = run(workload, &store, &data, &backups, &|a| {
                acks.lock().unwrap().push(a)
            });
            // Group commit makes the count vary a little from run to run: a run may end
            // before operation n.
            reached += usize::from(plan.injected() > 0);
            failed_answers += usize::from(!errors.is_empty());
            // A client is told to come back later, never that the server is broken.
            for (error, transient) in &errors {
                assert_ne!(
                    *transient,
                    Some(false),
                    "{context}: {error} is not transient"
                );
            }
            // The disk is well again: the same store, without a restart, takes mail.
            plan.heal();
            let probe = io_common::message(900);
            let a = store.accounts().unwrap()[0].id;
            store
                .deliver(&probe, &[a])
                .unwrap_or_else(|e| panic!("{context}: no delivery after the fault: {e}"));
            acks.lock().unwrap().push(Ack::Delivered(
                io_common::A.into(),
                store::BlobId::of(&probe),
            ));
            drop(store);
            drop(installed);
            let acks = acks.into_inner().unwrap();
            verify(&data, &owed, &acks, &context);
            assert_eq!(PANICS.load(Ordering::SeqCst), 0, "{context}: a panic");
            std::fs::remove_dir_all(&work).unwrap();
            explored += 1;
        }
    }
    eprintln!(
        "{}: {explored} fault points explored ({reached} reached, {failed_answers} answered \
         with an error) in {:.1?}",
        workload.name(),
        started.elapsed()
    );
    assert!(failed_answers > 0, "no fault ever reached the caller");
    assert!(
        reached * 10 >= explored * 8,
        "only {reached} of {explored} faults happened"
    );
}

#[test]
fn faults_in_a_group_committed_delivery() {
    explore(Workload::Delivery);
}

#[test]
fn faults_in_an_imap_move() {
    explore(Workload::Move);
}

#[test]
fn faults_in_an_expunge_and_optimize() {
    explore(Workload::Expunge);
}

#[test]
fn faults_in_a_backup() {
    explore(Workload::Backup);
}

#[test]
fn faults_in_an_archive_run() {
    explore(Workload::Archive);
}

/// A restore builds the new data directory beside the live one and swaps them: whichever
/// operation fails, the data directory afterwards is the old store or the whole restored
/// one (both hold every message the backup holds), and it checks clean.
#[test]
fn faults_in_a_restore() {
    count_panics();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template");
    make_baseline(&template.join("data"));
    let options = store::backup::CreateOptions::new(
        template.join("backups"),
        "b1".into(),
        store::backup::Trigger::Manual,
        io_common::NOW,
    );
    store::backup::create(&template.join("data"), &options).unwrap();
    let owed = inventory(&SqliteStore::open(&template.join("data")).unwrap());
    let restore = |work: &std::path::Path| {
        let options = store::backup::RestoreOptions {
            owner: None,
            now_unix: io_common::NOW,
            progress: None,
        };
        store::backup::restore(&work.join("backups/b1"), &work.join("data"), &options)
    };

    let total = {
        let work = dir.path().join("count");
        copy_tree(&template, &work);
        // The whole directory: the restore builds and swaps beside the data directory.
        let plan = Plan::new(&[&work]);
        let _installed = plan.install();
        restore(&work).unwrap();
        eprintln!(
            "restore: {} operations, {} sync points: {:?}",
            plan.ops(),
            plan.syncs(),
            plan.per_op()
        );
        plan.ops()
    };
    let (mut explored, mut failed_answers) = (0, 0);
    for n in io_common::points(total, BOUND) {
        for (errno, lasting) in [(EIO, false), (ENOSPC, true)] {
            let context = format!("restore with operation {n} of {total} failing ({errno})");
            let work = dir.path().join(format!("{n}-{errno}"));
            copy_tree(&template, &work);
            let plan = Plan::new(&[&work]);
            let installed = plan.install();
            plan.set_fault(if lasting {
                Fault::From { at: n, errno }
            } else {
                Fault::Once { at: n, errno }
            });
            let result = restore(&work);
            assert!(plan.injected() > 0, "{context}: no fault was injected");
            failed_answers += usize::from(result.is_err());
            drop(installed);
            verify(&work.join("data"), &owed, &[], &context);
            assert_eq!(PANICS.load(Ordering::SeqCst), 0, "{context}: a panic");
            std::fs::remove_dir_all(&work).unwrap();
            explored += 1;
        }
    }
    eprintln!(
        "restore: {explored} fault points explored ({failed_answers} answered with an error) \
         in {:.1?}",
        started.elapsed()
    );
    assert!(failed_answers > 0, "no fault ever reached the caller");
}
