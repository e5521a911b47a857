//! The selected mailbox as one session sees it: message numbers, flags, \Recent, and the
//! untagged responses that bring the client up to date after changes made elsewhere.
//!
//! The view is a snapshot of `(uid, flags)` in UID order; message sequence numbers are
//! positions in it. [`Selected::refresh`] compares it with the store and reports the
//! difference as EXPUNGE, FETCH (FLAGS) and EXISTS/RECENT. While a non-UID FETCH, STORE or
//! SEARCH runs, RFC 3501 §7.4.1 forbids EXPUNGE, because it would renumber the messages the
//! client is naming; such messages stay in the view as ghosts until a command that may
//! announce them. Once the client enabled CONDSTORE, flag changes carry MODSEQ; once it
//! enabled QRESYNC, expunges are announced as VANISHED (RFC 7162 §3.2.10).

use std::collections::HashSet;
use std::sync::Arc;

use imap_proto::{SeqNum, SequenceSet};
use store::{MailAccess, MailboxInfo, MessageMeta};
use tokio::sync::watch;

use crate::fetch::push_flags;

pub(crate) struct Selected {
    pub info: MailboxInfo,
    pub read_only: bool,
    pub messages: Vec<Entry>,
    /// UIDs that are \Recent for this session: RFC 3501 gives each new message's \Recent
    /// to the first session that sees it.
    pub recent: HashSet<u32>,
    /// Wakes when the mailbox changes anywhere.
    pub changes: watch::Receiver<u64>,
    /// The client enabled CONDSTORE: unsolicited FETCH responses carry MODSEQ.
    pub condstore: bool,
    /// The client enabled QRESYNC: expunges are told as VANISHED.
    pub qresync: bool,
    /// The client enabled IMAP4rev2: nothing is \Recent, and no RECENT is sent.
    pub rev2: bool,
    /// The UIDs `SEARCH RETURN (SAVE)` kept for `$` (RFC 5182), ascending.
    pub saved: Vec<u32>,
}

pub(crate) struct Entry {
    pub meta: MessageMeta,
    /// Expunged elsewhere, not yet announced: keeps its number until it may be.
    pub expunged: bool,
}

/// What a refresh read from the store.
enum Fresh {
    /// Every message, to compare with the view.
    Whole(Vec<MessageMeta>),
    /// What changed after the view's mod-sequence.
    Since {
        changed: Vec<MessageMeta>,
        expunged: Vec<(u32, u32)>,
    },
}

impl Selected {
    pub fn new(
        info: MailboxInfo,
        read_only: bool,
        messages: Vec<MessageMeta>,
        recent_from: Option<u32>,
        changes: watch::Receiver<u64>,
    ) -> Selected {
        let recent = match recent_from {
            Some(from) => messages
                .iter()
                .map(|m| m.uid)
                .filter(|&u| u >= from)
                .collect(),
            None => HashSet::new(),
        };
        Selected {
            info,
            read_only,
            messages: messages
                .into_iter()
                .map(|meta| Entry {
                    meta,
                    expunged: false,
                })
                .collect(),
            recent,
            changes,
            condstore: false,
            qresync: false,
            rev2: false,
            saved: Vec::new(),
        }
    }

    /// `$` as the set it stands for: the saved messages still in the view (an expunged
    /// one leaves the saved result, RFC 5182 §2.1), by UID or by number.
    ///
    /// Saved messages next to each other in the view make one range, so `$` after
    /// `SEARCH RETURN (SAVE) ALL` is one range, not one per message. By UID, a range spans
    /// only UIDs no other message of the view has.
    pub fn saved_set(&self, uid: bool) -> SequenceSet {
        // (position of the run's last message, first number, last number)
        let mut runs: Vec<(usize, u32, u32)> = Vec::new();
        for (index, e) in self.messages.iter().enumerate() {
            if e.expunged || self.saved.binary_search(&e.meta.uid).is_err() {
                continue;
            }
            let n = if uid { e.meta.uid } else { index as u32 + 1 };
            match runs.last_mut() {
                Some((at, _, last)) if *at + 1 == index => (*at, *last) = (index, n),
                _ => runs.push((index, n, n)),
            }
        }
        SequenceSet(
            runs.into_iter()
                .map(|(_, a, b)| (SeqNum::Value(a), SeqNum::Value(b)))
                .collect(),
        )
    }

