//! Backups, verification, restore and recovery of the embedded store, through its public
//! interface (`store::backup`, `SqliteStore::recovery`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use store::prelude::*;

use store::backup::{self, CreateOptions, RestoreOptions, Trigger};
use store::{AccountId, CheckOptions, SqliteStore};

const NOW: i64 = 1_795_442_400; // 2026-11-23T14:00:00Z

fn message(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <{n}@backup.test>\r\nSubject: {n}\r\n\r\n").into_bytes();
    while m.len() < size {
        m.extend_from_slice(format!("line {n} of a message that is long enough\r\n").as_bytes());
    }
    m
}

/// A store with two accounts and `n` messages, one in three shared by both.
fn store_with_mail(dir: &Path, n: usize) -> (SqliteStore, Vec<AccountId>) {
    let store = SqliteStore::open(dir).unwrap();
    store.add_domain("example.com").unwrap();
    let a = store.add_account("a@example.com", "pw").unwrap();
    let b = store.add_account("b@example.com", "pw").unwrap();
    for i in 0..n {
        let to = if i % 3 == 0 {
            vec![a, b]
        } else {
            vec![[a, b][i % 2]]
        };
        store.deliver(&message(i, 200 + i * 37), &to).unwrap();
    }
    (store, vec![a, b])
}

/// Every account's INBOX as (address -> [(uid, bytes)]).
fn contents(store: &SqliteStore) -> BTreeMap<String, Vec<(u32, Vec<u8>)>> {
    contents_up_to(store, u32::MAX)
}

/// The INBOX messages with UIDs up to `max_uid`: under load, only those nobody expunges
/// between listing a message and reading its blob.
fn contents_up_to(store: &SqliteStore, max_uid: u32) -> BTreeMap<String, Vec<(u32, Vec<u8>)>> {
    let mut out = BTreeMap::new();
    for account in store.accounts().unwrap() {
        let inbox = store.mailbox(account.id, "INBOX").unwrap();
        let messages = store
            .messages(inbox.id)
            .unwrap()
            .into_iter()
            .filter(|m| m.uid <= max_uid)
            .map(|m| (m.uid, store.read_blob(&m.blob).unwrap()))
            .collect();
        out.insert(account.address, messages);
    }
    out
}

fn options(root: &Path, id: &str) -> CreateOptions {
    CreateOptions::new(root.to_path_buf(), id.to_string(), Trigger::Manual, NOW)
}

fn restore_options() -> RestoreOptions {
    RestoreOptions {
        owner: None,
        now_unix: NOW,
        progress: None,
    }
}

#[test]
fn a_backup_restores_every_message_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = store_with_mail(&data, 30);
    let before = contents(&store);

    let root = backup::default_root(&data);
    let report = backup::create(&data, &options(&root, "first")).unwrap();
    let m = &report.manifest;
    assert_eq!((m.accounts, m.messages, m.blobs), (2, 40, 30));
    assert_eq!(m.schema_version, store::SCHEMA_VERSION);
    assert_eq!(
        (m.blobs_linked, m.blobs_copied),
        (30, 0),
        "same volume: linked"
    );
    assert_eq!(m.files, 31);
    assert!(report.path.join("SHA256SUMS").is_file());
    let listed = backup::list(&root).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, "first");

    let verified = backup::verify(&report.path, None).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(verified.files, 31);
    let listed = backup::list(&root).unwrap();
    assert!(matches!(
        &listed[0].state,
        backup::EntryState::Complete { verified: Some(v), .. } if v.ok
    ));

    // Restored elsewhere, as onto another machine: the same mail, and a healthy store.
    let elsewhere = dir.path().join("restored");
    let restored = backup::restore(&report.path, &elsewhere, &restore_options()).unwrap();
    assert_eq!(restored.previous, None);
    let copy = SqliteStore::open(&elsewhere).unwrap();
    assert_eq!(contents(&copy), before);
    let check = copy.check(&CheckOptions::default()).unwrap();
    assert!(check.is_healthy(), "{check}");
    // The restored database is a copy of its own: the server writes to it.
    assert_ne!(
        fs::metadata(elsewhere.join("tegami.db")).unwrap().ino(),
        fs::metadata(report.path.join("tegami.db")).unwrap().ino()
    );
}

