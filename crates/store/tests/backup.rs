//! Backups, verification, restore and recovery of the embedded store, through its public
//! interface (`store::backup`, `SqliteStore::recovery`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use store::backup::{self, CreateOptions, RestoreOptions, Trigger};
use store::{AccountId, CheckOptions, SqliteStore, Store};

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