    pub fn exists(&self) -> u32 {
        self.messages.len() as u32
    }

    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(&uid)
    }

    /// The largest UID in the view, for `*` in UID sets (0 when empty).
    fn max_uid(&self) -> u32 {
        self.messages.last().map_or(0, |e| e.meta.uid)
    }

    /// Positions named by a set, ascending and without duplicates. Message numbers beyond
    /// the mailbox are an error (the client's view is wrong); UIDs that do not exist are
    /// simply not there, as RFC 3501 §6.4.8 says.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<usize>, String> {
        let mut picked = Vec::new();
        if uid {
            let max = self.max_uid();
            let value = |n: SeqNum| match n {
                SeqNum::Value(v) => v,
                SeqNum::Star => max,
            };
            for &(a, b) in &set.0 {
                let (lo, hi) = order(value(a), value(b));
                let start = self.messages.partition_point(|e| e.meta.uid < lo);
                let end = self.messages.partition_point(|e| e.meta.uid <= hi);
                picked.extend(start..end);
            }
        } else {
            let max = self.exists();
            let value = |n: SeqNum| match n {
                SeqNum::Value(v) => v,
                SeqNum::Star => max,
            };
            for &(a, b) in &set.0 {
                // "1:*" in an empty mailbox names nothing rather than a wrong number, as
                // clients that fetch "everything" right after SELECT expect.
                if max == 0 && (a == SeqNum::Star || b == SeqNum::Star) {
                    continue;
                }
                let (lo, hi) = order(value(a), value(b));
                if lo == 0 || hi > max {
                    return Err(if max == 0 {
                        "the mailbox is empty: no message numbers exist".to_string()
                    } else {
                        format!("message numbers run from 1 to {max}")
                    });
                }
                picked.extend((lo - 1) as usize..hi as usize);
            }
        }
        picked.sort_unstable();
        picked.dedup();
        Ok(picked)
    }

    /// Takes the store's state and writes what changed as untagged responses. With
    /// `expunge_allowed` false, expunged messages become ghosts instead of EXPUNGE lines.
    pub async fn refresh(
        &mut self,
        store: &Arc<dyn MailAccess>,
        out: &mut Vec<u8>,
        expunge_allowed: bool,
    ) -> store::Result<()> {
        self.changes.mark_unchanged();
        let mailbox = self.info.id;
        let unannounced = self.messages.iter().any(|e| e.expunged);
        let store = store.clone();
        let known = self.info.modseq;
        let known_uid_next = self.info.uid_next;
        let claims_recent = !self.read_only && !self.rev2;
        let fresh = tokio::task::spawn_blocking(move || -> store::Result<_> {
            let info = store.mailbox_by_id(mailbox)?;
            if info.modseq == known {
                return Ok((info, None, None));
            }
            // The view holds everything up to `known`, so only what changed after it need
            // be read, while the store still remembers every expunge since; otherwise the
            // whole mailbox, compared. Read after `info`, both may include later changes,
            // which the next refresh meets again and finds already applied.
            let messages = match store.expunged_since(mailbox, known)? {
                Some(expunged) => Fresh::Since {
                    changed: store.messages_changed_since(mailbox, known)?,
                    expunged,
                },
                None => Fresh::Whole(store.messages(mailbox)?),
            };
            // New messages' \Recent belongs to the first session that sees them. Claiming is
            // a write, so it happens only when messages arrived, not on every flag change.
            let arrived = info.uid_next != known_uid_next;
            let recent_from = if !claims_recent || !arrived {
                None
            } else {
                Some(store.claim_recent(mailbox)?)
            };
            Ok((info, Some(messages), recent_from))
        })
        .await
        .map_err(|_| store::StoreError::WriterGone)??;
        let (info, messages, recent_from) = fresh;
        self.info = info;
        match messages {
            Some(Fresh::Whole(messages)) => self.merge(messages, recent_from, out, expunge_allowed),
            Some(Fresh::Since { changed, expunged }) => {
                self.merge_changes(changed, &expunged, recent_from, out, expunge_allowed)
            }
            None if unannounced && expunge_allowed => self.announce_expunges(out),
            None => {}
        }
        Ok(())
    }

    /// Applies what changed since the view's mod-sequence: the messages changed or new,
    /// and the UID ranges expunged. Costs what changed, not what the mailbox holds.
    fn merge_changes(
        &mut self,
        changed: Vec<MessageMeta>,
        expunged: &[(u32, u32)],
        recent_from: Option<u32>,
        out: &mut Vec<u8>,
        expunge_allowed: bool,
    ) {
        for &(first, last) in expunged {
            let start = self.messages.partition_point(|e| e.meta.uid < first);
            let end = self.messages.partition_point(|e| e.meta.uid <= last);
            for entry in &mut self.messages[start..end] {
                entry.expunged = true;
            }
        }
        let last_uid = self.max_uid();
        let mut added = Vec::new();
        for m in changed {
            if m.uid > last_uid {
                added.push(m);
            } else if let Ok(index) = self.messages.binary_search_by_key(&m.uid, |e| e.meta.uid)
                && !self.messages[index].expunged
            {
                self.update(index, m, out);
            }
            // Any other is below the view's last UID yet unknown to it, which UIDs handed
            // out in order rule out; the whole comparison leaves such a message out too.
        }
        self.arrivals(added, recent_from, out, expunge_allowed);
    }

    /// A message the view holds, as the store has it now: a FETCH when its flags changed.
    fn update(&mut self, index: usize, m: MessageMeta, out: &mut Vec<u8>) {
        let entry = &mut self.messages[index];
        // A CONDSTORE client learns of a change even when the flags came back to what it
        // saw: the mod-sequence it holds is out of date.
        let changed = m.flags != entry.meta.flags
            || m.keywords != entry.meta.keywords
            || (self.condstore && m.modseq != entry.meta.modseq);
        entry.meta = m;
        if changed {
            let recent = self.recent.contains(&entry.meta.uid);
            push_flag_change(out, index + 1, &entry.meta, recent, self.condstore);
        }
    }

    fn merge(
        &mut self,
        fresh: Vec<MessageMeta>,
        recent_from: Option<u32>,
        out: &mut Vec<u8>,
        expunge_allowed: bool,
    ) {
        let mut fresh = fresh.into_iter().peekable();
        let mut updates = Vec::new();
        for (index, entry) in self.messages.iter_mut().enumerate() {
            // Both lists are in UID order, and UIDs only grow, so one pass pairs them.
            while fresh.peek().is_some_and(|m| m.uid < entry.meta.uid) {
                fresh.next();
            }
            match fresh.peek() {
                Some(m) if m.uid == entry.meta.uid => {
                    let m = fresh.next().expect("peeked");
                    updates.push((index, m));
                }
                _ => entry.expunged = true,
            }
        }
        for (index, m) in updates {
            self.update(index, m, out);
        }
        let added: Vec<MessageMeta> = fresh.collect();
        self.arrivals(added, recent_from, out, expunge_allowed);
    }

    /// Appends new messages, announcing them (and, when allowed, the expunges before them).
    fn arrivals(
        &mut self,
        added: Vec<MessageMeta>,
        recent_from: Option<u32>,
        out: &mut Vec<u8>,
        expunge_allowed: bool,
    ) {
        let arrived = !added.is_empty();
        if let Some(from) = recent_from {
            self.recent
                .extend(added.iter().map(|m| m.uid).filter(|&u| u >= from));
        }
        self.messages.extend(added.into_iter().map(|meta| Entry {
            meta,
            expunged: false,
        }));
        if expunge_allowed {
            self.announce_expunges(out);
        }
        if arrived {
            out.extend_from_slice(format!("* {} EXISTS\r\n", self.exists()).as_bytes());
            if !self.rev2 {
                out.extend_from_slice(format!("* {} RECENT\r\n", self.recent.len()).as_bytes());
            }
        }
    }

    /// Drops the ghosts, highest number first, so every EXPUNGE names a current number;
    /// for a QRESYNC client, one VANISHED names their UIDs instead.
    fn announce_expunges(&mut self, out: &mut Vec<u8>) {
        let mut vanished: Vec<(u32, u32)> = Vec::new();
        // Highest first, each number is the one the message has while those above it go.
        for index in (0..self.messages.len()).rev() {
            let gone = &self.messages[index];
            if gone.expunged {
                self.recent.remove(&gone.meta.uid);
                if self.qresync {
                    vanished.push((gone.meta.uid, gone.meta.uid));
                } else {
                    out.extend_from_slice(format!("* {} EXPUNGE\r\n", index + 1).as_bytes());
                }
            }
        }
        // One pass, not one shift of the rest per message: a mailbox may be large.
        self.messages.retain(|e| !e.expunged);
        vanished.reverse();
        imap_proto::response::vanished(out, false, &merge_ranges(vanished));
    }

    /// The mod-sequence of the view: what HIGHESTMODSEQ says.
    pub fn highest_modseq(&self) -> u64 {
        self.info.modseq
    }

    /// Removes messages this session expunged itself, announcing each.
    pub fn expunged_here(&mut self, uids: &[u32], out: &mut Vec<u8>) {
        let gone: HashSet<u32> = uids.iter().copied().collect();
        for entry in &mut self.messages {
            if gone.contains(&entry.meta.uid) {
                entry.expunged = true;
            }
        }
        self.announce_expunges(out);
    }
}