#[test]
fn restore_swaps_the_live_directory_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 5);
    let at_backup = contents(&store);
    let report = backup::create(&data, &options(&backup::default_root(&data), "b")).unwrap();
    store
        .deliver(b"Subject: after\r\n\r\nlater\r\n", &ids)
        .unwrap();
    let later = contents(&store);
    drop(store);
    fs::create_dir_all(data.join("log")).unwrap();
    fs::write(data.join("log/backup.log"), "history\n").unwrap();

    let restored = backup::restore(&report.path, &data, &restore_options()).unwrap();
    let kept = restored.previous.clone().expect("the old data is kept");
    assert!(
        kept.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("data.before-restore-20261123T140000Z"),
        "{kept:?}"
    );
    assert!(restored.carried.contains(&"backups".to_string()));
    assert!(restored.carried.contains(&"log".to_string()));
    assert_eq!(
        fs::read_to_string(data.join("log/backup.log")).unwrap(),
        "history\n"
    );
    assert!(data.join("backups/b/manifest.toml").is_file());
    assert_eq!(contents(&SqliteStore::open(&data).unwrap()), at_backup);
    assert_eq!(contents(&SqliteStore::open(&kept).unwrap()), later);
}

#[test]
fn an_incremental_backup_copies_no_blob_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 20);
    let root = dir.path().join("elsewhere");
    let mut first = options(&root, "one");
    first.copy_blobs = true;
    let one = backup::create(&data, &first).unwrap();
    assert_eq!(
        (one.manifest.blobs_copied, one.manifest.blobs_linked),
        (20, 0)
    );
    assert!(one.manifest.bytes_copied > 0);

    let mut second = options(&root, "two");
    second.copy_blobs = true;
    let two = backup::create(&data, &second).unwrap();
    assert_eq!(two.manifest.blobs_copied, 0, "{:?}", two.manifest);
    assert_eq!(two.manifest.bytes_copied, 0);
    assert_eq!(two.linked_from_previous, 20);
    assert_eq!(two.previous.as_deref(), Some("one"));
    let blob = |b: &Path| {
        let sums = fs::read_to_string(b.join("SHA256SUMS")).unwrap();
        // tegami.db comes first, then the blobs in order.
        let path = sums.lines().nth(1).unwrap().split_once("  ").unwrap().1;
        assert!(path.starts_with("blobs/"), "{path}");
        fs::metadata(b.join(path)).unwrap()
    };
    let (a, b) = (blob(&one.path), blob(&two.path));
    assert_eq!(
        a.ino(),
        b.ino(),
        "the second backup links the first one's file"
    );
    assert!(b.nlink() >= 2);
    assert!(backup::verify(&two.path, None).unwrap().is_ok());

    // A name already taken gets a suffix rather than overwriting a backup.
    let three = backup::create(&data, &options(&root, "two")).unwrap();
    assert_eq!(three.manifest.id, "two-2");
}

#[test]
fn verify_names_a_corrupt_blob_a_cut_database_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 10);
    let root = dir.path().join("backups");
    let mut opts = options(&root, "b");
    opts.copy_blobs = true; // damage to the backup must not reach the live store
    let report = backup::create(&data, &opts).unwrap();
    let sums = fs::read_to_string(report.path.join("SHA256SUMS")).unwrap();
    let blobs: Vec<String> = sums
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_string())
        .filter(|p| p.starts_with("blobs/"))
        .collect();

    let flip = |path: &Path| {
        let mut bytes = fs::read(path).unwrap();
        let i = bytes.len() / 2;
        bytes[i] ^= 1;
        fs::write(path, bytes).unwrap();
    };
    flip(&report.path.join(&blobs[3]));
    let found = backup::verify(&report.path, None).unwrap();
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    assert_eq!(found.problems[0].file, blobs[3]);
    assert!(
        found.problems[0]
            .problem
            .contains("does not match its SHA-256"),
        "{}",
        found.problems[0]
    );
    assert!(matches!(
        &backup::list(&root).unwrap()[0].state,
        backup::EntryState::Complete { verified: Some(v), .. } if !v.ok
    ));
    flip(&report.path.join(&blobs[3]));

    let db = report.path.join("tegami.db");
    let whole = fs::read(&db).unwrap();
    fs::write(&db, &whole[..whole.len() / 2]).unwrap();
    fs::remove_file(report.path.join(&blobs[7])).unwrap();
    let found = backup::verify(&report.path, None).unwrap();
    let named: Vec<&str> = found.problems.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(
        named,
        ["tegami.db", blobs[7].as_str()],
        "{:?}",
        found.problems
    );
    assert_eq!(found.problems[1].problem, "missing");
    fs::write(&db, &whole).unwrap();

    // A checksum list cut short would hide files; the manifest's checksum of it tells.
    let sums_path = report.path.join("SHA256SUMS");
    fs::write(&sums_path, &sums[..sums.len() / 2]).unwrap();
    let found = backup::verify(&report.path, None).unwrap();
    assert!(
        found.problems.iter().any(|p| p.file == "SHA256SUMS"),
        "{:?}",
        found.problems
    );
    fs::write(&sums_path, &sums).unwrap();
    fs::copy(report.path.join(&blobs[0]), report.path.join(&blobs[7])).unwrap();
    let fine = backup::verify(&report.path, None).unwrap();
    assert_eq!(fine.problems.len(), 1, "{:?}", fine.problems);

    let manifest = report.path.join("manifest.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    fs::write(&manifest, &text[..text.len() / 2]).unwrap();
    let found = backup::verify(&report.path, None).unwrap();
    assert_eq!(
        found.problems[0].file, "manifest.toml",
        "{:?}",
        found.problems
    );
}

