//! The outbound queue of the embedded store, through the `Store` trait: accept, due
//! lookups, settlement, operator commands, statistics, and its place in reopen, check and
//! backups. Also forwarding aliases and the addresses an account may send as.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use store::prelude::*;

use store::backup::{self, CreateOptions, RestoreOptions, Trigger};
use store::{
    AccountId, ChangeListener, CheckOptions, MailboxId, Notice, Outbound, QueueId, QueueStats,
    QueuedMessage, RecipientState, Resolution, Settlement, SqliteStore, StoreError,
};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Far enough ahead that everything accepted during a test is due.
fn later() -> i64 {
    now() + 60
}

fn store() -> (tempfile::TempDir, SqliteStore, AccountId) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.add_domain("example.com").unwrap();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    (dir, store, alice)
}

fn outbound(sender: &str, recipients: &[&str]) -> Outbound {
    Outbound {
        sender: sender.to_string(),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        account: None,
    }
}

/// Queues a message for remote recipients only.
fn queue(store: &SqliteStore, body: &[u8], recipients: &[&str]) -> QueueId {
    store
        .accept(body, &[], Some(&outbound("alice@example.com", recipients)))
        .unwrap()
        .queued
        .unwrap()
}

fn healthy(store: &SqliteStore) {
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{report}");
}

fn addresses(message: &QueuedMessage) -> Vec<&str> {
    message
        .recipients
        .iter()
        .map(|r| r.address.as_str())
        .collect()
}

fn gone(result: store::Result<impl std::fmt::Debug>) {
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(AccountId, MailboxId)>>);

impl ChangeListener for Recorder {
    fn mailbox_changed(&self, account: AccountId, mailbox: MailboxId) {
        self.0.lock().unwrap().push((account, mailbox));
    }
}

#[test]
fn accept_delivers_locally_and_queues_the_remote_recipients_in_one_call() {
    let (_dir, store, alice) = store();
    let told = Arc::new(Recorder::default());
    store.set_change_listener(told.clone());
    let body = b"From: alice@example.com\r\nSubject: hi\r\n\r\nhello\r\n";
    let envelope = Outbound {
        account: Some(alice),
        ..outbound(
            "alice@example.com",
            &["Bob@Remote.ORG", "bob@remote.org", "carol@other.net"],
        )
    };
    let accepted = store.accept(body, &[alice], Some(&envelope)).unwrap();

    let inbox = store.mailbox(alice, "INBOX").unwrap();
    assert_eq!(accepted.delivered.len(), 1);
    assert_eq!(accepted.delivered[0].mailbox, inbox.id);
    let messages = store.messages(inbox.id).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(store.read_blob(&messages[0].blob).unwrap(), body);
    assert_eq!(*told.0.lock().unwrap(), vec![(alice, inbox.id)]);
    assert_eq!(store.usage_total().messages_in, 1);

    let id = accepted.queued.unwrap();
    let queued = store.queue_get(id).unwrap();
    assert_eq!(queued.sender, "alice@example.com");
    assert_eq!(queued.account, Some(alice));
    assert_eq!(queued.size, body.len() as u64);
    assert!((queued.created - now()).abs() < 60);
    // The first spelling of a recipient is kept; the domain is lower case.
    assert_eq!(addresses(&queued), ["Bob@Remote.ORG", "carol@other.net"]);
    let domains: Vec<_> = queued.recipients.iter().map(|r| &r.domain[..]).collect();
    assert_eq!(domains, ["remote.org", "other.net"]);
    for r in &queued.recipients {
        assert_eq!(r.state, RecipientState::Queued);
        assert_eq!((r.attempts, r.delay_notified), (0, false));
        assert_eq!(
            (r.last_reason.as_deref(), r.last_error.as_deref()),
            (None, None)
        );
        assert!(r.next_attempt <= now());
    }
    assert_eq!(store.queue_body(id).unwrap(), body);
    assert_eq!(store.queue_list().unwrap(), vec![queued]);
    healthy(&store);
}

