//! The integrity check beside a live writer, and what it does with unreferenced message
//! bodies: the regressions of issue 16 (items 8 and 9), against a real store on disk.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};
use store::prelude::*;

use store::{AccountId, BlobId, CheckOptions, Flags, NewMessage, SqliteStore};

fn message(n: usize) -> Vec<u8> {
    let mut m = format!(
        "Message-ID: <{n}@check.test>\r\nFrom: a@example.com\r\nSubject: message {n}\r\n\r\n"
    )
    .into_bytes();
    for line in 0..(n % 7 + 1) {
        m.extend_from_slice(format!("line {line} of message {n}\r\n").as_bytes());
    }
    m
}

/// Sets a file's modification time `age` into the past: a blob written long ago.
fn age_file(path: &Path, age: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

fn store_with_inbox(dir: &Path) -> (SqliteStore, AccountId) {
    let store = SqliteStore::open(dir).unwrap();
    store.add_domain("example.com").unwrap();
    let account = store.add_account("a@example.com", "pw").unwrap();
    (store, account)
}

/// Issue 16.8: `check` beside a server that expunged mail failed with "blobs/...: No such
/// file" (a file deleted between listing the directory and reading its size), and could
/// name the file of a message expunged during the check as an orphan. Every run beside
/// expunges and appends must finish and find the store healthy with no orphan.
#[test]
fn check_beside_expunges_and_appends_finishes_healthy_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, account) = store_with_inbox(dir.path());
    let inbox = store.mailbox(account, "INBOX").unwrap();
    let batch = (0..3000)
        .map(|n| NewMessage {
            bytes: message(n),
            flags: Flags::default(),
            keywords: Vec::new(),
            internal_date: None,
        })
        .collect();
    store.append_batch(inbox.id, batch).unwrap();
    // Old files, so that one expunged while the check runs would count as an old orphan.
    for (id, _, _) in store.blobs().list().unwrap() {
        age_file(&store.blobs().path(&id), Duration::from_secs(3600));
    }

    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = 3000;
            // Bounded, whatever happens to the checks.
            for _ in 0..2000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let messages = store.messages(inbox.id).unwrap();
                let gone: Vec<_> = messages.iter().take(10).map(|m| m.id).collect();
                store.expunge(inbox.id, &gone).unwrap();
                for _ in 0..5 {
                    store
                        .append(inbox.id, &message(next), Flags::default(), &[], None)
                        .unwrap();
                    next += 1;
                }
            }
        })
    };

    let mut failures = Vec::new();
    for run in 0..12 {
        match store.check(&CheckOptions::default()) {
            Ok(report) if report.is_healthy() && report.orphan_files.is_empty() => {}
            Ok(report) => failures.push(format!("run {run}: {report}")),
            Err(e) => failures.push(format!("run {run}: the check could not finish: {e}")),
        }
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 12 checks beside expunges failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let last = store.check(&CheckOptions::default()).unwrap();
    assert!(last.is_healthy() && last.orphan_files.is_empty(), "{last}");
}