#[test]
fn a_blob_missing_from_the_live_store_is_recorded_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 4);
    let inbox = store.mailbox(ids[0], "INBOX").unwrap();
    let lost = store.messages(inbox.id).unwrap()[0].blob;
    fs::remove_file(store.blobs().path(&lost)).unwrap();

    let report = backup::create(&data, &options(&dir.path().join("b"), "b")).unwrap();
    assert_eq!(report.damaged.len(), 1);
    assert_eq!(report.damaged[0].0, lost);
    assert_eq!(report.manifest.damaged, 1);
    let verified = backup::verify(&report.path, None).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(verified.notes.len(), 1, "{:?}", verified.notes);

    let restored = dir.path().join("restored");
    backup::restore(&report.path, &restored, &restore_options()).unwrap();
    let check = SqliteStore::open(&restored)
        .unwrap()
        .check(&CheckOptions::default())
        .unwrap();
    assert_eq!(check.damaged_blobs.len(), 1, "{check}");
}

#[test]
fn a_backup_under_load_holds_everything_committed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 10);
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (store, stop, ids) = (store.clone(), stop.clone(), ids.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let m = message(1000 * (t + 1) + n, 300);
                    store.deliver(&m, &ids[t % 2..t % 2 + 1]).unwrap();
                    // Delete every other message again, so blobs vanish while the backup
                    // fetches them.
                    if n % 2 == 1 {
                        let inbox = store.mailbox(ids[t % 2], "INBOX").unwrap();
                        let all = store.messages(inbox.id).unwrap();
                        if let Some(last) = all.last() {
                            store.expunge(inbox.id, &[last.id]).unwrap();
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The workers expunge only the newest message, never the first ten, so those can be
    // read safely while they run (a regression: reading every message raced the expunges).
    let before = contents_up_to(&store, 10);
    let report = backup::create(&data, &options(&dir.path().join("b"), "b")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    let verified = backup::verify(&report.path, None).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    let restored = dir.path().join("restored");
    backup::restore(&report.path, &restored, &restore_options()).unwrap();
    let copy = SqliteStore::open(&restored).unwrap();
    let check = copy.check(&CheckOptions::default()).unwrap();
    assert!(check.is_healthy(), "{check}");
    // Only messages that were never expunged are certain to be there.
    let restored = contents(&copy);
    for (account, messages) in &before {
        for (uid, bytes) in messages {
            assert!(
                restored[account].contains(&(*uid, bytes.clone())),
                "{account} uid {uid} missing from the backup"
            );
        }
    }
}

#[test]
fn recovery_after_an_unclean_shutdown_replays_removes_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 3);
    assert!(store.recovery().is_none(), "a new store was not recovered");
    // A crash image: the files as they are on disk right after a commit, before any
    // checkpoint, and a half-written temporary blob.
    store
        .deliver(b"Subject: last\r\n\r\nbefore the crash\r\n", &ids)
        .unwrap();
    let expected = contents(&store);
    let image = dir.path().join("image");
    fs::create_dir(&image).unwrap();
    for name in ["tegami.db", "tegami.db-wal"] {
        fs::copy(data.join(name), image.join(name)).unwrap();
    }
    drop(store);
    for name in ["tegami.db", "tegami.db-wal"] {
        fs::copy(image.join(name), data.join(name)).unwrap();
    }
    let _ = fs::remove_file(data.join("tegami.db-shm"));
    fs::write(data.join("tegami.db-open"), "open\n").unwrap();
    fs::write(data.join("blobs/tmp/interrupted.1.2"), b"half a mess").unwrap();

    let store = SqliteStore::open(&data).unwrap();
    let recovery = store.recovery().expect("an unclean shutdown is recovered");
    assert!(recovery.wal_frames > 0, "{recovery:?}");
    assert_eq!(recovery.temp_files_removed, 1);
    assert_eq!(recovery.refcounts_fixed, 0);
    assert!(
        recovery
            .to_string()
            .starts_with("recovered after an unclean shutdown")
    );
    assert!(!data.join("blobs/tmp/interrupted.1.2").exists());
    assert_eq!(contents(&store), expected);
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());

    // A second handle beside the first is not a restart: it recovers nothing.
    let beside = SqliteStore::open(&data).unwrap();
    assert!(beside.recovery().is_none());
    drop(beside);
    drop(store);
    assert_eq!(fs::read(data.join("tegami.db-open")).unwrap(), b"");
    let clean = SqliteStore::open(&data).unwrap();
    assert!(clean.recovery().is_none(), "a clean close is not a crash");
}