#[test]
fn accept_needs_a_recipient_and_takes_either_half_alone() {
    let (_dir, store, alice) = store();
    let err = store.accept(b"x\r\n", &[], None).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = store
        .accept(b"x\r\n", &[], Some(&outbound("a@example.com", &[])))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let err = store
        .accept(b"x\r\n", &[], Some(&outbound("", &["no-at-sign"])))
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert!(store.queue_list().unwrap().is_empty());

    let local = store.accept(b"local\r\n", &[alice], None).unwrap();
    assert_eq!((local.delivered.len(), local.queued), (1, None));
    let remote = store
        .accept(b"remote\r\n", &[], Some(&outbound("", &["x@remote.org"])))
        .unwrap();
    assert!(remote.delivered.is_empty());
    let queued = store.queue_get(remote.queued.unwrap()).unwrap();
    assert_eq!((queued.sender.as_str(), queued.account), ("", None));
    healthy(&store);
}

#[test]
fn due_lists_the_earliest_first_with_only_due_recipients_and_a_limit() {
    let (_dir, store, _) = store();
    let first = queue(&store, b"1\r\n", &["a@one.org", "b@one.org"]);
    let second = queue(&store, b"2\r\n", &["c@two.org"]);
    let third = queue(&store, b"3\r\n", &["d@three.org"]);
    let t = later();
    let due = store.queue_due(t, 10).unwrap();
    let ids: Vec<_> = due.iter().map(|m| m.id).collect();
    assert_eq!(ids, [first, second, third]);
    assert_eq!(addresses(&due[0]), ["a@one.org", "b@one.org"]);

    // Push one recipient of the first message and all of the second into the future.
    let a = due[0].recipients[0].id;
    let c = due[1].recipients[0].id;
    let deferred = |recipient, next_attempt| Settlement::Deferred {
        recipient,
        next_attempt,
        reason: "connect".into(),
        error: "connection refused".into(),
        delay_notified: false,
    };
    store
        .queue_settle(first, &[deferred(a, t + 100)], &[])
        .unwrap();
    store
        .queue_settle(second, &[deferred(c, t + 50)], &[])
        .unwrap();

    let due = store.queue_due(t, 10).unwrap();
    let ids: Vec<_> = due.iter().map(|m| m.id).collect();
    assert_eq!(ids, [first, third]);
    assert_eq!(addresses(&due[0]), ["b@one.org"], "only the due recipient");
    assert_eq!(store.queue_due(t, 1).unwrap().len(), 1);
    assert!(store.queue_due(t, 0).unwrap().is_empty());
    // Nothing accepted in the future is due in the past.
    assert!(store.queue_due(now() - 3600, 10).unwrap().is_empty());

    // Later, the second message (due at t + 50) comes before the rest of the first
    // (t + 100), and the third, due since it was accepted, before both.
    let due = store.queue_due(t + 200, 10).unwrap();
    let ids: Vec<_> = due.iter().map(|m| m.id).collect();
    assert_eq!(ids, [first, third, second]);
    assert_eq!(addresses(&due[0]), ["a@one.org", "b@one.org"]);
    let due = store.queue_due(t + 60, 10).unwrap();
    let ids: Vec<_> = due.iter().map(|m| m.id).collect();
    assert_eq!(ids, [first, third, second]);
    assert_eq!(addresses(&due[0]), ["b@one.org"]);
}

