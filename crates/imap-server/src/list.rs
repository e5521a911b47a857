//! LIST and LSUB: which names a pattern selects and the attributes they are listed with,
//! including RFC 5258's selection options (SUBSCRIBED, SPECIAL-USE, RECURSIVEMATCH) and the
//! \NonExistent, \Subscribed and CHILDINFO answers they lead to.
//!
//! This is pure: the session reads the mailboxes and subscriptions, asks `select` what to
//! list, writes the lines and adds the STATUS responses LIST-STATUS asks for.

use std::collections::{BTreeMap, BTreeSet};

use imap_proto::{ListReturn, ListSelect};
use store::{MailboxInfo, SpecialUse};

/// The hierarchy delimiter: tegami's mailbox names are levels joined by `/`.
pub(crate) const DELIMITER: char = '/';

/// A name LIST shows, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListEntry {
    pub name: String,
    pub kind: Kind,
    pub special_use: Option<SpecialUse>,
    /// Whether an existing mailbox lies below the name (\HasChildren / \HasNoChildren).
    pub has_children: bool,
    pub subscribed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A mailbox: it can be selected.
    Mailbox,
    /// A level above mailboxes that is not one itself ("a" of "a/b"): \Noselect.
    Level,
    /// A name that neither is nor holds a mailbox, known only as a subscription or as a
    /// level above one: \NonExistent (RFC 5258 §3.4).
    NonExistent,
}

/// One line of a LIST answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub entry: ListEntry,
    /// RFC 5258's CHILDINFO: the selection options some descendant satisfies, when
    /// RECURSIVEMATCH was given and one does.
    pub child_info: Vec<&'static str>,
}

impl Listed {
    /// The attributes in the order LIST writes them. Child information is always given
    /// for a name that exists (RFC 5258 §4 allows it unasked); special-use attributes are
    /// too (RFC 6154 §5.1 allows it), so the return options only add \Subscribed.
    pub fn attributes(&self, ret: &ListReturn) -> Vec<&'static str> {
        let entry = &self.entry;
        let mut attributes = Vec::new();
        match entry.kind {
            Kind::Mailbox => {}
            Kind::Level => attributes.push("\\Noselect"),
            // \NonExistent implies \Noselect (RFC 5258 §3.4), and child information is
            // about existing mailboxes, of which this name has none.
            Kind::NonExistent => attributes.push("\\NonExistent"),
        }
        if entry.kind != Kind::NonExistent {
            attributes.push(if entry.has_children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
        }
        if ret.subscribed && entry.subscribed {
            attributes.push("\\Subscribed");
        }
        if let Some(role) = entry.special_use {
            attributes.push(role.attribute());
        }
        attributes
    }
}

/// Every name LIST can show: the mailboxes, the levels above them, and the subscribed
/// names and the levels above those, in name order.
pub(crate) fn entries(mailboxes: &[MailboxInfo], subscriptions: &[String]) -> Vec<ListEntry> {
    let subscribed: BTreeSet<&str> = subscriptions.iter().map(String::as_str).collect();
    let mut entries: BTreeMap<String, ListEntry> = BTreeMap::new();
    let mut add = |name: &str, kind: Kind, special_use: Option<SpecialUse>| {
        let entry = entries.entry(name.to_string()).or_insert(ListEntry {
            name: name.to_string(),
            kind,
            special_use,
            has_children: false,
            subscribed: subscribed.contains(name),
        });
        // A mailbox is more than a level, and a level more than a subscribed name.
        if rank(kind) > rank(entry.kind) {
            entry.kind = kind;
            entry.special_use = special_use;
        }
    };
    for m in mailboxes {
        add(&m.name, Kind::Mailbox, m.special_use);
        for parent in parents(&m.name) {
            add(parent, Kind::Level, None);
        }
    }
    for name in subscriptions {
        add(name, Kind::NonExistent, None);
        for parent in parents(name) {
            add(parent, Kind::NonExistent, None);
        }
    }
    for m in mailboxes {
        for parent in parents(&m.name) {
            if let Some(entry) = entries.get_mut(parent) {
                entry.has_children = true;
            }
        }
    }
    entries.into_values().collect()
}

fn rank(kind: Kind) -> u8 {
    match kind {
        Kind::NonExistent => 0,
        Kind::Level => 1,
        Kind::Mailbox => 2,
    }
}