#[test]
fn recovery_sets_wrong_reference_counts_right() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = store_with_mail(&data, 6);
    drop(store);
    let conn = rusqlite_open(&data.join("tegami.db"));
    conn.execute(
        "UPDATE blobs SET refcount = refcount + 5 WHERE hash IN (SELECT hash FROM blobs LIMIT 2)",
        [],
    )
    .unwrap();
    drop(conn);
    fs::write(data.join("tegami.db-open"), "open\n").unwrap();
    let store = SqliteStore::open(&data).unwrap();
    assert_eq!(store.recovery().unwrap().refcounts_fixed, 2);
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

fn rusqlite_open(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn a_blob_expunged_while_the_backup_runs_keeps_its_file_until_the_backup_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 20);
    let store = Arc::new(store);
    // The blob fetched last (blobs go in id order): its message is expunged as soon as the
    // first blob is in the backup, so its file is gone when its turn comes.
    let inbox = |account| store.mailbox(account, "INBOX").unwrap().id;
    let (mailbox, doomed) = ids
        .iter()
        .flat_map(|&a| {
            store
                .messages(inbox(a))
                .unwrap()
                .into_iter()
                .map(move |m| (a, m))
        })
        .map(|(a, m)| (inbox(a), m))
        .max_by_key(|(_, m)| m.blob)
        .unwrap();
    let shared: Vec<_> = ids
        .iter()
        .flat_map(|&a| store.messages(inbox(a)).unwrap())
        .filter(|m| m.blob == doomed.blob)
        .collect();
    assert_eq!(shared.len(), 1, "pick a blob only one message uses");
    // Every worker reports progress after each blob and waits here while the first one
    // expunges, so at most one blob per worker is fetched before the file is gone.
    let fired = Arc::new(std::sync::Mutex::new(false));
    let mut opts = options(&dir.path().join("b"), "b");
    opts.copy_blobs = true;
    opts.progress = Some({
        let (store, fired) = (store.clone(), fired.clone());
        Arc::new(move |_, _| {
            let mut fired = fired.lock().unwrap();
            if !*fired {
                store.expunge(mailbox, &[doomed.id]).unwrap();
                *fired = true;
            }
        })
    });
    let report = backup::create(&data, &opts).unwrap();
    assert!(*fired.lock().unwrap());
    // The backup held the blobs: the expunge committed, but left the file (an orphan that
    // `optimize` removes later), so the first snapshot could be completed as it was.
    assert!(
        store.blobs().exists(&doomed.blob),
        "the file stays while a backup holds the blobs"
    );
    assert!(
        store
            .messages(mailbox)
            .unwrap()
            .iter()
            .all(|m| m.id != doomed.id),
        "the expunge itself went through"
    );
    assert_eq!(report.manifest.snapshots, 1, "{:?}", report.manifest);
    assert!(report.damaged.is_empty(), "{:?}", report.damaged);
    assert_eq!(report.manifest.messages, 27);
    assert_eq!(report.manifest.blobs, 20);
    assert!(backup::verify(&report.path, None).unwrap().is_ok());
    // Without a backup running, an expunge removes the file at once again.
    let another = store.messages(mailbox).unwrap()[0].clone();
    let sharers = ids
        .iter()
        .flat_map(|&a| store.messages(inbox(a)).unwrap())
        .filter(|m| m.blob == another.blob)
        .count();
    store.expunge(mailbox, &[another.id]).unwrap();
    assert_eq!(store.blobs().exists(&another.blob), sharers > 1);
}

/// An archive as the archiving leaves it: `archive/<id>/archive.db` (rollback journal,
/// with a full-text index) and its blobs, written through `BlobStore`. Returns the blobs.
fn make_archive(dir: &Path, n: usize) -> Vec<store::BlobId> {
    let blobs = store::BlobStore::open(dir.join("blobs")).unwrap();
    let conn = rusqlite_open(&dir.join("archive.db"));
    conn.execute_batch(
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, blob_hash BLOB NOT NULL);
         CREATE VIRTUAL TABLE texts USING fts5 (body);
         CREATE TABLE state (state TEXT NOT NULL);
         INSERT INTO state VALUES ('complete');",
    )
    .unwrap();
    (0..n)
        .map(|i| {
            let body = message(500 + i, 300 + i * 11);
            let id = blobs.put(&body).unwrap();
            conn.execute("INSERT INTO messages (blob_hash) VALUES (?1)", [&id.0[..]])
                .unwrap();
            conn.execute(
                "INSERT INTO texts (body) VALUES (?1)",
                [std::str::from_utf8(&body).unwrap()],
            )
            .unwrap();
            id
        })
        .collect()
}