#[test]
fn settling_records_each_outcome_and_the_message_leaves_when_nobody_waits() {
    let (_dir, store, _) = store();
    let id = queue(
        &store,
        b"Subject: three\r\n\r\nx\r\n",
        &["ok@remote.org", "later@remote.org", "bad@remote.org"],
    );
    let queued = store.queue_get(id).unwrap();
    let [ok, later_, bad] = [0, 1, 2].map(|i| queued.recipients[i].id);
    let t = later();

    let dsn = Notice {
        envelope: outbound("alice@example.com", &["alice@example.com"]),
        message: b"Subject: Undelivered Mail\r\n\r\nbad@remote.org: 550\r\n".to_vec(),
    };
    store
        .queue_settle(
            id,
            &[
                Settlement::Delivered { recipient: ok },
                Settlement::Deferred {
                    recipient: later_,
                    next_attempt: t + 300,
                    reason: "4xx".into(),
                    error: "451 4.3.0 try again".into(),
                    delay_notified: true,
                },
                Settlement::Failed {
                    recipient: bad,
                    error: "550 5.1.1 no such user".into(),
                },
            ],
            std::slice::from_ref(&dsn),
        )
        .unwrap();

    let queued = store.queue_get(id).unwrap();
    let r = &queued.recipients;
    assert_eq!(
        r.iter().map(|r| r.state).collect::<Vec<_>>(),
        [
            RecipientState::Delivered,
            RecipientState::Queued,
            RecipientState::Failed
        ]
    );
    assert!(r.iter().all(|r| r.attempts == 1));
    assert_eq!(r[1].next_attempt, t + 300);
    assert_eq!(r[1].last_reason.as_deref(), Some("4xx"));
    assert_eq!(r[1].last_error.as_deref(), Some("451 4.3.0 try again"));
    assert!(r[1].delay_notified);
    assert_eq!(r[2].last_error.as_deref(), Some("550 5.1.1 no such user"));

    // The notice is a message of its own, with the null sender, due at once.
    let list = store.queue_list().unwrap();
    assert_eq!(list.len(), 2);
    let notice = list.iter().find(|m| m.id != id).unwrap();
    assert_eq!(notice.sender, "");
    assert_eq!(addresses(notice), ["alice@example.com"]);
    assert_eq!(store.queue_body(notice.id).unwrap(), dsn.message);
    let due: Vec<_> = store.queue_due(t, 10).unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].id, notice.id);

    // A second deferral counts a second attempt; delay_notified stays set.
    store
        .queue_settle(
            id,
            &[Settlement::Deferred {
                recipient: later_,
                next_attempt: t + 900,
                reason: "connect".into(),
                error: "refused".into(),
                delay_notified: false,
            }],
            &[],
        )
        .unwrap();
    let r = &store.queue_get(id).unwrap().recipients[1];
    assert_eq!((r.attempts, r.delay_notified), (2, true));
    assert_eq!(r.last_reason.as_deref(), Some("connect"));

    // The last waiting recipient delivered: the message and its recipients go.
    store
        .queue_settle(id, &[Settlement::Delivered { recipient: later_ }], &[])
        .unwrap();
    gone(store.queue_get(id));
    gone(store.queue_body(id));
    let list = store.queue_list().unwrap();
    assert_eq!(list.iter().map(|m| m.id).collect::<Vec<_>>(), [notice.id]);

    // Settling what is gone is fine, and its notices are still queued.
    store
        .queue_settle(id, &[Settlement::Delivered { recipient: ok }], &[dsn])
        .unwrap();
    assert_eq!(store.queue_list().unwrap().len(), 2);
    healthy(&store);
}

#[test]
fn settling_a_recipient_an_operator_removed_is_not_an_error() {
    let (_dir, store, _) = store();
    let id = queue(&store, b"x\r\n", &["a@remote.org"]);
    let other = queue(&store, b"y\r\n", &["b@remote.org"]);
    let recipient = store.queue_get(id).unwrap().recipients[0].id;
    store.queue_remove(id).unwrap();
    store
        .queue_settle(
            id,
            &[Settlement::Failed {
                recipient,
                error: "550".into(),
            }],
            &[],
        )
        .unwrap();
    // A recipient of another message is not touched by settling this one.
    let theirs = store.queue_get(other).unwrap().recipients[0].id;
    store
        .queue_settle(id, &[Settlement::Delivered { recipient: theirs }], &[])
        .unwrap();
    let still = store.queue_get(other).unwrap();
    assert_eq!(still.recipients[0].state, RecipientState::Queued);
    assert_eq!(still.recipients[0].attempts, 0);
}

#[test]
fn a_failure_without_notice_ends_the_message() {
    let (_dir, store, _) = store();
    let id = queue(&store, b"x\r\n", &["a@remote.org"]);
    let recipient = store.queue_get(id).unwrap().recipients[0].id;
    store
        .queue_settle(
            id,
            &[Settlement::Failed {
                recipient,
                error: "550 no".into(),
            }],
            &[],
        )
        .unwrap();
    gone(store.queue_get(id));
    assert_eq!(store.queue_stats().unwrap(), QueueStats::default());
}

