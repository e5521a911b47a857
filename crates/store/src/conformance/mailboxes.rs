//! `Mailboxes`: delivery, the shared bodies, IMAP's mailboxes, append, flags, expunge, copy
//! and move, \Recent, subscriptions, MODSEQ and the change listener.

use super::*;
use crate::{ChangeListener, FlagOp, Flags, NewestFirst, Resolution, SpecialUse, StoreError};

fn uids(store: &dyn Store, mailbox: MailboxId) -> Vec<u32> {
    store
        .messages(mailbox)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect()
}

fn names(store: &dyn Store, account: AccountId) -> Vec<String> {
    store
        .mailboxes(account)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect()
}

fn keywords(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// Remembers every change it hears of, and reads the store from inside the callback, as an
/// IDLE session would.
struct Recorder {
    heard: std::sync::Mutex<Vec<(AccountId, MailboxId, u64)>>,
    store: std::sync::Weak<dyn Store>,
}

impl ChangeListener for Recorder {
    fn mailbox_changed(&self, account: AccountId, mailbox: MailboxId) {
        // Reading the mailbox proves the change is committed and that we hold no lock.
        let modseq = self
            .store
            .upgrade()
            .map_or(0, |s| s.mailbox_by_id(mailbox).map_or(0, |m| m.modseq));
        self.heard.lock().unwrap().push((account, mailbox, modseq));
    }
}

impl Recorder {
    fn take(&self) -> Vec<(AccountId, MailboxId)> {
        let mut heard: Vec<_> = self
            .heard
            .lock()
            .unwrap()
            .drain(..)
            .map(|(a, m, _)| (a, m))
            .collect();
        heard.sort();
        heard
    }
}

pub fn one_blob_serves_every_recipient_and_goes_with_the_last_reference(b: &dyn Backend) {
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    let message = b"Subject: hi\r\n\r\nhello\r\n";
    let delivered = store.deliver(message, &[alice, bob]).unwrap();
    assert_eq!(delivered.len(), 2);
    assert_eq!(b.bodies(), 1);

    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].uid, 1);
    assert_eq!(store.read_blob(&messages[0].blob).unwrap(), message);
    assert_eq!(store.mailbox(alice, "INBOX").unwrap().uid_next, 2);

    store.expunge(inbox.id, &[messages[0].id]).unwrap();
    assert_eq!(b.bodies(), 1, "bob still holds the blob");
    let bob_inbox = store.mailbox(bob, "INBOX").unwrap();
    let ids: Vec<_> = store
        .messages(bob_inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(bob_inbox.id, &ids).unwrap();
    assert!(b.bodies() == 0, "last reference removes the file");

    // UIDs are never reused.
    store.deliver(message, &[alice]).unwrap();
    assert_eq!(store.messages(inbox.id).unwrap()[0].uid, 2);
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

pub fn removing_an_account_releases_its_blobs(b: &dyn Backend) {
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    store.deliver(b"one\r\n", &[alice]).unwrap();
    store
        .add_alias("a@example.com", &["alice@example.com".into()])
        .unwrap();
    store.remove_account("alice@example.com").unwrap();
    assert!(b.bodies() == 0);
    assert_eq!(
        store.resolve("a@example.com").unwrap(),
        Resolution::UnknownUser
    );
    assert!(store.check(&CheckOptions::default()).unwrap().is_healthy());
}

pub fn concurrent_deliveries_are_group_committed_without_loss(b: &dyn Backend) {
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
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

pub fn reopening_keeps_everything(b: &dyn Backend) {
    let alice = {
        let store = fresh(b);
        let alice = store.add_account("alice@example.com", "pw").unwrap();
        store.deliver(b"kept\r\n", &[alice]).unwrap();
        alice
    };
    let store = b.reopen();
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(store.read_blob(&messages[0].blob).unwrap(), b"kept\r\n");
}

pub fn new_accounts_get_the_special_use_mailboxes_and_subscriptions(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    assert_eq!(
        names(&*store, alice),
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );
    assert_eq!(inbox.special_use, None);
    for role in SpecialUse::ALL {
        let mailbox = store.mailbox(alice, role.name()).unwrap();
        assert_eq!(mailbox.special_use, Some(role));
        assert_eq!(mailbox.uid_next, 1);
        assert_eq!(store.mailbox_by_id(mailbox.id).unwrap(), mailbox);
    }
    assert_eq!(
        store.subscriptions(alice).unwrap(),
        ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"]
    );
    store.remove_account("alice@example.com").unwrap();
    assert!(store.mailboxes(alice).unwrap().is_empty());
    assert!(store.subscriptions(alice).unwrap().is_empty());
    healthy(&*store);
}

pub fn a_special_use_role_belongs_to_one_mailbox(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    // Every role is held by a default mailbox, so a second one is refused...
    assert!(matches!(
        store.create_special_use_mailbox(alice, "My Sent", SpecialUse::Sent),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(store.mailbox(alice, "My Sent").is_err());
    // ...until the holder is deleted; then the role can go to a new mailbox, and only to
    // one, with the name taken as well as the role checked.
    store.delete_mailbox(alice, "Archive").unwrap();
    assert!(matches!(
        store.create_special_use_mailbox(alice, "INBOX", SpecialUse::Archive),
        Err(StoreError::AlreadyExists { .. })
    ));
    let created = store
        .create_special_use_mailbox(alice, "Old/Archive 2026", SpecialUse::Archive)
        .unwrap();
    assert_eq!(created.special_use, Some(SpecialUse::Archive));
    assert_eq!(created.uid_next, 1);
    assert_eq!(store.mailbox(alice, "Old/Archive 2026").unwrap(), created);
    assert!(matches!(
        store.create_special_use_mailbox(alice, "Archive", SpecialUse::Archive),
        Err(StoreError::AlreadyExists { .. })
    ));
    // Roles are per account.
    assert_eq!(
        store.mailbox(bob, "Archive").unwrap().special_use,
        Some(SpecialUse::Archive)
    );
    assert!(matches!(
        store.create_special_use_mailbox(alice, "a//b", SpecialUse::Archive),
        Err(StoreError::Invalid(_))
    ));
    healthy(&*store);
}

pub fn mailbox_names_are_checked_and_unique(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    for bad in ["", "/a", "a/", "a//b", "a\u{0}b", &"x".repeat(513)] {
        let err = store.create_mailbox(alice, bad).unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err}");
    }
    let longest = "x".repeat(512);
    store.create_mailbox(alice, &longest).unwrap();
    let created = store.create_mailbox(alice, "Lists/rust").unwrap();
    assert_eq!(created.name, "Lists/rust");
    assert_eq!(created.uid_next, 1);
    assert_eq!(created.special_use, None);
    assert_eq!(store.mailbox(alice, "Lists/rust").unwrap(), created);
    assert!(matches!(
        store.create_mailbox(alice, "Lists/rust"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.create_mailbox(alice, "INBOX"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.create_mailbox(AccountId(999), "Elsewhere"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.mailbox_by_id(MailboxId(999)),
        Err(StoreError::NotFound { .. })
    ));
}

pub fn a_mailbox_deleted_and_created_again_gets_a_new_uidvalidity(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    let first = store.create_mailbox(alice, "Again").unwrap();
    store.delete_mailbox(alice, "Again").unwrap();
    let second = store.create_mailbox(alice, "Again").unwrap();
    assert!(second.uid_validity > first.uid_validity);
}

pub fn a_page_newest_first_agrees_with_the_whole_mailbox(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    let drafts = store.mailbox(alice, "Drafts").unwrap();
    // Dates out of UID order, and a gap in the UIDs, as appends and expunges leave them.
    for (n, date) in [500, 100, 400, 200, 300, 600, 700].into_iter().enumerate() {
        let body = format!("Subject: {n}\r\n\r\nbody {n}\r\n");
        store
            .append(
                drafts.id,
                body.as_bytes(),
                Flags::default(),
                &[],
                Some(date),
            )
            .unwrap();
    }
    store
        .update_flags(drafts.id, &[3], FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    store.expunge_deleted(drafts.id, None).unwrap();
    let whole = store.messages(drafts.id).unwrap();
    let windows = [
        NewestFirst {
            limit: 3,
            ..Default::default()
        },
        NewestFirst {
            skip: 2,
            limit: 2,
            ..Default::default()
        },
        NewestFirst {
            skip: 9,
            limit: 2,
            ..Default::default()
        },
        NewestFirst {
            below_uid: Some(5),
            limit: 10,
            ..Default::default()
        },
        NewestFirst {
            since: Some(200),
            until: Some(600),
            limit: 10,
            ..Default::default()
        },
        NewestFirst {
            below_uid: Some(6),
            since: Some(300),
            skip: 1,
            limit: 1,
            ..Default::default()
        },
        NewestFirst {
            limit: 0,
            ..Default::default()
        },
    ];
    for window in windows {
        let (page, total) = store.messages_newest(drafts.id, &window).unwrap();
        assert_eq!(
            (page.clone(), total),
            window.take(whole.clone()),
            "{window:?}"
        );
    }
    let (first, total) = store
        .messages_newest(
            drafts.id,
            &NewestFirst {
                limit: 2,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(first.iter().map(|m| m.uid).collect::<Vec<_>>(), [7, 6]);
    assert_eq!(total, 6, "seven appended, one expunged");
    let (dated, total) = store
        .messages_newest(
            drafts.id,
            &NewestFirst {
                since: Some(200),
                until: Some(500),
                limit: 9,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(dated.iter().map(|m| m.uid).collect::<Vec<_>>(), [5, 4]);
    assert_eq!(total, 2);
}

pub fn append_keeps_flags_keywords_and_date_and_shares_the_blob_with_delivery(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    let message = b"Subject: draft\r\n\r\nhello\r\n";
    store.deliver(message, &[alice]).unwrap();
    let drafts = store.mailbox(alice, "Drafts").unwrap();
    let appended = store
        .append(
            drafts.id,
            message,
            Flags(Flags::DRAFT | Flags::SEEN),
            &keywords(&["$Label2", "$Label1", "$Label2"]),
            Some(1_000_000),
        )
        .unwrap();
    assert_eq!(
        (appended.account, appended.mailbox, appended.uid),
        (alice, drafts.id, 1)
    );
    let stored = &store.messages(drafts.id).unwrap()[0];
    assert_eq!(stored.flags, Flags(Flags::DRAFT | Flags::SEEN));
    assert_eq!(stored.keywords, ["$Label1", "$Label2"]);
    assert_eq!(stored.internal_date, 1_000_000);
    assert_eq!(stored.size, message.len() as u64);
    assert_eq!(store.read_blob(&stored.blob).unwrap(), message);
    assert_eq!(b.bodies(), 1, "one body, shared");
    let after = store.mailbox_by_id(drafts.id).unwrap();
    assert_eq!(after.uid_next, 2);
    assert!(after.modseq > drafts.modseq);

    // Without a date it is now; the next UID follows.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let second = store
        .append(drafts.id, b"other\r\n", Flags::default(), &[], None)
        .unwrap();
    assert_eq!(second.uid, 2);
    assert!(store.messages(drafts.id).unwrap()[1].internal_date >= before);

    assert!(matches!(
        store.append(
            drafts.id,
            b"x\r\n",
            Flags::default(),
            &keywords(&["two words"]),
            None
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.append(
            drafts.id,
            b"x\r\n",
            Flags::default(),
            &keywords(&["\\Seen"]),
            None
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.append(MailboxId(999), b"x\r\n", Flags::default(), &[], None),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(uids(&*store, drafts.id), [1, 2]);
    assert_eq!(uids(&*store, inbox.id), [1]);
    healthy(&*store);
}

pub fn concurrent_appends_all_land_with_distinct_uids(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    let archive = store.mailbox(alice, "Archive").unwrap().id;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let message = format!("Subject: {t}-{i}\r\n\r\nappended\r\n");
                        store
                            .append(archive, message.as_bytes(), Flags::default(), &[], None)
                            .unwrap()
                            .uid
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut answered: Vec<u32> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    answered.sort();
    assert_eq!(answered, (1..=200).collect::<Vec<_>>());
    assert_eq!(uids(&*store, archive), answered);
    assert_eq!(store.mailbox_by_id(archive).unwrap().uid_next, 201);
    healthy(&*store);
}

pub fn flags_and_keywords_round_trip(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for i in 0..3 {
        store
            .deliver(format!("m{i}\r\n").as_bytes(), &[alice])
            .unwrap();
    }
    let modseq = |store: &dyn Store| store.mailbox_by_id(inbox.id).unwrap().modseq;

    let states = store
        .update_flags(
            inbox.id,
            &[3, 1, 9, 1],
            FlagOp::Add,
            Flags(Flags::SEEN | Flags::FLAGGED),
            &keywords(&["$Forwarded", "Work"]),
        )
        .unwrap();
    let seen_flagged = Flags(Flags::SEEN | Flags::FLAGGED);
    assert_eq!(
        states
            .iter()
            .map(|s| (s.uid, s.flags, s.keywords.clone()))
            .collect::<Vec<_>>(),
        [
            (1, seen_flagged, keywords(&["$Forwarded", "Work"])),
            (3, seen_flagged, keywords(&["$Forwarded", "Work"])),
        ],
        "missing UIDs skipped, ascending, each once"
    );
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages[0].flags, seen_flagged);
    assert_eq!(messages[0].keywords, ["$Forwarded", "Work"]);
    assert_eq!(messages[1].flags, Flags::default());
    assert!(messages[1].keywords.is_empty());

    // A change that changes nothing answers all the same but leaves modseq alone.
    let before = modseq(&*store);
    let states = store
        .update_flags(
            inbox.id,
            &[1],
            FlagOp::Add,
            Flags(Flags::SEEN),
            &keywords(&["Work"]),
        )
        .unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].flags, seen_flagged);
    assert_eq!(modseq(&*store), before);

    let states = store
        .update_flags(
            inbox.id,
            &[1, 3],
            FlagOp::Remove,
            Flags(Flags::FLAGGED),
            &keywords(&["Work", "Absent"]),
        )
        .unwrap();
    assert!(modseq(&*store) > before);
    assert!(
        states
            .iter()
            .all(|s| s.flags == Flags(Flags::SEEN) && s.keywords == ["$Forwarded"]),
        "{states:?}"
    );

    let states = store
        .update_flags(
            inbox.id,
            &[1, 2, 3],
            FlagOp::Replace,
            Flags(Flags::ANSWERED),
            &keywords(&["b", "a"]),
        )
        .unwrap();
    assert!(
        states
            .iter()
            .all(|s| s.flags == Flags(Flags::ANSWERED) && s.keywords == ["a", "b"]),
        "{states:?}"
    );
    let messages = store.messages(inbox.id).unwrap();
    assert!(messages.iter().all(|m| m.keywords == ["a", "b"]));
    assert_eq!(store.mailbox_counts(inbox.id).unwrap().unseen, 3);

    assert!(matches!(
        store.update_flags(
            inbox.id,
            &[1],
            FlagOp::Add,
            Flags::default(),
            &keywords(&[""])
        ),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.update_flags(MailboxId(999), &[1], FlagOp::Add, Flags(1), &[]),
        Err(StoreError::NotFound { .. })
    ));
    healthy(&*store);
}

pub fn expunge_deleted_removes_only_deleted_messages_and_uids_are_never_reused(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for i in 1..=4 {
        store
            .deliver(format!("m{i}\r\n").as_bytes(), &[alice])
            .unwrap();
    }
    let deleted = Flags(Flags::DELETED);
    store
        .update_flags(inbox.id, &[2, 3, 4], FlagOp::Add, deleted, &[])
        .unwrap();
    assert_eq!(b.bodies(), 4);

    // UID EXPUNGE: only those named, and only if deleted.
    assert_eq!(store.expunge_deleted(inbox.id, Some(&[1, 3])).unwrap(), [3]);
    assert_eq!(uids(&*store, inbox.id), [1, 2, 4]);
    let before = store.mailbox_by_id(inbox.id).unwrap().modseq;
    assert_eq!(store.expunge_deleted(inbox.id, None).unwrap(), [2, 4]);
    assert!(store.mailbox_by_id(inbox.id).unwrap().modseq > before);
    assert_eq!(uids(&*store, inbox.id), [1]);
    assert_eq!(b.bodies(), 1, "blobs released");
    assert!(store.expunge_deleted(inbox.id, None).unwrap().is_empty());

    // The highest UID went; its number does not come back.
    store.deliver(b"m4\r\n", &[alice]).unwrap();
    assert_eq!(uids(&*store, inbox.id), [1, 5]);
    assert_eq!(store.mailbox_by_id(inbox.id).unwrap().uid_next, 6);
    healthy(&*store);
}

pub fn copy_shares_blobs_and_keeps_reference_counts_right(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for i in 1..=3 {
        store
            .deliver(format!("m{i}\r\n").as_bytes(), &[alice])
            .unwrap();
    }
    store
        .update_flags(
            inbox.id,
            &[2],
            FlagOp::Add,
            Flags(Flags::SEEN),
            &keywords(&["Kept"]),
        )
        .unwrap();
    let archive = store.mailbox(alice, "Archive").unwrap();
    store
        .append(archive.id, b"already here\r\n", Flags::default(), &[], None)
        .unwrap();

    let copied = store
        .copy_messages(inbox.id, &[3, 2, 7], archive.id)
        .unwrap();
    assert_eq!(copied.uid_validity, archive.uid_validity);
    assert_eq!(copied.uids, [(2, 2), (3, 3)]);
    healthy(&*store);
    // The same message may be copied twice, even into its own mailbox.
    let again = store.copy_messages(inbox.id, &[2], inbox.id).unwrap();
    assert_eq!(again.uids, [(2, 4)]);
    healthy(&*store);
    assert_eq!(b.bodies(), 4, "bodies are shared");

    let source = store.messages(inbox.id).unwrap();
    let target = store.messages(archive.id).unwrap();
    assert_eq!(target[1].blob, source[1].blob);
    assert_eq!(target[1].flags, Flags(Flags::SEEN));
    assert_eq!(target[1].keywords, ["Kept"]);
    assert_eq!(target[1].internal_date, source[1].internal_date);
    assert_eq!(uids(&*store, inbox.id), [1, 2, 3, 4]);

    // Expunging every copy but one keeps the body; the last one takes it.
    let ids: Vec<_> = source.iter().map(|m| m.id).collect();
    store.expunge(inbox.id, &ids).unwrap();
    healthy(&*store);
    assert_eq!(store.read_blob(&target[1].blob).unwrap(), b"m2\r\n");
    store.delete_mailbox(alice, "Archive").unwrap();
    assert!(b.bodies() == 0);
    healthy(&*store);

    assert!(matches!(
        store.copy_messages(inbox.id, &[1], MailboxId(999)),
        Err(StoreError::NotFound { .. })
    ));
    let nothing = store.copy_messages(inbox.id, &[1], inbox.id).unwrap();
    assert!(nothing.uids.is_empty());
}

pub fn move_is_atomic_and_carries_the_reference(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for i in 1..=3 {
        store
            .deliver(format!("m{i}\r\n").as_bytes(), &[alice])
            .unwrap();
    }
    let trash = store.mailbox(alice, "Trash").unwrap();
    let before = store.mailbox_by_id(inbox.id).unwrap().modseq;

    // A move that fails leaves the source as it was.
    assert!(matches!(
        store.move_messages(inbox.id, &[1, 2], MailboxId(999)),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(uids(&*store, inbox.id), [1, 2, 3]);

    let moved = store.move_messages(inbox.id, &[1, 3], trash.id).unwrap();
    assert_eq!(moved.uid_validity, trash.uid_validity);
    assert_eq!(moved.uids, [(1, 1), (3, 2)]);
    assert_eq!(uids(&*store, inbox.id), [2]);
    assert_eq!(uids(&*store, trash.id), [1, 2]);
    assert!(store.mailbox_by_id(inbox.id).unwrap().modseq > before);
    assert!(store.mailbox_by_id(trash.id).unwrap().modseq > trash.modseq);
    assert_eq!(b.bodies(), 3);
    healthy(&*store);

    // Out of the trash and into it again: new UIDs every time.
    store.move_messages(trash.id, &[1], inbox.id).unwrap();
    assert_eq!(uids(&*store, inbox.id), [2, 4]);
    let moved = store.move_messages(trash.id, &[2], trash.id).unwrap();
    assert_eq!(moved.uids, [(2, 3)]);
    assert_eq!(uids(&*store, trash.id), [3]);
    healthy(&*store);
    store.delete_mailbox(alice, "Trash").unwrap();
    assert_eq!(b.bodies(), 2);
    healthy(&*store);
}

pub fn rename_carries_the_mailboxes_below_and_changes_uidvalidity(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    for name in ["Work", "Work/2024", "Work/2024/Q1", "Workshop"] {
        store.create_mailbox(alice, name).unwrap();
    }
    let work = store.mailbox(alice, "Work/2024").unwrap();
    store
        .append(work.id, b"report\r\n", Flags(Flags::SEEN), &[], None)
        .unwrap();
    let workshop = store.mailbox(alice, "Workshop").unwrap();

    store.rename_mailbox(alice, "Work", "Jobs/Old").unwrap();
    let listed = names(&*store, alice);
    for gone in ["Work", "Work/2024", "Work/2024/Q1"] {
        assert!(!listed.contains(&gone.to_string()), "{listed:?}");
    }
    for kept in ["Jobs/Old", "Jobs/Old/2024", "Jobs/Old/2024/Q1", "Workshop"] {
        assert!(listed.contains(&kept.to_string()), "{listed:?}");
    }
    let renamed = store.mailbox(alice, "Jobs/Old/2024").unwrap();
    assert_eq!(renamed.id, work.id);
    assert_ne!(renamed.uid_validity, work.uid_validity);
    assert_eq!(renamed.uid_next, work.uid_next + 1);
    assert_eq!(uids(&*store, renamed.id), [1]);
    assert_eq!(
        store.mailbox(alice, "Workshop").unwrap(),
        workshop,
        "a name that merely starts alike is not below"
    );

    // A mailbox may move up a level, its children following into each other's old names:
    // "p/q/q/z" becomes "p/q/z" (and sorts before it) while "p/q/z" becomes "p/z".
    for name in ["p/q/z", "p/q", "p/q/q/z"] {
        store.create_mailbox(alice, name).unwrap();
    }
    let deepest = store.mailbox(alice, "p/q/q/z").unwrap().id;
    store.rename_mailbox(alice, "p/q", "p").unwrap();
    let listed: Vec<_> = names(&*store, alice)
        .into_iter()
        .filter(|n| n.starts_with('p'))
        .collect();
    assert_eq!(listed, ["p", "p/q/z", "p/z"]);
    assert_eq!(store.mailbox(alice, "p/q/z").unwrap().id, deepest);

    // A special-use mailbox keeps its role under a new name.
    store.rename_mailbox(alice, "Sent", "Sent Items").unwrap();
    assert_eq!(
        store.mailbox(alice, "Sent Items").unwrap().special_use,
        Some(SpecialUse::Sent)
    );

    assert!(matches!(
        store.rename_mailbox(alice, "Workshop", "Drafts"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.rename_mailbox(alice, "Nowhere", "Somewhere"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.rename_mailbox(alice, "Workshop", "Workshop/Inner"),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.rename_mailbox(alice, "Workshop", "a//b"),
        Err(StoreError::Invalid(_))
    ));
    // A child's new name taken elsewhere stops the whole rename.
    store.create_mailbox(alice, "A/x").unwrap();
    store.create_mailbox(alice, "B/x").unwrap();
    assert!(matches!(
        store.rename_mailbox(alice, "A", "B"),
        Err(StoreError::NotFound { .. })
    ));
    store.create_mailbox(alice, "A").unwrap();
    assert!(matches!(
        store.rename_mailbox(alice, "A", "B"),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(store.mailbox(alice, "A/x").is_ok());
    healthy(&*store);
}

pub fn renaming_inbox_moves_its_messages_and_leaves_it_empty(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    store.deliver(b"one\r\n", &[alice]).unwrap();
    store.deliver(b"two\r\n", &[alice]).unwrap();
    store
        .update_flags(
            inbox.id,
            &[2],
            FlagOp::Add,
            Flags(Flags::FLAGGED),
            &keywords(&["k"]),
        )
        .unwrap();
    store.create_mailbox(alice, "INBOX/Sub").unwrap();

    store.rename_mailbox(alice, "INBOX", "Old Mail").unwrap();
    let after = store.mailbox(alice, "INBOX").unwrap();
    assert_eq!(after.id, inbox.id);
    assert_eq!(after.uid_validity, inbox.uid_validity);
    assert_eq!(after.uid_next, 3, "UIDs are not reused");
    assert!(store.messages(inbox.id).unwrap().is_empty());
    assert!(
        store.mailbox(alice, "INBOX/Sub").is_ok(),
        "RFC 3501: INBOX's children stay"
    );
    let old = store.mailbox(alice, "Old Mail").unwrap();
    assert_ne!(old.uid_validity, inbox.uid_validity);
    let moved = store.messages(old.id).unwrap();
    assert_eq!(moved.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(moved[1].flags, Flags(Flags::FLAGGED));
    assert_eq!(moved[1].keywords, ["k"]);
    assert_eq!(store.read_blob(&moved[0].blob).unwrap(), b"one\r\n");

    store.deliver(b"three\r\n", &[alice]).unwrap();
    assert_eq!(uids(&*store, inbox.id), [3]);
    assert!(matches!(
        store.rename_mailbox(alice, "INBOX", "Old Mail"),
        Err(StoreError::AlreadyExists { .. })
    ));
    healthy(&*store);
}

pub fn deleting_a_mailbox_releases_its_blobs_and_keeps_the_ones_below(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    let parent = store.create_mailbox(alice, "Projects").unwrap();
    let child = store.create_mailbox(alice, "Projects/tegami").unwrap();
    store
        .append(parent.id, b"only here\r\n", Flags::default(), &[], None)
        .unwrap();
    store
        .append(child.id, b"below\r\n", Flags::default(), &[], None)
        .unwrap();
    store.deliver(b"only here\r\n", &[alice]).unwrap();
    store
        .append(parent.id, b"gone with it\r\n", Flags::default(), &[], None)
        .unwrap();
    assert_eq!(b.bodies(), 3);

    store.delete_mailbox(alice, "Projects").unwrap();
    assert!(matches!(
        store.mailbox_by_id(parent.id),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.mailbox_counts(parent.id),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(uids(&*store, child.id), [1]);
    assert_eq!(b.bodies(), 2, "INBOX keeps the shared body, the other goes");
    healthy(&*store);

    let err = store.delete_mailbox(alice, "INBOX").unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("INBOX"), "{err}");
    assert!(matches!(
        store.delete_mailbox(alice, "Projects"),
        Err(StoreError::NotFound { .. })
    ));
    // Special-use mailboxes may go like any other.
    store.delete_mailbox(alice, "Junk").unwrap();
    assert!(store.mailbox(alice, "Junk").is_err());
}

pub fn a_mailboxs_size_adds_up_its_messages(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    assert_eq!(store.mailbox_size(inbox.id).unwrap(), 0);
    store.deliver(b"one\r\n", &[alice]).unwrap();
    store.deliver(b"three\r\n", &[alice]).unwrap();
    assert_eq!(store.mailbox_size(inbox.id).unwrap(), 5 + 7);
    store
        .expunge(inbox.id, &[store.messages(inbox.id).unwrap()[0].id])
        .unwrap();
    assert_eq!(store.mailbox_size(inbox.id).unwrap(), 7);
    assert!(matches!(
        store.mailbox_size(MailboxId(999)),
        Err(StoreError::NotFound { .. })
    ));
}

pub fn claim_recent_hands_each_message_to_one_session(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    store.deliver(b"one\r\n", &[alice]).unwrap();
    store.deliver(b"two\r\n", &[alice]).unwrap();
    let counts = store.mailbox_counts(inbox.id).unwrap();
    assert_eq!((counts.messages, counts.unseen, counts.recent), (2, 2, 2));

    assert_eq!(store.claim_recent(inbox.id).unwrap(), 1);
    assert_eq!(store.mailbox_counts(inbox.id).unwrap().recent, 0);
    assert_eq!(
        store.claim_recent(inbox.id).unwrap(),
        3,
        "nothing left to claim"
    );

    store.deliver(b"three\r\n", &[alice]).unwrap();
    store
        .update_flags(inbox.id, &[1], FlagOp::Add, Flags(Flags::SEEN), &[])
        .unwrap();
    let counts = store.mailbox_counts(inbox.id).unwrap();
    assert_eq!((counts.messages, counts.unseen, counts.recent), (3, 2, 1));
    assert_eq!(store.claim_recent(inbox.id).unwrap(), 3);
    assert_eq!(store.claim_recent(inbox.id).unwrap(), 4);
    assert!(matches!(
        store.claim_recent(MailboxId(999)),
        Err(StoreError::NotFound { .. })
    ));

    // Several sessions at once: each new message goes to exactly one of them.
    store.deliver(b"four\r\n", &[alice]).unwrap();
    let claims: Vec<u32> = (0..4)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || store.claim_recent(inbox.id).unwrap())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert_eq!(claims.iter().filter(|&&c| c == 4).count(), 1, "{claims:?}");
    assert_eq!(claims.iter().filter(|&&c| c == 5).count(), 3, "{claims:?}");
}

pub fn subscriptions_are_names(b: &dyn Backend) {
    let (store, alice, _) = alice_store(b);
    store.set_subscribed(alice, "Not/Yet", true).unwrap();
    store.set_subscribed(alice, "Not/Yet", true).unwrap();
    store.set_subscribed(alice, "Junk", false).unwrap();
    store.set_subscribed(alice, "Never", false).unwrap();
    assert_eq!(
        store.subscriptions(alice).unwrap(),
        ["Archive", "Drafts", "INBOX", "Not/Yet", "Sent", "Trash"]
    );
    // Deleting or renaming a mailbox leaves its subscription alone.
    store.delete_mailbox(alice, "Drafts").unwrap();
    assert!(
        store
            .subscriptions(alice)
            .unwrap()
            .contains(&"Drafts".to_string())
    );
    assert!(matches!(
        store.set_subscribed(alice, "bad//name", true),
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.set_subscribed(AccountId(999), "INBOX", true),
        Err(StoreError::NotFound { .. })
    ));
}

pub fn the_listener_hears_of_every_committed_change(b: &dyn Backend) {
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    let recorder = Arc::new(Recorder {
        heard: Default::default(),
        store: Arc::downgrade(&store),
    });
    store.set_change_listener(recorder.clone());
    let inbox = store.mailbox(alice, "INBOX").unwrap().id;
    let bob_inbox = store.mailbox(bob, "INBOX").unwrap().id;
    let archive = store.mailbox(alice, "Archive").unwrap().id;

    store.deliver(b"to both\r\n", &[alice, bob]).unwrap();
    let heard = recorder.heard.lock().unwrap().clone();
    assert!(
        heard
            .iter()
            .all(|&(_, m, modseq)| m == inbox && modseq == 2 || m == bob_inbox),
        "told after the commit: {heard:?}"
    );
    assert_eq!(recorder.take(), [(alice, inbox), (bob, bob_inbox)]);

    store
        .append(archive, b"filed\r\n", Flags::default(), &[], None)
        .unwrap();
    assert_eq!(recorder.take(), [(alice, archive)]);

    store
        .update_flags(inbox, &[1], FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    assert_eq!(recorder.take(), [(alice, inbox)]);
    store
        .update_flags(inbox, &[1], FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    assert_eq!(recorder.take(), [], "nothing changed, nothing told");

    store.copy_messages(inbox, &[1], archive).unwrap();
    assert_eq!(recorder.take(), [(alice, archive)]);
    store.expunge_deleted(inbox, None).unwrap();
    assert_eq!(recorder.take(), [(alice, inbox)]);
    store.move_messages(archive, &[1], inbox).unwrap();
    assert_eq!(recorder.take(), [(alice, inbox), (alice, archive)]);
    let ids: Vec<_> = store
        .messages(inbox)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(inbox, &ids).unwrap();
    assert_eq!(recorder.take(), [(alice, inbox)]);

    let work = store.create_mailbox(alice, "Work").unwrap().id;
    store.rename_mailbox(alice, "Work", "Job").unwrap();
    assert_eq!(recorder.take(), [(alice, work)]);
    store.delete_mailbox(alice, "Job").unwrap();
    assert_eq!(recorder.take(), [(alice, work)]);

    // Failures change nothing and tell nobody; a second listener replaces the first.
    assert!(store.delete_mailbox(alice, "Job").is_err());
    assert!(store.copy_messages(inbox, &[1], MailboxId(999)).is_err());
    assert_eq!(recorder.take(), []);
    let second = Arc::new(Recorder {
        heard: Default::default(),
        store: Arc::downgrade(&store),
    });
    store.set_change_listener(second.clone());
    store.deliver(b"again\r\n", &[bob]).unwrap();
    assert_eq!(recorder.take(), []);
    assert_eq!(second.take(), [(bob, bob_inbox)]);
}

pub fn modseq_grows_with_every_change_to_a_mailbox(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    let mut last = inbox.modseq;
    let mut grew = |store: &dyn Store, what: &str| {
        let now = store.mailbox_by_id(inbox.id).unwrap().modseq;
        assert!(now > last, "{what}: {now} after {last}");
        last = now;
    };
    store.deliver(b"one\r\n", &[alice]).unwrap();
    grew(&*store, "deliver");
    store
        .append(inbox.id, b"two\r\n", Flags::default(), &[], None)
        .unwrap();
    grew(&*store, "append");
    store
        .update_flags(inbox.id, &[1], FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    grew(&*store, "flags");
    store.expunge_deleted(inbox.id, None).unwrap();
    grew(&*store, "expunge_deleted");
    let trash = store.mailbox(alice, "Trash").unwrap().id;
    store.copy_messages(trash, &[], inbox.id).unwrap();
    store
        .append(trash, b"t\r\n", Flags::default(), &[], None)
        .unwrap();
    store.copy_messages(trash, &[1], inbox.id).unwrap();
    grew(&*store, "copy in");
    store.move_messages(inbox.id, &[3], trash).unwrap();
    grew(&*store, "move out");
    let ids: Vec<_> = store
        .messages(inbox.id)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    store.expunge(inbox.id, &ids).unwrap();
    grew(&*store, "expunge");
    store.claim_recent(inbox.id).unwrap();
    assert_eq!(
        store.mailbox_by_id(inbox.id).unwrap().modseq,
        last,
        "claiming is no change"
    );
}

/// What changed after a mod-sequence, as a session that saw the mailbox then needs it: the
/// messages whose flags changed or that arrived, in UID order, and apart from them the UIDs
/// expunged.
pub fn changes_since_a_modseq_are_the_changed_and_new_messages(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for body in [&b"one\r\n"[..], b"two\r\n", b"three\r\n"] {
        store.deliver(body, &[alice]).unwrap();
    }
    let seen = store.mailbox_by_id(inbox.id).unwrap().modseq;
    assert!(
        store
            .messages_changed_since(inbox.id, seen)
            .unwrap()
            .is_empty()
    );
    store.deliver(b"four\r\n", &[alice]).unwrap();
    store
        .update_flags(inbox.id, &[1], FlagOp::Add, Flags(Flags::FLAGGED), &[])
        .unwrap();
    let two = store.messages(inbox.id).unwrap()[1].id;
    store.expunge(inbox.id, &[two]).unwrap();
    let changed = store.messages_changed_since(inbox.id, seen).unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|m| (m.uid, m.flags.0 & Flags::FLAGGED != 0))
            .collect::<Vec<_>>(),
        [(1, true), (4, false)]
    );
    assert_eq!(
        store.expunged_since(inbox.id, seen).unwrap(),
        Some(vec![(2, 2)])
    );
    let now = store.mailbox_by_id(inbox.id).unwrap().modseq;
    assert!(
        store
            .messages_changed_since(inbox.id, now)
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.messages_changed_since(inbox.id, 0).unwrap().len(), 3);
}

/// RFC 7162's rule: every message carries the mod-sequence of its last change, never above
/// its mailbox's, and every change a client can see gives the messages it touched one
/// above what any client saw before (so FETCH CHANGEDSINCE finds them), whoever made it.
pub fn every_message_carries_the_modseq_of_its_last_change(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    let modseq_of = |store: &dyn Store, uid: u32| {
        let messages = store.messages(inbox.id).unwrap();
        let highest = store.mailbox_by_id(inbox.id).unwrap().modseq;
        assert!(
            messages
                .iter()
                .all(|m| m.modseq >= 1 && m.modseq <= highest)
        );
        messages.iter().find(|m| m.uid == uid).map(|m| m.modseq)
    };
    let seen = store.mailbox_by_id(inbox.id).unwrap().modseq;
    store.deliver(b"one\r\n", &[alice]).unwrap();
    let one = modseq_of(&*store, 1).unwrap();
    assert!(one > seen, "a delivery is a change: {one} after {seen}");
    store
        .append(inbox.id, b"two\r\n", Flags::default(), &[], None)
        .unwrap();
    let two = modseq_of(&*store, 2).unwrap();
    assert!(two > one);
    assert_eq!(
        modseq_of(&*store, 1),
        Some(one),
        "untouched messages keep theirs"
    );

    let seen = store.mailbox_by_id(inbox.id).unwrap().modseq;
    let update = store
        .store_flags(inbox.id, &[1], FlagOp::Add, Flags(Flags::SEEN), &[], None)
        .unwrap();
    let flagged = modseq_of(&*store, 1).unwrap();
    assert!(flagged > seen);
    assert_eq!(update.states[0].modseq, flagged);
    assert_eq!(store.mailbox_by_id(inbox.id).unwrap().modseq, flagged);
    // Asking for what is already so changes nothing, and says so with the old value.
    let again = store
        .store_flags(inbox.id, &[1], FlagOp::Add, Flags(Flags::SEEN), &[], None)
        .unwrap();
    assert_eq!(again.states[0].modseq, flagged);
    assert_eq!(modseq_of(&*store, 1), Some(flagged));

    // A copy arrives with its new mailbox's mod-sequence, and keeps its time zone.
    let trash = store.mailbox(alice, "Trash").unwrap();
    let zoned = store
        .append_in_zone(
            trash.id,
            b"z\r\n",
            Flags::default(),
            &[],
            Some(1_000_000),
            -420,
        )
        .unwrap();
    store
        .copy_messages(trash.id, &[zoned.uid], inbox.id)
        .unwrap();
    let copy = store.messages(inbox.id).unwrap().pop().unwrap();
    assert_eq!((copy.internal_date, copy.internal_zone), (1_000_000, -420));
    assert_eq!(copy.modseq, store.mailbox_by_id(inbox.id).unwrap().modseq);
    assert!(matches!(
        store.append_in_zone(trash.id, b"z\r\n", Flags::default(), &[], None, 6000),
        Err(StoreError::Invalid(_))
    ));
}

/// STORE UNCHANGEDSINCE: a message changed after the caller's mod-sequence is left alone
/// and named, the others change.
pub fn a_conditional_flag_change_leaves_messages_changed_since(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for _ in 0..3 {
        store.deliver(b"m\r\n", &[alice]).unwrap();
    }
    let seen = store.mailbox_by_id(inbox.id).unwrap().modseq;
    store
        .update_flags(inbox.id, &[2], FlagOp::Add, Flags(Flags::FLAGGED), &[])
        .unwrap();
    let update = store
        .store_flags(
            inbox.id,
            &[1, 2, 3],
            FlagOp::Add,
            Flags(Flags::SEEN),
            &keywords(&["$Done"]),
            Some(seen),
        )
        .unwrap();
    assert_eq!(update.modified, [2]);
    assert_eq!(
        update.states.iter().map(|s| s.uid).collect::<Vec<_>>(),
        [1, 3]
    );
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages[1].flags, Flags(Flags::FLAGGED), "left alone");
    assert_eq!(messages[0].flags, Flags(Flags::SEEN));
    assert_eq!(messages[0].keywords, ["$Done"]);
    // UNCHANGEDSINCE 0 refuses every message: none has a mod-sequence of 0.
    let none = store
        .store_flags(
            inbox.id,
            &[1, 3],
            FlagOp::Remove,
            Flags(Flags::SEEN),
            &[],
            Some(0),
        )
        .unwrap();
    assert_eq!(none.modified, [1, 3]);
    assert!(none.states.is_empty());
}

/// QRESYNC's memory of expunges: ranges of UIDs with the mod-sequence they went at,
/// whoever expunged them (IMAP, POP3, a move), never naming a UID still present, and
/// bounded: past the bound the store says it forgot rather than answer wrong.
pub fn expunges_are_remembered_as_ranges_until_the_bound(b: &dyn Backend) {
    let (store, alice, inbox) = alice_store(b);
    for _ in 0..8 {
        store.deliver(b"m\r\n", &[alice]).unwrap();
    }
    let start = store.mailbox_by_id(inbox.id).unwrap().modseq;
    assert_eq!(store.expunged_since(inbox.id, start).unwrap(), Some(vec![]));
    store
        .update_flags(
            inbox.id,
            &[2, 3, 5],
            FlagOp::Add,
            Flags(Flags::DELETED),
            &[],
        )
        .unwrap();
    assert_eq!(store.expunge_deleted(inbox.id, None).unwrap(), [2, 3, 5]);
    let after_first = store.mailbox_by_id(inbox.id).unwrap().modseq;
    // 4 is still there, so 2:3 and 5 stay apart.
    assert_eq!(
        store.expunged_since(inbox.id, start).unwrap(),
        Some(vec![(2, 3), (5, 5)])
    );
    assert_eq!(
        store.expunged_since(inbox.id, after_first).unwrap(),
        Some(vec![])
    );
    // POP3's expunge and a move out are expunges too; 6 joins 5 (nothing between them).
    let six = store.messages(inbox.id).unwrap()[2].clone();
    assert_eq!(six.uid, 6);
    store.expunge(inbox.id, &[six.id]).unwrap();
    let trash = store.mailbox(alice, "Trash").unwrap().id;
    store.move_messages(inbox.id, &[8], trash).unwrap();
    assert_eq!(
        store.expunged_since(inbox.id, after_first).unwrap(),
        Some(vec![(5, 6), (8, 8)])
    );
    assert_eq!(
        store.expunged_since(inbox.id, start).unwrap(),
        Some(vec![(2, 3), (5, 6), (8, 8)])
    );
    assert_eq!(uids(&*store, inbox.id), [1, 4, 7]);

    // Beyond 1,000 separate ranges the oldest are forgotten: 1,100 messages expunged one
    // apart (copies double the mailbox cheaply), in one transaction.
    let work = store.create_mailbox(alice, "Work").unwrap().id;
    store
        .append(work, b"w\r\n", Flags::default(), &[], None)
        .unwrap();
    while uids(&*store, work).len() < 2200 {
        let all = uids(&*store, work);
        let take = (2200 - all.len()).min(all.len());
        store.copy_messages(work, &all[..take], work).unwrap();
    }
    let before = store.mailbox_by_id(work).unwrap().modseq;
    let odd: Vec<u32> = uids(&*store, work)
        .into_iter()
        .filter(|u| u % 2 == 1)
        .collect();
    store
        .update_flags(work, &odd, FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    let flagged = store.mailbox_by_id(work).unwrap().modseq;
    assert_eq!(store.expunge_deleted(work, None).unwrap().len(), 1100);
    assert_eq!(
        store.expunged_since(work, before).unwrap(),
        None,
        "some of those 1,100 ranges were forgotten"
    );
    assert_eq!(store.expunged_since(work, flagged).unwrap(), None);
    // Once a client has seen past the forgotten ones, it is answered exactly again.
    let now = store.mailbox_by_id(work).unwrap().modseq;
    assert_eq!(store.expunged_since(work, now).unwrap(), Some(vec![]));
    store
        .update_flags(work, &[2], FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    store.expunge_deleted(work, None).unwrap();
    assert_eq!(store.expunged_since(work, now).unwrap(), Some(vec![(2, 2)]));
}