/// What an archive holds: its rows (id, blob, text), and every blob file's bytes by path.
type ArchiveContents = (Vec<(i64, Vec<u8>, String)>, BTreeMap<String, Vec<u8>>);

fn archive_contents(dir: &Path) -> ArchiveContents {
    let conn = rusqlite_open(&dir.join("archive.db"));
    let rows = conn
        .prepare(
            "SELECT m.id, m.blob_hash, t.body FROM messages m JOIN texts t ON t.rowid = m.id
             WHERE texts MATCH 'message' ORDER BY m.id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut files = BTreeMap::new();
    for prefix in fs::read_dir(dir.join("blobs")).unwrap() {
        let prefix = prefix.unwrap();
        if prefix.file_name() == "tmp" {
            continue;
        }
        for blob in fs::read_dir(prefix.path()).unwrap() {
            let path = blob.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().display().to_string();
            files.insert(rel, fs::read(&path).unwrap());
        }
    }
    (rows, files)
}

fn archive_blob_path(id: &store::BlobId) -> String {
    format!("archive/1/blobs/{}", id.relative_path())
}

#[test]
fn archives_are_backed_up_once_and_restored_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 5);
    let archived = make_archive(&data.join("archive/1"), 3);
    // Not archives: one still being built, and what else may lie about.
    make_archive(&data.join("archive/2.partial"), 2);
    fs::create_dir_all(data.join("archive/old")).unwrap();
    fs::write(data.join("archive/README"), "not an archive\n").unwrap();
    let original = archive_contents(&data.join("archive/1"));
    assert_eq!(original.0.len(), 3);

    let root = dir.path().join("backups");
    let mut first = options(&root, "one");
    first.copy_blobs = true;
    let one = backup::create(&data, &first).unwrap();
    let m = &one.manifest;
    assert_eq!(
        m.archives.as_deref().unwrap(),
        [backup::Archive {
            id: "1".into(),
            blobs: 3,
            blob_bytes: original.1.values().map(|b| b.len() as u64).sum(),
            database_bytes: fs::metadata(one.path.join("archive/1/archive.db"))
                .unwrap()
                .len(),
        }]
    );
    assert_eq!((m.blobs, m.blobs_copied, m.blobs_linked), (5, 5 + 3, 0));
    assert_eq!(m.files, 1 + 5 + 1 + 3, "{m:?}");
    let sums = fs::read_to_string(one.path.join("SHA256SUMS")).unwrap();
    assert!(sums.contains("  archive/1/archive.db\n"), "{sums}");
    for id in &archived {
        assert!(sums.contains(&archive_blob_path(id)), "{sums}");
    }
    assert!(!one.path.join("archive/2.partial").exists());
    assert!(!one.path.join("archive/old").exists());
    assert!(!one.path.join("archive/README").exists());
    assert_eq!(archive_contents(&one.path.join("archive/1")), original);
    let verified = backup::verify(&one.path, None).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(verified.files, m.files);

    // The second backup copies no archive blob again: it links the first one's.
    let mut second = options(&root, "two");
    second.copy_blobs = true;
    let two = backup::create(&data, &second).unwrap();
    assert_eq!(
        (two.manifest.blobs_copied, two.manifest.bytes_copied),
        (0, 0),
        "{:?}",
        two.manifest
    );
    assert_eq!(two.linked_from_previous, 5 + 3);
    for id in &archived {
        let inode = |b: &Path| fs::metadata(b.join(archive_blob_path(id))).unwrap().ino();
        assert_eq!(inode(&one.path), inode(&two.path));
    }
    assert!(backup::verify(&two.path, None).unwrap().is_ok());

    // Restored over the live directory, the archive is back as it was, its database a
    // file of its own; an archive made after the backup stays with the old data, since
    // the restored database still holds its messages.
    make_archive(&data.join("archive/3"), 1);
    drop(store);
    let restored = backup::restore(&two.path, &data, &restore_options()).unwrap();
    assert_eq!(archive_contents(&data.join("archive/1")), original);
    assert_eq!(
        fs::metadata(data.join("archive/1/archive.db"))
            .unwrap()
            .nlink(),
        1
    );
    assert!(!data.join("archive/3").exists());
    assert!(!restored.carried.contains(&"archive".to_string()));
    let kept = restored.previous.unwrap();
    assert!(kept.join("archive/3/archive.db").is_file());
    let copy = SqliteStore::open(&data).unwrap();
    assert_eq!(contents(&copy).len(), ids.len());
}

