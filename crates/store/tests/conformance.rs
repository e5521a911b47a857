//! The behaviour every store backend must show, run against the embedded SQLite backend.

use std::sync::Arc;

use store::{CheckOptions, Resolution, SqliteStore, Store, StoreError};

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("example.com").unwrap();
    (dir, store)
}

#[test]
fn accounts_need_a_local_domain_and_unique_addresses() {
    let (_dir, store) = store();
    let err = store.add_account("a@elsewhere.org", "pw").unwrap_err();
    assert!(
        err.to_string().contains("tegami domain add elsewhere.org"),
        "{err}"
    );
    store.add_account("Alice@Example.com", "pw").unwrap();
    assert!(matches!(
        store.add_account("alice@example.com", "x"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(store.add_account("not-an-address", "x").is_err());
    assert!(store.add_account("b@example.com", "").is_err());
    assert_eq!(store.accounts().unwrap()[0].address, "alice@example.com");
    let err = store.remove_domain("example.com").unwrap_err();
    assert!(err.to_string().contains("remove them first"), "{err}");
}

#[test]
fn authentication_accepts_only_the_right_password() {
    let (_dir, store) = store();
    let id = store.add_account("alice@example.com", "secret").unwrap();
    assert_eq!(
        store.authenticate("ALICE@example.com", "secret").unwrap(),
        Some(id)
    );
    assert_eq!(
        store.authenticate("alice@example.com", "Secret").unwrap(),
        None
    );
    assert_eq!(
        store.authenticate("nobody@example.com", "secret").unwrap(),
        None
    );
    store.set_password("alice@example.com", "new").unwrap();
    assert_eq!(
        store.authenticate("alice@example.com", "secret").unwrap(),
        None
    );
    assert_eq!(
        store.authenticate("alice@example.com", "new").unwrap(),
        Some(id)
    );
}

#[test]
fn resolution_follows_aliases_and_subaddresses_and_refuses_relay() {
    let (_dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    store
        .add_alias(
            "team@example.com",
            &["alice@example.com".into(), "bob@example.com".into()],
        )
        .unwrap();
    store
        .add_alias(
            "all@example.com",
            &["team@example.com".into(), "alice@example.com".into()],
        )
        .unwrap();
    assert!(
        store
            .add_alias("x@example.com", &["carol@example.com".into()])
            .is_err()
    );

    assert_eq!(
        store.resolve("alice@EXAMPLE.com").unwrap(),
        Resolution::Local(vec![alice])
    );
    assert_eq!(
        store.resolve("alice+news@example.com").unwrap(),
        Resolution::Local(vec![alice])
    );
    assert_eq!(
        store.resolve("team@example.com").unwrap(),
        Resolution::Local(vec![alice, bob])
    );
    assert_eq!(
        store.resolve("all@example.com").unwrap(),
        Resolution::Local(vec![alice, bob])
    );
    assert_eq!(
        store.resolve("carol@example.com").unwrap(),
        Resolution::UnknownUser
    );
    assert_eq!(
        store.resolve("alice@example.org").unwrap(),
        Resolution::NotLocal
    );
    assert_eq!(store.aliases().unwrap().len(), 2);
    store.remove_alias("all@example.com").unwrap();
    assert_eq!(
        store.resolve("all@example.com").unwrap(),
        Resolution::UnknownUser
    );
}

#[test]
fn one_blob_serves_every_recipient_and_goes_with_the_last_reference() {
    let (dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    let message = b"Subject: hi\r\n\r\nhello\r\n";
    let delivered = store.deliver(message, &[alice, bob]).unwrap();
    assert_eq!(delivered.len(), 2);
    assert_eq!(store.blobs().list().unwrap().len(), 1);

    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].uid, 1);
    assert_eq!(store.read_blob(&messages[0].blob).unwrap(), message);
    assert_eq!(store.mailbox(alice, "INBOX").unwrap().uid_next, 2);

    store.expunge(inbox.id, &[messages[0].id]).unwrap();
    assert_eq!(
        store.blobs().list().unwrap().len(),
        1,
        "bob still holds the blob"
    );
    let bob_inbox = store.mailbox(bob, "INBOX").unwrap();
    let ids: Vec<_> = store
        .messages(bob_inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(bob_inbox.id, &ids).unwrap();
    assert!(
        store.blobs().list().unwrap().is_empty(),
        "last reference removes the file"
    );

    // UIDs are never reused.
    store.deliver(message, &[alice]).unwrap();
    assert_eq!(store.messages(inbox.id).unwrap()[0].uid, 2);
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
    drop(dir);
}

#[test]
fn removing_an_account_releases_its_blobs() {
    let (_dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    store.deliver(b"one\r\n", &[alice]).unwrap();
    store
        .add_alias("a@example.com", &["alice@example.com".into()])
        .unwrap();
    store.remove_account("alice@example.com").unwrap();
    assert!(store.blobs().list().unwrap().is_empty());
    assert_eq!(
        store.resolve("a@example.com").unwrap(),
        Resolution::UnknownUser
    );
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

#[test]
fn concurrent_deliveries_are_group_committed_without_loss() {
    let (_dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    store
                        .deliver(format!("message {t}-{i}\r\n").as_bytes(), &[alice])
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages.len(), 400);
    let uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
    assert_eq!(uids, (1..=400).collect::<Vec<_>>());
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{report}");
    assert_eq!(report.messages, 400);
}

#[test]
fn check_finds_damaged_blobs_and_repairs_orphans() {
    let (_dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    store.deliver(b"intact\r\n", &[alice]).unwrap();
    store.deliver(b"will be damaged\r\n", &[alice]).unwrap();
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let damaged = store.messages(inbox.id).unwrap()[1].blob;
    std::fs::write(store.blobs().path(&damaged), b"will be DAMAGED\r\n").unwrap();
    assert!(matches!(
        store.read_blob(&damaged),
        Err(StoreError::BlobCorrupt { .. })
    ));

    // An orphan old enough not to be a delivery in flight.
    let orphan = store.blobs().put(b"nobody's\r\n").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(store.blobs().path(&orphan))
        .unwrap()
        .set_modified(old)
        .unwrap();

    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(!report.is_healthy());
    assert_eq!(report.damaged_blobs.len(), 1, "{report}");
    assert_eq!(report.orphan_files.len(), 1, "{report}");

    let report = store
        .check(&CheckOptions {
            repair: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(report.repaired.len(), 1, "{report}");
    assert!(!store.blobs().exists(&orphan));
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(
        report.orphan_files.is_empty() && report.damaged_blobs.len() == 1,
        "{report}"
    );
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let alice = {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.add_domain("example.com").unwrap();
        let alice = store.add_account("alice@example.com", "pw").unwrap();
        store.deliver(b"kept\r\n", &[alice]).unwrap();
        alice
    };
    let store = SqliteStore::open(dir.path()).unwrap();
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(store.read_blob(&messages[0].blob).unwrap(), b"kept\r\n");
}

/// A store with alice and bob and one message to both, another to alice alone.
fn store_with_mail() -> (tempfile::TempDir, SqliteStore, store::BlobId) {
    let (dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    store
        .deliver(b"Subject: first\r\n\r\nfor alice\r\n", &[alice])
        .unwrap();
    store
        .deliver(
            b"Subject: shared\r\n\r\nfor both of them\r\n",
            &[alice, bob],
        )
        .unwrap();
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let shared = store.messages(inbox.id).unwrap()[1].blob;
    (dir, store, shared)
}

fn flip_a_byte(path: &std::path::Path) -> Vec<u8> {
    let mut data = std::fs::read(path).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x01;
    std::fs::write(path, &data).unwrap();
    data
}

/// The report names the message as account, mailbox and uid on one line.
fn names_message(text: &str, account: &str, uid: u32) -> bool {
    text.lines()
        .any(|line| line.contains(account) && line.contains(&format!("uid {uid} ")))
}

#[test]
fn check_names_a_blob_with_one_flipped_byte_and_the_mail_it_holds() {
    let (_dir, store, shared) = store_with_mail();
    flip_a_byte(&store.blobs().path(&shared));
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(!report.is_healthy());
    assert_eq!(report.damaged_blobs.len(), 1, "{report}");
    assert!(
        report.damaged_blobs[0].contains(&shared.to_string()),
        "{report}"
    );
    assert!(
        report.damaged_blobs[0].contains("does not match"),
        "{report}"
    );
    let mut affected: Vec<_> = report
        .affected_messages
        .iter()
        .map(|m| (m.account.as_str(), m.mailbox.as_str(), m.uid, m.blob))
        .collect();
    affected.sort();
    assert_eq!(
        affected,
        [
            ("alice@example.com", "INBOX", 2, shared),
            ("bob@example.com", "INBOX", 1, shared)
        ]
    );
    let text = report.to_string();
    assert!(names_message(&text, "alice@example.com", 2), "{text}");
    assert!(names_message(&text, "bob@example.com", 1), "{text}");
    // A plain check changes nothing.
    assert!(store.blobs().path(&shared).exists());
    assert!(report.repaired.is_empty() && report.quarantined.is_empty());
}

#[test]
fn check_names_a_deleted_blob_and_the_mail_it_held() {
    let (_dir, store, shared) = store_with_mail();
    std::fs::remove_file(store.blobs().path(&shared)).unwrap();
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(!report.is_healthy());
    assert_eq!(report.damaged_blobs.len(), 1, "{report}");
    assert!(
        report.damaged_blobs[0].contains(&shared.to_string())
            && report.damaged_blobs[0].contains("missing"),
        "{report}"
    );
    assert_eq!(report.affected_messages.len(), 2, "{report}");
    let text = report.to_string();
    assert!(names_message(&text, "alice@example.com", 2), "{text}");
    assert!(names_message(&text, "bob@example.com", 1), "{text}");
}

#[test]
fn repair_quarantines_a_damaged_blob_and_lists_the_mail_it_held() {
    let (dir, store, shared) = store_with_mail();
    let original = std::fs::read(store.blobs().path(&shared)).unwrap();
    let damaged = flip_a_byte(&store.blobs().path(&shared));

    let report = store
        .check(&CheckOptions {
            repair: true,
            ..Default::default()
        })
        .unwrap();
    let quarantined = dir.path().join("quarantine").join(shared.to_string());
    assert_eq!(std::fs::read(&quarantined).unwrap(), damaged, "{report}");
    assert!(!store.blobs().path(&shared).exists(), "{report}");
    assert_eq!(report.quarantined.len(), 1, "{report}");
    assert!(report.reindexed, "{report}");
    assert_eq!(report.affected_messages.len(), 2, "{report}");
    assert_eq!(report.not_fixed.len(), 1, "{report}");
    assert!(report.not_fixed[0].contains("backup"), "{report}");
    assert_eq!(report.outstanding(), 1, "damaged mail stays a problem");
    let text = format!("{report:#}");
    assert!(text.contains(&shared.to_string()), "{text}");
    assert!(names_message(&text, "alice@example.com", 2), "{text}");
    assert!(names_message(&text, "bob@example.com", 1), "{text}");

    // The message rows stay, so a restore of the blob brings the mail back.
    let alice = store.accounts().unwrap()[0].id;
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    assert_eq!(store.messages(inbox.id).unwrap().len(), 2);
    let report = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(report.damaged_blobs.len(), 1, "{report}");
    assert!(report.damaged_blobs[0].contains("missing"), "{report}");
    assert_eq!(report.affected_messages.len(), 2, "{report}");

    // A second repair finds nothing more to move and keeps the quarantined bytes.
    let report = store
        .check(&CheckOptions {
            repair: true,
            ..Default::default()
        })
        .unwrap();
    assert!(report.quarantined.is_empty(), "{report}");
    assert_eq!(std::fs::read(&quarantined).unwrap(), damaged);

    // The same bytes delivered again (or restored) heal the store.
    store.deliver(&original, &[alice]).unwrap();
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{report}");
}

#[test]
fn repair_fixes_a_wrong_recorded_size_without_quarantining_intact_bytes() {
    let (dir, store, shared) = store_with_mail();
    let db = rusqlite::Connection::open(dir.path().join("tegami.db")).unwrap();
    db.execute(
        "UPDATE messages SET size = size + 5 WHERE blob_hash = ?1",
        [&shared.0[..]],
    )
    .unwrap();
    drop(db);
    let report = store.check(&CheckOptions::default()).unwrap();
    assert_eq!(report.database.len(), 1, "{report}");
    assert!(report.damaged_blobs.is_empty(), "{report}");

    let report = store
        .check(&CheckOptions {
            repair: true,
            ..Default::default()
        })
        .unwrap();
    assert!(report.quarantined.is_empty(), "{report}");
    assert!(report.not_fixed.is_empty(), "{report}");
    assert_eq!(report.outstanding(), 0, "{report}");
    assert!(store.blobs().path(&shared).exists());
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

#[test]
fn check_reports_progress_over_every_blob() {
    let (_dir, store, _) = store_with_mail();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let options = CheckOptions {
        progress: Some(Arc::new(move |done, total| {
            log.lock().unwrap().push((done, total))
        })),
        ..Default::default()
    };
    let report = store.check(&options).unwrap();
    assert!(report.is_healthy(), "{report}");
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|&(_, total)| total == 2), "{seen:?}");
    assert_eq!(
        seen.iter().map(|&(done, _)| done).max(),
        Some(2),
        "{seen:?}"
    );
}

fn pragma(db: &std::path::Path, name: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

#[test]
fn new_databases_give_free_pages_back_incrementally() {
    let (dir, _store) = store();
    assert_eq!(pragma(&dir.path().join("tegami.db"), "auto_vacuum"), 2);
}

/// Delivers `n` distinct messages to alice from a few threads (group commit keeps it quick).
fn deliver_many(store: &Arc<SqliteStore>, alice: store::AccountId, n: usize) {
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in (t..n).step_by(8) {
                    let message = format!("Subject: {i}\r\n\r\n{}\r\n", "x".repeat(i % 300));
                    store.deliver(message.as_bytes(), &[alice]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn optimize_gives_the_pages_of_a_mass_expunge_back_and_truncates_the_wal() {
    let (dir, store) = store();
    let db = dir.path().join("tegami.db");
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let store = Arc::new(store);
    deliver_many(&store, alice, 1500);
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let ids: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(inbox.id, &ids).unwrap();
    let pages_before = pragma(&db, "page_count");
    let free_before = pragma(&db, "freelist_count");
    assert!(
        free_before > 10,
        "{free_before} free pages after the expunge"
    );
    let wal = dir.path().join("tegami.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);

    let report = store.optimize().unwrap();
    assert!(report.analyzed, "{report}");
    assert_eq!(report.free_pages_before as i64, free_before, "{report}");
    assert_eq!(report.free_pages_after, 0, "{report}");
    // The planner statistics (sqlite_stat1, written by ANALYZE) take a few of those pages.
    assert!(report.pages_freed as i64 >= free_before - 8, "{report}");
    assert!(report.wal_bytes_before > 0, "{report}");
    assert!(report.checkpoint_complete, "{report}");
    assert_eq!(report.wal_bytes_after, 0, "{report}");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert!(
        report.database_bytes_after < report.database_bytes_before,
        "{report}"
    );
    assert!(report.not_done.is_empty(), "{report}");

    // Seen from outside: no free pages, and the file holds exactly the pages in use.
    assert_eq!(pragma(&db, "freelist_count"), 0);
    let pages_after = pragma(&db, "page_count");
    assert!(pages_after < pages_before, "{pages_after} < {pages_before}");
    let page_size = pragma(&db, "page_size") as u64;
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        pages_after as u64 * page_size
    );
    let text = report.to_string();
    assert!(
        text.contains("free pages") && text.contains("write-ahead log"),
        "{text}"
    );
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

#[test]
fn optimize_removes_old_orphan_blobs_and_keeps_young_ones() {
    let (_dir, store, shared) = store_with_mail();
    let old = store.blobs().put(b"an old orphan\r\n").unwrap();
    let young = store.blobs().put(b"a delivery in flight\r\n").unwrap();
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(store.blobs().path(&old))
        .unwrap()
        .set_modified(an_hour_ago)
        .unwrap();

    let report = store.optimize().unwrap();
    assert_eq!(report.orphans_removed, 1, "{report}");
    assert_eq!(report.orphan_bytes, 15, "{report}");
    assert_eq!(report.young_files, 1, "{report}");
    assert!(!store.blobs().exists(&old));
    assert!(store.blobs().exists(&young));
    assert!(store.blobs().exists(&shared));
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

#[test]
fn optimize_converts_an_old_database_to_incremental_auto_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tegami.db");
    {
        // A database as earlier releases made it: auto_vacuum NONE, fixed once written.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); DROP TABLE t;")
            .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(pragma(&db, "auto_vacuum"), 0);
    store.add_domain("example.com").unwrap();
    let report = store.optimize().unwrap();
    assert!(report.vacuumed, "{report}");
    assert_eq!(pragma(&db, "auto_vacuum"), 2);
    let report = store.optimize().unwrap();
    assert!(
        !report.vacuumed,
        "converted once, not on every run: {report}"
    );
    assert_eq!(store.domains().unwrap(), ["example.com"]);
}

#[test]
fn optimize_runs_while_another_thread_delivers() {
    let (_dir, store) = store();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let store = Arc::new(store);
    deliver_many(&store, alice, 400);
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let ids: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(inbox.id, &ids).unwrap();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deliverer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut delivered = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let message = format!("Subject: live {delivered}\r\n\r\nduring optimize\r\n");
                store.deliver(message.as_bytes(), &[alice]).unwrap();
                delivered += 1;
            }
            delivered
        })
    };
    // Let the deliveries get going, then optimise a few times beside them.
    while store.messages(inbox.id).unwrap().len() < 5 {
        std::thread::yield_now();
    }
    for _ in 0..3 {
        let report = store.optimize().unwrap();
        assert!(report.analyzed, "{report}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let delivered = deliverer.join().unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages.len() as u32, delivered);
    for m in &messages {
        store.read_blob(&m.blob).unwrap();
    }
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{report}");
    assert_eq!(report.messages, delivered as u64);
}
