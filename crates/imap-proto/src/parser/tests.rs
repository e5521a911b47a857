//! Tests of the command reader and the grammar, driven by tables of inputs and results.

use super::*;
use crate::command::*;

// ---------------------------------------------------------------------------------------
// Helpers

/// Everything one call of `parse` can produce, in a form tests can compare.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Cmd(Command),
    Cont,
    Err(Option<String>, ErrorKind),
}

/// Calls `parse` until it wants more input (or asks to close), collecting what came out.
fn drive(reader: &mut CommandReader, buf: &mut Vec<u8>, outs: &mut Vec<Out>) {
    loop {
        match reader.parse(buf) {
            Ok(Parsed::Command(c)) => outs.push(Out::Cmd(c)),
            Ok(Parsed::NeedContinuation) => outs.push(Out::Cont),
            Ok(Parsed::NeedMore) => return,
            Err(e) => {
                let close = e.must_close();
                outs.push(Out::Err(e.tag, e.kind));
                if close {
                    return;
                }
            }
        }
    }
}

/// Feeds `input` in the given chunks to a fresh reader.
fn run_chunks(limits: Limits, chunks: &[&[u8]]) -> Vec<Out> {
    let mut reader = CommandReader::new(limits);
    let mut buf = Vec::new();
    let mut outs = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        drive(&mut reader, &mut buf, &mut outs);
        if matches!(outs.last(), Some(Out::Err(_, kind)) if ParseError { tag: None, kind: kind.clone() }.must_close())
        {
            break;
        }
    }
    outs
}

