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