/// Issue 16.8, the other half: `check` right after a restart that finished an interrupted
/// archive failed the same way, because the archive's move releases (and the writer
/// deletes) the live files of thousands of messages in a few seconds. Every check run
/// while an archive moves old mail out must finish healthy with no orphan.
#[test]
fn check_beside_an_archive_move_finishes_healthy_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, account) = store_with_inbox(dir.path());
    let inbox = store.mailbox(account, "INBOX").unwrap();
    let batch = (0..3000)
        .map(|n| NewMessage {
            bytes: message(n),
            flags: Flags::default(),
            keywords: Vec::new(),
            internal_date: Some(1000 + n as i64),
        })
        .collect();
    store.append_batch(inbox.id, batch).unwrap();
    for (id, _, _) in store.blobs().list().unwrap() {
        age_file(&store.blobs().path(&id), Duration::from_secs(3600));
    }
    let store = Arc::new(store);
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));
    let mover = {
        let (store, done, checked) = (store.clone(), done.clone(), checked.clone());
        std::thread::spawn(move || {
            let request = store::ArchiveRequest {
                before: 100_000,
                account: None,
                label: Some("old".into()),
                batch: 25,
                reserve_bytes: 0,
            };
            let indexer = |_: &[u8]| store::archive::Document::default();
            // The move waits in its first batch until two checks have run beside it, so a
            // descheduled checking thread cannot see the move already over.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let progress = |phase: store::Phase, _: u64, _: u64| {
                while phase == store::Phase::Move
                    && checked.load(Ordering::Relaxed) < 2
                    && std::time::Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
            };
            let outcome = store.archive_create(&request, &indexer, &progress);
            done.store(true, Ordering::Relaxed);
            outcome.map(|o| o.created.map(|r| r.messages))
        })
    };
    let mut failures = Vec::new();
    let mut runs = 0;
    // Bounded: at most 60 checks, whether or not the move is done.
    while !done.load(Ordering::Relaxed) && runs < 60 {
        match store.check(&CheckOptions::default()) {
            Ok(report) if report.is_healthy() && report.orphan_files.is_empty() => {}
            Ok(report) => failures.push(format!("run {runs}: {report}")),
            Err(e) => failures.push(format!("run {runs}: the check could not finish: {e}")),
        }
        runs += 1;
        checked.store(runs, Ordering::Relaxed);
    }
    let moved = mover.join().unwrap().unwrap();
    assert_eq!(moved, Some(3000));
    assert!(runs >= 2, "only {runs} checks ran beside the move");
    println!("{runs} checks beside the archive's move");
    assert!(
        failures.is_empty(),
        "{} of {runs} checks beside the archive's move failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let last = store.check(&CheckOptions::default()).unwrap();
    assert!(last.is_healthy() && last.messages == 0, "{last}");
}

/// What a crash that cut the write-ahead log short leaves: the rows of some acknowledged
/// messages gone, their body files still there. Closes the store, deletes the rows of the
/// messages whose subject names one of `lost`, ages every blob file, and reopens.
fn lose_rows(dir: &Path, store: SqliteStore, lost: &[usize]) -> SqliteStore {
    drop(store);
    let db = rusqlite::Connection::open(dir.join("tegami.db")).unwrap();
    for n in lost {
        let hash: Vec<u8> = db
            .query_row(
                "SELECT blob_hash FROM messages WHERE size = ?1",
                [text_of(*n).len() as i64],
                |r| r.get(0),
            )
            .unwrap();
        db.execute("DELETE FROM messages WHERE blob_hash = ?1", [&hash])
            .unwrap();
        db.execute("DELETE FROM blobs WHERE hash = ?1", [&hash])
            .unwrap();
    }
    drop(db);
    let store = SqliteStore::open(dir).unwrap();
    for (id, _, _) in store.blobs().list().unwrap() {
        age_file(&store.blobs().path(&id), Duration::from_secs(3600));
    }
    store
}