#[test]
fn verify_names_a_damaged_archive_blob_and_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 2);
    let archived = make_archive(&data.join("archive/1"), 3);
    let mut opts = options(&dir.path().join("backups"), "b");
    opts.copy_blobs = true; // damage to the backup must not reach the archive
    let report = backup::create(&data, &opts).unwrap();

    let blob = archive_blob_path(&archived[1]);
    let path = report.path.join(&blob);
    let whole = fs::read(&path).unwrap();
    let mut bad = whole.clone();
    bad[10] ^= 1;
    fs::write(&path, &bad).unwrap();
    let found = backup::verify(&report.path, None).unwrap();
    let named: Vec<&str> = found.problems.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(named, [blob.as_str()], "{:?}", found.problems);
    fs::write(&path, &whole).unwrap();

    let db = report.path.join("archive/1/archive.db");
    let whole = fs::read(&db).unwrap();
    fs::write(&db, &whole[..whole.len() / 2]).unwrap();
    let found = backup::verify(&report.path, None).unwrap();
    let named: Vec<&str> = found.problems.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(named, ["archive/1/archive.db"], "{:?}", found.problems);
    fs::write(&db, &whole).unwrap();
    assert!(backup::verify(&report.path, None).unwrap().is_ok());
}

#[test]
fn a_damaged_archive_blob_is_recorded_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 2);
    let archived = make_archive(&data.join("archive/1"), 3);
    let live = data.join(archive_blob_path(&archived[0]));
    fs::write(&live, b"not what its name says").unwrap();

    let mut opts = options(&dir.path().join("backups"), "b");
    opts.copy_blobs = true;
    let report = backup::create(&data, &opts).unwrap();
    assert_eq!(report.damaged.len(), 1, "{:?}", report.damaged);
    assert_eq!(report.damaged[0].0, archived[0]);
    assert_eq!(report.manifest.archives.as_ref().unwrap()[0].blobs, 2);
    let damaged = fs::read_to_string(report.path.join("damaged.txt")).unwrap();
    assert!(
        damaged.starts_with(&archive_blob_path(&archived[0])),
        "{damaged}"
    );
    let verified = backup::verify(&report.path, None).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert_eq!(verified.notes.len(), 1, "{:?}", verified.notes);
}

/// The blob files of a backup, relative to it, from its `SHA256SUMS`.
fn blob_files(backup: &Path) -> Vec<String> {
    fs::read_to_string(backup.join("SHA256SUMS"))
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_string())
        .filter(|p| p.starts_with("blobs/"))
        .collect()
}

/// Flips one byte of a file in place: same inode, as a failing disk or a stray write
/// would leave it (and so also in every backup that hard-linked it).
fn flip_in_place(path: &Path) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let middle = file.metadata().unwrap().len() / 2;
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.read_exact(&mut byte).unwrap();
    file.seek(SeekFrom::Start(middle)).unwrap();
    file.write_all(&[byte[0] ^ 1]).unwrap();
}

#[test]
fn a_blob_damaged_in_place_is_never_linked_into_a_backup_silently() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, ids) = store_with_mail(&data, 6);
    let root = dir.path().join("backups");
    // Blobs written in the second a backup begins are read again by the next one: wait.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // The first backup links every blob from the live store and reads each one.
    let one = backup::create(&data, &options(&root, "one")).unwrap();
    let checked = one.manifest.checked.unwrap();
    assert_eq!((checked.hashed, checked.trusted), (6, 0), "{checked:?}");
    assert!(one.damaged.is_empty());

    // An unchanged store: the second backup trusts the first one's check.
    let two = backup::create(&data, &options(&root, "two")).unwrap();
    let checked = two.manifest.checked.unwrap();
    assert_eq!((checked.hashed, checked.trusted), (0, 6), "{checked:?}");

    // One byte flips in the live blob, which both backups share through hard links.
    let inbox = store.mailbox(ids[0], "INBOX").unwrap();
    let bad = store.messages(inbox.id).unwrap()[0].blob;
    flip_in_place(&store.blobs().path(&bad));
    let three = backup::create(&data, &options(&root, "three")).unwrap();
    assert_eq!(
        three.damaged.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        [bad],
        "{:?}",
        three.damaged
    );
    assert!(
        three.damaged[0].1.contains("does not match its hash"),
        "{}",
        three.damaged[0].1
    );
    assert_eq!(three.manifest.damaged, 1);
    assert_eq!(three.manifest.blobs, 5);
    let bad_rel = format!("blobs/{}/{bad}", &bad.to_string()[..2]);
    assert!(
        !three.path.join(&bad_rel).exists(),
        "the damaged blob is in the backup"
    );
    assert!(!blob_files(&three.path).contains(&bad_rel));
    let checked = three.manifest.checked.unwrap();
    // The five intact blobs are trusted from the second backup's check; the modified one
    // was read (its modification time is after that check began) and refused.
    assert_eq!((checked.hashed, checked.trusted), (0, 5), "{checked:?}");
    let damaged = fs::read_to_string(three.path.join("damaged.txt")).unwrap();
    assert!(damaged.starts_with(&bad.to_string()), "{damaged}");

    // Into a new root (nothing to link from but the live store) it is refused the same way.
    let fresh = backup::create(&data, &options(&dir.path().join("fresh"), "f")).unwrap();
    assert_eq!(fresh.damaged.len(), 1, "{:?}", fresh.damaged);
    assert!(!fresh.path.join(&bad_rel).exists());
}

