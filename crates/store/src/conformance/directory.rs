//! `Directory`: domains, accounts, passwords, aliases and what an address resolves to.

use super::*;
use crate::{Resolution, StoreError};

pub fn accounts_need_a_local_domain_and_unique_addresses(b: &dyn Backend) {
    let store = fresh(b);
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

pub fn authentication_accepts_only_the_right_password(b: &dyn Backend) {
    let store = fresh(b);
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

pub fn administrators_and_their_second_factor_are_kept_per_account(b: &dyn Backend) {
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    let principal = |id| store.principal(id).unwrap().unwrap();
    assert!(
        !principal(alice).admin,
        "a new account is not an administrator"
    );
    store.set_admin("ALICE@example.com", true).unwrap();
    store
        .set_totp_secret("alice@example.com", Some("JBSWY3DPEHPK3PXP"))
        .unwrap();
    assert!(principal(alice).admin);
    assert_eq!(
        principal(alice).totp_secret.as_deref(),
        Some("JBSWY3DPEHPK3PXP")
    );
    assert_eq!(principal(alice).address, "alice@example.com");
    assert!(!principal(bob).admin && principal(bob).totp_secret.is_none());
    let listed: Vec<bool> = store.accounts().unwrap().iter().map(|a| a.admin).collect();
    assert_eq!(listed, [true, false]);
    store.set_totp_secret("alice@example.com", None).unwrap();
    store.set_admin("alice@example.com", false).unwrap();
    assert_eq!(principal(alice).totp_secret, None);
    assert!(!principal(alice).admin);
    assert!(matches!(
        store.set_admin("nobody@example.com", true),
        Err(StoreError::NotFound { .. })
    ));
    store.remove_account("bob@example.com").unwrap();
    assert_eq!(store.principal(bob).unwrap(), None);
}

pub fn resolution_follows_aliases_and_subaddresses_and_refuses_relay(b: &dyn Backend) {
    let store = fresh(b);
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

pub fn postmaster_of_every_local_domain_reaches_the_configured_target(b: &dyn Backend) {
    let store = fresh(b);
    store.add_domain("example.net").unwrap();
    let admin = store.add_account("admin@example.com", "pw").unwrap();
    let pm = store.add_account("postmaster@example.net", "pw").unwrap();
    // Not configured: no account, no alias, nobody.
    assert_eq!(
        store.resolve("postmaster@example.com").unwrap(),
        Resolution::UnknownUser
    );
    store.set_postmaster(Some("Admin@Example.com".into()));
    for address in [
        "postmaster@example.com",
        "PostMaster@EXAMPLE.COM",
        "postmaster+dmarc@example.com",
    ] {
        assert_eq!(
            store.resolve(address).unwrap(),
            Resolution::Local(vec![admin]),
            "{address}"
        );
    }
    // An account of that name keeps its own mail; other names and domains are unchanged.
    assert_eq!(
        store.resolve("postmaster@example.net").unwrap(),
        Resolution::Local(vec![pm])
    );
    assert_eq!(
        store.resolve("webmaster@example.com").unwrap(),
        Resolution::UnknownUser
    );
    assert_eq!(
        store.resolve("postmaster@example.org").unwrap(),
        Resolution::NotLocal
    );
    // A target elsewhere is forwarded.
    store.set_postmaster(Some("ops@example.org".into()));
    assert_eq!(
        store.resolve("postmaster@example.com").unwrap(),
        Resolution::Forward {
            accounts: vec![],
            remote: vec!["ops@example.org".into()]
        }
    );
}

pub fn quotas_count_every_copy_and_nothing_over_a_limit_is_stored(b: &dyn Backend) {
    use crate::{FlagOp, Flags, Room};
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let bob = store.add_account("bob@example.com", "pw").unwrap();
    let used = |account| store.quota(account).unwrap().used;
    let body = |n: usize| vec![b'x'; n];
    assert_eq!(
        store.quota(alice).unwrap().limit,
        None,
        "no limit until one is set"
    );

    // The domain's default applies until an account has its own.
    store.set_domain_quota("example.com", Some(1000)).unwrap();
    assert_eq!(store.quota(bob).unwrap().limit, Some(1000));
    store.set_quota("alice@example.com", Some(500)).unwrap();
    let own = store.account_quota("ALICE@example.com").unwrap();
    assert_eq!(
        (own.account, own.own, own.quota.limit),
        (alice, Some(500), Some(500))
    );
    assert_eq!(store.account_quota("bob@example.com").unwrap().own, None);

    // A delivery to both counts once for each, though the body is stored once.
    store.deliver(&body(300), &[alice, bob]).unwrap();
    assert_eq!((used(alice), used(bob)), (300, 300));
    assert_eq!(
        store.quota_room(&[bob, alice], 201).unwrap(),
        Some((alice, Room::Full))
    );
    assert_eq!(
        store.quota_room(&[bob], 701).unwrap(),
        Some((bob, Room::Full))
    );
    assert_eq!(
        store.quota_room(&[bob], 1001).unwrap(),
        Some((bob, Room::TooLarge))
    );
    assert_eq!(store.quota_room(&[alice, bob], 200).unwrap(), None);

    // Past alice's limit, the delivery to both fails as a whole and leaves no trace.
    let err = store.deliver(&body(201), &[bob, alice]).unwrap_err();
    assert!(
        matches!(err, StoreError::OverQuota { ref address, used: 501, limit: 500 } if address == "alice@example.com"),
        "{err}"
    );
    assert_eq!((used(alice), used(bob)), (300, 300));
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    assert_eq!(store.messages(inbox.id).unwrap().len(), 1);
    assert_eq!(
        store
            .messages(store.mailbox(bob, "INBOX").unwrap().id)
            .unwrap()
            .len(),
        1
    );

    // APPEND and COPY are held to it too; a move within the account adds nothing.
    let archive = store.mailbox(alice, "Archive").unwrap();
    assert!(matches!(
        store.append(archive.id, &body(250), Flags::default(), &[], None),
        Err(StoreError::OverQuota { .. })
    ));
    store
        .append(archive.id, &body(100), Flags::default(), &[], None)
        .unwrap();
    assert_eq!(used(alice), 400);
    assert!(matches!(
        store.copy_messages(inbox.id, &[1], archive.id),
        Err(StoreError::OverQuota { .. })
    ));
    assert_eq!(store.messages(archive.id).unwrap().len(), 1);
    store.set_quota("alice@example.com", Some(300)).unwrap();
    store.move_messages(inbox.id, &[1], archive.id).unwrap();
    assert_eq!(
        used(alice),
        400,
        "a move over a lowered limit is allowed and changes nothing"
    );

    // Expunging frees what the messages took; the limit comes back off.
    store
        .update_flags(archive.id, &[1, 2], FlagOp::Add, Flags(Flags::DELETED), &[])
        .unwrap();
    store.expunge_deleted(archive.id, None).unwrap();
    assert_eq!(used(alice), 0);
    store.set_quota("alice@example.com", None).unwrap();
    store.set_domain_quota("example.com", None).unwrap();
    assert_eq!(store.quota(alice).unwrap().limit, None);
    store.deliver(&body(5000), &[alice]).unwrap();
    assert_eq!(used(alice), 5000);
    assert!(
        store.quota_usage().unwrap().is_empty(),
        "no account is under a limit"
    );

    // The list of accounts under a limit, and the warned mark.
    store.set_domain_quota("example.com", Some(10_000)).unwrap();
    let usage = store.quota_usage().unwrap();
    assert_eq!(
        usage
            .iter()
            .map(|u| (u.address.as_str(), u.quota.used, u.warned))
            .collect::<Vec<_>>(),
        [
            ("alice@example.com", 5000, false),
            ("bob@example.com", 300, false)
        ]
    );
    store.set_quota_warned(alice, true).unwrap();
    assert!(store.quota_usage().unwrap()[0].warned);
    assert_eq!(store.accounts().unwrap()[0].quota, Some(10_000));
    assert!(store.set_quota("nobody@example.com", Some(1)).is_err());
    assert!(store.set_domain_quota("elsewhere.org", Some(1)).is_err());
    healthy(&*store);
}
