//! The behaviour every store backend must show, written once against the role traits
//! (`Directory`, `Mailboxes`, `Maintenance`) so that a second backend proves itself by
//! passing the same cases as SQLite. A backend's test calls [`suite`] with a function that
//! makes a fresh, empty store wrapped in a [`Backend`]: the store as the sessions see it,
//! plus the few hands a test needs to damage what it stored, which only the backend has.
//!
//! Nothing here names a backend, reads a file of one or writes SQL; what is particular to
//! SQLite (pragmas, the file layout) is tested beside it, in `tests/sqlite_*.rs`.

mod directory;
mod mailboxes;
mod maintenance;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use crate::prelude::*;
use crate::{AccountId, BlobId, CheckOptions, MailboxId, MailboxInfo};

/// A fresh store of one backend, and what the suite must do to it behind the roles' back.
pub trait Backend {
    /// The store under test. Every call returns the same store until [`Backend::reopen`].
    fn store(&self) -> Arc<dyn Store>;
    /// Closes the store and opens the same data again, as a restart does. The caller has
    /// dropped its handles.
    fn reopen(&self) -> Arc<dyn Store>;
    /// How many message bodies the backend holds (files, rows): what a test sees go when
    /// the last reference goes.
    fn bodies(&self) -> usize;
    /// Whether the body is held in the live set (not set aside in quarantine).
    fn has_body(&self, blob: &BlobId) -> bool;
    /// Flips one byte of a stored body in place, as bit rot would; returns the damaged bytes.
    fn damage_body(&self, blob: &BlobId) -> Vec<u8>;
    /// Loses a stored body entirely, as a deleted file would.
    fn lose_body(&self, blob: &BlobId);
    /// Stores a body no message references, `age` old: what a crash between storing a
    /// body and committing its message leaves behind.
    fn plant_orphan(&self, bytes: &[u8], age: Duration) -> BlobId;
    /// The bytes a repair or an optimisation set aside for `blob`, if it did.
    fn set_aside(&self, blob: &BlobId, why: SetAside) -> Option<Vec<u8>>;
    /// Makes the metadata wrong behind the store's back, as a bug or a torn write would.
    fn corrupt(&self, corruption: Corruption);
}

/// Why a body was set aside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetAside {
    /// Its bytes no longer match their hash.
    Damaged,
    /// No message referenced it.
    Orphan,
}

/// Metadata made wrong on purpose, for the check to find and repair.
#[derive(Debug, Clone, Copy)]
pub enum Corruption {
    /// Every message on `blob` records a size `grow_by` bytes larger than the body.
    MessageSize { blob: BlobId, grow_by: i64 },
    /// The mailbox's UIDNEXT is set back, so the next delivery would reuse a UID.
    UidNext { mailbox: MailboxId, uid_next: u32 },
    /// The account's recorded usage (what its quota is judged by) is set to `used`.
    Usage { account: AccountId, used: u64 },
}

struct Case {
    name: &'static str,
    run: fn(&dyn Backend),
}

macro_rules! case {
    ($module:ident :: $name:ident) => {
        Case {
            name: concat!(stringify!($module), "::", stringify!($name)),
            run: $module::$name,
        }
    };
}