/// Bodies of distinct sizes, so a test can find a message's row by its size.
fn text_of(n: usize) -> Vec<u8> {
    let mut m =
        format!("Message-ID: <lost-{n}@check.test>\r\nSubject: lost {n}\r\n\r\n").into_bytes();
    m.extend(std::iter::repeat_n(b'x', n * 10));
    m.extend_from_slice(b"\r\n");
    m
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Issue 16.9: after a crash lost the rows of acknowledged messages, `check` said
/// "healthy" and `check --repair` deleted their bodies, the only copies left. Now the
/// check counts them, the repair and the optimisation move them to quarantine/orphans/ and
/// delete nothing, and `recover_orphans` makes them mail again in a Recovered mailbox.
#[test]
fn repair_never_deletes_bodies_whose_rows_were_lost_and_recovery_brings_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, account) = store_with_inbox(dir.path());
    for n in 1..=6 {
        store.deliver(&text_of(n), &[account]).unwrap();
    }
    let store = lose_rows(dir.path(), store, &[2, 4, 5]);
    // A young orphan: perhaps a delivery in flight, left alone by everyone.
    let young = store.blobs().put(&text_of(40)).unwrap();
    let lost: Vec<BlobId> = [2, 4, 5].iter().map(|n| BlobId::of(&text_of(*n))).collect();

    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(
        !report.is_healthy(),
        "check called lost mail healthy:\n{report}"
    );
    assert_eq!(report.problems(), 0, "{report}");
    assert_eq!(report.unreferenced_bodies(), 3, "{report}");
    assert_eq!(report.young_files, 1, "{report}");
    assert!(
        report
            .to_string()
            .contains("unreferenced message bodies: 3"),
        "{report}"
    );

    let repaired = store
        .check(&CheckOptions {
            repair: true,
            ..CheckOptions::default()
        })
        .unwrap();
    assert_eq!(repaired.orphans_quarantined.len(), 3, "{repaired}");
    assert_eq!(repaired.waiting_orphans, 3, "{repaired}");
    assert!(!repaired.is_healthy(), "{repaired}");
    let quarantine = dir.path().join(store::ORPHANS_DIR);
    for (id, n) in lost.iter().zip([2, 4, 5]) {
        assert!(!store.blobs().exists(id));
        let kept = std::fs::read(quarantine.join(id.to_string())).unwrap();
        assert_eq!(
            kept,
            text_of(n),
            "quarantine holds other bytes for lost {n}"
        );
    }
    assert!(
        store.blobs().exists(&young),
        "the repair touched a young orphan"
    );

    let optimized = store.optimize().unwrap();
    assert_eq!(optimized.orphans_removed, 0, "{optimized}");
    assert_eq!(files_in(&quarantine), 3);
    assert!(store.blobs().exists(&young));
    let again = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(again.unreferenced_bodies(), 3, "{again}");

    let recovery = store.recover_orphans("A@example.com", "Recovered").unwrap();
    assert_eq!(recovery.recovered, 3, "{recovery:?}");
    assert_eq!(recovery.young, 1, "{recovery:?}");
    assert!(recovery.left.is_empty(), "{recovery:?}");
    let recovered = store.mailbox(account, "Recovered").unwrap();
    let mut bodies: Vec<Vec<u8>> = store
        .messages(recovered.id)
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m.flags.0 & Flags::SEEN, 0, "a recovered message is unread");
            store.read_blob(&m.blob).unwrap()
        })
        .collect();
    bodies.sort_by_key(|b| b.len());
    assert_eq!(bodies, [text_of(2), text_of(4), text_of(5)]);
    assert_eq!(files_in(&quarantine), 0);
    let healthy = store.check(&CheckOptions::default()).unwrap();
    assert!(healthy.is_healthy(), "{healthy}");
    // A second run finds nothing to do and doubles nothing.
    let twice = store.recover_orphans("a@example.com", "Recovered").unwrap();
    assert_eq!((twice.recovered, twice.already_present), (0, 0));
    assert_eq!(store.messages(recovered.id).unwrap().len(), 3);
}

/// The optimisation deletes an orphan only with proof: the file of a message expunged while
/// a backup held the blobs (recorded as released by the commit) goes; an orphan without
/// such a record is quarantined, never deleted.
#[test]
fn optimize_deletes_only_orphans_a_commit_released() {
    let dir = tempfile::tempdir().unwrap();
    let (store, account) = store_with_inbox(dir.path());
    for n in 1..=3 {
        store.deliver(&text_of(n), &[account]).unwrap();
    }
    let store = lose_rows(dir.path(), store, &[3]);
    let inbox = store.mailbox(account, "INBOX").unwrap();
    let first = store.messages(inbox.id).unwrap()[0].clone();
    {
        // What a running backup holds (`blob::BlobHold`): the writer must keep the file.
        let hold = File::create(dir.path().join("blobs/.hold")).unwrap();
        hold.lock_shared().unwrap();
        store.expunge(inbox.id, &[first.id]).unwrap();
    }
    assert!(
        store.blobs().exists(&first.blob),
        "the writer deleted a held blob"
    );

    let report = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(report.released_files, 1, "{report}");
    assert_eq!(report.orphan_files.len(), 1, "{report}");

    let optimized = store.optimize().unwrap();
    assert_eq!(optimized.orphans_removed, 1, "{optimized}");
    assert_eq!(optimized.orphans_quarantined, 1, "{optimized}");
    assert!(!store.blobs().exists(&first.blob));
    let lost = BlobId::of(&text_of(3));
    let kept = dir.path().join(store::ORPHANS_DIR).join(lost.to_string());
    assert_eq!(std::fs::read(kept).unwrap(), text_of(3));
    let after = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(
        (after.released_files, after.waiting_orphans),
        (0, 1),
        "{after}"
    );
}

