//! Server responses: status lines with response codes, untagged data, and the pieces they
//! are made of (flag lists, dates, UID sets, mailbox names, section names).
//!
//! Every writer appends to a caller-owned buffer so a session can batch the responses to
//! pipelined commands into one write. Human-readable text is sanitised on the way out: a
//! CR or LF in it would let whoever chose the text forge response lines, so every control
//! character becomes a space.

use std::fmt::Write as _;

use crate::command::{Flag, Section, SectionText, StatusItem};
use crate::encode::{push_string, push_utf8_string};
use crate::utf7;

/// The condition a status response reports (RFC 3501 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// Only in the greeting, for a connection that is already authenticated.
    PreAuth,
    /// The server is about to close the connection; always untagged.
    Bye,
}

impl Status {
    /// The status keyword as sent.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::PreAuth => "PREAUTH",
            Status::Bye => "BYE",
        }
    }
}

/// A response code, sent in brackets after the status (RFC 3501 section 7.1, RFC 5530 and
/// the extensions tegami offers).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Code<'a> {
    Alert,
    Parse,
    ReadOnly,
    ReadWrite,
    TryCreate,
    UidValidity(u32),
    UidNext(u32),
    Unseen(u32),
    /// `[PERMANENTFLAGS (...)]`; `new_keywords` appends `\*` (the client may create
    /// keywords).
    PermanentFlags {
        flags: &'a [Flag],
        new_keywords: bool,
    },
    /// `[CAPABILITY ...]`, in the greeting or after login.
    Capability(&'a [&'a str]),
    /// `[BADCHARSET (...)]`; the list of supported charsets may be empty.
    BadCharset(&'a [&'a str]),
    /// UIDPLUS `[APPENDUID validity uid]`.
    AppendUid {
        validity: u32,
        uid: u32,
    },
    /// UIDPLUS `[COPYUID validity source dest]`. The two lists must correspond element by
    /// element; each is compacted as by [`push_uid_set`], which keeps their order.
    CopyUid {
        validity: u32,
        source: &'a [u32],
        dest: &'a [u32],
    },
    /// RFC 7162 `[CLOSED]`, sent when SELECT replaces a selected mailbox.
    Closed,
    /// RFC 4469 `[TOOBIG]`: a literal or message is larger than the server accepts.
    TooBig,
    /// RFC 6154 `[USEATTR]`: a special-use attribute the server does not support.
    UseAttr,
    // RFC 5530 codes.
    Unavailable,
    AuthenticationFailed,
    AuthorizationFailed,
    Expired,
    PrivacyRequired,
    ContactAdmin,
    NoPerm,
    InUse,
    ExpungeIssued,
    Corruption,
    ServerBug,
    ClientBug,
    Cannot,
    Limit,
    OverQuota,
    AlreadyExists,
    NonExistent,
}

impl Code<'_> {
    /// Appends the code with its brackets.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        let word = match self {
            Code::Alert => "ALERT",
            Code::Parse => "PARSE",
            Code::ReadOnly => "READ-ONLY",
            Code::ReadWrite => "READ-WRITE",
            Code::TryCreate => "TRYCREATE",
            Code::UidValidity(n) => return bracket_number(out, "UIDVALIDITY", *n),
            Code::UidNext(n) => return bracket_number(out, "UIDNEXT", *n),
            Code::Unseen(n) => return bracket_number(out, "UNSEEN", *n),
            Code::PermanentFlags {
                flags,
                new_keywords,
            } => {
                out.extend_from_slice(b"PERMANENTFLAGS (");
                for (i, flag) in flags.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    push_flag(out, flag);
                }
                if *new_keywords {
                    if !flags.is_empty() {
                        out.push(b' ');
                    }
                    out.extend_from_slice(b"\\*");
                }
                out.extend_from_slice(b")]");
                return;
            }
            Code::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                for cap in *caps {
                    out.push(b' ');
                    push_text(out, cap);
                }
                out.push(b']');
                return;
            }
            Code::BadCharset(charsets) => {
                out.extend_from_slice(b"BADCHARSET");
                if !charsets.is_empty() {
                    out.extend_from_slice(b" (");
                    for (i, charset) in charsets.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        push_astring(out, charset);
                    }
                    out.push(b')');
                }
                out.push(b']');
                return;
            }
            Code::AppendUid { validity, uid } => {
                let _ = write!(Bytes(out), "APPENDUID {validity} {uid}]");
                return;
            }
            Code::CopyUid {
                validity,
                source,
                dest,
            } => {
                let _ = write!(Bytes(out), "COPYUID {validity} ");
                push_uid_set(out, source);
                out.push(b' ');
                push_uid_set(out, dest);
                out.push(b']');
                return;
            }
            Code::Closed => "CLOSED",
            Code::TooBig => "TOOBIG",
            Code::UseAttr => "USEATTR",
            Code::Unavailable => "UNAVAILABLE",
            Code::AuthenticationFailed => "AUTHENTICATIONFAILED",
            Code::AuthorizationFailed => "AUTHORIZATIONFAILED",
            Code::Expired => "EXPIRED",
            Code::PrivacyRequired => "PRIVACYREQUIRED",
            Code::ContactAdmin => "CONTACTADMIN",
            Code::NoPerm => "NOPERM",
            Code::InUse => "INUSE",
            Code::ExpungeIssued => "EXPUNGEISSUED",
            Code::Corruption => "CORRUPTION",
            Code::ServerBug => "SERVERBUG",
            Code::ClientBug => "CLIENTBUG",
            Code::Cannot => "CANNOT",
            Code::Limit => "LIMIT",
            Code::OverQuota => "OVERQUOTA",
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::NonExistent => "NONEXISTENT",
        };
        out.extend_from_slice(word.as_bytes());
        out.push(b']');
    }
}