/// The levels above a name, nearest first: "a/b" and "a" for "a/b/c".
fn parents(name: &str) -> impl Iterator<Item = &str> {
    let mut rest = name;
    std::iter::from_fn(move || {
        let (up, _) = rest.rsplit_once(DELIMITER)?;
        rest = up;
        Some(up)
    })
}

/// What LIST answers: the entries that match one of the patterns (each taken after the
/// reference) and satisfy the selection options, in name order, each once however many
/// patterns it matches.
pub(crate) fn select(
    entries: &[ListEntry],
    reference: &str,
    patterns: &[String],
    select: ListSelect,
) -> Vec<Listed> {
    let patterns: Vec<String> = patterns.iter().map(|p| format!("{reference}{p}")).collect();
    let satisfies = |e: &ListEntry| -> bool {
        let wanted = if select.subscribed {
            e.subscribed
        } else {
            // Without SUBSCRIBED, names that do not exist are not listed (RFC 5258 §3.4).
            e.kind != Kind::NonExistent
        };
        wanted && (!select.special_use || e.special_use.is_some())
    };
    let mut child_info: Vec<&'static str> = Vec::new();
    if select.subscribed {
        child_info.push("SUBSCRIBED");
    }
    if select.special_use {
        child_info.push("SPECIAL-USE");
    }
    entries
        .iter()
        .enumerate()
        .filter(|(_, e)| patterns.iter().any(|p| pattern_matches(p, &e.name)))
        .filter_map(|(i, e)| {
            // Entries are in name order, so the descendants of `e` lie together, from the
            // first name at or after "e/" (not right after `e`: "e-x" sorts between).
            let below = format!("{}{DELIMITER}", e.name);
            let first = i + entries[i..].partition_point(|d| d.name < below);
            let recursive = select.recursive_match
                && entries[first..]
                    .iter()
                    .take_while(|d| d.name.starts_with(&below))
                    .any(satisfies);
            (satisfies(e) || recursive).then(|| Listed {
                entry: e.clone(),
                child_info: if recursive {
                    child_info.clone()
                } else {
                    Vec::new()
                },
            })
        })
        .collect()
}