/// `* n FETCH (UID u FLAGS (...) [MODSEQ (m)])`: a message's flags changed.
pub(crate) fn push_flag_change(
    out: &mut Vec<u8>,
    seq: usize,
    meta: &MessageMeta,
    recent: bool,
    condstore: bool,
) {
    out.extend_from_slice(format!("* {seq} FETCH (UID {} FLAGS ", meta.uid).as_bytes());
    push_flags(out, meta, recent);
    if condstore {
        out.extend_from_slice(format!(" MODSEQ ({})", meta.modseq).as_bytes());
    }
    out.extend_from_slice(b")\r\n");
}

/// A set's ranges in ascending order, joined where they touch; `*` is `star`.
pub(crate) fn set_ranges(set: &SequenceSet, star: u32) -> Vec<(u32, u32)> {
    let value = |n: SeqNum| match n {
        SeqNum::Value(v) => v,
        SeqNum::Star => star,
    };
    let mut ranges: Vec<(u32, u32)> = set
        .0
        .iter()
        .map(|&(a, b)| {
            let (a, b) = (value(a), value(b));
            (a.min(b), a.max(b))
        })
        .collect();
    ranges.sort_unstable();
    merge_ranges(ranges)
}

/// Whether `n` is in ranges [`set_ranges`] made: a binary search.
pub(crate) fn in_ranges(ranges: &[(u32, u32)], n: u32) -> bool {
    let at = ranges.partition_point(|r| r.1 < n);
    ranges.get(at).is_some_and(|r| r.0 <= n)
}