#[test]
fn copy_blobs_after_a_linked_backup_shares_no_inode_with_the_live_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 8);
    let root = dir.path().join("backups");
    let linked = backup::create(&data, &options(&root, "linked")).unwrap();
    assert_eq!(linked.manifest.blobs_linked, 8);
    let mut opts = options(&root, "copied");
    opts.copy_blobs = true;
    opts.now_unix = NOW + 1;
    let copied = backup::create(&data, &opts).unwrap();
    assert_eq!(
        (copied.manifest.blobs_copied, copied.linked_from_previous),
        (8, 0),
        "{:?}",
        copied.manifest
    );
    let blobs = blob_files(&copied.path);
    assert_eq!(blobs.len(), 8);
    for rel in &blobs {
        let (live, mine) = (
            fs::metadata(data.join(rel)).unwrap(),
            fs::metadata(copied.path.join(rel)).unwrap(),
        );
        assert_ne!(live.ino(), mine.ino(), "{rel} is the live store's own file");
    }
    // A later --copy-blobs backup may link the copies: they are not the live store's.
    let mut opts = options(&root, "again");
    opts.copy_blobs = true;
    opts.now_unix = NOW + 2;
    let again = backup::create(&data, &opts).unwrap();
    assert_eq!(again.linked_from_previous, 8, "{:?}", again.manifest);
    for rel in &blobs {
        assert_ne!(
            fs::metadata(data.join(rel)).unwrap().ino(),
            fs::metadata(again.path.join(rel)).unwrap().ino()
        );
    }
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn write_mode(path: &Path, content: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn dkim_keys_newsletter_key_acme_state_and_the_config_are_backed_up_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 3);
    let key = data.join("dkim/example.com/sel.pem");
    write_mode(&key, b"-----BEGIN PRIVATE KEY-----\nsecret\n", 0o600);
    write_mode(&data.join("newsletter.key"), &[7u8; 32], 0o600);
    write_mode(&data.join("acme/account.key"), b"account key", 0o600);
    write_mode(
        &data.join("acme/certs/mail.example.com.pem"),
        b"cert",
        0o644,
    );
    fs::set_permissions(
        data.join("acme"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let config = dir.path().join("etc/tegami.toml");
    write_mode(&config, b"hostname = \"mail.example.com\"\n", 0o640);
    if is_root() {
        std::os::unix::fs::chown(&key, Some(4242), Some(4243)).unwrap();
        std::os::unix::fs::chown(&config, Some(0), Some(4243)).unwrap();
    }

    let mut opts = options(&dir.path().join("backups"), "b");
    opts.config_file = Some(config.clone());
    let report = backup::create(&data, &opts).unwrap();
    let secrets = report.manifest.secrets.clone().unwrap();
    let paths: Vec<&str> = secrets.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "dkim",
            "dkim/example.com",
            "dkim/example.com/sel.pem",
            "newsletter.key",
            "acme",
            "acme/account.key",
            "acme/certs",
            "acme/certs/mail.example.com.pem",
            "config/tegami.toml",
        ]
    );
    let find = |p: &str| secrets.iter().find(|s| s.path == p).unwrap();
    assert_eq!(find("dkim/example.com/sel.pem").mode, 0o600);
    assert_eq!(find("acme").mode, 0o700);
    assert_eq!(find("acme/certs/mail.example.com.pem").mode, 0o644);
    let cfg = find("config/tegami.toml");
    assert_eq!(cfg.origin.as_deref(), Some(config.to_str().unwrap()));
    assert_eq!(cfg.mode, 0o640);
    // Listed with checksums in the manifest and in SHA256SUMS, kept private in the backup.
    let sums = fs::read_to_string(report.path.join("SHA256SUMS")).unwrap();
    let (hash, _) = find("newsletter.key").file.clone().unwrap();
    assert!(sums.contains(&format!("{hash}  newsletter.key")), "{sums}");
    let in_backup = fs::metadata(report.path.join("dkim/example.com/sel.pem")).unwrap();
    assert_eq!(in_backup.mode() & 0o777, 0o600);
    assert!(backup::verify(&report.path, None).unwrap().is_ok());

    // A changed key in the backup is named by verify.
    let copy = report.path.join("acme/account.key");
    let whole = fs::read(&copy).unwrap();
    fs::write(&copy, b"another key").unwrap();
    let found = backup::verify(&report.path, None).unwrap();
    let named: Vec<&str> = found.problems.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(named, ["acme/account.key"], "{:?}", found.problems);
    fs::write(&copy, &whole).unwrap();
    assert!(backup::verify(&report.path, None).unwrap().is_ok());

    // Restored into a new directory: same bytes, same modes, owners kept (as root).
    let restored = dir.path().join("restored");
    let mut ropts = restore_options();
    if is_root() {
        ropts.owner = Some((report.manifest.owner_uid, report.manifest.owner_gid));
    }
    backup::restore(&report.path, &restored, &ropts).unwrap();
    for (rel, source) in [
        ("dkim/example.com/sel.pem", key.clone()),
        ("newsletter.key", data.join("newsletter.key")),
        ("acme/account.key", data.join("acme/account.key")),
        (
            "acme/certs/mail.example.com.pem",
            data.join("acme/certs/mail.example.com.pem"),
        ),
        ("config/tegami.toml", config.clone()),
    ] {
        let (a, b) = (
            fs::metadata(&source).unwrap(),
            fs::metadata(restored.join(rel)).unwrap(),
        );
        assert_eq!(
            fs::read(&source).unwrap(),
            fs::read(restored.join(rel)).unwrap()
        );
        assert_eq!(a.mode() & 0o7777, b.mode() & 0o7777, "{rel}");
        assert_eq!(b.nlink(), 1, "{rel} shares an inode with the backup");
        if is_root() {
            assert_eq!((a.uid(), a.gid()), (b.uid(), b.gid()), "{rel}");
        }
    }
    let acme = fs::metadata(restored.join("acme")).unwrap();
    assert_eq!(acme.mode() & 0o7777, 0o700);
    // The restored store opens and its check is clean.
    let check = SqliteStore::open(&restored)
        .unwrap()
        .check(&CheckOptions::default())
        .unwrap();
    assert!(check.damaged_blobs.is_empty(), "{check}");
}