#[test]
fn retry_makes_one_message_or_all_due_now() {
    let (_dir, store, _) = store();
    let t = later();
    let ids: Vec<QueueId> = (0..3)
        .map(|i| {
            queue(
                &store,
                b"x\r\n",
                &[&format!("r{i}@remote.org"), "s@remote.org"],
            )
        })
        .collect();
    for &id in &ids {
        let settled: Vec<_> = store
            .queue_get(id)
            .unwrap()
            .recipients
            .iter()
            .map(|r| Settlement::Deferred {
                recipient: r.id,
                next_attempt: t + 3600,
                reason: "dns".into(),
                error: "timeout".into(),
                delay_notified: false,
            })
            .collect();
        store.queue_settle(id, &settled, &[]).unwrap();
    }
    assert!(store.queue_due(t, 10).unwrap().is_empty());

    assert_eq!(store.queue_retry(Some(ids[1]), t).unwrap(), 2);
    let due = store.queue_due(t, 10).unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(due[0].recipients.len(), 2);
    // Already due: nothing changes.
    assert_eq!(store.queue_retry(Some(ids[1]), t).unwrap(), 0);

    assert_eq!(store.queue_retry(None, t).unwrap(), 4);
    assert_eq!(store.queue_due(t, 10).unwrap().len(), 3);
    gone(store.queue_retry(Some(QueueId(9999)), t));
}

#[test]
fn remove_drops_a_message_without_notice() {
    let (_dir, store, _) = store();
    let id = queue(&store, b"x\r\n", &["a@remote.org", "b@remote.org"]);
    let kept = queue(&store, b"y\r\n", &["c@remote.org"]);
    store.queue_remove(id).unwrap();
    gone(store.queue_get(id));
    gone(store.queue_body(id));
    gone(store.queue_remove(id));
    let list = store.queue_list().unwrap();
    assert_eq!(list.iter().map(|m| m.id).collect::<Vec<_>>(), [kept]);
    let stats = store.queue_stats().unwrap();
    assert_eq!((stats.messages, stats.recipients), (1, 1));
    healthy(&store);
}

#[test]
fn stats_count_waiting_recipients_bytes_the_oldest_and_deferrals_by_reason() {
    let (_dir, store, _) = store();
    assert_eq!(store.queue_stats().unwrap(), QueueStats::default());
    let a = queue(
        &store,
        &[b'a'; 100],
        &["a1@one.org", "a2@one.org", "a3@one.org"],
    );
    let b = queue(&store, &[b'b'; 50], &["b1@two.org"]);
    let t = later();
    let r = store.queue_get(a).unwrap().recipients;
    let defer = |recipient, reason: &str| Settlement::Deferred {
        recipient,
        next_attempt: t + 60,
        reason: reason.into(),
        error: "e".into(),
        delay_notified: false,
    };
    store
        .queue_settle(
            a,
            &[
                defer(r[0].id, "tls"),
                defer(r[1].id, "connect"),
                Settlement::Delivered { recipient: r[2].id },
            ],
            &[],
        )
        .unwrap();
    let rb = store.queue_get(b).unwrap().recipients[0].id;
    store.queue_settle(b, &[defer(rb, "connect")], &[]).unwrap();

    let stats = store.queue_stats().unwrap();
    assert_eq!(stats.messages, 2);
    assert_eq!(stats.recipients, 3);
    assert_eq!(stats.bytes, 150);
    let oldest = store.queue_get(a).unwrap().created;
    assert_eq!(stats.oldest, Some(oldest));
    assert_eq!(
        stats.deferred_by_reason,
        vec![("connect".to_string(), 2), ("tls".to_string(), 1)]
    );
}

#[test]
fn the_queue_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    let before;
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        id = queue(&store, b"Subject: durable\r\n\r\nx\r\n", &["a@remote.org"]);
        let recipient = store.queue_get(id).unwrap().recipients[0].id;
        store
            .queue_settle(
                id,
                &[Settlement::Deferred {
                    recipient,
                    next_attempt: 42,
                    reason: "4xx".into(),
                    error: "421 busy".into(),
                    delay_notified: false,
                }],
                &[],
            )
            .unwrap();
        before = store.queue_list().unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.queue_list().unwrap(), before);
    assert_eq!(
        store.queue_body(id).unwrap(),
        b"Subject: durable\r\n\r\nx\r\n"
    );
    assert_eq!(store.queue_due(42, 10).unwrap().len(), 1);
    healthy(&store);
}