/// Runs `input` whole, split in two at every boundary, and one byte at a time, checking
/// that every way of cutting it gives the same results; returns them.
fn run(limits: Limits, input: &[u8]) -> Vec<Out> {
    let whole = run_chunks(limits, &[input]);
    // Long inputs are cut at a sample of places to keep the tests quick.
    let step = input.len() / 500 + 1;
    for cut in (1..input.len()).step_by(step) {
        let split = run_chunks(limits, &[&input[..cut], &input[cut..]]);
        assert_eq!(
            split,
            whole,
            "cut at {cut} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run_chunks(limits, &bytes), whole, "byte by byte");
    whole
}

/// Parses `a <line>\r\n` and expects exactly `expect` (continuations are ignored).
fn check(line: &str, expect: CommandBody) {
    check_bytes(line.as_bytes(), expect);
}

fn check_bytes(line: &[u8], expect: CommandBody) {
    let input = [b"a ", line, b"\r\n"].concat();
    let outs: Vec<Out> = run(Limits::default(), &input)
        .into_iter()
        .filter(|o| *o != Out::Cont)
        .collect();
    let expect = Out::Cmd(Command {
        tag: "a".into(),
        body: expect,
    });
    assert_eq!(
        outs,
        [expect],
        "{line:?}",
        line = String::from_utf8_lossy(line)
    );
    // The one-piece parser agrees with the reader.
    assert_eq!(
        Some(Out::Cmd(parse_command(&input).unwrap())),
        outs.into_iter().next()
    );
}

/// Parses `a <line>\r\n` and expects a syntax error whose text contains `reason`.
fn check_err(line: &str, reason: &str) {
    check_err_bytes(line.as_bytes(), reason);
}

fn check_err_bytes(line: &[u8], reason: &str) {
    let input = [b"a ", line, b"\r\n"].concat();
    let outs: Vec<Out> = run(Limits::default(), &input)
        .into_iter()
        .filter(|o| *o != Out::Cont)
        .collect();
    let shown: String = String::from_utf8_lossy(line).chars().take(200).collect();
    match outs.as_slice() {
        [Out::Err(Some(tag), ErrorKind::Syntax(text))] => {
            assert_eq!(tag, "a", "{shown:?}");
            assert!(
                text.contains(reason),
                "{shown:?}: {text:?} lacks {reason:?}"
            );
        }
        other => panic!("{shown:?}: expected a syntax error, got {other:?}"),
    }
}

fn v(n: u32) -> SeqNum {
    SeqNum::Value(n)
}

fn set(ranges: &[(SeqNum, SeqNum)]) -> SequenceSet {
    SequenceSet(ranges.to_vec())
}

fn one(n: u32) -> SequenceSet {
    set(&[(v(n), v(n))])
}

fn cmd(tag: &str, body: CommandBody) -> Out {
    Out::Cmd(Command {
        tag: tag.into(),
        body,
    })
}

fn small() -> Limits {
    Limits {
        max_line: 100,
        max_literal: 20,
        max_append: 50,
    }
}

// ---------------------------------------------------------------------------------------
// Commands without arguments, and the any-state commands

#[test]
fn bare_commands() {
    use CommandBody::*;
    for (line, body) in [
        ("CAPABILITY", Capability),
        ("noop", Noop),
        ("Logout", Logout),
        ("STARTTLS", StartTls),
        ("NAMESPACE", Namespace),
        ("IDLE", Idle),
        ("CHECK", Check),
        ("close", Close),
        ("UNSELECT", Unselect),
        ("EXPUNGE", Expunge),
    ] {
        check(line, body);
    }
    check_err("NOOP x", "Unexpected space");
    check_err("NOOP ", "Unexpected space");
    assert_eq!(
        run(Limits::default(), b"a CAPABILITYX\r\n"),
        [Out::Err(
            Some("a".into()),
            ErrorKind::UnknownCommand("CAPABILITYX".into())
        )]
    );
}

#[test]
fn tags() {
    let outs = run(Limits::default(), b"A001 NOOP\r\n]x NOOP\r\n");
    assert_eq!(
        outs,
        [cmd("A001", CommandBody::Noop), cmd("]x", CommandBody::Noop)]
    );
    // No valid tag: the error is untagged.
    for input in [
        &b"+a NOOP\r\n"[..],
        b"* NOOP\r\n",
        b"(x NOOP\r\n",
        b" NOOP\r\n",
    ] {
        assert!(
            matches!(
                run(Limits::default(), input).as_slice(),
                [Out::Err(None, ErrorKind::Syntax(_))]
            ),
            "{input:?}"
        );
    }
    assert_eq!(
        run(Limits::default(), b"a\r\n"),
        [Out::Err(
            Some("a".into()),
            ErrorKind::Syntax("Missing argument".into())
        )]
    );
    assert_eq!(
        run(Limits::default(), b"a FROB x\r\nb frob\r\n"),
        [
            Out::Err(Some("a".into()), ErrorKind::UnknownCommand("FROB".into())),
            Out::Err(Some("b".into()), ErrorKind::UnknownCommand("FROB".into())),
        ]
    );
}

#[test]
fn blank_lines_and_bare_lf_are_tolerated() {
    assert_eq!(
        run(Limits::default(), b"\r\n\r\na NOOP\nb NOOP\r\n"),
        [cmd("a", CommandBody::Noop), cmd("b", CommandBody::Noop)]
    );
}

#[test]
fn enable_and_id() {
    check(
        "ENABLE UTF8=ACCEPT",
        CommandBody::Enable(vec!["UTF8=ACCEPT".into()]),
    );
    check(
        "enable CONDSTORE qresync",
        CommandBody::Enable(vec!["CONDSTORE".into(), "qresync".into()]),
    );
    check_err("ENABLE", "Missing argument");
    check("ID NIL", CommandBody::Id(None));
    check("ID nil", CommandBody::Id(None));
    check("ID ()", CommandBody::Id(Some(vec![])));
    check(
        r#"ID ("name" "Thunderbird" "version" NIL)"#,
        CommandBody::Id(Some(vec![
            ("name".into(), Some("Thunderbird".into())),
            ("version".into(), None),
        ])),
    );
    check(
        "ID (\"name\" {3}\r\nabc)",
        CommandBody::Id(Some(vec![("name".into(), Some("abc".into()))])),
    );
    check_err(r#"ID ("name")"#, "Expected a space");
    check_err(r#"ID ("name" "x""#, "Expected a space or )");
    check_err("ID", "Missing argument");
}

#[test]
fn login_and_authenticate() {
    let login = |user: &str, password: &str| CommandBody::Login {
        user: user.into(),
        password: password.into(),
    };
    check("LOGIN joe secret", login("joe", "secret"));
    check(
        r#"login "joe@example.com" "p a\"s\\s""#,
        login("joe@example.com", r#"p a"s\s"#),
    );
    check("LOGIN {3}\r\njoe {6+}\r\nse cr\"", login("joe", "se cr\""));
    check("LOGIN joe] ]", login("joe]", "]"));
    check("LOGIN \"\" \"\"", login("", ""));
    check("LOGIN \"日本\" x", login("日本", "x"));
    check_err("LOGIN joe", "Missing argument");
    check_err("LOGIN joe secret extra", "Unexpected space");
    check_err("LOGIN (joe) x", "Expected a string");
    check_err(r#"LOGIN "joe x"#, "Unterminated quoted string");
    check_err(r#"LOGIN "jo\e" x"#, "Invalid escape");
    check_err_bytes(b"LOGIN \"\xff\" x", "UTF-8");
    check_err_bytes(b"LOGIN {1}\r\n\0 x", "NUL");

    let auth = |mechanism: &str, initial: Option<&str>| CommandBody::Authenticate {
        mechanism: mechanism.into(),
        initial: initial.map(Into::into),
    };
    check("AUTHENTICATE plain", auth("PLAIN", None));
    check(
        "AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=",
        auth("PLAIN", Some("AGpvZQBzZWNyZXQ=")),
    );
    check("AUTHENTICATE PLAIN =", auth("PLAIN", Some("=")));
    check_err("AUTHENTICATE PLAIN a=b", "Invalid base64");
    check_err("AUTHENTICATE", "Missing argument");
}

// ---------------------------------------------------------------------------------------
// Mailbox commands

#[test]
fn mailbox_names() {
    let select = |name: &str| CommandBody::Select {
        mailbox: name.into(),
        condstore: false,
        qresync: None,
    };
    check("SELECT INBOX", select("INBOX"));
    check("SELECT inbox", select("INBOX"));
    check("select \"InBoX\"", select("INBOX"));
    check("SELECT {5}\r\niNbOx", select("INBOX"));
    // INBOX is case-insensitive as a whole name and as the first level.
    check("SELECT inbox/Sub", select("INBOX/Sub"));
    check("SELECT Inboxes", select("Inboxes"));
    check(
        "SELECT ~peter/mail/&U,BTFw-/&ZeVnLIqe-",
        select("~peter/mail/台北/日本語"),
    );
    check("SELECT \"Tom &- Jerry\"", select("Tom & Jerry"));
    check("SELECT Entw&APw-rfe", select("Entwürfe"));
    check_err("SELECT &U,BTFw", "Invalid mailbox name");
    check_err("SELECT \"&AEE-\"", "Invalid mailbox name");
    check_err_bytes("SELECT \"Entwürfe\"".as_bytes(), "Invalid mailbox name");
    check_err("SELECT", "Missing argument");
    check_err("SELECT a b", "Expected ( before SELECT parameters");
    check_err("SELECT INBOX (FOO)", "Unsupported SELECT parameter");
    check(
        "EXAMINE Sent",
        CommandBody::Examine {
            mailbox: "Sent".into(),
            condstore: false,
            qresync: None,
        },
    );
    check(
        "DELETE Trash",
        CommandBody::Delete {
            mailbox: "Trash".into(),
        },
    );
    check(
        "SUBSCRIBE Junk",
        CommandBody::Subscribe {
            mailbox: "Junk".into(),
        },
    );
    check(
        "UNSUBSCRIBE \"a b\"",
        CommandBody::Unsubscribe {
            mailbox: "a b".into(),
        },
    );
    check(
        "RENAME old \"new &ZeVnLIqe-\"",
        CommandBody::Rename {
            from: "old".into(),
            to: "new 日本語".into(),
        },
    );
    check_err("RENAME old", "Missing argument");
}

#[test]
fn create_with_special_use() {
    let create = |name: &str, uses: &[&str]| CommandBody::Create {
        mailbox: name.into(),
        special_use: uses.iter().map(|s| s.to_string()).collect(),
    };
    check("CREATE Foo", create("Foo", &[]));
    check(
        "CREATE MySent (USE (\\Sent))",
        create("MySent", &["\\Sent"]),
    );
    check(
        "CREATE x (use (\\junk \\TRASH \\Important))",
        create("x", &["\\Junk", "\\Trash", "\\Important"]),
    );
    check("CREATE x (USE ())", create("x", &[]));
    check(
        "CREATE x (USE (\\All) USE (\\Archive))",
        create("x", &["\\All", "\\Archive"]),
    );
    check_err("CREATE x (FOO (\\Sent))", "Unsupported CREATE parameter");
    check_err("CREATE x (USE (Sent))", "Expected a special-use attribute");
    check_err("CREATE x (USE (\\Sent)", "Expected a space or )");
    check_err("CREATE x (USE \\Sent)", "Expected ( after USE");
}

/// A LIST command body from the parts a test cares about.
fn list(reference: &str, patterns: &[&str], select: ListSelect, ret: ListReturn) -> CommandBody {
    CommandBody::List {
        reference: reference.into(),
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        select,
        ret,
    }
}

fn plain_list(reference: &str, pattern: &str) -> CommandBody {
    list(
        reference,
        &[pattern],
        ListSelect::default(),
        ListReturn::default(),
    )
}

#[test]
fn list_and_lsub() {
    let none = ListSelect::default();
    let special = ListSelect {
        special_use: true,
        ..none
    };
    let ret_special = ListReturn {
        special_use: true,
        ..ListReturn::default()
    };
    check("LIST \"\" *", plain_list("", "*"));
    check("LIST \"\" %", plain_list("", "%"));
    check("LIST \"\" \"\"", plain_list("", ""));
    check(
        "list ~/Mail/ %/&ZeVnLIqe-*",
        plain_list("~/Mail/", "%/日本語*"),
    );
    check("LIST \"\" INBOX.*]", plain_list("", "INBOX.*]"));
    check(
        "LIST (SPECIAL-USE) \"\" \"*\"",
        list("", &["*"], special, ListReturn::default()),
    );
    check("LIST () \"\" *", plain_list("", "*"));
    check(
        "LIST (remote special-use) \"\" *",
        list("", &["*"], special, ListReturn::default()),
    );
    check(
        "LIST \"\" * RETURN (SPECIAL-USE)",
        list("", &["*"], none, ret_special.clone()),
    );
    check(
        "LIST \"\" * RETURN (CHILDREN special-use)",
        list("", &["*"], none, ret_special),
    );
    check("LIST \"\" (*)", plain_list("", "*"));
    check("LIST \"\" {1}\r\n*", plain_list("", "*"));
    check("LIST \"\" * RETURN ()", plain_list("", "*"));
    check_err("LIST \"\" * FOO", "Expected RETURN");
    check_err("LIST \"\"", "Missing argument");
    check_err("LIST \"\" &Jjo", "Invalid mailbox name");
}

/// The commands of RFC 5258 §5's examples, RFC 5819's and RFC 6154's.
#[test]
fn list_extended_examples() {
    let none = ListSelect::default();
    let subscribed = ListSelect {
        subscribed: true,
        ..none
    };
    let recursive = ListSelect {
        recursive_match: true,
        ..subscribed
    };
    let ret_subscribed = ListReturn {
        subscribed: true,
        ..ListReturn::default()
    };
    // 5.1, 5.2: the SUBSCRIBED selection option implies the return option.
    check("LIST \"\" %", plain_list("", "%"));
    check(
        "LIST (SUBSCRIBED) \"\" \"*\"",
        list("", &["*"], subscribed, ret_subscribed.clone()),
    );
    // 5.3, 5.4: CHILDREN and REMOTE change nothing here.
    check("LIST () \"\" \"%\" RETURN (CHILDREN)", plain_list("", "%"));
    check(
        "LIST (REMOTE) \"\" \"%\" RETURN (CHILDREN)",
        plain_list("", "%"),
    );
    // 5.5, 5.6.
    check(
        "LIST (REMOTE SUBSCRIBED) \"/\" \"*\"",
        list("/", &["*"], subscribed, ret_subscribed.clone()),
    );
    check(
        "LIST (REMOTE) \"\" \"*\" RETURN (SUBSCRIBED)",
        list("", &["*"], none, ret_subscribed.clone()),
    );
    // 5.8, 5.9: RECURSIVEMATCH.
    check(
        "LIST (SUBSCRIBED RECURSIVEMATCH) \"\" \"%\" RETURN (CHILDREN)",
        list("", &["%"], recursive, ret_subscribed.clone()),
    );
    check(
        "LIST (RECURSIVEMATCH SPECIAL-USE) \"\" %",
        list(
            "",
            &["%"],
            ListSelect {
                special_use: true,
                recursive_match: true,
                ..none
            },
            ListReturn::default(),
        ),
    );
    // 5.10: several patterns.
    check(
        "LIST \"\" (\"INBOX\" \"Drafts\" \"Sent/%\")",
        list(
            "",
            &["INBOX", "Drafts", "Sent/%"],
            none,
            ListReturn::default(),
        ),
    );
    // RFC 5819 §3 and a STATUS together with the other return options.
    check(
        "LIST \"\" % RETURN (STATUS (MESSAGES UNSEEN))",
        list(
            "",
            &["%"],
            none,
            ListReturn {
                status: Some(vec![StatusItem::Messages, StatusItem::Unseen]),
                ..ListReturn::default()
            },
        ),
    );
    check(
        "LIST (subscribed) \"\" (INBOX %) return (status (uidnext highestmodseq) special-use)",
        list(
            "",
            &["INBOX", "%"],
            subscribed,
            ListReturn {
                subscribed: true,
                special_use: true,
                status: Some(vec![StatusItem::UidNext, StatusItem::HighestModSeq]),
            },
        ),
    );
}

#[test]
fn list_extended_malformed() {
    // RFC 5258 §3.1: RECURSIVEMATCH only qualifies another selection option.
    check_err(
        "LIST (RECURSIVEMATCH) \"\" *",
        "RECURSIVEMATCH needs another selection option",
    );
    check_err(
        "LIST (REMOTE RECURSIVEMATCH) \"\" *",
        "RECURSIVEMATCH needs another selection option",
    );
    check_err("LIST (FOO) \"\" *", "Unsupported LIST selection option");
    check_err("LIST \"\" * RETURN (FOO)", "Unsupported LIST return option");
    check_err("LIST \"\" * RETURN (STATUS ())", "Expected an atom");
    check_err("LIST \"\" * RETURN (STATUS (BYTES))", "Unknown STATUS item");
    check_err("LIST \"\" * RETURN (STATUS)", "Expected a space");
    check_err("LIST \"\" ()", "Expected a mailbox pattern");
    check_err("LIST \"\" (* %", "Expected a space or ) in LIST patterns");
    // Bounds: patterns, options and STATUS items.
    let patterns = vec!["x"; 33].join(" ");
    check_err(
        &format!("LIST \"\" ({patterns})"),
        "At most 32 LIST patterns",
    );
    let patterns = vec!["x"; 32].join(" ");
    check(
        &format!("LIST \"\" ({patterns})"),
        list("", &["x"; 32], ListSelect::default(), ListReturn::default()),
    );
    let options = vec!["REMOTE"; 17].join(" ");
    check_err(&format!("LIST ({options}) \"\" *"), "At most 16 options");
    let items = vec!["MESSAGES"; 17].join(" ");
    check_err(
        &format!("LIST \"\" * RETURN (STATUS ({items}))"),
        "At most 16 STATUS items",
    );
}

#[test]
fn lsub() {
    check(
        "LSUB \"\" *",
        CommandBody::Lsub {
            reference: "".into(),
            pattern: "*".into(),
        },
    );
}

#[test]
fn quota_commands_of_rfc_9208() {
    check(
        "GETQUOTAROOT INBOX",
        CommandBody::GetQuotaRoot {
            mailbox: "INBOX".into(),
        },
    );
    check(
        "GETQUOTA \"\"",
        CommandBody::GetQuota {
            root: String::new(),
        },
    );
    check(
        "SETQUOTA \"\" (STORAGE 512 message 100)",
        CommandBody::SetQuota {
            root: String::new(),
            limits: vec![("STORAGE".into(), 512), ("MESSAGE".into(), 100)],
        },
    );
    check(
        "SETQUOTA \"\" ()",
        CommandBody::SetQuota {
            root: String::new(),
            limits: vec![],
        },
    );
    check(
        "STATUS INBOX (DELETED deleted-storage size)",
        CommandBody::Status {
            mailbox: "INBOX".into(),
            items: vec![
                StatusItem::Deleted,
                StatusItem::DeletedStorage,
                StatusItem::Size,
            ],
        },
    );
    check_err("SETQUOTA \"\" (STORAGE)", "Expected a space");
    check_err("SETQUOTA \"\" STORAGE 5", "Expected (");
    let many = vec!["STORAGE 1"; 17].join(" ");
    check_err(
        &format!("SETQUOTA \"\" ({many})"),
        "At most 16 SETQUOTA limits",
    );
    check_err("GETQUOTA", "Missing argument");
}

#[test]
fn status() {
    use StatusItem::*;
    check(
        "STATUS INBOX (MESSAGES uidnext UIDVALIDITY Unseen RECENT)",
        CommandBody::Status {
            mailbox: "INBOX".into(),
            items: vec![Messages, UidNext, UidValidity, Unseen, Recent],
        },
    );
    check_err("STATUS INBOX ()", "Expected an atom");
    check_err("STATUS INBOX (BYTES)", "Unknown STATUS item");
    check_err("STATUS INBOX MESSAGES", "Expected (");
    check_err("STATUS INBOX (MESSAGES", "Expected a space or )");
}

#[test]
fn append() {
    let append = |flags: Vec<Flag>, date: Option<(i64, i16)>, message: &[u8]| CommandBody::Append {
        mailbox: "Drafts".into(),
        flags,
        date: date.map(|(seconds, zone_minutes)| DateTime {
            seconds,
            zone_minutes,
        }),
        message: message.to_vec(),
    };
    check("APPEND Drafts {5}\r\nHello", append(vec![], None, b"Hello"));
    check(
        "APPEND Drafts {5+}\r\nHello",
        append(vec![], None, b"Hello"),
    );
    check("APPEND Drafts {0}\r\n", append(vec![], None, b""));
    check(
        "APPEND Drafts (\\Seen $Forwarded) {7}\r\na\r\nb\r\n\0",
        append(
            vec![Flag::Seen, Flag::Keyword("$Forwarded".into())],
            None,
            b"a\r\nb\r\n\0",
        ),
    );
    check("APPEND Drafts () {1}\r\nx", append(vec![], None, b"x"));
    check(
        "APPEND Drafts \"17-Jul-1996 02:44:25 -0700\" {1}\r\nx",
        append(vec![], Some((837_596_665, -420)), b"x"),
    );
    check(
        "APPEND Drafts (\\Draft) \" 1-Jan-2000 00:00:00 +0000\" {1}\r\nx",
        append(vec![Flag::Draft], Some((946_684_800, 0)), b"x"),
    );
    check(
        "APPEND Drafts \"01-jan-2000 01:30:00 +0130\" {1}\r\nx",
        append(vec![], Some((946_684_800, 90)), b"x"),
    );
    check("APPEND {6}\r\nDrafts {1}\r\nx", append(vec![], None, b"x"));
    check_err("APPEND Drafts (\\Recent) {1+}\r\nx", "\\Recent");
    check_err("APPEND Drafts (\\Foo) {1+}\r\nx", "Unknown system flag");
    check_err("APPEND Drafts \"Hello\"", "Invalid date");
    check_err(
        "APPEND Drafts \"31-Feb-2001 00:00:00 +0000\" {1+}\r\nx",
        "Invalid day",
    );
    check_err(
        "APPEND Drafts \"17-Jul-1996 24:00:00 +0000\" {1+}\r\nx",
        "Invalid time",
    );
    check_err(
        "APPEND Drafts \"17-Jul-1996 02:44:25 +0060\" {1+}\r\nx",
        "Invalid time zone",
    );
    check_err(
        "APPEND Drafts \"17-Jux-1996 02:44:25 +0000\" {1+}\r\nx",
        "Invalid month",
    );
    check_err("APPEND Drafts", "Missing argument");
    check_err("APPEND Drafts hello", "Expected the message as a literal");
    check("APPEND Drafts ~{2+}\r\n\0x", append(vec![], None, b"\0x"));
    check_err("APPEND Drafts ~x", "Expected a literal");
    check_err("APPEND Drafts {1}\r\nx y", "Unexpected space");
}

// ---------------------------------------------------------------------------------------
// Selected-state commands

#[test]
fn sequence_sets() {
    let fetch = |set: SequenceSet| CommandBody::Fetch {
        uid: false,
        set,
        items: vec![FetchItem::Flags],
        changed_since: None,
        vanished: false,
    };
    check("FETCH 1 FLAGS", fetch(one(1)));
    check("FETCH * FLAGS", fetch(set(&[(SeqNum::Star, SeqNum::Star)])));
    check(
        "FETCH 1:4,7,9:*,4:1 FLAGS",
        fetch(set(&[
            (v(1), v(4)),
            (v(7), v(7)),
            (v(9), SeqNum::Star),
            (v(4), v(1)),
        ])),
    );
    check("FETCH 4294967295 FLAGS", fetch(one(u32::MAX)));
    for bad in [
        "0",
        "1:",
        ":1",
        "1,",
        ",1",
        "1:0",
        "1::2",
        "4294967296",
        "1x",
        "-1",
        "$1",
        "$,1",
        "1:2x",
    ] {
        let line = format!("FETCH {bad} FLAGS");
        let input = format!("a {line}\r\n");
        assert!(
            matches!(
                run(Limits::default(), input.as_bytes()).as_slice(),
                [Out::Err(Some(_), ErrorKind::Syntax(_))]
            ),
            "{line}"
        );
    }
}

#[test]
fn fetch_items() {
    use FetchItem::*;
    let fetch = |uid: bool, items: Vec<FetchItem>| CommandBody::Fetch {
        uid,
        set: one(1),
        items,
        changed_since: None,
        vanished: false,
    };
    let section = |part: &[u32], text: Option<SectionText>| Section {
        part: part.to_vec(),
        text,
    };
    let body = |peek: bool, s: Section, partial: Option<(u32, u32)>| BodySection {
        peek,
        section: s,
        partial,
    };
    check(
        "FETCH 1 ALL",
        fetch(false, vec![Flags, InternalDate, Rfc822Size, Envelope]),
    );
    check(
        "FETCH 1 fast",
        fetch(false, vec![Flags, InternalDate, Rfc822Size]),
    );
    check(
        "FETCH 1 FULL",
        fetch(false, vec![Flags, InternalDate, Rfc822Size, Envelope, Body]),
    );
    check(
        "FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE RFC822 RFC822.HEADER RFC822.TEXT)",
        fetch(
            false,
            vec![
                Uid,
                Flags,
                InternalDate,
                Rfc822Size,
                Envelope,
                Body,
                BodyStructure,
                Rfc822,
                Rfc822Header,
                Rfc822Text,
            ],
        ),
    );
    check("UID FETCH 1 (FLAGS)", fetch(true, vec![Flags]));
    check(
        "FETCH 1 BODY[]",
        fetch(false, vec![body(false, section(&[], None), None)]),
    );
    check(
        "FETCH 1 body.peek[]<0.1024>",
        fetch(false, vec![body(true, section(&[], None), Some((0, 1024)))]),
    );
    check(
        "FETCH 1 (BODY.PEEK[HEADER] BODY[TEXT] BODY[1.2.3] BODY[2.MIME] BODY[1.HEADER] BODY[3.TEXT]<5.10>)",
        fetch(
            false,
            vec![
                body(true, section(&[], Some(SectionText::Header)), None),
                body(false, section(&[], Some(SectionText::Text)), None),
                body(false, section(&[1, 2, 3], None), None),
                body(false, section(&[2], Some(SectionText::Mime)), None),
                body(false, section(&[1], Some(SectionText::Header)), None),
                body(false, section(&[3], Some(SectionText::Text)), Some((5, 10))),
            ],
        ),
    );
    check(
        "FETCH 1 BODY.PEEK[HEADER.FIELDS (From to \"Message-ID\" {7}\r\nSubject)]",
        fetch(
            false,
            vec![body(
                true,
                section(
                    &[],
                    Some(SectionText::HeaderFields(vec![
                        "FROM".into(),
                        "TO".into(),
                        "MESSAGE-ID".into(),
                        "SUBJECT".into(),
                    ])),
                ),
                None,
            )],
        ),
    );
    check(
        "FETCH 1 BODY[1.HEADER.FIELDS.NOT (Received)]",
        fetch(
            false,
            vec![body(
                false,
                section(
                    &[1],
                    Some(SectionText::HeaderFieldsNot(vec!["RECEIVED".into()])),
                ),
                None,
            )],
        ),
    );
    check_err("FETCH 1 (ALL)", "FETCH macros cannot be combined");
    check_err("FETCH 1 (FLAGS ALL)", "FETCH macros cannot be combined");
    check_err("FETCH 1 ()", "Expected a keyword");
    check_err("FETCH 1 (FLAGS", "Expected a space or )");
    check_err("FETCH 1 FLAGS)", "unexpected characters");
    check_err("FETCH 1 (FLAGS))", "unexpected characters");
    check_err("FETCH 1 BODY.PEEK", "Expected [");
    check_err("FETCH 1 BODY[MIME]", "Invalid body section");
    check_err("FETCH 1 BODY[0]", "Numbers start at 1");
    check_err("FETCH 1 BODY[1.]", "Expected a keyword");
    check_err("FETCH 1 BODY[HEADER", "Expected ]");
    // RFC 3516: BINARY takes part numbers only.
    check(
        "FETCH 1 (BINARY[] BINARY.PEEK[1.2]<0.10> binary.size[3])",
        fetch(
            false,
            vec![
                Binary {
                    peek: false,
                    part: vec![],
                    partial: None,
                },
                Binary {
                    peek: true,
                    part: vec![1, 2],
                    partial: Some((0, 10)),
                },
                BinarySize { part: vec![3] },
            ],
        ),
    );
    check_err("FETCH 1 BINARY[1.MIME]", "BINARY takes part numbers only");
    check_err("FETCH 1 BINARY[TEXT]", "BINARY takes part numbers only");
    check_err("FETCH 1 BINARY[1:2]", "Expected . or ]");
    check_err("FETCH 1 BINARY.SIZE[1]<0.5>", "unexpected characters");
    check_err("FETCH 1 BODY[HEADER.FIELDS ()]", "Expected a string");
    check_err("FETCH 1 BODY[HEADER.FIELDS]", "Expected a space");
    check_err(
        "FETCH 1 BODY[HEADER.FIELDS (\"a:b\")]",
        "Invalid header field name",
    );
    check_err("FETCH 1 BODY[]<0.0>", "Numbers start at 1");
    check_err("FETCH 1 BODY[]<0>", "Expected .");
    check_err("FETCH 1 BINARY.PEEKX[]", "Unknown FETCH item");
    check_err("FETCH 1", "Missing argument");
    check_err("FETCH 1 FLAGS (CHANGEDSINCE 1", "Expected a space or )");
}

#[test]
fn store() {
    let store = |uid: bool, op: StoreOp, silent: bool, flags: Vec<Flag>| CommandBody::Store {
        uid,
        set: set(&[(v(1), v(3))]),
        op,
        silent,
        flags,
        unchanged_since: None,
    };
    check(
        "STORE 1:3 FLAGS (\\Seen)",
        store(false, StoreOp::Replace, false, vec![Flag::Seen]),
    );
    check(
        "STORE 1:3 FLAGS ()",
        store(false, StoreOp::Replace, false, vec![]),
    );
    check(
        "STORE 1:3 +FLAGS.SILENT (\\Deleted \\flagged foo)",
        store(
            false,
            StoreOp::Add,
            true,
            vec![Flag::Deleted, Flag::Flagged, Flag::Keyword("foo".into())],
        ),
    );
    check(
        "UID STORE 1:3 -flags \\Answered \\Draft",
        store(
            true,
            StoreOp::Remove,
            false,
            vec![Flag::Answered, Flag::Draft],
        ),
    );
    check(
        "STORE 1:3 FLAGS.SILENT \\Seen",
        store(false, StoreOp::Replace, true, vec![Flag::Seen]),
    );
    check_err("STORE 1:3 +FLAGS (\\Recent)", "\\Recent");
    check_err("STORE 1:3 +FLAGS \\*", "Unknown system flag");
    check_err("STORE 1:3 FLAG (\\Seen)", "Expected FLAGS");
    check_err("STORE 1:3 FLAGS", "Missing argument");
    check_err("STORE 1:3 FLAGS (\\Seen", "Expected a space or )");
    check_err("STORE 1:3 FLAGS ((\\Seen))", "Expected an atom");
    check_err("STORE 1:3 FLAGS \"x\"", "Expected an atom");
}

#[test]
fn copy_move_expunge() {
    check(
        "COPY 2:4 Archive",
        CommandBody::Copy {
            uid: false,
            set: set(&[(v(2), v(4))]),
            mailbox: "Archive".into(),
        },
    );
    check(
        "uid copy 7 inbox",
        CommandBody::Copy {
            uid: true,
            set: one(7),
            mailbox: "INBOX".into(),
        },
    );
    check(
        "MOVE 1 Trash",
        CommandBody::Move {
            uid: false,
            set: one(1),
            mailbox: "Trash".into(),
        },
    );
    check(
        "UID MOVE 1:* \"&ZeVnLIqe-\"",
        CommandBody::Move {
            uid: true,
            set: set(&[(v(1), SeqNum::Star)]),
            mailbox: "日本語".into(),
        },
    );
    check(
        "UID EXPUNGE 3:5",
        CommandBody::UidExpunge(set(&[(v(3), v(5))])),
    );
    check_err("UID EXPUNGE", "Missing argument");
    check_err("UID FROB 1", "Unknown UID command");
    check_err("UID", "Missing argument");
    check_err("COPY 1", "Missing argument");
    check_err("MOVE Trash 1", "Invalid sequence set");
}

// ---------------------------------------------------------------------------------------
// SEARCH

/// Parses `SEARCH <keys>` and expects the criteria.
fn check_search(keys: &str, expect: SearchKey) {
    check(
        &format!("SEARCH {keys}"),
        CommandBody::Search {
            uid: false,
            charset: None,
            criteria: expect,
            ret: SearchReturn::Plain,
        },
    );
}

#[test]
fn search_keys() {
    use SearchKey::*;
    let hdr = |name: &str, value: &str| Header(name.into(), value.into());
    check_search("ALL", All);
    check_search("answered", Flag(crate::Flag::Answered));
    check_search("DELETED", Flag(crate::Flag::Deleted));
    check_search("DRAFT", Flag(crate::Flag::Draft));
    check_search("FLAGGED", Flag(crate::Flag::Flagged));
    check_search("SEEN", Flag(crate::Flag::Seen));
    check_search("RECENT", Flag(crate::Flag::Recent));
    check_search("UNANSWERED", NotFlag(crate::Flag::Answered));
    check_search("UNDELETED", NotFlag(crate::Flag::Deleted));
    check_search("UNDRAFT", NotFlag(crate::Flag::Draft));
    check_search("UNFLAGGED", NotFlag(crate::Flag::Flagged));
    check_search("UNSEEN", NotFlag(crate::Flag::Seen));
    check_search("NEW", New);
    check_search("OLD", Old);
    check_search("KEYWORD $Junk", Flag(crate::Flag::Keyword("$Junk".into())));
    check_search("UNKEYWORD x", NotFlag(crate::Flag::Keyword("x".into())));
    check_search("BEFORE 1-Feb-1994", Before(8797));
    check_search("ON \"01-feb-1994\"", On(8797));
    check_search("SINCE 1-Jan-1970", Since(0));
    check_search("SINCE 31-Dec-1969", Since(-1));
    check_search("SENTBEFORE 29-Feb-2000", SentBefore(11016));
    check_search("SENTON 1-Mar-2000", SentOn(11017));
    check_search("SENTSINCE 17-Jul-1996", SentSince(9694));
    check_search("LARGER 1024", Larger(1024));
    check_search("SMALLER 0", Smaller(0));
    check_search("FROM joe", hdr("From", "joe"));
    check_search("TO \"a b\"", hdr("To", "a b"));
    check_search("CC {3}\r\nx y", hdr("Cc", "x y"));
    check_search("BCC x", hdr("Bcc", "x"));
    check_search("SUBJECT \"日本\"", hdr("Subject", "日本"));
    check_search("HEADER Message-ID <x@y>", hdr("Message-ID", "<x@y>"));
    check_search("HEADER X-Spam \"\"", hdr("X-Spam", ""));
    check_search("BODY hello", Body("hello".into()));
    check_search("TEXT {6+}\r\n日本", Text("日本".into()));
    check_search("UID 1:*", Uid(set(&[(v(1), SeqNum::Star)])));
    check_search("1,3:5", SequenceSet(set(&[(v(1), v(1)), (v(3), v(5))])));
    check_search("*", SequenceSet(set(&[(SeqNum::Star, SeqNum::Star)])));
    check_search("NOT SEEN", Not(Box::new(Flag(crate::Flag::Seen))));
    check_search(
        "OR SEEN FLAGGED",
        Or(
            Box::new(Flag(crate::Flag::Seen)),
            Box::new(Flag(crate::Flag::Flagged)),
        ),
    );
    check_search(
        "SEEN FROM joe",
        And(vec![Flag(crate::Flag::Seen), hdr("From", "joe")]),
    );
    check_search("(SEEN)", Flag(crate::Flag::Seen));
    check_search(
        "OR (SEEN UNFLAGGED) NOT (FROM x OR TO y 2) 1:2",
        And(vec![
            Or(
                Box::new(And(vec![
                    Flag(crate::Flag::Seen),
                    NotFlag(crate::Flag::Flagged),
                ])),
                Box::new(Not(Box::new(And(vec![
                    hdr("From", "x"),
                    Or(Box::new(hdr("To", "y")), Box::new(SequenceSet(one(2)))),
                ])))),
            ),
            SequenceSet(set(&[(v(1), v(2))])),
        ]),
    );
}

#[test]
fn search_malformed() {
    check_err("SEARCH", "Missing argument");
    check_err("SEARCH ()", "Expected an atom");
    check_err("SEARCH (SEEN", "Expected a space or )");
    check_err("SEARCH SEEN)", "Expected a space");
    check_err("SEARCH ((SEEN)", "Expected a space or )");
    check_err("SEARCH OR SEEN", "Missing argument");
    check_err("SEARCH NOT", "Missing argument");
    check_err("SEARCH FROBNICATE", "Unknown search key");
    check_err("SEARCH BEFORE 1994-02-01", "Invalid");
    check_err("SEARCH BEFORE 32-Jan-1994", "Invalid day");
    check_err("SEARCH BEFORE 29-Feb-1900", "Invalid day");
    check_err("SEARCH BEFORE 1-Feb-94", "Invalid date");
    check_err("SEARCH BEFORE \"1-Feb-1994", "Invalid date");
    check_err("SEARCH LARGER x", "Expected a number");
    check_err("SEARCH UID 0", "Numbers start at 1");
    check_err("SEARCH 1:", "Invalid sequence set");
    check_err("SEARCH KEYWORD \\Seen", "not a system flag");
    check_err("SEARCH HEADER \"\" x", "Invalid header field name");
    check_err("SEARCH SEEN  UNSEEN", "Expected an atom");
    check_err("SEARCH FOO", "Unknown search key");
    check_err(
        "SEARCH RETURN (PARTIAL 1:10) ALL",
        "Unsupported SEARCH return option",
    );
    check_err("SEARCH RETURN ALL", "Expected ( after RETURN");
    check_err("SEARCH CHARSET", "Unknown search key");
    check_err_bytes(b"SEARCH CHARSET UTF-8 TEXT {1}\r\n\xff", "UTF-8");
}

#[test]
fn search_charset_and_return() {
    let search = |uid: bool, charset: Option<&str>, ret: SearchReturn, criteria: SearchKey| {
        CommandBody::Search {
            uid,
            charset: charset.map(Into::into),
            criteria,
            ret,
        }
    };
    let esearch = |min, max, count, all| SearchReturn::Esearch {
        min,
        max,
        count,
        all,
        save: false,
    };
    check(
        "SEARCH CHARSET UTF-8 TEXT \"日本\"",
        search(
            false,
            Some("UTF-8"),
            SearchReturn::Plain,
            SearchKey::Text("日本".into()),
        ),
    );
    check(
        "UID SEARCH charset us-ascii ALL",
        search(true, Some("us-ascii"), SearchReturn::Plain, SearchKey::All),
    );
    // An unknown charset passes through, for the session to answer NO [BADCHARSET]; its
    // strings need not be UTF-8.
    check_bytes(
        b"SEARCH CHARSET ISO-8859-1 TEXT {1}\r\n\xe9",
        search(
            false,
            Some("ISO-8859-1"),
            SearchReturn::Plain,
            SearchKey::Text("\u{fffd}".into()),
        ),
    );
    check(
        "SEARCH RETURN (MIN max COUNT ALL) UNSEEN",
        search(
            false,
            None,
            esearch(true, true, true, true),
            SearchKey::NotFlag(Flag::Seen),
        ),
    );
    check(
        "UID SEARCH RETURN () CHARSET UTF-8 ALL",
        search(
            true,
            Some("UTF-8"),
            esearch(false, false, false, false),
            SearchKey::All,
        ),
    );
    check(
        "SEARCH RETURN (COUNT) 1:*",
        search(
            false,
            None,
            esearch(false, false, true, false),
            SearchKey::SequenceSet(set(&[(v(1), SeqNum::Star)])),
        ),
    );
    // RFC 5182: SAVE, and `$` wherever a sequence set may stand.
    check(
        "UID SEARCH RETURN (SAVE min) OR $ UID $",
        search(
            true,
            None,
            SearchReturn::Esearch {
                min: true,
                max: false,
                count: false,
                all: false,
                save: true,
            },
            SearchKey::Or(
                Box::new(SearchKey::SequenceSet(SequenceSet::saved())),
                Box::new(SearchKey::Uid(SequenceSet::saved())),
            ),
        ),
    );
    check_err("SEARCH $:4", "$ stands alone");
    check_err("SEARCH 1,$", "Invalid sequence set");
}

#[test]
fn the_saved_result_stands_for_a_whole_set() {
    assert!(SequenceSet::saved().is_saved());
    assert!(!one(1).is_saved());
    check(
        "UID FETCH $ (FLAGS)",
        CommandBody::Fetch {
            uid: true,
            set: SequenceSet::saved(),
            items: vec![FetchItem::Flags],
            changed_since: None,
            vanished: false,
        },
    );
    check(
        "COPY $ Archive",
        CommandBody::Copy {
            uid: false,
            set: SequenceSet::saved(),
            mailbox: "Archive".into(),
        },
    );
    check(
        "UID EXPUNGE $",
        CommandBody::UidExpunge(SequenceSet::saved()),
    );
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [40, 5_000] {
        let line = format!("SEARCH {}ALL{}", "(".repeat(depth), ")".repeat(depth));
        check_err(&line, "Too deeply nested");
        let line = format!("SEARCH {}ALL", "NOT ".repeat(depth));
        check_err(&line, "Too deeply nested");
        let line = format!("SEARCH {}ALL", "OR ALL ".repeat(depth));
        check_err(&line, "Too deeply nested");
    }
    let line = format!("SEARCH {}ALL{}", "(".repeat(20), ")".repeat(20));
    check(
        &line,
        CommandBody::Search {
            uid: false,
            charset: None,
            criteria: SearchKey::All,
            ret: SearchReturn::Plain,
        },
    );
}

// ---------------------------------------------------------------------------------------
// Literals and continuations

#[test]
fn synchronizing_literal_asks_once() {
    let input = b"a LOGIN {3}\r\njoe {6}\r\nsecret\r\n";
    let outs = run(Limits::default(), input);
    assert_eq!(
        outs,
        [
            Out::Cont,
            Out::Cont,
            cmd(
                "a",
                CommandBody::Login {
                    user: "joe".into(),
                    password: "secret".into()
                }
            )
        ]
    );

    // Asked once, even when the data comes in many pieces.
    let mut reader = CommandReader::default();
    let mut buf = b"a LOGIN {3}\r\n".to_vec();
    assert_eq!(reader.parse(&mut buf), Ok(Parsed::NeedContinuation));
    assert!(buf.is_empty());
    assert_eq!(reader.parse(&mut buf), Ok(Parsed::NeedMore));
    buf.extend_from_slice(b"j");
    assert_eq!(reader.parse(&mut buf), Ok(Parsed::NeedMore));
    buf.extend_from_slice(b"oe x\r\nb NOOP\r\n");
    assert!(matches!(reader.parse(&mut buf), Ok(Parsed::Command(_))));
    assert_eq!(buf, b"b NOOP\r\n");
    assert!(!reader.in_progress());
}

#[test]
fn non_synchronizing_literal_needs_no_continuation() {
    let outs = run(
        Limits::default(),
        b"a LOGIN {3+}\r\njoe {6+}\r\nsecret\r\nb NOOP\r\n",
    );
    assert_eq!(
        outs,
        [
            cmd(
                "a",
                CommandBody::Login {
                    user: "joe".into(),
                    password: "secret".into()
                }
            ),
            cmd("b", CommandBody::Noop),
        ]
    );
}

#[test]
fn literal_data_may_hold_anything() {
    // Line endings, braces and what looks like a literal announcement inside a literal
    // are data, not syntax.
    check(
        "LOGIN {9+}\r\nx {3}\r\nyz {2+}\r\n\r\n",
        CommandBody::Login {
            user: "x {3}\r\nyz".into(),
            password: "\r\n".into(),
        },
    );
}

#[test]
fn literal_too_large_synchronizing_is_refused_without_continuation() {
    let outs = run(small(), b"a LOGIN {21}\r\nb NOOP\r\n");
    assert_eq!(
        outs,
        [
            Out::Err(
                Some("a".into()),
                ErrorKind::LiteralTooLarge {
                    size: 21,
                    limit: 20
                }
            ),
            cmd("b", CommandBody::Noop),
        ]
    );
    // The limit covers all literals of a command together.
    let outs = run(small(), b"a LOGIN {10+}\r\n0123456789 {11}\r\nb NOOP\r\n");
    assert_eq!(
        outs,
        [
            Out::Err(
                Some("a".into()),
                ErrorKind::LiteralTooLarge {
                    size: 11,
                    limit: 20
                }
            ),
            cmd("b", CommandBody::Noop),
        ]
    );
    // A size beyond u64 is just too large.
    let outs = run(small(), b"a LOGIN {99999999999999999999999}\r\n");
    assert!(matches!(
        outs.as_slice(),
        [Out::Err(
            Some(_),
            ErrorKind::LiteralTooLarge { size: u64::MAX, .. }
        )]
    ));
    // APPEND has its own, larger limit.
    let outs = run(small(), b"a APPEND x {50}\r\n");
    assert_eq!(outs, [Out::Cont]);
    let outs = run(small(), b"a append x {51}\r\n");
    assert_eq!(
        outs,
        [Out::Err(
            Some("a".into()),
            ErrorKind::LiteralTooLarge {
                size: 51,
                limit: 50
            }
        )]
    );
    let mut out = Vec::new();
    ParseError::new(
        Some("a".into()),
        ErrorKind::LiteralTooLarge {
            size: 51,
            limit: 50,
        },
    )
    .write_response(&mut out);
    assert_eq!(
        out,
        b"a NO [TOOBIG] Literal too large (at most 50 octets)\r\n"
    );
}

#[test]
fn literal_too_large_non_synchronizing_closes() {
    let outs = run(small(), b"a LOGIN {21+}\r\n012345678901234567890 x\r\n");
    assert_eq!(
        outs,
        [Out::Err(
            Some("a".into()),
            ErrorKind::NonSyncLiteralTooLarge {
                size: 21,
                limit: 20
            }
        )]
    );
    let error = ParseError::new(
        Some("a".into()),
        ErrorKind::NonSyncLiteralTooLarge {
            size: 21,
            limit: 20,
        },
    );
    assert!(error.must_close());
    let mut out = Vec::new();
    error.write_response(&mut out);
    assert_eq!(
        out,
        b"* BYE [TOOBIG] Literal too large (at most 20 octets)\r\n"
    );
}

#[test]
fn bad_prefix_is_refused_before_the_literal() {
    // The client waits for a continuation that never comes; it gets the error instead and
    // does not send the literal.
    for (input, kind) in [
        (
            &b"a FROB {5}\r\n"[..],
            ErrorKind::UnknownCommand("FROB".into()),
        ),
        (
            b"a SELECT INBOX {5}\r\n",
            ErrorKind::Syntax("Expected ( before SELECT parameters".into()),
        ),
        (
            b"a FETCH 0 {5}\r\n",
            ErrorKind::Syntax("Numbers start at 1".into()),
        ),
        (
            b"a APPEND x \"bad\" {5}\r\n",
            ErrorKind::Syntax("Invalid date".into()),
        ),
    ] {
        let outs = run(Limits::default(), &[input, b"b NOOP\r\n"].concat());
        assert_eq!(
            outs,
            [
                Out::Err(Some("a".into()), kind),
                cmd("b", CommandBody::Noop)
            ],
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // With LITERAL+ the data is on its way, so the whole command is read before it is
    // refused.
    let outs = run(Limits::default(), b"a FROB {5+}\r\nhello\r\nb NOOP\r\n");
    assert_eq!(
        outs,
        [
            Out::Err(Some("a".into()), ErrorKind::UnknownCommand("FROB".into())),
            cmd("b", CommandBody::Noop)
        ]
    );
}

#[test]
fn literal_split_across_feeds() {
    let mut message = b"From: a\r\nSubject: {5}\r\n\r\nbody\r\n".repeat(3);
    message.extend_from_slice(b"x");
    let mut input = format!("t APPEND INBOX (\\Seen) {{{}}}\r\n", message.len()).into_bytes();
    input.extend_from_slice(&message);
    input.extend_from_slice(b"\r\n");
    let expect = cmd(
        "t",
        CommandBody::Append {
            mailbox: "INBOX".into(),
            flags: vec![Flag::Seen],
            date: None,
            message: message.clone(),
        },
    );
    assert_eq!(run(Limits::default(), &input), [Out::Cont, expect.clone()]);
    let chunks: Vec<&[u8]> = input.chunks(7).collect();
    assert_eq!(run_chunks(Limits::default(), &chunks), [Out::Cont, expect]);
}

// ---------------------------------------------------------------------------------------
// Line limits

#[test]
fn over_long_line_is_skipped() {
    let long = format!("a LOGIN {} x\r\nb NOOP\r\n", "y".repeat(200));
    let outs = run(small(), long.as_bytes());
    assert_eq!(
        outs,
        [
            Out::Err(Some("a".into()), ErrorKind::LineTooLong),
            cmd("b", CommandBody::Noop)
        ]
    );
    // The limit counts every line of the command outside its literals.
    let long = format!("a LOGIN {{2+}}\r\nxx {}\r\nb NOOP\r\n", "y".repeat(95));
    assert_eq!(
        run(small(), long.as_bytes()),
        [
            Out::Err(Some("a".into()), ErrorKind::LineTooLong),
            cmd("b", CommandBody::Noop)
        ]
    );
    // A non-synchronizing literal announced at the end of a skipped line is skipped too.
    let long = format!(
        "a LOGIN {} {{12+}}\r\nb NOOP\r\nc x\r\n\r\nd NOOP\r\n",
        "y".repeat(200)
    );
    assert_eq!(
        run(small(), long.as_bytes()),
        [
            Out::Err(Some("a".into()), ErrorKind::LineTooLong),
            cmd("d", CommandBody::Noop)
        ]
    );
    // No tag could be read: the error is untagged.
    let long = format!("{}\r\nb NOOP\r\n", "y".repeat(200));
    assert_eq!(
        run(small(), long.as_bytes()),
        [
            Out::Err(None, ErrorKind::LineTooLong),
            cmd("b", CommandBody::Noop)
        ]
    );
}

#[test]
fn buffer_stays_bounded_while_skipping() {
    let mut reader = CommandReader::new(small());
    let mut buf = Vec::new();
    let mut errors = 0;
    for _ in 0..1000 {
        buf.extend_from_slice(&[b'x'; 1000]);
        match reader.parse(&mut buf) {
            Ok(Parsed::NeedMore) => {}
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::LineTooLong);
                errors += 1;
            }
            other => panic!("{other:?}"),
        }
        assert!(buf.is_empty());
        assert!(reader.frame.len() <= 200);
    }
    assert_eq!(errors, 1);
    buf.extend_from_slice(b"\r\nb NOOP\r\n");
    assert!(matches!(reader.parse(&mut buf), Ok(Parsed::Command(_))));
}

// ---------------------------------------------------------------------------------------
// IDLE and AUTHENTICATE continuation lines

#[test]
fn idle_done() {
    let mut reader = CommandReader::default();
    let mut buf = b"DO".to_vec();
    assert_eq!(reader.parse_idle_done(&mut buf), Ok(false));
    buf.extend_from_slice(b"ne\r\na NOOP\r\n");
    assert_eq!(reader.parse_idle_done(&mut buf), Ok(true));
    assert_eq!(buf, b"a NOOP\r\n");
    let mut buf = b"done\n".to_vec();
    assert_eq!(reader.parse_idle_done(&mut buf), Ok(true));
    let mut buf = b"a NOOP\r\n".to_vec();
    let error = reader.parse_idle_done(&mut buf).unwrap_err();
    assert_eq!(error.kind, ErrorKind::ExpectedDone);
    assert!(buf.is_empty());
    let mut buf = b"DONE \r\n".to_vec();
    assert!(reader.parse_idle_done(&mut buf).is_err());
}

#[test]
fn auth_responses() {
    let check_auth = |input: &[u8], expect: Result<Option<AuthResponse>, ()>| {
        let mut reader = CommandReader::default();
        let mut buf = input.to_vec();
        assert_eq!(
            reader.parse_auth_response(&mut buf).map_err(|_| ()),
            expect,
            "{input:?}"
        );
    };
    let data = |s: &str| Ok(Some(AuthResponse::Data(s.into())));
    check_auth(b"AGpvZQBzZWNyZXQ=\r\n", data("AGpvZQBzZWNyZXQ="));
    check_auth(b"\r\n", data(""));
    check_auth(b"abc", Ok(None));
    check_auth(b"*\r\n", Ok(Some(AuthResponse::Cancel)));
    check_auth(b"a b\r\n", Err(()));
    check_auth(b"ab===\r\n", Err(()));
    check_auth(b"=a\r\n", Err(()));
    // Secrets stay out of logs.
    assert_eq!(
        format!("{:?}", AuthResponse::Data("c2VjcmV0".into())),
        "Data(<redacted>)"
    );

    let mut reader = CommandReader::new(small());
    let mut buf = vec![b'A'; 150];
    assert_eq!(
        reader.parse_auth_response(&mut buf).unwrap_err().kind,
        ErrorKind::LineTooLong
    );
    buf.extend_from_slice(b"AAAA\r\nb NOOP\r\n");
    assert_eq!(
        run_rest(&mut reader, &mut buf),
        [cmd("b", CommandBody::Noop)]
    );
}

fn run_rest(reader: &mut CommandReader, buf: &mut Vec<u8>) -> Vec<Out> {
    let mut outs = Vec::new();
    drive(reader, buf, &mut outs);
    outs
}

#[test]
fn error_responses() {
    let response = |tag: Option<&str>, kind: ErrorKind| {
        let mut out = Vec::new();
        ParseError::new(tag.map(Into::into), kind).write_response(&mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        response(Some("a1"), ErrorKind::Syntax("Missing argument".into())),
        "a1 BAD Missing argument\r\n"
    );
    assert_eq!(
        response(None, ErrorKind::LineTooLong),
        "* BAD Command line too long\r\n"
    );
    assert_eq!(
        response(Some("x"), ErrorKind::UnknownCommand("FROB".into())),
        "x BAD Unknown command FROB\r\n"
    );
    // The echoed command name cannot carry control characters or run long.
    let outs = run(Limits::default(), b"a ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n");
    assert_eq!(
        outs,
        [Out::Err(
            Some("a".into()),
            ErrorKind::UnknownCommand("ABCDEFGHIJKLMNOP".into())
        )]
    );
}

#[test]
fn reset_forgets_a_partial_command() {
    let mut reader = CommandReader::default();
    let mut buf = b"a LOGIN {3}\r\nj".to_vec();
    assert_eq!(reader.parse(&mut buf), Ok(Parsed::NeedContinuation));
    assert_eq!(reader.parse(&mut buf), Ok(Parsed::NeedMore));
    assert!(reader.in_progress());
    reader.reset();
    assert!(!reader.in_progress());
    let mut buf = b"b NOOP\r\n".to_vec();
    assert_eq!(
        reader.parse(&mut buf),
        Ok(Parsed::Command(Command {
            tag: "b".into(),
            body: CommandBody::Noop
        }))
    );
}

// ---------------------------------------------------------------------------------------
// Robustness

/// A small deterministic generator, so that a failure can be reproduced.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_commands_never_panic() {
    let seeds: &[&[u8]] = &[
        b"a LOGIN {3}\r\njoe {6+}\r\nsecret\r\n",
        b"a APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {5+}\r\nHello\r\n",
        b"a UID FETCH 1:*,3 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (FROM TO)]<0.100> RFC822.SIZE)\r\n",
        b"a SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM \"x\" SINCE 1-Feb-1994) NOT UID 1:5 TEXT {2+}\r\nhi\r\n",
        b"a STORE 1:3 +FLAGS.SILENT (\\Deleted $Junk)\r\n",
        b"a LIST (SPECIAL-USE) \"\" \"&ZeVnLIqe-/*\" RETURN (SPECIAL-USE)\r\n",
        b"a CREATE Sent (USE (\\Sent))\r\n",
        b"a ID (\"name\" \"x\" \"version\" NIL)\r\n",
        b"a STATUS INBOX (MESSAGES UNSEEN)\r\n",
        b"a AUTHENTICATE PLAIN AGpvZQBzZWNyZXQ=\r\n",
        b"a UID MOVE 1:* Trash\r\n",
    ];
    const ALPHABET: &[u8] = b"()[]{}<>\"\\*%+-.:,0123456789 \r\n\0\xffaZ~&=$";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let limits = Limits {
        max_line: 200,
        max_literal: 100,
        max_append: 1000,
    };
    for _ in 0..20_000 {
        let mut input = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..=rng.below(4) {
            let at = rng.below(input.len() + 1);
            let byte = ALPHABET[rng.below(ALPHABET.len())];
            match rng.below(3) {
                0 if at < input.len() => input[at] = byte,
                1 if at < input.len() => {
                    input.remove(at);
                }
                _ => input.insert(at, byte),
            }
        }
        let _ = parse_command(&input);
        let mut reader = CommandReader::new(limits);
        let mut buf = Vec::new();
        let mut rest = input.as_slice();
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len());
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match reader.parse(&mut buf) {
                    Ok(Parsed::NeedMore) => break,
                    Err(e) if e.must_close() => break,
                    Ok(_) | Err(_) => {}
                }
            }
        }
        let _ = reader.parse_idle_done(&mut input.clone());
        let _ = reader.parse_auth_response(&mut input.clone());
    }
}

#[test]
fn a_literal_marker_longer_than_a_skipped_line_keeps_is_too_large_either_way() {
    // Found by the imap_command fuzz target: read whole, an over-long line showed the `{`
    // of its 31-digit marker and the literal after it was skipped; read in pieces, the
    // line kept too little of its end to see the `{`, and the literal's bytes were read
    // as commands. Now a marker too long to keep is too large however the line arrives
    // (`run` checks every way of cutting), so its literal is skipped, with all after it.
    let long = format!(
        "a {} {{{}5+}}\r\nb NOOP\r\n",
        "y".repeat(100),
        "0".repeat(30)
    );
    assert_eq!(
        run(small(), long.as_bytes()),
        [Out::Err(Some("a".into()), ErrorKind::LineTooLong)]
    );
    // A marker of 20 digits is read, and is too large all the same.
    let long = format!(
        "a {} {{{}+}}\r\nb NOOP\r\n",
        "y".repeat(100),
        "9".repeat(20)
    );
    assert_eq!(
        run(small(), long.as_bytes()),
        [Out::Err(Some("a".into()), ErrorKind::LineTooLong)]
    );
    // On a line within the limit, such a marker is a literal too large to take.
    let outs = run(
        small(),
        format!("a LOGIN {{{}5}}\r\n", "0".repeat(30)).as_bytes(),
    );
    assert!(
        matches!(
            outs.as_slice(),
            [Out::Err(
                Some(_),
                ErrorKind::LiteralTooLarge { size: u64::MAX, .. }
            )]
        ),
        "{outs:?}"
    );
}

#[test]
fn an_over_long_line_in_idle_is_read_the_same_however_it_arrives() {
    // IDLE and AUTHENTICATE lines announce no literals: an over-long one ending in what
    // looks like a marker is dropped alone, whether it arrives whole or in pieces.
    let input = format!("{} {{4+}}\r\nDONE\r\nDONE\r\n", "y".repeat(200));
    let feed = |chunks: &[&[u8]]| {
        let mut reader = CommandReader::new(small());
        let mut buf = Vec::new();
        let mut outs = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match reader.parse_idle_done(&mut buf) {
                    Ok(false) => break,
                    other => outs.push(other),
                }
            }
        }
        outs
    };
    let whole = feed(&[input.as_bytes()]);
    assert_eq!(
        whole,
        [
            Err(ParseError::new(None, ErrorKind::LineTooLong)),
            Ok(true),
            Ok(true)
        ]
    );
    let bytes: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
    assert_eq!(feed(&bytes), whole, "byte by byte");
    let halves = input.as_bytes().split_at(150);
    assert_eq!(feed(&[halves.0, halves.1]), whole, "in two");
}

// ---------------------------------------------------------------------------------------
// CONDSTORE and QRESYNC (RFC 7162)

#[test]
fn condstore_select_fetch_store_search_status() {
    let select = |condstore, qresync| CommandBody::Select {
        mailbox: "INBOX".into(),
        condstore,
        qresync,
    };
    check("SELECT INBOX (CONDSTORE)", select(true, None));
    check("select inbox (condstore)", select(true, None));
    // RFC 7162 §3.2.5.2's example.
    check(
        "SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
        select(
            false,
            Some(Qresync {
                uid_validity: 67_890_007,
                modseq: 20_050_715_194_045_000,
                known_uids: Some(set(&[(v(41), v(41)), (v(43), v(211)), (v(214), v(541))])),
                seq_match: None,
            }),
        ),
    );
    // §3.2.5.2's second example, with sequence match data.
    check(
        "SELECT INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:10 1:10)))",
        select(
            false,
            Some(Qresync {
                uid_validity: 67_890_007,
                modseq: 90_060_115_194_045_000,
                known_uids: Some(set(&[(v(41), v(211)), (v(214), v(541))])),
                seq_match: Some((set(&[(v(1), v(10))]), set(&[(v(1), v(10))]))),
            }),
        ),
    );
    check(
        "SELECT INBOX (QRESYNC (1 2 (1:3 4:6)))",
        select(
            false,
            Some(Qresync {
                uid_validity: 1,
                modseq: 2,
                known_uids: None,
                seq_match: Some((set(&[(v(1), v(3))]), set(&[(v(4), v(6))]))),
            }),
        ),
    );
    check(
        "SELECT INBOX (QRESYNC (1 2))",
        select(
            false,
            Some(Qresync {
                uid_validity: 1,
                modseq: 2,
                known_uids: None,
                seq_match: None,
            }),
        ),
    );
    check_err("SELECT INBOX (QRESYNC (1 0))", "starts at 1");
    check_err("SELECT INBOX (QRESYNC (0 5))", "Numbers start at 1");
    check_err(
        "SELECT INBOX (QRESYNC (1 9223372036854775808))",
        "Mod-sequence too large",
    );
    check_err("SELECT INBOX (QRESYNC 1 2)", "Expected (");
    check_err("SELECT INBOX (QRESYNC (1 2 $))", "saved search result");
    check_err(
        "SELECT INBOX (QRESYNC (1 2 1:5 ($ 1:5)))",
        "saved search result",
    );

    let fetch = |uid, items, changed_since, vanished| CommandBody::Fetch {
        uid,
        set: set(&[(v(1), SeqNum::Star)]),
        items,
        changed_since,
        vanished,
    };
    // §3.1.4.1's example.
    check(
        "FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
        fetch(false, vec![FetchItem::Flags], Some(12345), false),
    );
    check(
        "UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 0 VANISHED)",
        fetch(
            true,
            vec![FetchItem::Flags, FetchItem::ModSeq],
            Some(0),
            true,
        ),
    );
    check(
        "FETCH 1:* MODSEQ",
        fetch(false, vec![FetchItem::ModSeq], None, false),
    );
    check_err(
        "FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
        "VANISHED needs UID FETCH",
    );
    check_err(
        "UID FETCH 1:* (FLAGS) (VANISHED)",
        "VANISHED needs CHANGEDSINCE",
    );
    check_err("FETCH 1:* (FLAGS) (FOO 1)", "Unsupported FETCH modifier");

    // §3.1.3's example.
    check(
        "STORE 7,5,9 (UNCHANGEDSINCE 320162338) +FLAGS.SILENT (\\Deleted)",
        CommandBody::Store {
            uid: false,
            set: set(&[(v(7), v(7)), (v(5), v(5)), (v(9), v(9))]),
            op: StoreOp::Add,
            silent: true,
            flags: vec![Flag::Deleted],
            unchanged_since: Some(320_162_338),
        },
    );
    check_err(
        "STORE 1 (UNCHANGED 1) +FLAGS (\\Seen)",
        "Unsupported STORE modifier",
    );

    let search = |criteria| CommandBody::Search {
        uid: false,
        charset: None,
        criteria,
        ret: SearchReturn::Plain,
    };
    check(
        "SEARCH MODSEQ 620162338",
        search(SearchKey::ModSeq(620_162_338)),
    );
    // §3.1.5's example, with an entry name and type, which are ignored.
    check(
        "SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338",
        search(SearchKey::ModSeq(620_162_338)),
    );
    check_err("SEARCH MODSEQ \"/flags/\\\\draft\" some 1", "Expected priv");
    check(
        "STATUS blurdybloop (UIDNEXT MESSAGES HIGHESTMODSEQ)",
        CommandBody::Status {
            mailbox: "blurdybloop".into(),
            items: vec![
                StatusItem::UidNext,
                StatusItem::Messages,
                StatusItem::HighestModSeq,
            ],
        },
    );
}

/// After ENABLE UTF8=ACCEPT (RFC 6855): names are UTF-8 as sent (`&` is a character, not a
/// shift into modified UTF-7), and APPEND takes `UTF8 (~{n})`; before it, neither.
#[test]
fn utf8_accept_reads_names_as_utf8_and_takes_utf8_append_data() {
    let utf8 = |input: &[u8]| {
        let mut reader = CommandReader::new(Limits::default());
        reader.set_utf8();
        let mut buf = input.to_vec();
        let mut outs = Vec::new();
        drive(&mut reader, &mut buf, &mut outs);
        outs.retain(|o| *o != Out::Cont);
        outs
    };
    let body = |outs: Vec<Out>| match outs.as_slice() {
        [Out::Cmd(c)] => c.body.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body(utf8("a SELECT \"Tom & Jerry/Entwürfe\"\r\n".as_bytes())),
        CommandBody::Select {
            mailbox: "Tom & Jerry/Entwürfe".into(),
            condstore: false,
            qresync: None,
        }
    );
    assert_eq!(
        body(utf8(b"a APPEND Drafts (\\Seen) UTF8 (~{5}\r\nHello)\r\n")),
        CommandBody::Append {
            mailbox: "Drafts".into(),
            flags: vec![Flag::Seen],
            date: None,
            message: b"Hello".to_vec(),
        }
    );
    assert_eq!(
        body(utf8(b"a APPEND Drafts {5}\r\nHello\r\n")),
        CommandBody::Append {
            mailbox: "Drafts".into(),
            flags: vec![],
            date: None,
            message: b"Hello".to_vec(),
        }
    );
    for (input, reason) in [
        (&b"a APPEND Drafts UTF8 ({5}\r\nHello)\r\n"[..], "literal8"),
        (
            &b"a APPEND Drafts UTF8 (~{5}\r\nHello\r\n"[..],
            "Expected )",
        ),
        (&b"a SELECT \"\xff\"\r\n"[..], "not UTF-8"),
    ] {
        // (A refused synchronizing literal's data, sent here without waiting, then reads
        // as a command of its own; only the first answer matters.)
        match utf8(input).first() {
            Some(Out::Err(_, ErrorKind::Syntax(why))) => assert!(why.contains(reason), "{why}"),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }
    // Without ENABLE: modified UTF-7 as before, and no UTF8 data.
    check_err("SELECT \"Tom & Jerry\"", "Invalid mailbox name");
    check_err("APPEND Drafts UTF8 (~{1+}\r\nx)", "ENABLE UTF8=ACCEPT");
}
