//! Tells open sessions at once when a mailbox changes, wherever the change came from.
//!
//! The store calls [`Changes`] after every commit that touches a mailbox (SMTP delivery,
//! POP3 deletions, another IMAP session). Each mailbox that some session watches has a
//! watch channel; a change bumps it and wakes every session waiting on it, IDLE above all.
//! The session then asks the store what changed: the channel carries no data, so a missed
//! or merged wake-up loses nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use store::{AccountId, ChangeListener, MailboxId};
use tokio::sync::watch;

#[derive(Default)]
pub struct Changes {
    watched: Mutex<HashMap<MailboxId, watch::Sender<u64>>>,
}

impl Changes {
    /// A receiver that changes whenever the mailbox does.
    pub fn watch(&self, mailbox: MailboxId) -> watch::Receiver<u64> {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        // Forget channels nobody listens to any more, so the map stays as small as the set
        // of selected mailboxes.
        watched.retain(|_, tx| tx.receiver_count() > 0);
        watched
            .entry(mailbox)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

impl ChangeListener for Changes {
    fn mailbox_changed(&self, _account: AccountId, mailbox: MailboxId) {
        let watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = watched.get(&mailbox) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_wakes_watchers_of_that_mailbox_only() {
        let changes = Changes::default();
        let mut a = changes.watch(MailboxId(1));
        let b = changes.watch(MailboxId(2));
        changes.mailbox_changed(AccountId(1), MailboxId(1));
        assert!(a.has_changed().unwrap());
        assert!(!b.has_changed().unwrap());
        a.mark_unchanged();
        drop(b);
        // A change to a mailbox nobody watches is dropped, not queued.
        changes.mailbox_changed(AccountId(1), MailboxId(2));
        let _ = changes.watch(MailboxId(3));
        assert_eq!(changes.watched.lock().unwrap().len(), 2);
    }
}
