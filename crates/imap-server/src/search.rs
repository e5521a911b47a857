//! SEARCH: evaluates a criteria tree against the messages of the selected mailbox.
//!
//! Keys that only need metadata (flags, UIDs, sizes, internal dates) are answered without
//! touching a blob; a message's bytes are read and parsed only when a header, body or
//! sent-date key needs them, and at most once per message.

use imap_mime::Message;
use imap_proto::{Flag, SearchKey, SeqNum, SequenceSet};
use store::text_index::{TextField, TextQuery};
use store::{Flags, MessageMeta};

const DAY: i64 = 86_400;

/// What a key is evaluated against.
pub(crate) struct Candidate<'a> {
    pub seq: u32,
    pub meta: &'a MessageMeta,
    pub recent: bool,
}

/// The numbers `*` stands for in this mailbox.
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub max_seq: u32,
    pub max_uid: u32,
}

pub(crate) fn needs_body(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(needs_body),
        SearchKey::Or(a, b) => needs_body(a) || needs_body(b),
        SearchKey::Not(k) => needs_body(k),
        SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_)
        | SearchKey::Header(..)
        | SearchKey::Body(_)
        | SearchKey::Text(_) => true,
        _ => false,
    }
}

/// What the full-text index can be asked for the criteria: a condition that every
/// matching message satisfies (so its answer is a superset to verify), or `None` when the
/// criteria do not restrict the text (a NOT, an OR with a side the index cannot narrow).
pub(crate) fn text_query(key: &SearchKey) -> Option<TextQuery> {
    match key {
        SearchKey::And(keys) => {
            let all: Vec<TextQuery> = keys.iter().filter_map(text_query).collect();
            (!all.is_empty()).then_some(TextQuery::All(all))
        }
        SearchKey::Or(a, b) => Some(TextQuery::Either(vec![text_query(a)?, text_query(b)?])),
        SearchKey::Text(needle) => Some(TextQuery::Contains(TextField::Any, needle.clone())),
        SearchKey::Body(needle) => Some(TextQuery::Contains(TextField::Body, needle.clone())),
        // Every header field of the top message is in the index's header text.
        SearchKey::Header(_, needle) => {
            Some(TextQuery::Contains(TextField::Headers, needle.clone()))
        }
        _ => None,
    }
}

/// Puts every sequence set of the criteria in ascending, disjoint ranges with `*` resolved,
/// so that [`matches`] finds a number by binary search however many ranges a set has
/// (`$` brings one per run of saved messages). `matches` expects criteria so prepared.
pub(crate) fn prepare_sets(key: &mut SearchKey, bounds: Bounds) {
    let mut keys = vec![key];
    while let Some(key) = keys.pop() {
        match key {
            SearchKey::SequenceSet(set) => *set = ordered(set, bounds.max_seq),
            SearchKey::Uid(set) => *set = ordered(set, bounds.max_uid),
            SearchKey::And(list) => keys.extend(list.iter_mut()),
            SearchKey::Or(a, b) => keys.extend([&mut **a, &mut **b]),
            SearchKey::Not(k) => keys.push(&mut **k),
            _ => {}
        }
    }
}

fn ordered(set: &SequenceSet, max: u32) -> SequenceSet {
    SequenceSet(
        crate::selected::set_ranges(set, max)
            .into_iter()
            .map(|(a, b)| (SeqNum::Value(a), SeqNum::Value(b)))
            .collect(),
    )
}

/// Whether the candidate matches. `message` is its parsed bytes when [`needs_body`] said so.
/// The criteria's sets are as [`prepare_sets`] left them.
pub(crate) fn matches(key: &SearchKey, c: &Candidate<'_>, message: Option<&Message<'_>>) -> bool {
    let date = c.meta.internal_date.div_euclid(DAY) as i32;
    let sent = || message.and_then(Message::sent_day).map(|d| d as i32);
    match key {
        SearchKey::All => true,
        SearchKey::And(keys) => keys.iter().all(|k| matches(k, c, message)),
        SearchKey::Or(a, b) => matches(a, c, message) || matches(b, c, message),
        SearchKey::Not(k) => !matches(k, c, message),
        SearchKey::SequenceSet(set) => in_set(set, c.seq),
        SearchKey::Uid(set) => in_set(set, c.meta.uid),
        SearchKey::Flag(flag) => has_flag(c, flag),
        SearchKey::NotFlag(flag) => !has_flag(c, flag),
        SearchKey::New => c.recent && c.meta.flags.0 & Flags::SEEN == 0,
        SearchKey::Old => !c.recent,
        SearchKey::Before(d) => date < *d,
        SearchKey::On(d) => date == *d,
        SearchKey::Since(d) => date >= *d,
        // A message without a usable Date: header matches no sent-date key.
        SearchKey::SentBefore(d) => sent().is_some_and(|s| s < *d),
        SearchKey::SentOn(d) => sent().is_some_and(|s| s == *d),
        SearchKey::SentSince(d) => sent().is_some_and(|s| s >= *d),
        SearchKey::Larger(n) => c.meta.size > u64::from(*n),
        SearchKey::Smaller(n) => c.meta.size < u64::from(*n),
        SearchKey::Header(field, needle) => {
            message.is_some_and(|m| m.header_contains(field, needle))
        }
        SearchKey::Body(needle) => message.is_some_and(|m| m.body_contains(needle)),
        SearchKey::Text(needle) => message.is_some_and(|m| m.text_contains(needle)),
        SearchKey::ModSeq(n) => c.meta.modseq >= *n,
    }
}

/// Whether the criteria use MODSEQ, so the response carries the highest mod-sequence
/// found (RFC 7162 §3.1.5).
pub(crate) fn uses_modseq(key: &SearchKey) -> bool {
    match key {
        SearchKey::And(keys) => keys.iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        SearchKey::ModSeq(_) => true,
        _ => false,
    }
}