fn bracket_number(out: &mut Vec<u8>, word: &str, n: u32) {
    let _ = write!(Bytes(out), "{word} {n}]");
}

/// Appends a tagged status response: `tag STATUS [CODE] text\r\n`.
pub fn tagged(out: &mut Vec<u8>, tag: &str, status: Status, code: Option<&Code>, text: &str) {
    push_text(out, tag);
    status_rest(out, status, code, text);
}

/// Appends an untagged status response: `* STATUS [CODE] text\r\n`.
pub fn untagged(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    out.push(b'*');
    status_rest(out, status, code, text);
}

fn status_rest(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    out.push(b' ');
    out.extend_from_slice(status.as_str().as_bytes());
    if let Some(code) = code {
        out.push(b' ');
        code.write(out);
    }
    // resp-text requires text after the code; an empty one gets a neutral word.
    out.push(b' ');
    push_text(out, if text.is_empty() { "done" } else { text });
    out.extend_from_slice(b"\r\n");
}

/// Appends a command continuation request: `+ text\r\n` (`+ \r\n` for empty text, which
/// is how AUTHENTICATE sends an empty challenge).
pub fn continuation(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"+ ");
    push_text(out, text);
    out.extend_from_slice(b"\r\n");
}

/// The continuation request for a synchronizing literal.
pub const LITERAL_CONTINUATION: &[u8] = b"+ Ready for literal data\r\n";