const CASES: &[Case] = &[
    case!(directory::accounts_need_a_local_domain_and_unique_addresses),
    case!(directory::authentication_accepts_only_the_right_password),
    case!(directory::administrators_and_their_second_factor_are_kept_per_account),
    case!(directory::resolution_follows_aliases_and_subaddresses_and_refuses_relay),
    case!(directory::postmaster_of_every_local_domain_reaches_the_configured_target),
    case!(directory::quotas_count_every_copy_and_nothing_over_a_limit_is_stored),
    case!(mailboxes::one_blob_serves_every_recipient_and_goes_with_the_last_reference),
    case!(mailboxes::removing_an_account_releases_its_blobs),
    case!(mailboxes::concurrent_deliveries_are_group_committed_without_loss),
    case!(mailboxes::reopening_keeps_everything),
    case!(mailboxes::new_accounts_get_the_special_use_mailboxes_and_subscriptions),
    case!(mailboxes::mailbox_names_are_checked_and_unique),
    case!(mailboxes::a_special_use_role_belongs_to_one_mailbox),
    case!(mailboxes::a_mailbox_deleted_and_created_again_gets_a_new_uidvalidity),
    case!(mailboxes::a_page_newest_first_agrees_with_the_whole_mailbox),
    case!(mailboxes::append_keeps_flags_keywords_and_date_and_shares_the_blob_with_delivery),
    case!(mailboxes::concurrent_appends_all_land_with_distinct_uids),
    case!(mailboxes::flags_and_keywords_round_trip),
    case!(mailboxes::expunge_deleted_removes_only_deleted_messages_and_uids_are_never_reused),
    case!(mailboxes::copy_shares_blobs_and_keeps_reference_counts_right),
    case!(mailboxes::move_is_atomic_and_carries_the_reference),
    case!(mailboxes::rename_carries_the_mailboxes_below_and_changes_uidvalidity),
    case!(mailboxes::renaming_inbox_moves_its_messages_and_leaves_it_empty),
    case!(mailboxes::deleting_a_mailbox_releases_its_blobs_and_keeps_the_ones_below),
    case!(mailboxes::a_mailboxs_size_adds_up_its_messages),
    case!(mailboxes::claim_recent_hands_each_message_to_one_session),
    case!(mailboxes::subscriptions_are_names),
    case!(mailboxes::the_listener_hears_of_every_committed_change),
    case!(mailboxes::modseq_grows_with_every_change_to_a_mailbox),
    case!(mailboxes::changes_since_a_modseq_are_the_changed_and_new_messages),
    case!(mailboxes::every_message_carries_the_modseq_of_its_last_change),
    case!(mailboxes::a_conditional_flag_change_leaves_messages_changed_since),
    case!(mailboxes::expunges_are_remembered_as_ranges_until_the_bound),
    case!(maintenance::check_finds_damaged_blobs_and_quarantines_orphans),
    case!(maintenance::check_names_a_blob_with_one_flipped_byte_and_the_mail_it_holds),
    case!(maintenance::check_names_a_deleted_blob_and_the_mail_it_held),
    case!(maintenance::repair_quarantines_a_damaged_blob_and_lists_the_mail_it_held),
    case!(maintenance::repair_fixes_a_wrong_recorded_size_without_quarantining_intact_bytes),
    case!(maintenance::check_reports_progress_over_every_blob),
    case!(maintenance::optimize_quarantines_old_orphan_blobs_and_keeps_young_ones),
    case!(maintenance::optimize_runs_while_another_thread_delivers),
    case!(maintenance::check_repairs_a_uidnext_that_would_reuse_uids),
    case!(maintenance::check_recounts_a_usage_that_misjudges_the_quota),
];

/// Runs every case, each on a fresh store from `make`, and panics at the end naming every
/// case that failed (each failure's own message is printed by the panic hook as it
/// happens), so one broken rule does not hide the others.
pub fn suite(make: &dyn Fn() -> Box<dyn Backend>) {
    let failed: Vec<&str> = CASES
        .iter()
        .filter(|case| {
            let backend = make();
            catch_unwind(AssertUnwindSafe(|| (case.run)(backend.as_ref()))).is_err()
        })
        .map(|case| case.name)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} conformance cases failed: {}",
        failed.len(),
        CASES.len(),
        failed.join(", ")
    );
}

/// The number of cases, for a runner that reports it.
pub fn case_count() -> usize {
    CASES.len()
}

const AN_HOUR: Duration = Duration::from_secs(3600);

/// The store with the domain every case uses.
fn fresh(b: &dyn Backend) -> Arc<dyn Store> {
    let store = b.store();
    store.add_domain("example.com").unwrap();
    store
}

/// A store with alice and bob and one message to both, another to alice alone; the shared
/// message's body.
fn store_with_mail(b: &dyn Backend) -> (Arc<dyn Store>, BlobId) {
    let store = fresh(b);
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
    (store, shared)
}

/// A store with alice, whose id is returned with her INBOX.
fn alice_store(b: &dyn Backend) -> (Arc<dyn Store>, AccountId, MailboxInfo) {
    let store = fresh(b);
    let alice = store.add_account("alice@example.com", "pw").unwrap();
    let inbox = store.mailbox(alice, "INBOX").unwrap();
    (store, alice, inbox)
}

fn healthy(store: &dyn Store) {
    let report = store.check(&CheckOptions::default()).unwrap();
    assert!(report.is_healthy(), "{report}");
}

/// Delivers `n` distinct messages to alice from a few threads (group commit keeps it quick);
/// also for a backend's own tests.
pub fn deliver_many(store: &Arc<dyn Store>, alice: AccountId, n: usize) {
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