/// LIST wildcards: `*` matches anything, `%` anything but the delimiter. INBOX matches
/// whatever case the pattern gives it.
pub(crate) fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((b'%', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != DELIMITER as u8)
                .any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let folded;
    let pattern = if pattern.len() >= 5 && pattern[..5].eq_ignore_ascii_case("INBOX") {
        folded = format!("INBOX{}", &pattern[5..]);
        folded.as_str()
    } else {
        pattern
    };
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{AccountId, MailboxId};

    fn info(name: &str, special_use: Option<SpecialUse>) -> MailboxInfo {
        MailboxInfo {
            id: MailboxId(1),
            account: AccountId(1),
            name: name.into(),
            uid_validity: 1,
            uid_next: 1,
            special_use,
            modseq: 1,
            read_only: false,
        }
    }

    /// Lists `patterns` over the mailboxes and subscriptions and renders each line as
    /// `name (attributes) [childinfo]`.
    fn check(
        mailboxes: &[&str],
        subscribed: &[&str],
        patterns: &[&str],
        select_options: ListSelect,
        expect: &[&str],
    ) {
        let mailboxes: Vec<MailboxInfo> = mailboxes
            .iter()
            .map(|n| {
                let last = n.rsplit(DELIMITER).next().unwrap_or(n);
                let role = SpecialUse::ALL.into_iter().find(|r| r.name() == last);
                info(n, role)
            })
            .collect();
        let subscribed: Vec<String> = subscribed.iter().map(|s| s.to_string()).collect();
        let patterns: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        let ret = ListReturn {
            subscribed: true,
            ..ListReturn::default()
        };
        let shown: Vec<String> = select(
            &entries(&mailboxes, &subscribed),
            "",
            &patterns,
            select_options,
        )
        .into_iter()
        .map(|l| {
            let mut line = format!("{} ({})", l.entry.name, l.attributes(&ret).join(" "));
            if !l.child_info.is_empty() {
                line += &format!(" [{}]", l.child_info.join(" "));
            }
            line
        })
        .collect();
        assert_eq!(shown, expect, "{patterns:?} {select_options:?}");
    }

    const SUBSCRIBED: ListSelect = ListSelect {
        subscribed: true,
        special_use: false,
        recursive_match: false,
    };
    const RECURSIVE: ListSelect = ListSelect {
        recursive_match: true,
        ..SUBSCRIBED
    };

    #[test]
    fn list_patterns() {
        assert!(pattern_matches("*", "a/b/c"));
        assert!(pattern_matches("%", "INBOX"));
        assert!(!pattern_matches("%", "a/b"));
        assert!(pattern_matches("a/%", "a/b"));
        assert!(!pattern_matches("a/%", "a/b/c"));
        assert!(pattern_matches("inbox", "INBOX"));
        assert!(pattern_matches("Arch*", "Archive"));
        assert!(!pattern_matches("Arch", "Archive"));
    }

    #[test]
    fn levels_without_a_mailbox_are_noselect() {
        check(
            &["INBOX", "a/b/c", "a/b"],
            &[],
            &["*"],
            ListSelect::default(),
            &[
                "INBOX (\\HasNoChildren)",
                "a (\\Noselect \\HasChildren)",
                "a/b (\\HasChildren)",
                "a/b/c (\\HasNoChildren)",
            ],
        );
    }

    /// RFC 5258 §5's hierarchy, cut to what tegami can hold (no remote mailboxes).
    #[test]
    fn subscribed_names_that_do_not_exist_are_nonexistent() {
        let mailboxes = ["INBOX", "Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu"];
        let subscribed = ["INBOX", "Fruit/Banana", "Fruit/Peach", "Vegetable/Broccoli"];
        check(
            &mailboxes,
            &subscribed,
            &["*"],
            SUBSCRIBED,
            &[
                "Fruit/Banana (\\HasNoChildren \\Subscribed)",
                "Fruit/Peach (\\NonExistent \\Subscribed)",
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Vegetable/Broccoli (\\NonExistent \\Subscribed)",
            ],
        );
        // A plain LIST shows what exists, subscribed or not.
        check(
            &mailboxes,
            &subscribed,
            &["%"],
            ListSelect::default(),
            &[
                "Fruit (\\HasChildren)",
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Tofu (\\HasNoChildren)",
            ],
        );
        // RECURSIVEMATCH: a parent that is not subscribed is listed for its children.
        check(
            &mailboxes,
            &subscribed,
            &["%"],
            RECURSIVE,
            &[
                "Fruit (\\HasChildren) [SUBSCRIBED]",
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Vegetable (\\NonExistent) [SUBSCRIBED]",
            ],
        );
        // Several patterns: each name once, in name order.
        check(
            &mailboxes,
            &subscribed,
            &["Tofu", "INBOX", "Fruit/%", "inbox"],
            ListSelect::default(),
            &[
                "Fruit/Apple (\\HasNoChildren)",
                "Fruit/Banana (\\HasNoChildren \\Subscribed)",
                "INBOX (\\HasNoChildren \\Subscribed)",
                "Tofu (\\HasNoChildren)",
            ],
        );
    }

    /// "a-b" sorts between "a" and "a/c", which once hid "a/c" from "a".
    #[test]
    fn children_behind_a_sibling_that_sorts_between() {
        check(
            &["a", "a-b", "a/c"],
            &["a/c"],
            &["%"],
            RECURSIVE,
            &["a (\\HasChildren) [SUBSCRIBED]"],
        );
        check(
            &["a", "a-b", "a/c"],
            &[],
            &["%"],
            ListSelect::default(),
            &["a (\\HasChildren)", "a-b (\\HasNoChildren)"],
        );
    }

    #[test]
    fn special_use_selection() {
        let mailboxes = ["INBOX", "Sent", "Trash", "Projects/Archive", "Projects/x"];
        let special = ListSelect {
            special_use: true,
            ..ListSelect::default()
        };
        check(
            &mailboxes,
            &[],
            &["*"],
            special,
            &[
                "Projects/Archive (\\HasNoChildren \\Archive)",
                "Sent (\\HasNoChildren \\Sent)",
                "Trash (\\HasNoChildren \\Trash)",
            ],
        );
        check(
            &["INBOX", "Lists/Archive", "Lists/Sent", "Lists/x"],
            &[],
            &["%"],
            ListSelect {
                recursive_match: true,
                ..special
            },
            &["Lists (\\Noselect \\HasChildren) [SPECIAL-USE]"],
        );
    }
}