/// Appends `* CAPABILITY cap cap ...\r\n`.
pub fn capability(out: &mut Vec<u8>, caps: &[&str]) {
    out.extend_from_slice(b"* CAPABILITY");
    for cap in caps {
        out.push(b' ');
        push_text(out, cap);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `* ENABLED cap ...\r\n` (RFC 5161) with the capabilities actually enabled.
pub fn enabled(out: &mut Vec<u8>, caps: &[&str]) {
    out.extend_from_slice(b"* ENABLED");
    for cap in caps {
        out.push(b' ');
        push_text(out, cap);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `* n EXISTS\r\n`.
pub fn exists(out: &mut Vec<u8>, n: u32) {
    let _ = write!(Bytes(out), "* {n} EXISTS\r\n");
}

/// Appends `* n RECENT\r\n`.
pub fn recent(out: &mut Vec<u8>, n: u32) {
    let _ = write!(Bytes(out), "* {n} RECENT\r\n");
}

/// Appends `* seq EXPUNGE\r\n`.
pub fn expunge(out: &mut Vec<u8>, seq: u32) {
    let _ = write!(Bytes(out), "* {seq} EXPUNGE\r\n");
}

/// Appends `* FLAGS (...)\r\n`, the flags defined in the selected mailbox.
pub fn flags(out: &mut Vec<u8>, flags: &[Flag]) {
    out.extend_from_slice(b"* FLAGS ");
    push_flags(out, flags);
    out.extend_from_slice(b"\r\n");
}

/// Appends `* LIST (attributes) "delimiter" mailbox\r\n`. Attributes are written as given
/// (`\HasNoChildren`, `\Sent`, ...); `None` as delimiter is a flat namespace (`NIL`).
pub fn list(
    out: &mut Vec<u8>,
    attributes: &[&str],
    delimiter: Option<char>,
    mailbox: &str,
    names: Names,
) {
    list_line(out, "LIST", attributes, delimiter, mailbox, names);
}

/// [`list`] with RFC 5258's CHILDINFO extended data item, the selection options some
/// descendant satisfies: `* LIST () "/" "Foo" ("CHILDINFO" ("SUBSCRIBED"))\r\n`. An empty
/// `child_info` writes the plain line.
pub fn list_child_info(
    out: &mut Vec<u8>,
    attributes: &[&str],
    delimiter: Option<char>,
    mailbox: &str,
    child_info: &[&str],
    names: Names,
) {
    list(out, attributes, delimiter, mailbox, names);
    if child_info.is_empty() {
        return;
    }
    out.truncate(out.len() - 2);
    out.extend_from_slice(b" (\"CHILDINFO\" (");
    for (i, option) in child_info.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_string(out, option.as_bytes());
    }
    out.extend_from_slice(b"))\r\n");
}

/// Appends `* LSUB (attributes) "delimiter" mailbox\r\n`.
pub fn lsub(
    out: &mut Vec<u8>,
    attributes: &[&str],
    delimiter: Option<char>,
    mailbox: &str,
    names: Names,
) {
    list_line(out, "LSUB", attributes, delimiter, mailbox, names);
}

fn list_line(
    out: &mut Vec<u8>,
    verb: &str,
    attributes: &[&str],
    delimiter: Option<char>,
    mailbox: &str,
    names: Names,
) {
    let _ = write!(Bytes(out), "* {verb} (");
    for (i, attribute) in attributes.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_text(out, attribute);
    }
    out.extend_from_slice(b") ");
    match delimiter {
        Some(c) => {
            let mut tmp = [0; 4];
            push_string(out, c.encode_utf8(&mut tmp).as_bytes());
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.push(b' ');
    push_mailbox_as(out, mailbox, names);
    out.extend_from_slice(b"\r\n");
}

/// Appends `* STATUS mailbox (ITEM n ...)\r\n`.
pub fn status(out: &mut Vec<u8>, mailbox: &str, items: &[(StatusItem, u64)], names: Names) {
    out.extend_from_slice(b"* STATUS ");
    push_mailbox_as(out, mailbox, names);
    out.extend_from_slice(b" (");
    for (i, (item, value)) in items.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let name = match item {
            StatusItem::Messages => "MESSAGES",
            StatusItem::Recent => "RECENT",
            StatusItem::UidNext => "UIDNEXT",
            StatusItem::UidValidity => "UIDVALIDITY",
            StatusItem::Unseen => "UNSEEN",
            StatusItem::HighestModSeq => "HIGHESTMODSEQ",
            StatusItem::Deleted => "DELETED",
            StatusItem::DeletedStorage => "DELETED-STORAGE",
            StatusItem::Size => "SIZE",
        };
        let _ = write!(Bytes(out), "{name} {value}");
    }
    out.extend_from_slice(b")\r\n");
}

/// Appends `* QUOTAROOT mailbox root ...\r\n` (RFC 9208).
pub fn quota_root(out: &mut Vec<u8>, mailbox: &str, roots: &[&str], names: Names) {
    out.extend_from_slice(b"* QUOTAROOT ");
    push_mailbox_as(out, mailbox, names);
    for root in roots {
        out.push(b' ');
        push_string(out, root.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `* QUOTA root (resource usage limit ...)\r\n` (RFC 9208); STORAGE counts
/// units of 1024 bytes.
pub fn quota(out: &mut Vec<u8>, root: &str, resources: &[(&str, u64, u64)]) {
    out.extend_from_slice(b"* QUOTA ");
    push_string(out, root.as_bytes());
    out.extend_from_slice(b" (");
    for (i, (name, usage, limit)) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        let _ = write!(Bytes(out), "{name} {usage} {limit}");
    }
    out.extend_from_slice(b")\r\n");
}

/// Appends `* SEARCH n n ...\r\n` (RFC 3501), the numbers in the order given.
pub fn search(out: &mut Vec<u8>, numbers: &[u32]) {
    search_modseq(out, numbers, None);
}

/// [`search`] with RFC 7162's `(MODSEQ n)` after the numbers: the highest mod-sequence
/// of the messages found, for a SEARCH that used MODSEQ. Left out when nothing matched.
pub fn search_modseq(out: &mut Vec<u8>, numbers: &[u32], modseq: Option<u64>) {
    out.extend_from_slice(b"* SEARCH");
    for n in numbers {
        let _ = write!(Bytes(out), " {n}");
    }
    if let Some(modseq) = modseq.filter(|_| !numbers.is_empty()) {
        let _ = write!(Bytes(out), " (MODSEQ {modseq})");
    }
    out.extend_from_slice(b"\r\n");
}

/// The results an ESEARCH response carries (RFC 4731); `None` leaves an item out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Esearch<'a> {
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub count: Option<u32>,
    /// The matches, written as a compact set; an empty slice is left out, as RFC 4731
    /// requires when nothing matched.
    pub all: Option<&'a [u32]>,
    /// RFC 7162: the highest mod-sequence of the matches, for a search that used MODSEQ.
    pub modseq: Option<u64>,
}

/// Appends `* ESEARCH (TAG "tag") [UID] [MIN n] [MAX n] [COUNT n] [ALL set]\r\n`.
pub fn esearch(out: &mut Vec<u8>, tag: &str, uid: bool, result: &Esearch) {
    out.extend_from_slice(b"* ESEARCH (TAG ");
    push_string(out, tag.as_bytes());
    out.push(b')');
    if uid {
        out.extend_from_slice(b" UID");
    }
    if let Some(n) = result.min {
        let _ = write!(Bytes(out), " MIN {n}");
    }
    if let Some(n) = result.max {
        let _ = write!(Bytes(out), " MAX {n}");
    }
    if let Some(n) = result.count {
        let _ = write!(Bytes(out), " COUNT {n}");
    }
    if let Some(all) = result.all.filter(|all| !all.is_empty()) {
        out.extend_from_slice(b" ALL ");
        push_uid_set(out, all);
    }
    if let Some(n) = result.modseq {
        let _ = write!(Bytes(out), " MODSEQ {n}");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `* NAMESPACE (("prefix" "delimiter")) NIL NIL\r\n` (RFC 2342): one personal
/// namespace, no shared or other users' namespaces.
pub fn namespace(out: &mut Vec<u8>, prefix: &str, delimiter: Option<char>) {
    out.extend_from_slice(b"* NAMESPACE ((");
    push_mailbox_string(out, prefix);
    out.push(b' ');
    match delimiter {
        Some(c) => {
            let mut tmp = [0; 4];
            push_string(out, c.encode_utf8(&mut tmp).as_bytes());
        }
        None => out.extend_from_slice(b"NIL"),
    }
    out.extend_from_slice(b")) NIL NIL\r\n");
}

/// Appends `* ID ("name" "value" ...)\r\n` (RFC 2971), or `* ID NIL\r\n` for `None`.
pub fn id(out: &mut Vec<u8>, fields: Option<&[(&str, &str)]>) {
    out.extend_from_slice(b"* ID ");
    match fields {
        None => out.extend_from_slice(b"NIL"),
        Some(fields) => {
            out.push(b'(');
            for (i, (name, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                push_string(out, name.as_bytes());
                out.push(b' ');
                push_string(out, value.as_bytes());
            }
            out.push(b')');
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `* seq FETCH (` to open a FETCH response; the session writes the items
/// separated by spaces and ends it with `)\r\n`.
pub fn fetch_start(out: &mut Vec<u8>, seq: u32) {
    let _ = write!(Bytes(out), "* {seq} FETCH (");
}

/// Appends one flag: `\Seen`, `$Forwarded`, ...
pub fn push_flag(out: &mut Vec<u8>, flag: &Flag) {
    let text = match flag {
        Flag::Seen => "\\Seen",
        Flag::Answered => "\\Answered",
        Flag::Flagged => "\\Flagged",
        Flag::Deleted => "\\Deleted",
        Flag::Draft => "\\Draft",
        Flag::Recent => "\\Recent",
        Flag::Keyword(keyword) => keyword,
    };
    push_text(out, text);
}

/// Appends a parenthesised flag list: `(\Seen $Forwarded)`, `()` when empty.
pub fn push_flags(out: &mut Vec<u8>, flags: &[Flag]) {
    out.push(b'(');
    for (i, flag) in flags.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        push_flag(out, flag);
    }
    out.push(b')');
}

/// Appends an internal date as a quoted date-time in the zone it was given in:
/// `"17-Jul-1996 02:44:25 -0700"`. `secs` is Unix time, `zone_minutes` east of UTC
/// (beyond ±99:59, which no date-time can carry, UTC is used).
pub fn push_internal_date(out: &mut Vec<u8>, secs: i64, zone_minutes: i16) {
    let zone = if zone_minutes.unsigned_abs() <= 99 * 60 + 59 {
        zone_minutes
    } else {
        0
    };
    let local = secs.saturating_add(i64::from(zone) * 60);
    let time = jiff::Timestamp::from_second(local).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let sign = if zone < 0 { '-' } else { '+' };
    let (hours, minutes) = (zone.unsigned_abs() / 60, zone.unsigned_abs() % 60);
    let _ = write!(
        Bytes(out),
        "\"{} {sign}{hours:02}{minutes:02}\"",
        time.strftime("%d-%b-%Y %H:%M:%S")
    );
}

/// `* VANISHED [(EARLIER)] uid-set` (RFC 7162 §3.2.10) for ranges of UIDs, ascending;
/// nothing for none. Long sets are split over several responses so that no line grows
/// past what a client reads comfortably.
pub fn vanished(out: &mut Vec<u8>, earlier: bool, ranges: &[(u32, u32)]) {
    const PER_LINE: usize = 500;
    for chunk in ranges.chunks(PER_LINE) {
        out.extend_from_slice(if earlier {
            b"* VANISHED (EARLIER) ".as_slice()
        } else {
            b"* VANISHED "
        });
        for (i, &(first, last)) in chunk.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if first == last {
                let _ = write!(Bytes(out), "{first}");
            } else {
                let _ = write!(Bytes(out), "{first}:{last}");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a set of numbers compactly, keeping the given order: runs of consecutive
/// ascending numbers become ranges (`1:3,7`). Sorting first gives the shortest text; not
/// sorting keeps two sets in correspondence, as COPYUID needs. An empty slice writes
/// nothing, which is not a valid set, so callers leave the set out instead.
pub fn push_uid_set(out: &mut Vec<u8>, numbers: &[u32]) {
    let mut i = 0;
    while i < numbers.len() {
        if i > 0 {
            out.push(b',');
        }
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && end.checked_add(1) == Some(numbers[i + 1]) {
            end = numbers[i + 1];
            i += 1;
        }
        if start == end {
            let _ = write!(Bytes(out), "{start}");
        } else {
            let _ = write!(Bytes(out), "{start}:{end}");
        }
        i += 1;
    }
}

/// How mailbox names go on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Names {
    /// Modified UTF-7 (RFC 3501 5.1.3), as every client understands.
    #[default]
    Utf7,
    /// UTF-8 as it is, once the client enabled UTF8=ACCEPT (RFC 6855 3).
    Utf8,
}

/// Appends a mailbox name (UTF-8) encoded in modified UTF-7 and quoted (or sent as a
/// literal when it is long).
pub fn push_mailbox(out: &mut Vec<u8>, name: &str) {
    push_mailbox_string(out, name);
}

/// Appends a mailbox name as `names` says: modified UTF-7, or UTF-8 as it is.
pub fn push_mailbox_as(out: &mut Vec<u8>, name: &str, names: Names) {
    match names {
        Names::Utf7 => push_mailbox_string(out, name),
        Names::Utf8 => push_utf8_string(out, name.as_bytes()),
    }
}

fn push_mailbox_string(out: &mut Vec<u8>, name: &str) {
    push_string(out, utf7::encode(name).as_bytes());
}

/// Appends the name of a body section item as a FETCH response names it:
/// `BODY[1.HEADER.FIELDS (FROM TO)]`, then `<origin>` for a partial fetch. BODY.PEEK
/// requests are answered under the name BODY.
pub fn push_body_section_name(out: &mut Vec<u8>, section: &Section, origin: Option<u32>) {
    out.extend_from_slice(b"BODY[");
    for (i, part) in section.part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let _ = write!(Bytes(out), "{part}");
    }
    if let Some(text) = &section.text {
        if !section.part.is_empty() {
            out.push(b'.');
        }
        let (word, fields) = match text {
            SectionText::Header => ("HEADER", None),
            SectionText::HeaderFields(fields) => ("HEADER.FIELDS", Some(fields)),
            SectionText::HeaderFieldsNot(fields) => ("HEADER.FIELDS.NOT", Some(fields)),
            SectionText::Text => ("TEXT", None),
            SectionText::Mime => ("MIME", None),
        };
        out.extend_from_slice(word.as_bytes());
        if let Some(fields) = fields {
            out.extend_from_slice(b" (");
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                push_astring(out, field);
            }
            out.push(b')');
        }
    }
    out.push(b']');
    if let Some(origin) = origin {
        let _ = write!(Bytes(out), "<{origin}>");
    }
}

/// Appends `BINARY[1.2]<origin>` or, with `size`, `BINARY.SIZE[1.2]` (RFC 3516).
pub fn push_binary_name(out: &mut Vec<u8>, size: bool, part: &[u32], origin: Option<u32>) {
    out.extend_from_slice(if size { b"BINARY.SIZE[" } else { b"BINARY[" });
    for (i, number) in part.iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let _ = write!(Bytes(out), "{number}");
    }
    out.push(b']');
    if let Some(origin) = origin {
        let _ = write!(Bytes(out), "<{origin}>");
    }
}

/// Appends `s` as an atom when it is one, otherwise as a string.
pub fn push_astring(out: &mut Vec<u8>, s: &str) {
    if !s.is_empty() && s.bytes().all(crate::parser::is_astring_char) {
        out.extend_from_slice(s.as_bytes());
    } else {
        push_string(out, s.as_bytes());
    }
}

/// Appends text with control characters replaced by spaces.
fn push_text(out: &mut Vec<u8>, text: &str) {
    out.extend(
        text.bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
}

/// Lets `write!` append to a byte vector without going through a `String`.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a writer on an empty buffer and compares what it wrote.
    fn check(write: impl FnOnce(&mut Vec<u8>), expect: &str) {
        let mut out = Vec::new();
        write(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), expect);
    }

    #[test]
    fn status_lines() {
        check(
            |o| tagged(o, "a1", Status::Ok, None, "LOGIN completed"),
            "a1 OK LOGIN completed\r\n",
        );
        check(
            |o| {
                tagged(
                    o,
                    "a1",
                    Status::No,
                    Some(&Code::AuthenticationFailed),
                    "Invalid credentials",
                )
            },
            "a1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n",
        );
        check(
            |o| tagged(o, "a1", Status::Bad, None, "two\r\nlines"),
            "a1 BAD two  lines\r\n",
        );
        check(|o| tagged(o, "a1", Status::Ok, None, ""), "a1 OK done\r\n");
        check(
            |o| {
                untagged(
                    o,
                    Status::Ok,
                    Some(&Code::UidValidity(3857529045)),
                    "UIDs valid",
                )
            },
            "* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
        );
        check(
            |o| untagged(o, Status::Bye, None, "Logging out"),
            "* BYE Logging out\r\n",
        );
        check(
            |o| {
                untagged(
                    o,
                    Status::PreAuth,
                    Some(&Code::Capability(&["IMAP4rev1", "IDLE"])),
                    "ready",
                )
            },
            "* PREAUTH [CAPABILITY IMAP4rev1 IDLE] ready\r\n",
        );
        check(
            |o| continuation(o, "Ready for literal data"),
            "+ Ready for literal data\r\n",
        );
        check(|o| continuation(o, ""), "+ \r\n");
        check(
            |o| o.extend_from_slice(LITERAL_CONTINUATION),
            "+ Ready for literal data\r\n",
        );
    }

    #[test]
    fn response_codes() {
        let code = |c: Code| {
            let mut out = Vec::new();
            c.write(&mut out);
            String::from_utf8(out).unwrap()
        };
        for (c, expect) in [
            (Code::Alert, "[ALERT]"),
            (Code::Parse, "[PARSE]"),
            (Code::ReadOnly, "[READ-ONLY]"),
            (Code::ReadWrite, "[READ-WRITE]"),
            (Code::TryCreate, "[TRYCREATE]"),
            (Code::UidNext(4392), "[UIDNEXT 4392]"),
            (Code::Unseen(12), "[UNSEEN 12]"),
            (Code::Closed, "[CLOSED]"),
            (Code::TooBig, "[TOOBIG]"),
            (Code::UseAttr, "[USEATTR]"),
            (Code::Unavailable, "[UNAVAILABLE]"),
            (Code::AuthenticationFailed, "[AUTHENTICATIONFAILED]"),
            (Code::AuthorizationFailed, "[AUTHORIZATIONFAILED]"),
            (Code::Expired, "[EXPIRED]"),
            (Code::PrivacyRequired, "[PRIVACYREQUIRED]"),
            (Code::ContactAdmin, "[CONTACTADMIN]"),
            (Code::NoPerm, "[NOPERM]"),
            (Code::InUse, "[INUSE]"),
            (Code::ExpungeIssued, "[EXPUNGEISSUED]"),
            (Code::Corruption, "[CORRUPTION]"),
            (Code::ServerBug, "[SERVERBUG]"),
            (Code::ClientBug, "[CLIENTBUG]"),
            (Code::Cannot, "[CANNOT]"),
            (Code::Limit, "[LIMIT]"),
            (Code::OverQuota, "[OVERQUOTA]"),
            (Code::AlreadyExists, "[ALREADYEXISTS]"),
            (Code::NonExistent, "[NONEXISTENT]"),
            (Code::BadCharset(&[]), "[BADCHARSET]"),
            (
                Code::BadCharset(&["UTF-8", "US-ASCII"]),
                "[BADCHARSET (UTF-8 US-ASCII)]",
            ),
            (
                Code::AppendUid {
                    validity: 38505,
                    uid: 3955,
                },
                "[APPENDUID 38505 3955]",
            ),
            (
                Code::CopyUid {
                    validity: 38505,
                    source: &[304, 319, 320],
                    dest: &[3956, 3957, 3958],
                },
                "[COPYUID 38505 304,319:320 3956:3958]",
            ),
            (
                Code::PermanentFlags {
                    flags: &[Flag::Deleted, Flag::Seen, Flag::Keyword("$Junk".into())],
                    new_keywords: true,
                },
                "[PERMANENTFLAGS (\\Deleted \\Seen $Junk \\*)]",
            ),
            (
                Code::PermanentFlags {
                    flags: &[],
                    new_keywords: false,
                },
                "[PERMANENTFLAGS ()]",
            ),
            (
                Code::PermanentFlags {
                    flags: &[],
                    new_keywords: true,
                },
                "[PERMANENTFLAGS (\\*)]",
            ),
        ] {
            assert_eq!(code(c), expect);
        }
    }

    #[test]
    fn untagged_data() {
        check(
            |o| capability(o, &["IMAP4rev1", "LITERAL+"]),
            "* CAPABILITY IMAP4rev1 LITERAL+\r\n",
        );
        check(
            |o| enabled(o, &["UTF8=ACCEPT"]),
            "* ENABLED UTF8=ACCEPT\r\n",
        );
        check(|o| enabled(o, &[]), "* ENABLED\r\n");
        check(|o| exists(o, 23), "* 23 EXISTS\r\n");
        check(|o| recent(o, 0), "* 0 RECENT\r\n");
        check(|o| expunge(o, 3), "* 3 EXPUNGE\r\n");
        check(
            |o| {
                flags(
                    o,
                    &[
                        Flag::Answered,
                        Flag::Flagged,
                        Flag::Deleted,
                        Flag::Seen,
                        Flag::Draft,
                    ],
                )
            },
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
        );
        check(
            |o| {
                list(
                    o,
                    &["\\HasNoChildren", "\\Sent"],
                    Some('/'),
                    "Sent",
                    Names::Utf7,
                )
            },
            "* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent\"\r\n",
        );
        check(
            |o| list(o, &["\\Noselect"], Some('/'), "", Names::Utf7),
            "* LIST (\\Noselect) \"/\" \"\"\r\n",
        );
        check(
            |o| list(o, &[], None, "~peter/mail/台北/日本語", Names::Utf7),
            "* LIST () NIL \"~peter/mail/&U,BTFw-/&ZeVnLIqe-\"\r\n",
        );
        check(
            |o| list_child_info(o, &[], Some('/'), "Foo", &["SUBSCRIBED"], Names::Utf7),
            "* LIST () \"/\" \"Foo\" (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
        );
        check(
            |o| list_child_info(o, &["\\NonExistent"], Some('/'), "a", &[], Names::Utf7),
            "* LIST (\\NonExistent) \"/\" \"a\"\r\n",
        );
        check(
            |o| lsub(o, &[], Some('.'), "a\"b", Names::Utf7),
            "* LSUB () \".\" \"a\\\"b\"\r\n",
        );
        check(
            |o| {
                status(
                    o,
                    "Tom & Jerry",
                    &[(StatusItem::Messages, 231), (StatusItem::UidNext, 44292)],
                    Names::Utf7,
                )
            },
            "* STATUS \"Tom &- Jerry\" (MESSAGES 231 UIDNEXT 44292)\r\n",
        );
        // After ENABLE UTF8=ACCEPT names go as they are, quoted, `&` included.
        check(
            |o| status(o, "Tom & 台北", &[(StatusItem::Messages, 1)], Names::Utf8),
            "* STATUS \"Tom & 台北\" (MESSAGES 1)\r\n",
        );
        check(
            |o| list(o, &[], Some('/'), "Entwürfe/\"x\"", Names::Utf8),
            "* LIST () \"/\" \"Entwürfe/\\\"x\\\"\"\r\n",
        );
        check(
            |o| quota_root(o, "Entwürfe", &[""], Names::Utf7),
            "* QUOTAROOT \"Entw&APw-rfe\" \"\"\r\n",
        );
        check(
            |o| {
                status(
                    o,
                    "x",
                    &[
                        (StatusItem::Recent, 0),
                        (StatusItem::UidValidity, 1),
                        (StatusItem::Unseen, 2),
                    ],
                    Names::Utf7,
                )
            },
            "* STATUS \"x\" (RECENT 0 UIDVALIDITY 1 UNSEEN 2)\r\n",
        );
        check(|o| search(o, &[2, 84, 882]), "* SEARCH 2 84 882\r\n");
        check(|o| search(o, &[]), "* SEARCH\r\n");
        check(
            |o| {
                esearch(
                    o,
                    "A285",
                    true,
                    &Esearch {
                        min: Some(7),
                        max: Some(3800),
                        count: Some(4),
                        all: Some(&[7, 8, 9, 3800]),
                        modseq: None,
                    },
                )
            },
            "* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800 COUNT 4 ALL 7:9,3800\r\n",
        );
        check(
            |o| {
                esearch(
                    o,
                    "a",
                    false,
                    &Esearch {
                        count: Some(0),
                        all: Some(&[]),
                        ..Esearch::default()
                    },
                )
            },
            "* ESEARCH (TAG \"a\") COUNT 0\r\n",
        );
        check(
            |o| namespace(o, "", Some('/')),
            "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n",
        );
        check(|o| id(o, None), "* ID NIL\r\n");
        check(
            |o| id(o, Some(&[("name", "tegami")])),
            "* ID (\"name\" \"tegami\")\r\n",
        );
        check(|o| fetch_start(o, 12), "* 12 FETCH (");
    }

    #[test]
    fn internal_dates() {
        let date = |secs| {
            let mut out = Vec::new();
            push_internal_date(&mut out, secs, 0);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(date(0), "\"01-Jan-1970 00:00:00 +0000\"");
        assert_eq!(date(837_596_665), "\"17-Jul-1996 09:44:25 +0000\"");
        assert_eq!(date(951_782_400), "\"29-Feb-2000 00:00:00 +0000\"");
        assert_eq!(date(-1), "\"31-Dec-1969 23:59:59 +0000\"");
        assert_eq!(date(4_102_444_799), "\"31-Dec-2099 23:59:59 +0000\"");
        // The zone the date was given in comes back, with the local time in it.
        let zoned = |secs, zone| {
            let mut out = Vec::new();
            push_internal_date(&mut out, secs, zone);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(zoned(837_596_665, -420), "\"17-Jul-1996 02:44:25 -0700\"");
        assert_eq!(zoned(837_596_665, 540), "\"17-Jul-1996 18:44:25 +0900\"");
        assert_eq!(zoned(0, 330), "\"01-Jan-1970 05:30:00 +0530\"");
        assert_eq!(zoned(0, -5999), "\"27-Dec-1969 20:01:00 -9959\"");
        assert_eq!(zoned(0, 6000), "\"01-Jan-1970 00:00:00 +0000\"");
    }

    #[test]
    fn vanished_responses() {
        let mut out = Vec::new();
        vanished(&mut out, true, &[(1, 3), (7, 7), (9, 4_000_000_000)]);
        assert_eq!(out, b"* VANISHED (EARLIER) 1:3,7,9:4000000000\r\n");
        out.clear();
        vanished(&mut out, false, &[(5, 5)]);
        assert_eq!(out, b"* VANISHED 5\r\n");
        out.clear();
        vanished(&mut out, false, &[]);
        assert!(out.is_empty());
        let many: Vec<(u32, u32)> = (0..501).map(|i| (i * 2 + 1, i * 2 + 1)).collect();
        vanished(&mut out, true, &many);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 2);
    }

    #[test]
    fn uid_sets() {
        let uids = |numbers: &[u32]| {
            let mut out = b"ALL ".to_vec();
            push_uid_set(&mut out, numbers);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(uids(&[1, 2, 3, 7]), "ALL 1:3,7");
        assert_eq!(uids(&[5]), "ALL 5");
        assert_eq!(uids(&[]), "ALL ");
        assert_eq!(uids(&[3, 2, 1]), "ALL 3,2,1");
        assert_eq!(
            uids(&[1, 3, 4, 5, 9, 10, u32::MAX - 1, u32::MAX]),
            "ALL 1,3:5,9:10,4294967294:4294967295"
        );
        // What precedes the set does not change where commas go.
        let mut out = b"7".to_vec();
        push_uid_set(&mut out, &[1]);
        assert_eq!(out, b"71");
    }

    #[test]
    fn flags_and_mailboxes() {
        check(|o| push_flags(o, &[]), "()");
        check(
            |o| {
                push_flags(
                    o,
                    &[Flag::Seen, Flag::Recent, Flag::Keyword("$Forwarded".into())],
                )
            },
            "(\\Seen \\Recent $Forwarded)",
        );
        check(|o| push_mailbox(o, "INBOX"), "\"INBOX\"");
        check(|o| push_mailbox(o, "Entwürfe"), "\"Entw&APw-rfe\"");
        check(|o| push_astring(o, "FROM"), "FROM");
        check(|o| push_astring(o, "a b"), "\"a b\"");
        check(|o| push_astring(o, ""), "\"\"");
    }

    #[test]
    fn body_section_names() {
        let section = |part: &[u32], text: Option<SectionText>| Section {
            part: part.to_vec(),
            text,
        };
        check(
            |o| push_body_section_name(o, &section(&[], None), None),
            "BODY[]",
        );
        check(
            |o| push_body_section_name(o, &section(&[], None), Some(0)),
            "BODY[]<0>",
        );
        check(
            |o| push_body_section_name(o, &section(&[1, 2], None), None),
            "BODY[1.2]",
        );
        check(
            |o| push_body_section_name(o, &section(&[], Some(SectionText::Header)), None),
            "BODY[HEADER]",
        );
        check(
            |o| push_body_section_name(o, &section(&[3], Some(SectionText::Text)), Some(100)),
            "BODY[3.TEXT]<100>",
        );
        check(
            |o| push_body_section_name(o, &section(&[2], Some(SectionText::Mime)), None),
            "BODY[2.MIME]",
        );
        check(
            |o| {
                push_body_section_name(
                    o,
                    &section(
                        &[],
                        Some(SectionText::HeaderFields(vec!["FROM".into(), "X Y".into()])),
                    ),
                    None,
                )
            },
            "BODY[HEADER.FIELDS (FROM \"X Y\")]",
        );
        check(
            |o| {
                push_body_section_name(
                    o,
                    &section(
                        &[1],
                        Some(SectionText::HeaderFieldsNot(vec!["RECEIVED".into()])),
                    ),
                    None,
                )
            },
            "BODY[1.HEADER.FIELDS.NOT (RECEIVED)]",
        );
    }
}