#[test]
fn check_stays_clean_and_backups_carry_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SqliteStore::open(&data).unwrap();
    store.add_domain("example.com").unwrap();
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    // The same body delivered locally and queued: the blob's count is the mailbox's alone.
    let body = b"Subject: both\r\n\r\nshared\r\n";
    store
        .accept(
            body,
            &[alice],
            Some(&outbound("alice@example.com", &["x@remote.org"])),
        )
        .unwrap();
    queue(
        &store,
        b"Subject: only queued\r\n\r\n\r\n",
        &["y@remote.org"],
    );
    healthy(&store);
    // Removing the submitting account leaves its queued mail.
    let submitted = store
        .accept(
            b"z\r\n",
            &[],
            Some(&Outbound {
                account: Some(alice),
                ..outbound("alice@example.com", &["z@remote.org"])
            }),
        )
        .unwrap()
        .queued
        .unwrap();
    store.remove_account("alice@example.com").unwrap();
    assert_eq!(store.queue_get(submitted).unwrap().account, None);
    healthy(&store);
    let before = store.queue_list().unwrap();
    assert_eq!(before.len(), 3);

    const NOW: i64 = 1_795_442_400;
    let root = backup::default_root(&data);
    let report = backup::create(
        &data,
        &CreateOptions::new(root, "q".into(), Trigger::Manual, NOW),
    )
    .unwrap();
    let elsewhere = dir.path().join("restored");
    backup::restore(
        &report.path,
        &elsewhere,
        &RestoreOptions {
            owner: None,
            now_unix: NOW,
            progress: None,
        },
    )
    .unwrap();
    let copy = SqliteStore::open(&elsewhere).unwrap();
    assert_eq!(copy.queue_list().unwrap(), before);
    for m in &before {
        assert_eq!(
            copy.queue_body(m.id).unwrap(),
            store.queue_body(m.id).unwrap()
        );
    }
    healthy(&copy);
}

#[test]
fn aliases_with_targets_elsewhere_resolve_to_forward() {
    let (_dir, store, alice) = store();
    store
        .add_alias(
            "both@example.com",
            &["alice@example.com".into(), "Alice@Elsewhere.ORG".into()],
        )
        .unwrap();
    store
        .add_alias(
            "away@example.com",
            &["a@elsewhere.org".into(), "b@far.net".into()],
        )
        .unwrap();
    // Through another alias, and twice: once in the answer.
    store
        .add_alias(
            "chain@example.com",
            &["away@example.com".into(), "b@far.net".into()],
        )
        .unwrap();
    // A target in one of our domains must still exist.
    assert!(
        store
            .add_alias("x@example.com", &["nobody@example.com".into()])
            .is_err()
    );

    assert_eq!(
        store.resolve("both@example.com").unwrap(),
        Resolution::Forward {
            accounts: vec![alice],
            remote: vec!["alice@elsewhere.org".into()],
        }
    );
    let only_remote = Resolution::Forward {
        accounts: vec![],
        remote: vec!["a@elsewhere.org".into(), "b@far.net".into()],
    };
    assert_eq!(store.resolve("away@example.com").unwrap(), only_remote);
    assert_eq!(store.resolve("chain@example.com").unwrap(), only_remote);
    // Subaddresses reach the alias as before.
    assert_eq!(store.resolve("away+tag@example.com").unwrap(), only_remote);
    assert_eq!(
        store.resolve("alice@example.com").unwrap(),
        Resolution::Local(vec![alice])
    );
    assert_eq!(
        store.resolve("a@elsewhere.org").unwrap(),
        Resolution::NotLocal
    );
    assert_eq!(
        store.resolve("nobody@example.com").unwrap(),
        Resolution::UnknownUser
    );
    // A remote target whose domain became ours is no longer forwarded; unknown here, it
    // is dropped.
    store.add_domain("far.net").unwrap();
    assert_eq!(
        store.resolve("chain@example.com").unwrap(),
        Resolution::Forward {
            accounts: vec![],
            remote: vec!["a@elsewhere.org".into()],
        }
    );
}

#[test]
fn an_account_sends_as_itself_and_the_aliases_that_name_it() {
    let (_dir, store, alice) = store();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    store
        .add_alias("Sales@Example.com", &["alice@example.com".into()])
        .unwrap();
    store
        .add_alias(
            "team@example.com",
            &["alice@example.com".into(), "bob@example.com".into()],
        )
        .unwrap();
    // Only aliases that name the account directly.
    store
        .add_alias("all@example.com", &["team@example.com".into()])
        .unwrap();
    assert_eq!(
        store.sender_addresses(alice).unwrap(),
        ["alice@example.com", "sales@example.com", "team@example.com"]
    );
    assert_eq!(
        store.sender_addresses(bob).unwrap(),
        ["bob@example.com", "team@example.com"]
    );
    gone(store.sender_addresses(AccountId(9999)));
}