#[test]
fn a_backup_from_before_secrets_still_verifies_and_its_restore_keeps_the_live_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_store, _) = store_with_mail(&data, 3);
    let report = backup::create(&data, &options(&dir.path().join("backups"), "old")).unwrap();
    // What a backup made before secrets (and blob checks) were recorded looks like.
    let manifest = report.path.join("manifest.toml");
    let text: String = fs::read_to_string(&manifest)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("secret")
                && !l.starts_with("blobs_checked")
                && !l.starts_with("blobs_hashed")
                && !l.starts_with("blobs_trusted")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&manifest, &text).unwrap();
    let verified = backup::verify(&report.path, None).unwrap();
    assert!(verified.is_ok(), "{:?}", verified.problems);
    assert!(
        verified
            .notes
            .iter()
            .any(|n| n.contains("before backups held secrets")),
        "{:?}",
        verified.notes
    );

    // The live directory got its keys after that backup; restoring it must not lose them.
    write_mode(&data.join("dkim/example.com/sel.pem"), b"key", 0o600);
    write_mode(&data.join("newsletter.key"), &[9u8; 32], 0o600);
    let restored = backup::restore(&report.path, &data, &restore_options()).unwrap();
    assert!(restored.manifest.secrets.is_none());
    assert!(
        restored.carried.contains(&"dkim".to_string()),
        "{:?}",
        restored.carried
    );
    assert!(restored.carried.contains(&"newsletter.key".to_string()));
    assert_eq!(fs::read(data.join("newsletter.key")).unwrap(), [9u8; 32]);
    assert_eq!(
        fs::read(data.join("dkim/example.com/sel.pem")).unwrap(),
        b"key"
    );

    // A newer backup that holds no ACME state leaves the live one in place too.
    write_mode(&data.join("acme/account.key"), b"acme", 0o600);
    fs::remove_dir_all(data.join("acme")).unwrap();
    let newer = backup::create(&data, &options(&dir.path().join("backups"), "new")).unwrap();
    write_mode(&data.join("acme/account.key"), b"acme", 0o600);
    let restored = backup::restore(
        &newer.path,
        &data,
        &RestoreOptions {
            now_unix: NOW + 10,
            ..restore_options()
        },
    )
    .unwrap();
    assert!(
        restored.carried.contains(&"acme".to_string()),
        "{:?}",
        restored.carried
    );
    assert!(
        !restored.carried.contains(&"dkim".to_string()),
        "{:?}",
        restored.carried
    );
    assert_eq!(fs::read(data.join("acme/account.key")).unwrap(), b"acme");
}