/// Between a commit that releases blobs and the deletes after it, the writer names them in
/// `blobs/.releasing`, so that a check in another process (`tegami check` beside the
/// server), which cannot wait for that writer, takes them for released files rather than
/// lost mail. The moment is too short to meet on purpose, so this test makes it: rows lost
/// with their files aged, and one of the names written where that writer leaves it.
#[test]
fn files_another_writer_is_releasing_are_no_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let (store, account) = store_with_inbox(dir.path());
    for n in 1..=3 {
        store.deliver(&text_of(n), &[account]).unwrap();
    }
    // This store's own writer leaves no record behind once its deletes are done.
    let inbox = store.mailbox(account, "INBOX").unwrap();
    let third = store.messages(inbox.id).unwrap()[2].clone();
    store.expunge(inbox.id, &[third.id]).unwrap();
    let record = dir.path().join("blobs/.releasing");
    assert!(
        !record.exists(),
        "the writer left its record of released blobs"
    );
    assert!(!store.blobs().exists(&third.blob));

    let store = lose_rows(dir.path(), store, &[1, 2]);
    let (releasing, lost) = (BlobId::of(&text_of(1)), BlobId::of(&text_of(2)));
    std::fs::write(&record, format!("{releasing}\n")).unwrap();
    let report = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(report.released_files, 1, "{report}");
    assert_eq!(report.orphan_files.len(), 1, "{report}");
    assert!(
        report.orphan_files[0].contains(&lost.to_string()),
        "{report}"
    );

    let optimized = store.optimize().unwrap();
    assert_eq!(
        (optimized.orphans_removed, optimized.orphans_quarantined),
        (1, 1),
        "{optimized}"
    );
    assert!(!store.blobs().exists(&releasing));
    assert!(
        dir.path()
            .join(store::ORPHANS_DIR)
            .join(lost.to_string())
            .exists()
    );
}

/// A message whose recorded size disagrees with its intact body is reported, and the
/// repair sets the size from the file with a new mod-sequence for the message and its
/// mailbox, so that clients that cached RFC822.SIZE (CONDSTORE, a selected session) learn
/// of the change.
#[test]
fn a_wrong_recorded_size_is_repaired_with_a_new_modseq() {
    let dir = tempfile::tempdir().unwrap();
    let (store, account) = store_with_inbox(dir.path());
    store.deliver(&text_of(1), &[account]).unwrap();
    let inbox = store.mailbox(account, "INBOX").unwrap();
    let before = store.messages(inbox.id).unwrap()[0].clone();
    let mailbox_before = store.mailbox(account, "INBOX").unwrap().modseq;
    drop(store);
    let db = rusqlite::Connection::open(dir.path().join("tegami.db")).unwrap();
    db.execute("UPDATE messages SET size = size + 7", [])
        .unwrap();
    db.execute("UPDATE blobs SET size = size + 7", []).unwrap();
    drop(db);

    let store = SqliteStore::open(dir.path()).unwrap();
    let found = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(found.database.len(), 1, "{found}");
    let repaired = store
        .check(&CheckOptions {
            repair: true,
            ..CheckOptions::default()
        })
        .unwrap();
    assert!(!repaired.repaired.is_empty(), "{repaired}");
    let after = store.messages(inbox.id).unwrap()[0].clone();
    assert_eq!(after.size, text_of(1).len() as u64);
    assert_eq!(after.size, before.size);
    let mailbox_after = store.mailbox(account, "INBOX").unwrap().modseq;
    assert!(
        mailbox_after > mailbox_before,
        "{mailbox_before} -> {mailbox_after}"
    );
    assert_eq!(after.modseq, mailbox_after);
    let last = store.check(&CheckOptions::default()).unwrap();
    assert!(last.is_healthy(), "{last}");
}
