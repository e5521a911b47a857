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

    let report = store.check(&CheckOptions { repair: true }).unwrap();
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