/// Ascending ranges with touching ones joined.
pub(crate) fn merge_ranges(ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(prev) if prev.1.checked_add(1).is_some_and(|next| next >= first) => {
                prev.1 = prev.1.max(last);
            }
            _ => merged.push((first, last)),
        }
    }
    merged
}

fn order(a: u32, b: u32) -> (u32, u32) {
    if a <= b { (a, b) } else { (b, a) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{AccountId, BlobId, Flags, MailboxId, MessageId};

    fn meta(uid: u32, flags: u32) -> MessageMeta {
        MessageMeta {
            id: MessageId(uid as i64),
            uid,
            internal_date: 0,
            internal_zone: 0,
            modseq: u64::from(uid),
            size: 10,
            flags: Flags(flags),
            keywords: Vec::new(),
            blob: BlobId([0; 32]),
        }
    }

    fn view(uids: &[u32]) -> Selected {
        let info = MailboxInfo {
            id: MailboxId(1),
            account: AccountId(1),
            name: "INBOX".into(),
            uid_validity: 1,
            uid_next: 100,
            special_use: None,
            modseq: 1,
            read_only: false,
        };
        let (_, rx) = watch::channel(0);
        Selected::new(
            info,
            false,
            uids.iter().map(|&u| meta(u, 0)).collect(),
            Some(1),
            rx,
        )
    }

    fn set(ranges: &[(SeqNum, SeqNum)]) -> SequenceSet {
        SequenceSet(ranges.to_vec())
    }

    #[test]
    fn sets_resolve_by_number_and_by_uid() {
        let v = view(&[3, 5, 9]);
        let one = |n| (SeqNum::Value(n), SeqNum::Value(n));
        assert_eq!(
            v.resolve(&set(&[(SeqNum::Value(2), SeqNum::Star)]), false),
            Ok(vec![1, 2])
        );
        assert!(v.resolve(&set(&[one(4)]), false).is_err());
        assert!(v.resolve(&set(&[one(0)]), false).is_err());
        assert_eq!(
            v.resolve(&set(&[one(4), (SeqNum::Value(9), SeqNum::Value(5))]), true),
            Ok(vec![1, 2])
        );
        // "n:*" with n above every UID still names the last message (RFC 3501 §6.4.8).
        assert_eq!(
            v.resolve(&set(&[(SeqNum::Value(50), SeqNum::Star)]), true),
            Ok(vec![2])
        );
        assert_eq!(
            view(&[]).resolve(&set(&[(SeqNum::Value(1), SeqNum::Star)]), true),
            Ok(vec![])
        );
    }

    #[test]
    fn merge_reports_flags_expunges_and_new_mail() {
        let mut v = view(&[3, 5, 9]);
        let mut out = Vec::new();
        v.merge(
            vec![meta(3, 0), meta(9, Flags::SEEN), meta(12, 0)],
            Some(10),
            &mut out,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "* 3 FETCH (UID 9 FLAGS (\\Seen \\Recent))\r\n* 2 EXPUNGE\r\n* 3 EXISTS\r\n* 3 RECENT\r\n"
        );
        assert_eq!(
            v.messages.iter().map(|e| e.meta.uid).collect::<Vec<_>>(),
            [3, 9, 12]
        );
    }

    #[test]
    fn condstore_and_qresync_clients_get_modseq_and_vanished() {
        let mut v = view(&[3, 5, 9, 10]);
        v.condstore = true;
        v.qresync = true;
        let mut out = Vec::new();
        let mut changed = meta(3, 0);
        changed.modseq = 40;
        v.merge(
            vec![changed, meta(10, Flags::FLAGGED)],
            None,
            &mut out,
            true,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "* 1 FETCH (UID 3 FLAGS (\\Recent) MODSEQ (40))\r\n\
             * 4 FETCH (UID 10 FLAGS (\\Flagged \\Recent) MODSEQ (10))\r\n\
             * VANISHED 5,9\r\n"
        );
        assert_eq!(
            merge_ranges(vec![(1, 2), (3, 3), (5, 7), (6, 9)]),
            [(1, 3), (5, 9)]
        );
    }

    #[test]
    fn changes_since_the_view_say_what_the_whole_comparison_says() {
        let mut whole = view(&[3, 5, 9, 10]);
        let mut since = view(&[3, 5, 9, 10]);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        whole.merge(
            vec![meta(3, 0), meta(9, Flags::SEEN), meta(12, 0)],
            Some(11),
            &mut a,
            true,
        );
        // 9's flags changed, 12 arrived, 5 and 10 went (4, 6:8 and 11 never were here).
        since.merge_changes(
            vec![meta(9, Flags::SEEN), meta(12, 0)],
            &[(4, 8), (10, 11)],
            Some(11),
            &mut b,
            true,
        );
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        let uids = |v: &Selected| v.messages.iter().map(|e| e.meta.uid).collect::<Vec<_>>();
        assert_eq!(uids(&since), [3, 9, 12]);
        assert_eq!(uids(&whole), uids(&since));
        // Held back while numbers are in use, announced later, as with the whole list.
        let mut out = Vec::new();
        since.merge_changes(Vec::new(), &[(3, 3)], None, &mut out, false);
        assert!(out.is_empty() && since.exists() == 3);
        since.announce_expunges(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "* 1 EXPUNGE\r\n");
    }

    #[test]
    fn expunges_wait_while_numbers_are_in_use() {
        let mut v = view(&[3, 5, 9]);
        let mut out = Vec::new();
        v.merge(vec![meta(3, 0), meta(9, 0)], None, &mut out, false);
        assert!(out.is_empty());
        assert_eq!(v.exists(), 3);
        v.announce_expunges(&mut out);
        assert_eq!(String::from_utf8(out).unwrap(), "* 2 EXPUNGE\r\n");
    }
}