fn has_flag(c: &Candidate<'_>, flag: &Flag) -> bool {
    let bit = match flag {
        Flag::Seen => Flags::SEEN,
        Flag::Answered => Flags::ANSWERED,
        Flag::Flagged => Flags::FLAGGED,
        Flag::Deleted => Flags::DELETED,
        Flag::Draft => Flags::DRAFT,
        Flag::Recent => return c.recent,
        Flag::Keyword(k) => return c.meta.keywords.iter().any(|m| m.eq_ignore_ascii_case(k)),
    };
    c.meta.flags.0 & bit != 0
}

/// Membership in a set [`prepare_sets`] ordered: a binary search.
fn in_set(set: &SequenceSet, n: u32) -> bool {
    let value = |s: SeqNum| match s {
        SeqNum::Value(v) => v,
        SeqNum::Star => u32::MAX,
    };
    let at = set.0.partition_point(|&(_, last)| value(last) < n);
    set.0.get(at).is_some_and(|&(first, _)| value(first) <= n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{BlobId, MessageId};

    fn meta(uid: u32, flags: u32, size: u64, date: i64) -> MessageMeta {
        MessageMeta {
            id: MessageId(uid as i64),
            uid,
            internal_date: date,
            internal_zone: 0,
            modseq: u64::from(uid) * 10,
            size,
            flags: Flags(flags),
            keywords: vec!["$Work".into()],
            blob: BlobId([0; 32]),
        }
    }

    #[test]
    fn sets_are_ordered_once_then_searched_by_halving() {
        let v = SeqNum::Value;
        let mut key = SearchKey::Or(
            Box::new(SearchKey::SequenceSet(SequenceSet(vec![
                (v(9), v(7)),
                (SeqNum::Star, v(2)),
                (v(1), v(1)),
            ]))),
            Box::new(SearchKey::Not(Box::new(SearchKey::Uid(SequenceSet(vec![
                (v(5), v(5)),
                (v(3), v(3)),
                (v(4), SeqNum::Star),
            ]))))),
        );
        prepare_sets(
            &mut key,
            Bounds {
                max_seq: 4,
                max_uid: 6,
            },
        );
        let SearchKey::Or(seqs, uids) = &key else {
            unreachable!()
        };
        assert_eq!(
            **seqs,
            SearchKey::SequenceSet(SequenceSet(vec![(v(1), v(4)), (v(7), v(9))]))
        );
        assert_eq!(
            **uids,
            SearchKey::Not(Box::new(SearchKey::Uid(SequenceSet(vec![(v(3), v(6))]))))
        );
        let SearchKey::SequenceSet(set) = &**seqs else {
            unreachable!()
        };
        let inside: Vec<u32> = (0..11).filter(|&n| in_set(set, n)).collect();
        assert_eq!(inside, [1, 2, 3, 4, 7, 8, 9]);
    }

    fn check(key: SearchKey, expect: bool) {
        let m = meta(7, Flags::SEEN, 1000, 10 * DAY + 5);
        let c = Candidate {
            seq: 2,
            meta: &m,
            recent: true,
        };
        let bounds = Bounds {
            max_seq: 3,
            max_uid: 9,
        };
        let mut key = key;
        prepare_sets(&mut key, bounds);
        assert_eq!(matches(&key, &c, None), expect, "{key:?}");
    }

    #[test]
    fn metadata_keys() {
        use SearchKey::*;
        check(All, true);
        check(Flag(imap_proto::Flag::Seen), true);
        check(NotFlag(imap_proto::Flag::Seen), false);
        check(Flag(imap_proto::Flag::Keyword("$work".into())), true);
        check(New, false);
        check(Old, false);
        check(Larger(999), true);
        check(Smaller(1000), false);
        check(On(10), true);
        check(Before(10), false);
        check(Since(10), true);
        check(
            Uid(imap_proto::SequenceSet(vec![(
                SeqNum::Value(8),
                SeqNum::Star,
            )])),
            false,
        );
        check(
            SearchKey::SequenceSet(imap_proto::SequenceSet(vec![(
                SeqNum::Star,
                SeqNum::Value(2),
            )])),
            true,
        );
        check(
            Or(
                Box::new(Larger(5000)),
                Box::new(Not(Box::new(Flag(imap_proto::Flag::Deleted)))),
            ),
            true,
        );
        check(And(vec![All, Larger(5000)]), false);
        // MODSEQ n: at least n (this message's is 70).
        check(ModSeq(70), true);
        check(ModSeq(71), false);
        assert!(uses_modseq(&Not(Box::new(ModSeq(1)))));
        assert!(!uses_modseq(&All));
        // Body keys without the body (a blob that could not be read) match nothing.
        check(Text("x".into()), false);
    }

    #[test]
    fn text_queries_keep_only_what_narrows() {
        use SearchKey::*;
        let has = |f, n: &str| TextQuery::Contains(f, n.into());
        assert_eq!(text_query(&All), None);
        assert_eq!(text_query(&Not(Box::new(Text("x".into())))), None);
        assert_eq!(
            text_query(&And(vec![Larger(5), Body("bb".into())])),
            Some(TextQuery::All(vec![has(TextField::Body, "bb")]))
        );
        assert_eq!(
            text_query(&Or(Box::new(Text("a".into())), Box::new(Larger(1)))),
            None
        );
        assert_eq!(
            text_query(&Or(
                Box::new(Header("Subject".into(), "s".into())),
                Box::new(Text("t".into()))
            )),
            Some(TextQuery::Either(vec![
                has(TextField::Headers, "s"),
                has(TextField::Any, "t")
            ]))
        );
    }
}
